"""sql: read-only questions over a reporting database an admin configures.

The model drafts one SELECT; `sql_guard` checks it (a single SELECT, allow-listed tables and
functions, a LIMIT) and `sql_run` runs sqlglot's rendering of it in a read-only session, with a
statement timeout, as a role that may only read. The person sees the SQL with the rows.

Options (`ToolSetting.options`): `dsn_env` names the environment variable holding the database
URL (REPORTING_DATABASE_URL or TOOL_DSN_*, read by settings into TOOL_DSNS), `tables` the tables
the model may query, `row_limit` and `statement_timeout_ms` bound what one query may cost.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from django.conf import settings

from chatbot.agent.tools.base import Tool, ToolContext, ToolFailed, ToolResult
from chatbot.agent.tools.sql_guard import CheckedQuery, query_check
from chatbot.agent.tools.sql_run import Rows, query_run, table_columns

MAX_QUERY = 4000
# Past these, one call could hold a reporting database or flood the model's context.
MAX_ROW_LIMIT = 1000
TIMEOUT_RANGE_MS = (100, 60_000)
# A cell longer than this is cut in what the model reads (the page gets the whole value).
CELL_CHARS = 80
TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")
DSN_ENV_NAME = re.compile(r"^(REPORTING_DATABASE_URL|TOOL_DSN_[A-Z0-9_]+)$")


class SqlQuery(Tool):
    name = "sql"
    label = "Reporting SQL"
    description = (
        "Answer questions about numbers, counts, trends and lists of support tickets by running "
        "one read-only PostgreSQL SELECT over the reporting database (e.g. how many tickets are "
        "open per product, median time to close last month). Write a single SELECT using only "
        "the tables and columns listed; results are limited in rows."
    )
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "query": {
                "type": "string",
                "minLength": 8,
                "maxLength": MAX_QUERY,
                "description": "One PostgreSQL SELECT statement over the listed tables.",
            }
        },
        "required": ["query"],
        "additionalProperties": False,
    }
    default_timeout_s = 10.0
    default_options: ClassVar[dict[str, Any]] = {
        "dsn_env": "REPORTING_DATABASE_URL",
        "tables": ["tickets"],
        "row_limit": 100,
        "statement_timeout_ms": 3000,
    }
    # Not the demo's own question: the model must carry the pattern over, not copy an answer.
    example = (
        "How many tickets are pending for shipping?",
        {"query": "SELECT count(*) FROM tickets WHERE status = 'pending' AND product = 'shipping'"},
    )

    def describe(self, options: dict[str, Any]) -> str:
        if self.options_errors(options):
            return self.description  # run() tells the person what the admin must fix
        merged = self.merged_options(options)
        tables = list(merged["tables"])
        dsn = settings.TOOL_DSNS.get(str(merged["dsn_env"]))
        columns = table_columns(dsn, tables) if dsn else {}
        listed = "; ".join(
            f"{table}({', '.join(columns[table])})" if columns.get(table) else table
            for table in tables
        )
        return f"{self.description} Tables: {listed}. At most {merged['row_limit']} rows."

    def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        options = self.usable_options(context.options)
        row_limit = int(options["row_limit"])
        checked = query_check(_query_text(arguments), tables=options["tables"], row_limit=row_limit)
        # No longer than the turn waits for this call: past that, the answer would be dropped.
        timeout_ms = min(int(options["statement_timeout_ms"]), int(context.timeout_s * 1000))
        rows = query_run(self.dsn(options), checked.sql, timeout_ms=timeout_ms, row_limit=row_limit)
        return sql_result(checked, rows, row_limit=row_limit)

    def usable_options(self, options: dict[str, Any]) -> dict[str, Any]:
        problems = self.options_errors(options)
        if problems:
            raise ToolFailed("The sql tool is not set up correctly: " + " ".join(problems))
        return self.merged_options(options)

    def merged_options(self, options: dict[str, Any]) -> dict[str, Any]:
        return {**self.default_options, **options}

    def dsn(self, options: dict[str, Any]) -> str:
        name = str(options["dsn_env"])
        dsn = settings.TOOL_DSNS.get(name)
        if not dsn:
            raise ToolFailed(f"The reporting database is not configured: {name} is not set.")
        return str(dsn)

    def options_errors(self, options: dict[str, Any]) -> list[str]:
        merged = self.merged_options(options)
        unknown = sorted(set(options) - set(self.default_options))
        problems = [f"Unknown option '{key}'." for key in unknown]
        problems += _dsn_env_errors(merged["dsn_env"])
        problems += _tables_errors(merged["tables"])
        problems += _int_errors("row_limit", merged["row_limit"], 1, MAX_ROW_LIMIT)
        problems += _int_errors(
            "statement_timeout_ms", merged["statement_timeout_ms"], *TIMEOUT_RANGE_MS
        )
        return problems


def _dsn_env_errors(value: Any) -> list[str]:
    if not isinstance(value, str) or not DSN_ENV_NAME.match(value):
        return ["dsn_env must name an environment variable: REPORTING_DATABASE_URL or TOOL_DSN_…"]
    if not settings.TOOL_DSNS.get(value):
        return [f"The environment variable {value} is not set on the server."]
    return []


def _tables_errors(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        return ["tables must be a non-empty list of table names."]
    bad = [t for t in value if not isinstance(t, str) or not TABLE_NAME.match(t)]
    if bad:
        shown = ", ".join(repr(t) for t in bad[:5])
        return [f"tables holds names that are not lower-case table names (schema.table): {shown}."]
    return []


def _int_errors(key: str, value: Any, low: int, high: int) -> list[str]:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return [f"{key} must be a whole number from {low:,} to {high:,}."]
    return []


def _query_text(arguments: dict[str, Any]) -> str:
    text = str(arguments.get("query") or "").strip()
    if not text:
        raise ToolFailed("The query is empty; write one SELECT statement.")
    if len(text) > MAX_QUERY:
        raise ToolFailed(f"The query is longer than {MAX_QUERY:,} characters.")
    return text


def sql_result(checked: CheckedQuery, rows: Rows, *, row_limit: int) -> ToolResult:
    """The SQL that ran and its rows: a line for the chat, a table for the model, data for the
    page. Rows were left out only if the tool set the LIMIT and the result reached it."""
    truncated = checked.limit_imposed and len(rows.rows) >= row_limit
    return ToolResult(
        summary=result_summary(rows, truncated=truncated),
        content=f"SQL: {checked.sql}\n{text_table(rows, truncated=truncated)}",
        data={
            "sql": checked.sql,
            "columns": rows.columns,
            "rows": rows.rows,
            "truncated": truncated,
        },
        empty=not rows.rows,
    )


def result_summary(rows: Rows, *, truncated: bool) -> str:
    """One line for the chat and the trace: the value itself when there is a single row."""
    count = len(rows.rows)
    if count == 1 and len(rows.columns) <= 3:
        pairs = ", ".join(
            f"{c} = {_short(v)}" for c, v in zip(rows.columns, rows.rows[0], strict=False)
        )
        return f"1 row: {pairs}"[:200]
    if truncated:
        return f"{count} rows (the row limit; there may be more)"
    return "no rows" if count == 0 else f"{count} row{'s' if count != 1 else ''}"


def text_table(rows: Rows, *, truncated: bool) -> str:
    """The rows as a compact pipe-separated table for the model to read."""
    if not rows.rows:
        return "No rows."
    lines = [" | ".join(rows.columns)]
    lines += [" | ".join(_short(v) for v in row) for row in rows.rows]
    if truncated:
        lines.append(f"[only the first {len(rows.rows)} rows; there may be more]")
    return "\n".join(lines)


def _short(value: Any) -> str:
    text = "NULL" if value is None else str(value)
    text = " ".join(text.split())
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"
