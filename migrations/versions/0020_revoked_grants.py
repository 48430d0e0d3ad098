"""A refunded purchase is taken back: grants.revoked_at. (And a downgrade the seller's balance
cannot credit is refused as `proration_unfunded`, ledger/sql/subscriptions.sql.)

A reversed payment (a manual payment undone, a Stars refund) revokes its grant in the
reversal's own transaction (trigger in ledger/sql/grants.sql); inventories skip revoked grants
and a guest's claim link for one answers `claim_revoked`. Grants of payments reversed before
this revision are revoked here, at their reversal's time.

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-27
"""

from migrations.sql import apply_sql_files, restore_sql_files, run_script

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

# ledger.sql.checksum() of the files this revision applies
SQL_FILES_SHA256 = "1f0a433f990370ac4b5970c4d3d2756e19da86f81d8d2cbb8af48d56861c0821"


def upgrade() -> None:
    run_script("""
ALTER TABLE grants ADD COLUMN revoked_at timestamptz;
UPDATE grants g SET revoked_at = v.created_at
  FROM payment_reversals v WHERE v.payment_id = g.payment_id;
""")
    apply_sql_files(revision, SQL_FILES_SHA256)


def downgrade() -> None:
    restore_sql_files(revision)
    run_script("ALTER TABLE grants DROP COLUMN revoked_at;")
