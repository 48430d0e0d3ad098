"""Invoices as documents: drafts, void and uncollectible, a due date, lines/discounts/taxes
(the `document`), partial payments (`amount_paid`), manual payments and their reversals, the
seller's document settings, and reminders sent once.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-27
"""

from migrations.sql import apply_sql_files, restore_sql_files, run_script

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# ledger.sql.checksum() of the files this revision applies
SQL_FILES_SHA256 = "f0ecd19ebfc00cd10ce134cb57493355f6ab8febab6c7f142951a725198b0896"


def upgrade() -> None:
    run_script("""
ALTER TABLE invoices DROP CONSTRAINT invoices_status_check;
ALTER TABLE invoices ADD CONSTRAINT invoices_status_check CHECK (status IN
    ('draft', 'pending', 'paid', 'cancelled', 'expired', 'void', 'uncollectible'));
ALTER TABLE invoices ALTER COLUMN number DROP NOT NULL;
ALTER TABLE invoices
    ADD COLUMN due_at        timestamptz,
    ADD COLUMN amount_paid   bigint NOT NULL DEFAULT 0,
    ADD COLUMN document      jsonb,
    ADD COLUMN version       int NOT NULL DEFAULT 1,
    ADD COLUMN updated_at    timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN issued_at     timestamptz,
    ADD COLUMN viewed_at     timestamptz,
    ADD COLUMN sent_at       timestamptz,
    ADD COLUMN sent_to       bigint REFERENCES users (id),
    ADD COLUMN reminders_off boolean NOT NULL DEFAULT false,
    -- Only a draft has no number yet (and a draft voided before it was ever issued).
    ADD CONSTRAINT numbered_once_issued CHECK (number IS NOT NULL OR status IN ('draft', 'void')),
    ADD CONSTRAINT amount_paid_within CHECK (amount_paid BETWEEN 0 AND amount),
    -- The amount of a document is its total (ledger/totals.py computes it; checked again here).
    ADD CONSTRAINT document_total CHECK (document IS NULL
                                         OR (document -> 'totals' ->> 'total')::bigint = amount);
UPDATE invoices SET issued_at = created_at, updated_at = created_at;
-- Paid one-time invoices were paid in full.
UPDATE invoices SET amount_paid = amount WHERE status = 'paid' AND kind = 'one_time';
CREATE INDEX invoices_due ON invoices (due_at) WHERE status = 'pending' AND due_at IS NOT NULL;
CREATE INDEX users_username_lower ON users (lower(username)) WHERE username IS NOT NULL;

ALTER TABLE accounts DROP CONSTRAINT accounts_system_name_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_system_name_check CHECK (system_name IN
    ('chain_inflow', 'adjustments', 'fees', 'suspense', 'fx', 'manual'));
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_kind_check;
ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_kind_check CHECK (kind IN
    ('invoice_payment', 'external_payment', 'deposit', 'adjustment', 'excess', 'suspense',
     'release', 'manual_payment', 'manual_reversal'));

-- A document's lines may each name an item: the purchase grants them all.
ALTER TABLE grants ADD COLUMN line_items text[];

-- A manual payment: money the seller (or the operator) says arrived outside paybot.
ALTER TABLE payments
    ADD COLUMN reference   text CHECK (length(reference) BETWEEN 1 AND 200),
    ADD COLUMN note        text CHECK (length(note) <= 1000),
    ADD COLUMN received_on date,
    ADD COLUMN recorded_by bigint REFERENCES users (id);

-- Undoing a payment is a compensating entry with a reason, never a delete.
CREATE TABLE payment_reversals (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payment_id   bigint NOT NULL UNIQUE REFERENCES payments (id),
    reason       text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    ledger_tx_id bigint NOT NULL REFERENCES ledger_transactions (id),
    reversed_by  bigint REFERENCES users (id),
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- What a seller's documents say about them, and when their buyers are reminded.
CREATE TABLE seller_settings (
    user_id               bigint PRIMARY KEY REFERENCES users (id),
    legal_name            text CHECK (length(legal_name) <= 200),
    legal_details         text CHECK (length(legal_details) <= 1000),
    bank_details          text CHECK (length(bank_details) <= 1000),
    logo                  bytea CHECK (octet_length(logo) <= 524288),
    logo_type             text CHECK (logo_type IN ('image/png', 'image/jpeg')),
    default_tax_name      text CHECK (length(default_tax_name) BETWEEN 1 AND 64),
    default_tax_percent   numeric CHECK (default_tax_percent BETWEEN 0 AND 100),
    default_tax_inclusive boolean NOT NULL DEFAULT false,
    reminder_days         int[] NOT NULL DEFAULT '{7,1}'
                          CHECK (cardinality(reminder_days) <= 5 AND 1 <= ALL (reminder_days)
                                 AND 60 >= ALL (reminder_days)),
    remind_overdue        boolean NOT NULL DEFAULT true,
    overdue_digest        boolean NOT NULL DEFAULT true,
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT logo_typed CHECK ((logo IS NULL) = (logo_type IS NULL)),
    CONSTRAINT tax_named CHECK ((default_tax_name IS NULL) = (default_tax_percent IS NULL))
);

-- Each reminder once per invoice and kind (the primary key is what two replicas race on).
CREATE TABLE invoice_reminders (
    invoice_id bigint NOT NULL REFERENCES invoices (id),
    kind       text NOT NULL CHECK (kind ~ '^(before_[0-9]{1,2}|overdue)$'),
    sent_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (invoice_id, kind)
);
CREATE TABLE seller_digests (
    seller_id bigint NOT NULL REFERENCES users (id),
    day       date NOT NULL,
    sent_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (seller_id, day)
);
""")
    apply_sql_files(revision, SQL_FILES_SHA256)


def downgrade() -> None:
    restore_sql_files(revision)
    run_script("""
DROP TABLE seller_digests, invoice_reminders, seller_settings, payment_reversals;
ALTER TABLE grants DROP COLUMN line_items;
ALTER TABLE payments DROP COLUMN reference,
    DROP COLUMN note, DROP COLUMN received_on, DROP COLUMN recorded_by;
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_kind_check;
ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_kind_check CHECK (kind IN
    ('invoice_payment', 'external_payment', 'deposit', 'adjustment', 'excess', 'suspense',
     'release'));
ALTER TABLE accounts DROP CONSTRAINT accounts_system_name_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_system_name_check CHECK (system_name IN
    ('chain_inflow', 'adjustments', 'fees', 'suspense', 'fx'));
DROP INDEX users_username_lower;
DROP INDEX invoices_due;
ALTER TABLE invoices DROP CONSTRAINT document_total, DROP CONSTRAINT amount_paid_within,
    DROP CONSTRAINT numbered_once_issued,
    DROP COLUMN due_at, DROP COLUMN amount_paid, DROP COLUMN document, DROP COLUMN version,
    DROP COLUMN updated_at, DROP COLUMN issued_at, DROP COLUMN viewed_at, DROP COLUMN sent_at,
    DROP COLUMN sent_to, DROP COLUMN reminders_off;
ALTER TABLE invoices ALTER COLUMN number SET NOT NULL;
ALTER TABLE invoices DROP CONSTRAINT invoices_status_check;
ALTER TABLE invoices ADD CONSTRAINT invoices_status_check CHECK (status IN
    ('pending', 'paid', 'cancelled', 'expired'));
""")
