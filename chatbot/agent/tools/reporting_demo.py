"""The demo reporting database the `sql` tool answers from after `make run`: a `tickets` table
loaded from deploy/demo-reporting/tickets.csv, on the embedded Postgres, read by a role that can
do nothing but SELECT that table.

Only for the embedded server (`bootstrap --demo` checks settings.EMBEDDED_REPORTING) and the test
run: with a real REPORTING_DATABASE_URL we never create schemas or roles in someone's database.
It connects as the app's own database user, which must be allowed to create databases and roles
(the embedded server's `postgres` is).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings
from psycopg import sql
from psycopg.conninfo import make_conninfo

DEMO_CSV = settings.BASE_DIR / "deploy" / "demo-reporting" / "tickets.csv"
TABLE = "tickets"
COLUMNS = (
    "id", "subject", "body", "status", "priority", "product", "intent", "created_at", "closed_at",
)  # fmt: skip
# Columns whose few values the model should know to write a WHERE clause that matches.
LABEL_COLUMNS = ("status", "priority", "product", "intent")
# Serialises builders across processes (`make run` and a test run on one server): any constant
# no other code uses as an advisory lock key on the maintenance database.
LOCK_KEY = 7_203_114
# The maintenance database every Postgres cluster has; CREATE DATABASE must run outside the target.
MAINTENANCE_DB = "postgres"
# A backstop in the role itself, should a client forget the tool's own statement timeout.
ROLE_STATEMENT_TIMEOUT = "30s"

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS tickets (
    id text PRIMARY KEY,
    subject text NOT NULL,
    body text NOT NULL,
    status text NOT NULL,
    priority text NOT NULL,
    product text NOT NULL,
    intent text NOT NULL,
    created_at timestamptz NOT NULL,
    closed_at timestamptz
)
"""
UPSERT = """
INSERT INTO tickets (id, subject, body, status, priority, product, intent, created_at, closed_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET
    subject = EXCLUDED.subject, body = EXCLUDED.body, status = EXCLUDED.status,
    priority = EXCLUDED.priority, product = EXCLUDED.product, intent = EXCLUDED.intent,
    created_at = EXCLUDED.created_at, closed_at = EXCLUDED.closed_at
"""


def reporting_demo_ensure(*, database: str = "", csv_path: Path = DEMO_CSV) -> int:
    """Create or refresh the demo reporting database and its reading role; safe to run again
    (the table then mirrors the file, no row twice). Returns how many tickets it holds."""
    database = database or settings.REPORTING_DEMO_DATABASE
    rows = demo_rows(csv_path)
    with admin_connection(MAINTENANCE_DB, autocommit=True) as maintenance:
        # Held until this connection closes, so the whole build is one at a time.
        maintenance.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        _database_ensure(maintenance, database)
        _role_ensure(maintenance)
        with admin_connection(database, autocommit=False) as conn:
            _table_ensure(conn, rows)
            count = _rows_replace(conn, rows)
            _grants_ensure(conn, database)
            conn.commit()
    return count


def reader_dsn(database: str = "") -> str:
    """How the reading role reaches `database` on the app's own server (tests, the demo)."""
    db = settings.DATABASES["default"]
    return make_conninfo(
        host=db.get("HOST") or None,
        port=db.get("PORT") or None,
        user=settings.REPORTING_READER_ROLE,
        password=settings.REPORTING_READER_PASSWORD,
        dbname=database or settings.REPORTING_DEMO_DATABASE,
    )


def demo_rows(csv_path: Path = DEMO_CSV) -> list[tuple[str | None, ...]]:
    """The CSV's tickets as rows in COLUMNS order; a blank date is NULL."""
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = set(COLUMNS) - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{csv_path} lacks the columns {', '.join(sorted(missing))}")
        return [tuple(_value(name, record[name]) for name in COLUMNS) for record in reader]


def _value(column: str, raw: str) -> str | None:
    return (raw or None) if column.endswith("_at") else raw


def admin_connection(database: str, *, autocommit: bool) -> psycopg.Connection[Any]:
    db = settings.DATABASES["default"]
    return psycopg.connect(
        host=db.get("HOST") or None,
        port=db.get("PORT") or None,
        user=db.get("USER") or None,
        password=db.get("PASSWORD") or None,
        dbname=database,
        autocommit=autocommit,
    )


def _database_ensure(conn: psycopg.Connection[Any], database: str) -> None:
    found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
    if found is None:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def _role_ensure(conn: psycopg.Connection[Any]) -> None:
    role = sql.Identifier(settings.REPORTING_READER_ROLE)
    found = conn.execute(
        "SELECT 1 FROM pg_roles WHERE rolname = %s", (settings.REPORTING_READER_ROLE,)
    ).fetchone()
    conn.execute(
        sql.SQL(
            "{verb} ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT"
            " NOREPLICATION NOBYPASSRLS PASSWORD {password}"
        ).format(
            verb=sql.SQL("ALTER" if found else "CREATE"),
            role=role,
            password=sql.Literal(settings.REPORTING_READER_PASSWORD),
        )
    )
    conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(role))
    conn.execute(
        sql.SQL("ALTER ROLE {} SET statement_timeout = {}").format(
            role, sql.Literal(ROLE_STATEMENT_TIMEOUT)
        )
    )


def _table_ensure(conn: psycopg.Connection[Any], rows: list[tuple[str | None, ...]]) -> None:
    conn.execute(CREATE_TABLE)
    # The values of the label columns, as comments the `sql` tool shows the model with the schema.
    for column in LABEL_COLUMNS:
        index = COLUMNS.index(column)
        values = sorted({str(row[index]) for row in rows if row[index]})
        conn.execute(
            sql.SQL("COMMENT ON COLUMN tickets.{} IS {}").format(
                sql.Identifier(column), sql.Literal("one of: " + ", ".join(values))
            )
        )


def _rows_replace(conn: psycopg.Connection[Any], rows: list[tuple[str | None, ...]]) -> int:
    with conn.cursor() as cursor:
        cursor.executemany(UPSERT, rows)
        cursor.execute("DELETE FROM tickets WHERE NOT (id = ANY(%s))", ([row[0] for row in rows],))
        counted = cursor.execute("SELECT count(*) FROM tickets").fetchone()
    return int(counted[0]) if counted else 0


def _grants_ensure(conn: psycopg.Connection[Any], database: str) -> None:
    """CONNECT to this database and SELECT on the table, and nothing else, for the reader; and
    nothing at all for PUBLIC (which by default may connect and create temporary tables)."""
    names = {
        "db": sql.Identifier(database),
        "role": sql.Identifier(settings.REPORTING_READER_ROLE),
        "table": sql.Identifier(TABLE),
    }
    for statement in (
        "REVOKE ALL ON DATABASE {db} FROM PUBLIC, {role}",
        "GRANT CONNECT ON DATABASE {db} TO {role}",
        "REVOKE ALL ON SCHEMA public FROM PUBLIC, {role}",
        "GRANT USAGE ON SCHEMA public TO {role}",
        "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC, {role}",
        "REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM PUBLIC, {role}",
        "GRANT SELECT ON {table} TO {role}",
    ):
        conn.execute(sql.SQL(statement).format(**names))
