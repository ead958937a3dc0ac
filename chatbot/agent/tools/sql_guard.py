"""What the `sql` tool lets through: one SELECT over allow-listed tables, calling only functions
known to read, with a row limit. The query is parsed with sqlglot (Postgres dialect) and the SQL
that runs is sqlglot's rendering of the checked tree, so what was checked is what runs.

This check is the first fence, not the only one: the tool connects as a role that may only SELECT
the allowed tables, in a read-only session with a statement timeout (`sql_run`), so a query that
slipped past the parser is still refused by the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from chatbot.agent.tools.base import ToolFailed

DIALECT = "postgres"

# Functions a reporting question needs, by sqlglot class (Postgres names in the comments where
# sqlglot's differ). Anything else, from pg_sleep and set_config to dblink, lo_import and
# pg_read_file, is refused: listing what may run is shorter and safer than listing what may not.
ALLOWED_FUNCTIONS: frozenset[type[exp.Func]] = frozenset(
    {
        # aggregates (string_agg is GroupConcat, bool_and/bool_or are LogicalAnd/LogicalOr)
        exp.Count, exp.Sum, exp.Avg, exp.Min, exp.Max, exp.Stddev, exp.StddevPop,
        exp.StddevSamp, exp.Variance, exp.VariancePop, exp.ArrayAgg, exp.GroupConcat,
        exp.LogicalAnd, exp.LogicalOr, exp.PercentileCont, exp.PercentileDisc,
        # window functions
        exp.RowNumber, exp.Rank, exp.DenseRank, exp.PercentRank, exp.CumeDist, exp.Ntile,
        exp.Lag, exp.Lead, exp.FirstValue, exp.LastValue, exp.NthValue,
        # conditions and conversions sqlglot models as functions
        exp.And, exp.Or, exp.Xor, exp.Case, exp.If, exp.Coalesce, exp.Nullif, exp.Greatest,
        exp.Least, exp.Exists, exp.Cast, exp.TryCast,
        # dates (date_trunc is TimestampTrunc, now() CurrentTimestamp, to_char TimeToStr,
        # to_date StrToDate, to_timestamp UnixToTime, date_part Extract)
        exp.Extract, exp.TimestampTrunc, exp.DateTrunc, exp.CurrentDate, exp.CurrentTimestamp,
        exp.CurrentTime, exp.Localtimestamp, exp.Date, exp.DateBin, exp.JustifyInterval,
        exp.MakeInterval, exp.TimeToStr, exp.StrToDate, exp.UnixToTime, exp.DateAdd,
        exp.DateSub, exp.DateDiff,
        # numbers
        exp.Round, exp.Floor, exp.Ceil, exp.Abs, exp.Sign, exp.Trunc, exp.Sqrt, exp.Ln,
        exp.Log, exp.Pow,
        # text (strpos/position are StrPosition, lpad/rpad Pad, ~ RegexpLike)
        exp.Lower, exp.Upper, exp.Length, exp.Substring, exp.Trim, exp.Concat, exp.ConcatWs,
        exp.Left, exp.Right, exp.StrPosition, exp.Replace, exp.Initcap, exp.SplitPart,
        exp.Pad, exp.Repeat, exp.Reverse, exp.RegexpLike, exp.RegexpReplace,
        # arrays and json (unnest is Explode, ->> JSONExtractScalar)
        exp.Array, exp.ArraySize, exp.Explode, exp.Unnest, exp.StringToArray,
        exp.JSONExtract, exp.JSONExtractScalar,
    }
)  # fmt: skip
# Functions sqlglot does not model (it parses them as Anonymous), by their Postgres name.
ALLOWED_FUNCTION_NAMES = frozenset({"age", "cardinality", "timezone", "date_part", "to_char"})

# Statements and clauses that write, lock or change the session, wherever they appear (a
# data-modifying CTE hides an INSERT inside a SELECT).
REFUSED_NODES: tuple[type[exp.Expr], ...] = (
    exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter,
    exp.Command, exp.Set, exp.Into, exp.Lock, exp.Copy, exp.Transaction, exp.Commit,
    exp.Rollback,
)  # fmt: skip


@dataclass(frozen=True)
class CheckedQuery:
    sql: str
    # True when the tool lowered or added the LIMIT: reaching it means rows were left out.
    limit_imposed: bool


def query_check(text: str, *, tables: list[str], row_limit: int) -> CheckedQuery:
    """The SQL to run for the model's `text`, or ToolFailed saying in words why it may not run."""
    tree = _single_select(text)
    _refuse_writes(tree)
    _refuse_functions(tree)
    _refuse_tables(tree, allowed={t.lower() for t in tables})
    imposed = _limit(tree, row_limit)
    return CheckedQuery(sql=tree.sql(dialect=DIALECT), limit_imposed=imposed)


