"""Statements compiled once per process, for queries on the path of every answer's first token.

Django builds a queryset's SQL anew on every call: for a statement with a few subqueries that took
longer (1-3 ms on 2 cores) than Postgres took to run it. A `Statement` builds the queryset once,
with stand-in values for what changes from call to call, keeps its SQL and parameters, and binds
the real values by replacing the stand-ins. The stand-ins must be values no caller passes (the
tests of each statement check that the SQL binds them as parameters; `Statement` raises when it
cannot find one).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from django.db import connection
from django.db.models import Model, QuerySet

M = TypeVar("M", bound=Model)

# Ids no row has: stand-ins for the ids a statement is built around. Negative, and within a
# 32-bit id's range (Django compiles an out-of-range id to "no rows" without binding it).
STAND_IN_IDS = tuple(-(2**31) + 100 + n for n in range(8))


class Statement:
    """`build(**stand_ins)` returns the queryset; `rows(**values)` runs it with `values` bound in
    place of the stand-ins (same names), as tuples; `objects(model, **values)` as instances of
    `model` (the queryset's own model, its extra columns as attributes)."""

    def __init__(self, build: Callable[..., QuerySet[Any]], **stand_ins: Any) -> None:
        self._build = build
        self._stand_ins = stand_ins
        self._compiled: tuple[str, tuple[Any, ...], dict[int, str]] | None = None
        self._lock = threading.Lock()

    def _compile(self) -> tuple[str, tuple[Any, ...], dict[int, str]]:
        with self._lock:
            if self._compiled is None:
                sql, params = self._build(**self._stand_ins).query.sql_with_params()
                slots: dict[int, str] = {}
                for position, param in enumerate(params):
                    for name, stand_in in self._stand_ins.items():
                        if type(param) is type(stand_in) and param == stand_in:
                            slots[position] = name
                missing = set(self._stand_ins) - set(slots.values())
                if missing:
                    raise RuntimeError(f"the statement does not bind {sorted(missing)}")
                self._compiled = (sql, tuple(params), slots)
            return self._compiled

    def bound(self, **values: Any) -> tuple[str, list[Any]]:
        sql, params, slots = self._compile()
        bound = list(params)
        for position, name in slots.items():
            bound[position] = values[name]
        return sql, bound

    def rows(self, **values: Any) -> list[tuple[Any, ...]]:
        sql, params = self.bound(**values)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())

    def objects(self, model: type[M], **values: Any) -> Sequence[M]:
        sql, params = self.bound(**values)
        return list(model._default_manager.raw(sql, params))
