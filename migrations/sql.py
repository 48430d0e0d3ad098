"""SQL helpers for migrations: run a multi-statement script, and hand ledger/sql/*.sql over.

A migration that changes functions or triggers is one line per direction and the checksum of
the files it applies (only the .sql diff is reviewed):

    SQL_FILES_SHA256 = "..."  # ledger.sql.checksum(); a mismatch says the one to put here

    def upgrade() -> None:
        apply_sql_files(revision, SQL_FILES_SHA256)

    def downgrade() -> None:
        restore_sql_files(revision)

The checksum is what makes this safe to forget: files changed after their migration was
written fail the migration (and so every test run) instead of leaving old databases on the
old functions while fresh ones get the new.

`apply_sql_files` keeps what it replaced (table paybot_sql_snapshots, per revision), so the
downgrade puts back exactly the functions that revision found. On a fresh database only the
last such revision (the last to name SQL_FILES_SHA256) applies the files: they are the head
definitions and may need tables that later migrations create; earlier appliers step aside
(nothing to snapshot or restore).
"""

from alembic import op
from sqlalchemy import text
from sqlalchemy.util import await_only

import ledger.sql


def run_script(sql: str) -> None:
    # asyncpg's prepared statements take one command each; its plain `execute` takes a script,
    # so DDL with function bodies is sent through the driver connection directly.
    driver = op.get_bind().connection.driver_connection
    await_only(driver.execute(sql))


def apply_sql_files(revision: str, sha256: str) -> None:
    """Make the functions and triggers those of ledger/sql/, keeping the old ones for downgrade."""
    if _later_applier(revision):
        return
    actual = ledger.sql.checksum()
    if actual != sha256:
        raise RuntimeError(
            f"ledger/sql/ changed after revision {revision} was written: add a revision whose "
            f"upgrade calls apply_sql_files(revision, {actual!r}) (or, while {revision} is "
            "unreleased, put that checksum in it)")
    connection = op.get_bind()
    connection.execute(
        text("INSERT INTO paybot_sql_snapshots (revision, statements) VALUES (:rev, :stmts)"),
        {"rev": revision, "stmts": ledger.sql.definitions(connection)})
    ledger.sql.apply(connection)


def restore_sql_files(revision: str) -> None:
    """Put back the functions and triggers `apply_sql_files(revision)` replaced, if it did."""
    connection = op.get_bind()
    statements = connection.execute(
        text("SELECT statements FROM paybot_sql_snapshots WHERE revision = :rev"),
        {"rev": revision}).scalar_one_or_none()
    if statements is None:
        return
    ledger.sql.replace(connection, statements)
    connection.execute(text("DELETE FROM paybot_sql_snapshots WHERE revision = :rev"),
                       {"rev": revision})


def _later_applier(revision: str) -> str | None:
    """A revision after `revision` that also applies the files (it will apply them instead)."""
    script = op.get_context().script
    if script is None:
        return None
    for rev in script.walk_revisions(revision, "heads"):
        if rev.revision != revision and hasattr(rev.module, "SQL_FILES_SHA256"):
            return rev.revision
    return None
