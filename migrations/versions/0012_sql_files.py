"""Functions and triggers move to ledger/sql/*.sql, one file per concern; from here on a change
to one is a diff of its file plus a migration calling `apply_sql_files` (migrations/sql.py).

The earlier revisions keep their SQL as it was (history). This one replaces every function and
trigger with the files' (the same definitions, except: the raise helper reads the codes of
ledger/errors.py, a purchase is completed by one fulfilment for every path, and an outbox insert
notifies `paybot_outbox` on commit), and keeps what it replaced for the downgrade.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-27
"""

from migrations.sql import apply_sql_files, restore_sql_files, run_script

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# ledger.sql.checksum() of the files this revision applies
SQL_FILES_SHA256 = "77e0d4e36e5bec274d30d31f73c52fdb03d1ca39e20bcf28c6b93d6caacb03d5"


def upgrade() -> None:
    # What each application of the files replaced, so that a downgrade can put it back.
    run_script("""
CREATE TABLE paybot_sql_snapshots (
    revision    text PRIMARY KEY,
    statements  text[] NOT NULL,
    taken_at    timestamptz NOT NULL DEFAULT now()
);
""")
    apply_sql_files(revision, SQL_FILES_SHA256)


def downgrade() -> None:
    restore_sql_files(revision)
    run_script("DROP TABLE paybot_sql_snapshots;")
