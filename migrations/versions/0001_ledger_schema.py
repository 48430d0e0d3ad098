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
    reference   text UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Signed amounts: positive raises the account's balance, negative lowers it.
-- Debits are applied at once (balance_before/after set); credits to user accounts may be
-- written pending and applied in order later, exactly once (the trigger below allows only that).
-- account_id has no foreign key on purpose: an FK check takes a KEY SHARE lock on the account
-- row for every insert, turning a popular seller's row into a multixact hot spot.
-- `paybot admin check` verifies that every entry's account exists.
CREATE TABLE entries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx_id           bigint NOT NULL REFERENCES ledger_transactions (id),
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
CREATE INDEX entries_tx ON entries (tx_id);
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
    invoice_id       bigint NOT NULL REFERENCES invoices (id),
    payer_id         bigint REFERENCES users (id),
    method           text NOT NULL CHECK (method IN ('internal', 'ton', 'manual')),
    currency         text NOT NULL,
    amount           bigint NOT NULL CHECK (amount > 0),
    external_ref     text UNIQUE,
    idempotency_key  text CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    ledger_tx_id     bigint NOT NULL REFERENCES ledger_transactions (id),
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (payer_id, idempotency_key)
);
CREATE INDEX payments_invoice ON payments (invoice_id);

-- One fulfilment record per payment. A guest's grant has no user yet, only a claim token.
CREATE TABLE grants (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payment_id      bigint NOT NULL UNIQUE REFERENCES payments (id),
    invoice_id      bigint NOT NULL REFERENCES invoices (id),
    user_id         bigint REFERENCES users (id),
    item_id         text,
    achievement_id  text,
    claim_token     text UNIQUE,
    claimed_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT grant_has_holder CHECK (user_id IS NOT NULL OR claim_token IS NOT NULL)
);

CREATE TABLE inventory (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id),
    item_id     text NOT NULL,
    grant_id    bigint REFERENCES grants (id),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX inventory_user ON inventory (user_id, id);

CREATE TABLE achievements (
    user_id         bigint NOT NULL REFERENCES users (id),
    achievement_id  text NOT NULL,
    grant_id        bigint REFERENCES grants (id),
    unlocked_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, achievement_id)
);

-- Effects that leave the process (Telegram messages, callbacks), written in the same
-- transaction as the money and delivered after commit, at least once.
CREATE TABLE outbox (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id      uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
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
DROP TABLE outbox, achievements, inventory, grants, payments, invoices, invoice_counters,
    entries, ledger_transactions, accounts, users, currencies CASCADE;
DROP FUNCTION paybot_entry_apply_once();
DROP FUNCTION paybot_forbid_change();
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
