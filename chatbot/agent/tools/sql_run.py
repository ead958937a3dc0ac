"""Running a checked query against a reporting database, and reading which columns it offers.

Every session is read-only (`default_transaction_read_only`, and the transaction itself is
READ ONLY) with a statement timeout, and at most `row_limit` rows are fetched whatever the SQL
says. These hold for any DSN an admin configures; the demo role (`reporting_demo`) is also unable
to write by its grants, which is what the database enforces even if a session setting is undone.
"""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors, sql

from chatbot.agent.tools.base import ToolFailed

logger = logging.getLogger(__name__)

# Reaching the database is part of the tool's time; a server that does not answer fails fast.
CONNECT_TIMEOUT_S = 5
# Describing the tables happens while a turn is being prepared: it may delay it this much at most.
DESCRIBE_TIMEOUT_S = 2
# The schema the model reads changes rarely; a minute spares a connection on every turn.
COLUMNS_CACHE_S = 60.0

# information_schema shows a role only the columns it may read. A column's comment (COMMENT ON
# COLUMN) is shown to the model too: where an admin can say what the values mean.
COLUMNS_SQL = """
SELECT c.table_schema, c.table_name, c.column_name, c.data_type,
       col_description(format('%%I.%%I', c.table_schema, c.table_name)::regclass, c.ordinal_position)
FROM information_schema.columns c
WHERE c.table_name = ANY(%s) OR c.table_schema || '.' || c.table_name = ANY(%s)
ORDER BY c.table_schema, c.table_name, c.ordinal_position
"""

_columns_cache: dict[tuple[str, tuple[str, ...]], tuple[float, dict[str, list[str]]]] = {}


@dataclass(frozen=True)
class Rows:
    columns: list[str]
    rows: list[list[Any]]


def query_run(dsn: str, query: str, *, timeout_ms: int, row_limit: int) -> Rows:
    """Run `query` read-only; what the database refuses comes back as ToolFailed in words."""
    try:
        with _connect(dsn, timeout_ms=timeout_ms) as conn, conn.cursor() as cursor:
            # Without parameters psycopg sends the text as it is, over the extended protocol,
            # which Postgres itself limits to one statement.
            cursor.execute(query)
            columns = [column.name for column in cursor.description or []]
            fetched = cursor.fetchmany(row_limit) if cursor.description else []
            return Rows(columns=columns, rows=[[cell(v) for v in row] for row in fetched])
    except errors.QueryCanceled as error:
        raise _failed(
            f"The query took longer than {_seconds(timeout_ms)} and was stopped.", error
        ) from error
    except psycopg.OperationalError as error:
        if error.sqlstate is None:  # no answer from a server: the connection itself failed
            raise _failed("The reporting database could not be reached.", error) from error
        raise _failed(f"The database refused the query: {_primary(error)}", error) from error
    except psycopg.Error as error:
        raise _failed(f"The database refused the query: {_primary(error)}", error) from error


def table_columns(dsn: str, tables: list[str]) -> dict[str, list[str]]:
    """Each allowed table's columns as `name type`, as the reading role sees them; {} when the
    database does not answer. Cached, failures too, so a down database costs one wait a minute."""
    key = (dsn, tuple(sorted(tables)))
    cached = _columns_cache.get(key)
    if cached and time.monotonic() - cached[0] < COLUMNS_CACHE_S:
        return cached[1]
    try:
        columns = _read_columns(dsn, tables)
    except psycopg.Error:
        logger.warning("the reporting database did not list its columns", exc_info=True)
        columns = {}
    _columns_cache[key] = (time.monotonic(), columns)
    return columns


def _read_columns(dsn: str, tables: list[str]) -> dict[str, list[str]]:
    with _connect(dsn, timeout_ms=DESCRIBE_TIMEOUT_S * 1000, connect_s=DESCRIBE_TIMEOUT_S) as conn:
        found = conn.execute(COLUMNS_SQL, (tables, tables)).fetchall()
    columns: dict[str, list[str]] = {}
    for schema, table, column, data_type, comment in found:
        name = table if table in tables else f"{schema}.{table}"
        described = f"{column} {data_type}" + (f" ({comment})" if comment else "")
        columns.setdefault(name, []).append(described)
    return columns


def _connect(
    dsn: str, *, timeout_ms: int, connect_s: int = CONNECT_TIMEOUT_S
) -> psycopg.Connection[Any]:
    conn = psycopg.connect(dsn, connect_timeout=connect_s, autocommit=False)
    try:
        conn.read_only = True
        # Session settings (not startup options) so that connection poolers accept them.
        conn.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(int(timeout_ms))))
        conn.execute("SET default_transaction_read_only = on")
        conn.commit()
    except BaseException:
        conn.close()
        raise
    return conn


def cell(value: Any) -> Any:
    """A value as JSON can carry it: numbers stay numbers, dates become ISO text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return "<binary>"
    if isinstance(value, list | tuple):
        return [cell(v) for v in value]
    if isinstance(value, dict):
        return {str(k): cell(v) for k, v in value.items()}
    return str(value)


def _failed(message: str, error: psycopg.Error) -> ToolFailed:
    return ToolFailed(message, detail=f"{type(error).__name__}: {error}")


def _seconds(ms: int) -> str:
    return f"{ms / 1000:g} s"


def _primary(error: psycopg.Error) -> str:
    return error.diag.message_primary or str(error).strip().splitlines()[0]
