"""Dashboard rollups: conversion per day of issue, revenue per month and item; the weekly
summary's opt-in.

`invoices_daily` (issued, and paid of those) and `item_revenue_monthly` (top items) are
backfilled here and kept by the triggers of ledger/sql/reports.sql, so the dashboard's
conversion and top items read days and months, not invoices and payments
(ledger/reports.py). `seller_settings.weekly_summary`: the seller asked for a summary every
week (watchers/weekly_summary.py), with an index saying whether this week's was queued; and the
buyer's open invoices by whom they were sent to.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-27
"""

from migrations.sql import apply_sql_files, restore_sql_files, run_script

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

# ledger.sql.checksum() of the files this revision applies
SQL_FILES_SHA256 = "0c0d3b22b1f45fb18742dac24f86da6a44ac36807574c417f73fb93fb8d82a78"


def upgrade() -> None:
    run_script("""
CREATE TABLE invoices_daily (
    seller_id bigint NOT NULL REFERENCES users (id),
    day       date NOT NULL,  -- the invoice's UTC day of issue
    issued    bigint NOT NULL,  -- invoices issued that day
    paid      bigint NOT NULL,  -- ...of which are paid now
    PRIMARY KEY (seller_id, day)
);
INSERT INTO invoices_daily (seller_id, day, issued, paid)
SELECT seller_id, (issued_at AT TIME ZONE 'UTC')::date, count(*),
       count(*) FILTER (WHERE status = 'paid')
  FROM invoices WHERE issued_at IS NOT NULL
 GROUP BY 1, 2;

CREATE TABLE item_revenue_monthly (
    seller_id bigint NOT NULL REFERENCES users (id),
    month     date NOT NULL,  -- the first day of the payment's UTC month
    currency  text NOT NULL REFERENCES currencies (code),
    item      text NOT NULL,  -- the invoice's title
    amount    bigint NOT NULL,  -- minor units received, less what was reversed
    payments  bigint NOT NULL,
    PRIMARY KEY (seller_id, month, currency, item)
);
INSERT INTO item_revenue_monthly (seller_id, month, currency, item, amount, payments)
SELECT i.seller_id, date_trunc('month', p.created_at AT TIME ZONE 'UTC')::date, p.currency,
       i.title, sum(p.amount), count(*)
  FROM payments p JOIN invoices i ON i.id = p.invoice_id
 WHERE NOT EXISTS (SELECT 1 FROM payment_reversals v WHERE v.payment_id = p.id)
 GROUP BY 1, 2, 3, 4;

ALTER TABLE seller_settings ADD COLUMN weekly_summary boolean NOT NULL DEFAULT false;
-- "Was this week's summary queued for this seller?" (watchers/weekly_summary.py), one probe.
CREATE INDEX outbox_weekly_summaries ON outbox ((payload ->> 'week'), (payload ->> 'recipient'))
    WHERE event_type = 'seller.weekly_summary';
-- A buyer's invoices still to pay (the Mini App's Purchases tab, ledger/buyer_reads.py).
CREATE INDEX invoices_sent_to_open ON invoices (sent_to, due_at) WHERE status = 'pending';
""")
    apply_sql_files(revision, SQL_FILES_SHA256)


def downgrade() -> None:
    restore_sql_files(revision)
    run_script("""
DROP INDEX invoices_sent_to_open, outbox_weekly_summaries;
ALTER TABLE seller_settings DROP COLUMN weekly_summary;
DROP TABLE item_revenue_monthly, invoices_daily;
""")
