"""The `sql` tool: one read-only SELECT over allow-listed tables, against a real reporting
database built by `reporting_demo_ensure` with its real read-only role and grants."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from psycopg import errors

from chatbot.agent.tools import TOOLS, ToolContext, ToolFailed
from chatbot.agent.tools.reporting_demo import (
    admin_connection,
    demo_rows,
    reporting_demo_ensure,
)
from chatbot.agent.tools.sql import SqlQuery
from chatbot.agent.tools.sql_guard import query_check
from chatbot.agent.tools.sql_run import query_run

DSN_ENV = "TOOL_DSN_SQL_TESTS"
TICKETS = demo_rows()


@pytest.fixture
def run_sql(reporting_db: str, alice: User, settings: Any) -> Callable[..., Any]:
    settings.TOOL_DSNS = {**settings.TOOL_DSNS, DSN_ENV: reporting_db}

    def run(query: str, timeout_s: float = 10, **options: Any) -> Any:
        context = ToolContext(
            user=alice, options={"dsn_env": DSN_ENV, **options}, timeout_s=timeout_s
        )
        return SqlQuery().run({"query": query}, context)

    return run


def _admin_count(sql: str) -> Any:
    with admin_connection(settings.REPORTING_DEMO_DATABASE, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
    return row[0] if row else None


def test_it_counts_open_billing_tickets(run_sql: Callable[..., Any]) -> None:
    expected = sum(1 for t in TICKETS if t[3] == "open" and t[5] == "billing")

    result = run_sql("SELECT count(*) FROM tickets WHERE status = 'open' AND product = 'billing'")

    assert result.data["rows"] == [[expected]]
    assert result.data["columns"] == ["count"]
    assert result.data["truncated"] is False
    assert result.data["sql"] == (
        "SELECT COUNT(*) FROM tickets WHERE status = 'open' AND product = 'billing' LIMIT 100"
    )
    assert result.summary == f"1 row: count = {expected}"
    assert result.empty is False
    assert result.content.startswith(f"SQL: {result.data['sql']}\n")
    assert f"\n{expected}" in result.content


def test_it_marks_a_query_without_rows_as_finding_nothing(run_sql: Callable[..., Any]) -> None:
    """A count of nothing is a row (0) and evidence; a query without rows found nothing."""
    result = run_sql("SELECT * FROM tickets WHERE product = 'no such product'")

    assert result.data["rows"] == [] and result.summary == "no rows" and result.empty is True
    assert run_sql("SELECT count(*) FROM tickets WHERE product = 'no such product'").empty is False


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("INSERT INTO tickets (id) VALUES ('T-1')", "Only a single SELECT is allowed"),
        ("UPDATE tickets SET status = 'closed'", "Only a single SELECT is allowed"),
        ("DELETE FROM tickets", "Only a single SELECT is allowed"),
        ("DROP TABLE tickets", "Only a single SELECT is allowed"),
        ("TRUNCATE tickets", "Only a single SELECT is allowed"),
        ("GRANT ALL ON tickets TO PUBLIC", "Only a single SELECT is allowed"),
        ("COPY tickets TO STDOUT", "Only a single SELECT is allowed"),
        ("SET default_transaction_read_only = off", "Only a single SELECT is allowed"),
        ("EXPLAIN ANALYZE DELETE FROM tickets", "Only a single SELECT is allowed"),
        ("SELECT 1; DELETE FROM tickets", "Only a single SELECT is allowed (one statement"),
        ("SELECT count(*) FROM tickets; SELECT 1", "Only a single SELECT is allowed (one"),
        ("WITH gone AS (DELETE FROM tickets RETURNING *) SELECT * FROM gone", "contains DELETE"),
        ("SELECT * INTO stolen FROM tickets", "SELECT ... INTO creates a table"),
        ("SELECT * FROM tickets FOR UPDATE", "Locking rows"),
        ("SELECT pg_sleep(10)", "The function pg_sleep() is not allowed"),
        ("SELECT * FROM pg_sleep(10)", "The function pg_sleep() is not allowed"),
        ("SELECT set_config('default_transaction_read_only', 'off', false)", "set_config()"),
        ("SELECT lo_import('/etc/passwd')", "The function lo_import() is not allowed"),
        ("SELECT pg_read_file('/etc/passwd')", "The function pg_read_file() is not allowed"),
        ("SELECT * FROM dblink('host=x', 'DELETE FROM t') AS t(a int)", "dblink()"),
        ("SELECT nextval('some_sequence')", "The function nextval() is not allowed"),
        ("SELECT count(*) FROM tickets WHERE pg_sleep(1) IS NULL", "pg_sleep()"),
        ("SELECT pg_catalog.pg_sleep(1)", "The function pg_sleep() is not allowed"),
        ('SELECT "pg_sleep"(1)', "The function pg_sleep() is not allowed"),
        ('SELECT "AGE"(created_at) FROM tickets', "The function AGE() is not allowed"),
        ("SELECT * FROM ROWS FROM (pg_sleep(1))", "The function pg_sleep() is not allowed"),
        ("SELECT other.age(created_at) FROM tickets", "Call age() without a schema name"),
        ("SELECT * FROM other.age(now())", "Call age() without a schema name"),
        ("SELECT * FROM", "could not be read as SQL"),
    ],
)
def test_it_refuses_anything_but_one_select_in_the_parser(query: str, words: str) -> None:
    with pytest.raises(ToolFailed) as refused:
        query_check(query, tables=["tickets"], row_limit=100)
    assert words in refused.value.user_message


@pytest.mark.parametrize(
    ("query", "table"),
    [
        ("SELECT * FROM users", "users"),
        ("SELECT username, password FROM auth_user", "auth_user"),
        ("SELECT * FROM pg_catalog.pg_authid", "pg_catalog.pg_authid"),
        ("SELECT table_name FROM information_schema.tables", "information_schema.tables"),
    ],
)
def test_it_refuses_a_table_not_allow_listed(query: str, table: str) -> None:
    with pytest.raises(ToolFailed) as refused:
        query_check(query, tables=["tickets"], row_limit=100)
    assert refused.value.user_message == (
        f"The table '{table}' is not one you may query; allowed: tickets."
    )


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM tickets WHERE id IN (SELECT username FROM users)",
        "SELECT t.id FROM tickets t JOIN users u ON u.id = t.id",
        "SELECT (SELECT max(id) FROM users) FROM tickets",
        "WITH u AS (SELECT * FROM users) SELECT * FROM u",
        "WITH t AS (SELECT * FROM tickets) SELECT * FROM t UNION SELECT * FROM users",
        # A CTE does not see itself without RECURSIVE: the inner `users` is the real table.
        "WITH users AS (SELECT * FROM users) SELECT * FROM users",
        # A CTE is not visible outside the subquery that defines it.
        "SELECT * FROM (WITH users AS (SELECT 1) SELECT * FROM users) a, users",
    ],
)
def test_it_refuses_a_subquery_or_cte_over_a_table_not_allow_listed(query: str) -> None:
    with pytest.raises(ToolFailed) as refused:
        query_check(query, tables=["tickets"], row_limit=100)
    assert refused.value.user_message == (
        "The table 'users' is not one you may query; allowed: tickets."
    )


@pytest.mark.parametrize(
    "query",
    [
        "SELECT product, count(*) FROM tickets WHERE status = 'open' GROUP BY product ORDER BY 2 DESC",
        "WITH open AS (SELECT * FROM tickets WHERE status = 'open') SELECT count(*) FROM open",
        "SELECT date_trunc('month', created_at) AS month, count(*) FROM tickets GROUP BY 1",
        "SELECT to_char(created_at, 'YYYY-MM'), count(*) FROM tickets GROUP BY 1",
        "SELECT avg(closed_at - created_at) FROM public.tickets WHERE closed_at IS NOT NULL",
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM closed_at - created_at) / 3600) FROM tickets",
        "SELECT priority, count(*) FILTER (WHERE status <> 'closed') FROM tickets GROUP BY priority",
        "SELECT id, rank() OVER (PARTITION BY product ORDER BY created_at) FROM tickets",
        "SELECT count(*) FROM tickets WHERE created_at >= now() - interval '365 days'",
        "SELECT coalesce(max(closed_at), current_date) FROM tickets WHERE lower(subject) LIKE '%refund%'",
        "SELECT product FROM tickets WHERE status = 'open' UNION SELECT product FROM tickets WHERE priority = 'urgent'",
    ],
)
def test_it_answers_common_reporting_questions(run_sql: Callable[..., Any], query: str) -> None:
    result = run_sql(query)

    assert result.data["rows"]
    assert result.data["sql"].endswith("LIMIT 100")


def test_it_has_the_database_itself_refuse_a_write_the_parser_never_saw(reporting_db: str) -> None:
    before = _admin_count("SELECT count(*) FROM tickets WHERE status = 'closed'")

    # The tool's own session is read-only...
    for write in (
        "UPDATE tickets SET status = 'closed'",
        "INSERT INTO tickets (id) VALUES ('T-1')",
    ):
        with pytest.raises(ToolFailed) as refused:
            query_run(reporting_db, write, timeout_ms=3000, row_limit=10)
        verb = write.split()[0]
        assert refused.value.user_message == (
            f"The database refused the query: cannot execute {verb} in a read-only transaction"
        )

    # ...and the role may not write even in a session that turns read-only off.
    with psycopg.connect(reporting_db, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = off")
        with pytest.raises(errors.InsufficientPrivilege, match="permission denied for table"):
            conn.execute("UPDATE tickets SET status = 'closed'")
        with pytest.raises(errors.InsufficientPrivilege, match="permission denied for schema"):
            conn.execute("CREATE TABLE stolen (a int)")
        with pytest.raises(errors.InsufficientPrivilege, match="temporary tables"):
            conn.execute("CREATE TEMP TABLE stolen (a int)")

    assert _admin_count("SELECT count(*) FROM tickets WHERE status = 'closed'") == before


def test_it_stops_a_slow_query_at_the_statement_timeout(
    reporting_db: str, run_sql: Callable[..., Any]
) -> None:
    with pytest.raises(ToolFailed) as stopped:
        query_run(reporting_db, "SELECT pg_sleep(5)", timeout_ms=100, row_limit=10)
    assert stopped.value.user_message == "The query took longer than 0.1 s and was stopped."

    # A query the parser allows can still be too heavy; the database stops it all the same.
    with pytest.raises(ToolFailed) as heavy:
        run_sql(
            "SELECT count(*) FROM tickets a, tickets b, tickets c, tickets d",
            statement_timeout_ms=100,
        )
    assert heavy.value.user_message == "The query took longer than 0.1 s and was stopped."

    # The admin's time limit for the whole call caps the statement timeout too.
    with pytest.raises(ToolFailed) as abandoned:
        run_sql("SELECT count(*) FROM tickets a, tickets b, tickets c, tickets d", timeout_s=0.2)
    assert abandoned.value.user_message == "The query took longer than 0.2 s and was stopped."


def test_it_applies_the_row_limit_and_says_rows_were_left_out(run_sql: Callable[..., Any]) -> None:
    unlimited = run_sql("SELECT id, status FROM tickets ORDER BY id", row_limit=5)
    lowered = run_sql("SELECT id FROM tickets ORDER BY id LIMIT 1000", row_limit=5)
    within = run_sql("SELECT id FROM tickets ORDER BY id LIMIT 3", row_limit=5)

    assert unlimited.data["sql"] == "SELECT id, status FROM tickets ORDER BY id LIMIT 5"
    assert len(unlimited.data["rows"]) == 5
    assert unlimited.data["truncated"] is True
    assert unlimited.summary == "5 rows (the row limit; there may be more)"
    assert "[only the first 5 rows; there may be more]" in unlimited.content
    assert lowered.data["sql"].endswith("LIMIT 5")
    assert lowered.data["truncated"] is True
    assert within.data["sql"].endswith("LIMIT 3")
    assert len(within.data["rows"]) == 3
    assert within.data["truncated"] is False


@pytest.mark.parametrize(
    ("query", "runs", "imposed"),
    [
        ("SELECT id FROM tickets", "SELECT id FROM tickets LIMIT 5", True),
        ("SELECT id FROM tickets LIMIT ALL", "SELECT id FROM tickets LIMIT 5", True),
        (
            "SELECT id FROM tickets LIMIT 9 OFFSET 2",
            "SELECT id FROM tickets LIMIT 5 OFFSET 2",
            True,
        ),
        (
            "SELECT id FROM tickets FETCH FIRST 500 ROWS ONLY",
            "SELECT id FROM tickets LIMIT 5",
            True,
        ),
        ("SELECT id FROM tickets LIMIT 5", "SELECT id FROM tickets LIMIT 5", False),
        (
            "SELECT id FROM tickets UNION SELECT subject FROM tickets",
            "SELECT id FROM tickets UNION SELECT subject FROM tickets LIMIT 5",
            True,
        ),
    ],
)
def test_it_caps_the_limit_in_the_sql_it_runs(query: str, runs: str, imposed: bool) -> None:
    checked = query_check(query, tables=["tickets"], row_limit=5)

    assert (checked.sql, checked.limit_imposed) == (runs, imposed)


def test_it_builds_the_demo_database_idempotently(reporting_db: str) -> None:
    with admin_connection(settings.REPORTING_DEMO_DATABASE, autocommit=True) as conn:
        conn.execute("INSERT INTO tickets SELECT 'X-1', subject, body, status, priority, product,"
                     " intent, created_at, closed_at FROM tickets LIMIT 1")  # fmt: skip
        conn.execute("UPDATE tickets SET status = 'gone' WHERE id = %s", (TICKETS[0][0],))

    first = reporting_demo_ensure(database=settings.REPORTING_DEMO_DATABASE)
    second = reporting_demo_ensure(database=settings.REPORTING_DEMO_DATABASE)

    assert first == second == len(TICKETS)
    assert _admin_count("SELECT count(DISTINCT id) FROM tickets") == len(TICKETS)
    statuses = Counter(t[3] for t in TICKETS)
    assert _admin_count("SELECT count(*) FROM tickets WHERE status = 'open'") == statuses["open"]
    assert _admin_count("SELECT count(*) FROM tickets WHERE id = 'X-1'") == 0


def test_it_describes_the_tables_and_their_columns(reporting_db: str, settings: Any) -> None:
    settings.TOOL_DSNS = {**settings.TOOL_DSNS, DSN_ENV: reporting_db}

    described = SqlQuery().describe({"dsn_env": DSN_ENV})

    assert (
        "Tables: tickets(id text, subject text, body text, status text (one of: closed, open, pending)"
        in described
    )
    assert "created_at timestamp with time zone" in described
    assert described.endswith("At most 100 rows.")


def test_it_reports_bad_options_in_words(settings: Any) -> None:
    tool = SqlQuery()
    settings.TOOL_DSNS = {"REPORTING_DATABASE_URL": "postgresql://x@127.0.0.1/x"}

    problems = tool.options_errors(
        {"dsn_env": "HOME", "tables": ["tickets; DROP"], "row_limit": 0,
         "statement_timeout_ms": "3s", "colour": "blue"}
    )  # fmt: skip

    assert tool.options_errors(tool.default_options) == []
    assert problems == [
        "Unknown option 'colour'.",
        "dsn_env must name an environment variable: REPORTING_DATABASE_URL or TOOL_DSN_…",
        "tables holds names that are not lower-case table names (schema.table): 'tickets; DROP'.",
        "row_limit must be a whole number from 1 to 1,000.",
        "statement_timeout_ms must be a whole number from 100 to 60,000.",
    ]
    assert tool.options_errors({"dsn_env": "TOOL_DSN_MISSING", "tables": []}) == [
        "The environment variable TOOL_DSN_MISSING is not set on the server.",
        "tables must be a non-empty list of table names.",
    ]


def test_it_refuses_to_run_with_bad_options(run_sql: Callable[..., Any]) -> None:
    with pytest.raises(ToolFailed) as refused:
        run_sql("SELECT 1", row_limit=10_000)
    assert refused.value.user_message == (
        "The sql tool is not set up correctly: row_limit must be a whole number from 1 to 1,000."
    )


def test_it_says_when_the_reporting_database_cannot_be_reached(alice: User, settings: Any) -> None:
    settings.TOOL_DSNS = {DSN_ENV: "postgresql://reporting_reader@127.0.0.1:1/nowhere"}
    context = ToolContext(user=alice, options={"dsn_env": DSN_ENV}, timeout_s=10)

    with pytest.raises(ToolFailed) as failed:
        SqlQuery().run({"query": "SELECT count(*) FROM tickets"}, context)
    assert failed.value.user_message == "The reporting database could not be reached."
    assert "tickets" in SqlQuery().describe({"dsn_env": DSN_ENV})


def test_it_is_registered_with_its_default_options() -> None:
    tool = TOOLS["sql"]

    assert isinstance(tool, SqlQuery)
    assert tool.default_roles == ("agent", "reviewer", "admin")
    assert tool.default_options == {
        "dsn_env": "REPORTING_DATABASE_URL",
        "tables": ["tickets"],
        "row_limit": 100,
        "statement_timeout_ms": 3000,
    }


def test_its_example_for_the_model_runs(run_sql: Callable[..., Any]) -> None:
    """The worked example a small model copies the shape of must itself be a valid query."""
    question, arguments = SqlQuery.example or ("", {})
    expected = sum(1 for t in TICKETS if t[3] == "pending" and t[5] == "shipping")

    assert "shipping" in question
    assert run_sql(arguments["query"]).data["rows"] == [[expected]]
