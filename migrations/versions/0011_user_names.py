"""Who paid and what was bought: a user's Telegram first and last name, kept current by the
bot, so that a seller sees a name for a buyer without a @username (not "#2005"); and an index
from a ledger transaction to its payment, so that a statement line names what was bought and
from whom with an index lookup; and the latest payment of an invoice found in one probe.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27
"""

from migrations.sql import run_script

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# Telegram allows 1-64 characters for each; the bound only keeps a stray caller honest.
UPGRADE = r"""
ALTER TABLE users
    ADD COLUMN first_name text CHECK (length(first_name) BETWEEN 1 AND 64),
    ADD COLUMN last_name  text CHECK (length(last_name) BETWEEN 1 AND 64);
CREATE INDEX payments_ledger_tx ON payments (ledger_tx_id);
-- "Who paid" reads an invoice's latest payment: (invoice_id, id) finds it in one index probe
-- however many payments a multi-use invoice took; it serves every invoice_id lookup too.
CREATE INDEX payments_invoice_latest ON payments (invoice_id, id);
DROP INDEX payments_invoice;
"""

DOWNGRADE = r"""
CREATE INDEX payments_invoice ON payments (invoice_id);
DROP INDEX payments_invoice_latest;
DROP INDEX payments_ledger_tx;
ALTER TABLE users DROP COLUMN last_name, DROP COLUMN first_name;
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
