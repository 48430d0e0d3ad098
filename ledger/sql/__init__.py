"""The ledger's SQL: every paybot function and trigger, kept as source files and applied as a set.

Each `*.sql` file here holds one concern (accounts, invoices, payments, TON transfers, ...) and
is the current definition of what it holds: changing a function is a diff of that function in
its file. Tables, indexes and types stay in versioned migrations (migrations/versions/); a
migration hands the files to the database with `apply` (migrations/sql.py: `apply_sql_files`,
one line naming the files' `checksum`), the way Flyway's repeatable migrations re-run a changed
script; files changed without such a migration fail the migrations instead of drifting.

`apply` replaces the whole set in the caller's transaction: it drops every paybot trigger and
function (every function of schema public that no extension owns), creates the files'
definitions, and checks every body once all of them exist. So a function whose signature
changed, or that left the files, is gone afterwards — no hand-kept DROP lists. A function a
table needs (a column default) cannot be dropped; it is replaced in place instead.

The error codes are not written here: `paybot_error_sqlstate(code)`, which the raise helper
(errors.sql) uses, is generated from ledger/errors.py, the one table of errors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

from sqlalchemy import Connection, text
from sqlalchemy.util import await_only

from ledger.errors import ERRORS

SQL_DIR: Final = Path(__file__).resolve().parent

# Every function paybot defined: schema public, not a member of an extension.
_FUNCTIONS = """
SELECT p.oid::regprocedure::text AS signature,
       EXISTS (SELECT 1 FROM pg_depend d
                WHERE d.refclassid = 'pg_proc'::regclass AND d.refobjid = p.oid
                  AND d.classid NOT IN ('pg_proc'::regclass, 'pg_trigger'::regclass)) AS pinned
  FROM pg_proc p
 WHERE p.pronamespace = 'public'::regnamespace
   AND NOT EXISTS (SELECT 1 FROM pg_depend e
                    WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid AND e.deptype = 'e')
 ORDER BY p.oid
"""

# Every trigger paybot defined (internal ones belong to foreign keys).
_TRIGGERS = """
SELECT format('%I ON %s', t.tgname, t.tgrelid::regclass) AS name,
       pg_get_triggerdef(t.oid) AS definition
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE NOT t.tgisinternal AND c.relnamespace = 'public'::regnamespace
 ORDER BY t.oid
"""


def files(directory: Path = SQL_DIR) -> list[Path]:
    """The source files, in the order they are applied (by name; no file needs another first)."""
    return sorted(directory.glob("*.sql"))


def error_codes_sql() -> str:
    """`paybot_error_sqlstate(code)`: each error code's SQLSTATE, generated from ERRORS."""
    whens = "\n".join(f"        WHEN '{cls.code}' THEN '{cls.sqlstate}'"
                      for cls in ERRORS if cls.sqlstate)
    return (
        "-- Generated from ledger/errors.py (ERRORS) by ledger/sql/__init__.py: do not edit.\n"
        "CREATE OR REPLACE FUNCTION paybot_error_sqlstate(p_code text) RETURNS text\n"
        "LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$\n"
        "    SELECT CASE p_code\n"
        f"{whens}\n"
        "        ELSE 'PB999' END  -- a code missing from ERRORS: a bug, never a user's error\n"
        "$$;\n"
    )


def script(directory: Path = SQL_DIR) -> str:
    """Everything `apply` runs: the generated error codes, then the files."""
    sources = [path.read_text(encoding="utf-8") for path in files(directory)]
    return "\n".join([error_codes_sql(), *sources])


def checksum(directory: Path = SQL_DIR) -> str:
    """sha256 of what `apply` runs: a migration that applies the files names it, so that files
    changed without a migration to apply them are caught (migrations/sql.py)."""
    text_ = script(directory).replace("\r\n", "\n")  # the same on a checkout with CRLF
    return hashlib.sha256(text_.encode()).hexdigest()


def apply(connection: Connection, directory: Path = SQL_DIR) -> None:
    """Make the database's functions and triggers exactly those of the files (one transaction:
    the caller's)."""
    replace(connection, [script(directory)])


def definitions(connection: Connection) -> list[str]:
    """The database's paybot functions and triggers as statements `replace` takes back."""
    functions = [
        connection.execute(text("SELECT pg_get_functiondef(CAST(:sig AS regprocedure)) || ';'"),
                           {"sig": sig}).scalar_one()
        for sig, _ in connection.exec_driver_sql(_FUNCTIONS).all()]
    triggers = [row.definition + ";" for row in connection.exec_driver_sql(_TRIGGERS).all()]
    return functions + triggers


def replace(connection: Connection, statements: Sequence[str]) -> None:
    """Drop every paybot trigger and function, run `statements`, then check every body."""
    for name, _ in connection.exec_driver_sql(_TRIGGERS).all():
        connection.exec_driver_sql(f"DROP TRIGGER {name}")
    for signature, pinned in connection.exec_driver_sql(_FUNCTIONS).all():
        if not pinned:
            connection.exec_driver_sql(f"DROP FUNCTION {signature}")
    # Bodies are checked after everything exists, so no file has to come before another
    # (pg_dump restores functions the same way).
    previous = connection.exec_driver_sql("SHOW check_function_bodies").scalar_one()
    connection.exec_driver_sql("SET LOCAL check_function_bodies = off")
    _run_scripts(connection, statements)
    _validate(connection)
    connection.exec_driver_sql(f"SET LOCAL check_function_bodies = {previous}")


def _run_scripts(connection: Connection, scripts: Iterable[str]) -> None:
    # asyncpg's plain execute takes a multi-statement script (its prepared statements do not).
    driver = connection.connection.driver_connection
    for sql in scripts:
        await_only(driver.execute(sql))  # type: ignore[union-attr]


def _validate(connection: Connection) -> None:
    """Run each function's language validator with bodies checked: a bad body fails here."""
    connection.exec_driver_sql("SET LOCAL check_function_bodies = on")
    rows = connection.exec_driver_sql(
        "SELECT l.lanvalidator::regproc::text, p.oid::regprocedure::text FROM pg_proc p"
        "  JOIN pg_language l ON l.oid = p.prolang AND l.lanvalidator <> 0"
        f" WHERE p.oid::regprocedure::text IN (SELECT signature FROM ({_FUNCTIONS}) f)").all()
    for validator, signature in rows:
        connection.execute(text(f"SELECT {validator}(CAST(CAST(:sig AS regprocedure) AS oid))"),
                           {"sig": signature})
