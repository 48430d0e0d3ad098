"""Cards and Telegram Stars: quotes locked when a card or Stars payment is offered, every payment
a provider reports (paid, top-up or held) recorded once, two-phase refunds, the Stars
reconciliation cursor and the operator's alerts; the payment method names its rail.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-27
"""

from migrations.sql import apply_sql_files, restore_sql_files, run_script

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# ledger.sql.checksum() of the files this revision applies
SQL_FILES_SHA256 = "2def2216bf5079d7f877b178bb6c4b5898455ae61f0d2fd0f95712b6cec42f53"

KINDS = """'invoice_payment', 'external_payment', 'deposit', 'adjustment', 'excess', 'suspense',
     'release', 'manual_payment', 'manual_reversal', 'proration'"""
SYSTEM = "'chain_inflow', 'adjustments', 'fees', 'suspense', 'fx', 'manual'"


def upgrade() -> None:
    run_script(f"""
ALTER TABLE payments DROP CONSTRAINT payments_method_check;
ALTER TABLE payments ADD CONSTRAINT payments_method_check
    CHECK (method IN ('internal', 'ton', 'manual', 'stars') OR method ~ '^card:[a-z0-9_]{{1,32}}$');
ALTER TABLE accounts DROP CONSTRAINT accounts_system_name_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_system_name_check CHECK (system_name IN
    ({SYSTEM}, 'card_inflow', 'stars_inflow', 'refunds'));
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_kind_check;
ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_kind_check CHECK (kind IN
    ({KINDS}, 'topup', 'rail_hold', 'rail_refund'));

-- The price of a card or Stars payment in the provider's currency, locked when it is offered.
CREATE TABLE rail_quotes (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token           text NOT NULL UNIQUE CHECK (token ~ '^q[A-Za-z0-9_-]{{10,40}}$'),
    purpose         text NOT NULL CHECK (purpose IN ('invoice', 'topup', 'subscription')),
    rail            text NOT NULL CHECK (rail ~ '^(stars|card:[a-z0-9_]{{1,32}})$'),
    channel         text NOT NULL CHECK (channel IN ('telegram', 'web')),
    currency        text NOT NULL REFERENCES currencies (code),
    amount          bigint NOT NULL CHECK (amount > 0),
    ledger_currency text NOT NULL REFERENCES currencies (code),
    ledger_amount   bigint NOT NULL CHECK (ledger_amount > 0),
    rate            numeric NOT NULL CHECK (rate > 0),
    invoice_id      bigint REFERENCES invoices (id),
    subscription_id bigint REFERENCES subscriptions (id),
    user_id         bigint REFERENCES users (id),
    payer_tag_id    bigint REFERENCES payer_tags (id),
    -- the Stripe Checkout Session / YooKassa payment this quote was sent as (web)
    provider_ref    text UNIQUE CHECK (length(provider_ref) BETWEEN 1 AND 200),
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    CONSTRAINT quote_of_what CHECK (
        (purpose = 'invoice' AND invoice_id IS NOT NULL)
        OR (purpose = 'topup' AND user_id IS NOT NULL AND invoice_id IS NULL)
        OR (purpose = 'subscription' AND subscription_id IS NOT NULL)),
    CONSTRAINT stars_in_xtr CHECK ((rail = 'stars') = (currency = 'XTR'))
);
CREATE INDEX rail_quotes_open_web ON rail_quotes (created_at)
    WHERE channel = 'web' AND provider_ref IS NOT NULL;

-- Every payment a provider reported, once per (rail, reference), whatever became of it.
CREATE TABLE rail_payments (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rail               text NOT NULL CHECK (rail ~ '^(stars|card:[a-z0-9_]{{1,32}})$'),
    channel            text NOT NULL CHECK (channel IN ('telegram', 'web')),
    reference          text NOT NULL CHECK (length(reference) BETWEEN 1 AND 200),
    provider_reference text CHECK (length(provider_reference) <= 200),
    quote_id           bigint REFERENCES rail_quotes (id),
    invoice_id         bigint REFERENCES invoices (id),
    payer_id           bigint REFERENCES users (id),
    credited_user_id   bigint REFERENCES users (id),
    payer_tag_id       bigint REFERENCES payer_tags (id),
    currency           text NOT NULL REFERENCES currencies (code),
    amount             bigint NOT NULL CHECK (amount > 0),
    ledger_currency    text REFERENCES currencies (code),
    ledger_amount      bigint CHECK (ledger_amount > 0),
    outcome            text NOT NULL CHECK (outcome IN ('paid', 'topup', 'held')),
    hold_reason        text CHECK (hold_reason IN ('unknown_quote', 'amount_mismatch',
                                   'invoice_paid', 'invoice_closed', 'own_invoice',
                                   'subscription_ended')),
    payment_id         bigint UNIQUE REFERENCES payments (id),
    ledger_tx_id       bigint NOT NULL REFERENCES ledger_transactions (id),
    details            jsonb NOT NULL DEFAULT '{{}}',
    paid_at            timestamptz,
    received_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (rail, reference),
    CONSTRAINT held_has_reason CHECK ((outcome = 'held') = (hold_reason IS NOT NULL)),
    CONSTRAINT paid_has_payment CHECK ((outcome = 'paid') = (payment_id IS NOT NULL)),
    CONSTRAINT settled_in_ledger CHECK (outcome = 'held'
                                        OR (ledger_currency IS NOT NULL AND ledger_amount IS NOT NULL))
);
CREATE INDEX rail_payments_invoice ON rail_payments (invoice_id) WHERE invoice_id IS NOT NULL;
CREATE INDEX rail_payments_tag ON rail_payments (payer_tag_id) WHERE payer_tag_id IS NOT NULL;
CREATE INDEX rail_payments_quote ON rail_payments (quote_id);
-- Telegram's webhook asks "is this charge recorded?" knowing only the charge id.
CREATE INDEX rail_payments_reference ON rail_payments (reference);

-- A refund: reserved (pending) before the provider is asked, then done or failed, once.
CREATE TABLE rail_refunds (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rail_payment_id bigint NOT NULL REFERENCES rail_payments (id),
    status          text NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
    currency        text NOT NULL REFERENCES currencies (code),
    amount          bigint NOT NULL CHECK (amount > 0),
    reason          text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    actor_id        bigint REFERENCES users (id),
    reserve_tx_id   bigint NOT NULL REFERENCES ledger_transactions (id),
    finish_tx_id    bigint REFERENCES ledger_transactions (id),
    error           text CHECK (length(error) <= 500),
    created_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz
);
-- At most one refund in flight or done per payment (a failed one may be tried again).
CREATE UNIQUE INDEX rail_refunds_live ON rail_refunds (rail_payment_id)
    WHERE status IN ('pending', 'done');
CREATE INDEX rail_refunds_pending ON rail_refunds (created_at) WHERE status = 'pending';

-- How many of getStarTransactions' entries the reconciliation has read (its offset).
CREATE TABLE star_cursor (
    id       boolean PRIMARY KEY DEFAULT true CHECK (id),
    position bigint NOT NULL DEFAULT 0 CHECK (position >= 0)
);
INSERT INTO star_cursor DEFAULT VALUES;

-- What the operator was told about, once per (kind, subject).
CREATE TABLE rail_alerts (
    kind       text NOT NULL,
    subject    text NOT NULL,
    detail     text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, subject)
);
""")
    apply_sql_files(revision, SQL_FILES_SHA256)


def downgrade() -> None:
    restore_sql_files(revision)
    run_script(f"""
DROP TABLE rail_alerts, star_cursor, rail_refunds, rail_payments, rail_quotes;
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_kind_check;
ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_kind_check CHECK (kind IN
    ({KINDS}));
ALTER TABLE accounts DROP CONSTRAINT accounts_system_name_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_system_name_check CHECK (system_name IN ({SYSTEM}));
ALTER TABLE payments DROP CONSTRAINT payments_method_check;
ALTER TABLE payments ADD CONSTRAINT payments_method_check
    CHECK (method IN ('internal', 'ton', 'manual'));
""")