def _single_select(text: str) -> exp.Query:
    try:
        statements = [s for s in sqlglot.parse(text, read=DIALECT) if s is not None]
    except ParseError as error:
        raise ToolFailed(
            "The query could not be read as SQL.", detail=f"sqlglot: {error}"
        ) from error
    if len(statements) != 1:
        raise ToolFailed("Only a single SELECT is allowed (one statement, no semicolons between).")
    tree = statements[0]
    if not isinstance(tree, exp.Select | exp.SetOperation):
        raise ToolFailed("Only a single SELECT is allowed.")
    return tree


def _refuse_writes(tree: exp.Expr) -> None:
    for node in tree.walk():
        if isinstance(node, exp.Into):
            raise ToolFailed("SELECT ... INTO creates a table; only reading is allowed.")
        if isinstance(node, exp.Lock):
            raise ToolFailed("Locking rows (FOR UPDATE, FOR SHARE) is not allowed.")
        if isinstance(node, REFUSED_NODES):
            raise ToolFailed(
                "Only a single SELECT is allowed: the query also contains "
                f"{type(node).__name__.upper()}."
            )


def _refuse_functions(tree: exp.Expr) -> None:
    for node in tree.find_all(exp.Func):
        if isinstance(node, exp.Anonymous):
            name = _called_name(node)
            if name not in ALLOWED_FUNCTION_NAMES:
                raise ToolFailed(f"The function {name}() is not allowed in a report query.")
            # A schema picks which function runs; only the built-in one is allowed.
            if _schema_qualified(node):
                raise ToolFailed(f"Call {name}() without a schema name.")
        elif type(node) not in ALLOWED_FUNCTIONS:
            name = node.sql_name().lower()
            raise ToolFailed(f"The function {name}() is not allowed in a report query.")


def _schema_qualified(node: exp.Anonymous) -> bool:
    parent = node.parent
    return isinstance(parent, exp.Dot) or (isinstance(parent, exp.Table) and bool(parent.db))


def _called_name(node: exp.Anonymous) -> str:
    """The name Postgres will look up: unquoted names fold to lower case, quoted ones do not."""
    if isinstance(node.this, exp.Identifier) and node.this.quoted:
        return str(node.this.this)
    return node.name.lower()


def _refuse_tables(tree: exp.Expr, *, allowed: set[str]) -> None:
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            continue  # a function in FROM: _refuse_functions has judged it
        if _allowed_table(table, allowed):
            continue
        shown = ", ".join(sorted(allowed)) or "none"
        raise ToolFailed(
            f"The table '{_qualified(table)}' is not one you may query; allowed: {shown}."
        )


def _allowed_table(table: exp.Table, allowed: set[str]) -> bool:
    name, schema = table.name.lower(), table.db.lower()
    if table.catalog:
        return False
    if not schema and name in _ctes_visible(table):
        return True
    return _qualified(table).lower() in allowed or (schema in {"", "public"} and name in allowed)


def _qualified(table: exp.Table) -> str:
    return ".".join(part for part in (table.catalog, table.db, table.name) if part)


def _ctes_visible(table: exp.Table) -> set[str]:
    """The CTE names a table reference can mean, following Postgres's scoping: a WITH is seen by
    its query and the CTEs after it; a CTE sees itself only under WITH RECURSIVE."""
    visible: set[str] = set()
    came_from: exp.Expr = table
    for node in _ancestors(table):
        if isinstance(node, exp.With):
            ctes = node.expressions
            index = next(i for i, cte in enumerate(ctes) if cte is came_from)
            seen = ctes if node.args.get("recursive") else ctes[:index]
            visible |= {cte.alias.lower() for cte in seen}
        else:
            with_ = node.args.get("with_")
            if isinstance(with_, exp.With) and with_ is not came_from:
                visible |= {cte.alias.lower() for cte in with_.expressions}
        came_from = node
    return visible


def _ancestors(node: exp.Expr) -> Iterator[exp.Expr]:
    parent = node.parent
    while parent is not None:
        yield parent
        parent = parent.parent


def _limit(tree: exp.Query, row_limit: int) -> bool:
    """Give the query a LIMIT of at most `row_limit`; True if the tool had to set it."""
    current = _literal_limit(tree.args.get("limit"))
    if current is not None and current <= row_limit:
        return False
    # `limit(copy=False)` replaces LIMIT, LIMIT ALL and FETCH FIRST alike, keeping any OFFSET.
    tree.limit(row_limit, copy=False)
    return True


def _literal_limit(clause: exp.Expr | None) -> int | None:
    if isinstance(clause, exp.Limit):
        value = clause.expression
    elif isinstance(clause, exp.Fetch):
        value = clause.args.get("count")
    else:
        return None
    if isinstance(value, exp.Literal) and not value.is_string and value.this.isdigit():
        return int(value.this)
    return None
