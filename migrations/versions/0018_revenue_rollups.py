"""Revenue rollups: what each seller received per UTC day, currency and method.

`revenue_daily` is backfilled here from payments minus reversals and kept up to date by the
triggers of ledger/sql/reports.sql (payments and payment_reversals inserts), so the dashboard
(ledger/reports.py) reads days, not payments. Open invoices get a partial index per seller for
the outstanding totals, and issued invoices one per seller and issue time for conversion.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-27
"""

from migrations.sql import apply_sql_files, restore_sql_files, run_script

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

# ledger.sql.checksum() of the files this revision applies (frozen by the lead on release)
SQL_FILES_SHA256 = "9a474ad297db082d42511c3d79af1efe68293649d294f06521ef7b5669a9f7b9"


def upgrade() -> None:
    run_script("""
CREATE TABLE revenue_daily (
    seller_id bigint NOT NULL REFERENCES users (id),
    day       date NOT NULL,  -- the payment's UTC date
    currency  text NOT NULL REFERENCES currencies (code),
    method    text NOT NULL,
    amount    bigint NOT NULL,  -- minor units received, less what was reversed
    payments  bigint NOT NULL,  -- payments received, less those reversed
    PRIMARY KEY (seller_id, day, currency, method)
);
INSERT INTO revenue_daily (seller_id, day, currency, method, amount, payments)
SELECT i.seller_id, (p.created_at AT TIME ZONE 'UTC')::date, p.currency, p.method,
       sum(p.amount), count(*)
  FROM payments p JOIN invoices i ON i.id = p.invoice_id
 WHERE NOT EXISTS (SELECT 1 FROM payment_reversals v WHERE v.payment_id = p.id)
 GROUP BY 1, 2, 3, 4;
-- What is open now, per seller: small whatever the history (paid and closed ones leave it).
-- The alerts job's "what did we last tell the operator about this kind" (watchers/alerts.py).
CREATE INDEX outbox_operator_alerts ON outbox ((payload ->> 'kind'), id)
    WHERE event_type = 'operator.alert';
CREATE INDEX invoices_open_of_seller ON invoices (seller_id, currency)
    INCLUDE (amount, amount_paid, due_at) WHERE status = 'pending';
-- Conversion over a period: the invoices a seller issued in it, read from the index alone.
CREATE INDEX invoices_issued_of_seller ON invoices (seller_id, issued_at)
    INCLUDE (status) WHERE issued_at IS NOT NULL;
""")
    apply_sql_files(revision, SQL_FILES_SHA256)


def downgrade() -> None:
    restore_sql_files(revision)
    run_script("""
DROP INDEX invoices_issued_of_seller, invoices_open_of_seller, outbox_operator_alerts;
DROP TABLE revenue_daily;
""")
