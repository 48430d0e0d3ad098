"""Ledger schema: users, accounts, entries, invoices, payments, grants, outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from migrations.sql import run_script

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE currencies (
    code      text PRIMARY KEY CHECK (code ~ '^[A-Z]{3,5}$'),
    decimals  smallint NOT NULL CHECK (decimals BETWEEN 0 AND 18)
);
-- LIQ is the internal "Liquid $" (cents); TON is counted in nanotons.
INSERT INTO currencies VALUES ('LIQ', 2), ('TON', 9);

CREATE TABLE users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    telegram_id   bigint NOT NULL UNIQUE,
    username      text,
    language      text NOT NULL DEFAULT 'en',
    deposit_code  text NOT NULL UNIQUE CHECK (deposit_code ~ '^[0-9A-HJKMNP-TV-Z]{10}$'),
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- A user account may never go below zero; system accounts (chain inflow, adjustments,
-- fees, suspense, fx) are the other side of money entering or leaving and may.
CREATE TABLE accounts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      bigint REFERENCES users (id),
    system_name  text CHECK (system_name IN ('chain_inflow', 'adjustments', 'fees', 'suspense', 'fx')),
    currency     text NOT NULL REFERENCES currencies (code),
    -- balance of all *applied* entries; credits may wait in entries (balance_after IS NULL)
    -- so that a popular seller's row is not a queue. See apply_pending_credits().
    balance      bigint NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT account_owner CHECK ((user_id IS NULL) <> (system_name IS NULL)),
    CONSTRAINT user_balance_not_negative CHECK (user_id IS NULL OR balance >= 0),
    UNIQUE (user_id, currency),
    UNIQUE (system_name, currency)
);

CREATE TABLE ledger_transactions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('invoice_payment', 'external_payment', 'deposit',
                                               'adjustment', 'excess', 'suspense', 'release')),
    reason      text,
    -- idempotency for deposits and adjustments: the chain transaction hash, an operator's key
    reference   text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX ledger_transactions_reference ON ledger_transactions (reference)
    WHERE reference IS NOT NULL;

-- Signed amounts: positive raises the account's balance, negative lowers it.
-- Debits are applied at once (balance_before/after set); credits to user accounts may be
-- written pending and applied in order later, exactly once (the trigger below allows only that).
--
-- The append-only money tables (entries, payments, grants) carry no foreign keys on purpose:
-- they are written only by the SQL functions in 0002, and an FK check per row costs a lookup
-- and a KEY SHARE lock on the parent — on a popular seller's account row that lock becomes a
-- multixact hot spot. `paybot admin check` verifies every reference instead (ledger/invariants).
CREATE TABLE entries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx_id           bigint NOT NULL,
    account_id      bigint NOT NULL,
    currency        text NOT NULL,
    amount          bigint NOT NULL CHECK (amount <> 0),
    balance_before  bigint,
    balance_after   bigint,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT applied_together CHECK ((balance_before IS NULL) = (balance_after IS NULL)),
    CONSTRAINT applied_adds_up CHECK (balance_after IS NULL OR balance_after = balance_before + amount)
);
CREATE INDEX entries_account ON entries (account_id, id);
CREATE INDEX entries_pending ON entries (account_id, id) WHERE balance_after IS NULL;

CREATE TABLE invoice_counters (
    seller_id  bigint NOT NULL REFERENCES users (id),
    year       int NOT NULL,
    last       int NOT NULL,
    PRIMARY KEY (seller_id, year)
);

CREATE TABLE invoices (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_id     text NOT NULL UNIQUE CHECK (public_id ~ '^[0-9A-HJKMNP-TV-Z]{13}$'),
    seller_id     bigint NOT NULL REFERENCES users (id),
    number        text NOT NULL,
    title         text NOT NULL CHECK (length(title) BETWEEN 1 AND 128),
    description   text CHECK (length(description) <= 1024),
    currency      text NOT NULL REFERENCES currencies (code),
    amount        bigint NOT NULL CHECK (amount > 0),
    ton_amount    bigint CHECK (ton_amount > 0),
    ton_rate      numeric CHECK (ton_rate > 0),
    kind          text NOT NULL CHECK (kind IN ('one_time', 'multi_use')),
    max_uses      int CHECK (max_uses > 0),
    uses          int NOT NULL DEFAULT 0,
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'paid', 'cancelled', 'expired')),
    payload       jsonb NOT NULL DEFAULT '{}'::jsonb,
    ton_received  bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    paid_at       timestamptz,
    closed_at     timestamptz,
    UNIQUE (seller_id, number),
    CONSTRAINT uses_within_limit CHECK (max_uses IS NULL OR uses <= max_uses),
    CONSTRAINT one_time_single_use CHECK (kind = 'multi_use' OR (max_uses IS NULL AND uses <= 1))
);
CREATE INDEX invoices_seller ON invoices (seller_id, id DESC);
CREATE INDEX invoices_pending_expiry ON invoices (expires_at) WHERE status = 'pending';

CREATE TABLE payments (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    invoice_id       bigint NOT NULL,
    payer_id         bigint,
    method           text NOT NULL CHECK (method IN ('internal', 'ton', 'manual')),
    currency         text NOT NULL,
    amount           bigint NOT NULL CHECK (amount > 0),
    external_ref     text,
    idempotency_key  text CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    ledger_tx_id     bigint NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_invoice ON payments (invoice_id);
CREATE UNIQUE INDEX payments_external_ref ON payments (external_ref) WHERE external_ref IS NOT NULL;
CREATE UNIQUE INDEX payments_idempotency ON payments (payer_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- One fulfilment record per payment, and the buyer's inventory: a grant with an item_id is an
-- item the user holds. A guest's grant has no user yet, only a claim token. Items granted
-- outside a payment (grant_item_to_user) have no payment.
CREATE TABLE grants (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payment_id      bigint,
    invoice_id      bigint,
    user_id         bigint,
    item_id         text,
    achievement_id  text,
    claim_token     text,
    claimed_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT grant_has_holder CHECK (user_id IS NOT NULL OR claim_token IS NOT NULL)
);
CREATE UNIQUE INDEX grants_payment ON grants (payment_id);
CREATE UNIQUE INDEX grants_claim_token ON grants (claim_token) WHERE claim_token IS NOT NULL;
CREATE INDEX grants_user ON grants (user_id, id);

CREATE VIEW inventory AS
    SELECT id AS grant_id, user_id, item_id, coalesce(claimed_at, created_at) AS acquired_at
      FROM grants WHERE user_id IS NOT NULL AND item_id IS NOT NULL;

CREATE TABLE achievements (
    user_id         bigint NOT NULL REFERENCES users (id),
    achievement_id  text NOT NULL,
    grant_id        bigint,
    unlocked_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, achievement_id)
);

-- Effects that leave the process (Telegram messages, callbacks), written in the same
-- transaction as the money and delivered after commit, at least once.
CREATE TABLE outbox (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- id handed to receivers for de-duplication (122 random bits: not indexed, never looked up
    -- on the payment path)
    event_id      uuid NOT NULL DEFAULT gen_random_uuid(),
    topic         text NOT NULL CHECK (topic IN ('telegram', 'callback')),
    event_type    text NOT NULL,
    payload       jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    available_at  timestamptz NOT NULL DEFAULT now(),
    attempts      int NOT NULL DEFAULT 0,
    delivered_at  timestamptz,
    failed_at     timestamptz,
    last_error    text
);
-- Receivers and operators look events up by event_id only to redeliver failed ones.
CREATE INDEX outbox_failed_event ON outbox (event_id) WHERE failed_at IS NOT NULL;
CREATE INDEX outbox_due ON outbox (topic, available_at) WHERE delivered_at IS NULL AND failed_at IS NULL;

-- Nothing is ever deleted; money rows never change (pending credits are filled in once).
CREATE FUNCTION paybot_forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% on % is not allowed: money records are immutable; cancel or void instead',
        TG_OP, TG_TABLE_NAME USING ERRCODE = 'PB900';
END $$;

CREATE FUNCTION paybot_entry_apply_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.balance_after IS NULL AND NEW.balance_after IS NOT NULL
       AND (NEW.id, NEW.tx_id, NEW.account_id, NEW.currency, NEW.amount, NEW.created_at)
           = (OLD.id, OLD.tx_id, OLD.account_id, OLD.currency, OLD.amount, OLD.created_at) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'entries are immutable (entry %)', OLD.id USING ERRCODE = 'PB900';
END $$;

CREATE TRIGGER entries_immutable BEFORE UPDATE ON entries
    FOR EACH ROW EXECUTE FUNCTION paybot_entry_apply_once();
CREATE TRIGGER entries_no_delete BEFORE DELETE OR TRUNCATE ON entries
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
CREATE TRIGGER ledger_transactions_immutable BEFORE UPDATE OR DELETE OR TRUNCATE ON ledger_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
CREATE TRIGGER payments_immutable BEFORE UPDATE OR DELETE OR TRUNCATE ON payments
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
CREATE TRIGGER invoices_no_delete BEFORE DELETE OR TRUNCATE ON invoices
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
CREATE TRIGGER accounts_no_delete BEFORE DELETE OR TRUNCATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
CREATE TRIGGER users_no_delete BEFORE DELETE OR TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
CREATE TRIGGER grants_no_delete BEFORE DELETE OR TRUNCATE ON grants
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
CREATE TRIGGER outbox_no_delete BEFORE DELETE OR TRUNCATE ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
"""

DOWNGRADE = r"""
DROP VIEW inventory;
DROP TABLE outbox, achievements, grants, payments, invoices, invoice_counters,
    entries, ledger_transactions, accounts, users, currencies CASCADE;
DROP FUNCTION paybot_entry_apply_once();
DROP FUNCTION paybot_forbid_change();
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
