"""Seller API: tokens (hashed, revocable), webhook settings, idempotent invoice creation,
callback events for the seller's default webhook URL.

0002 queues a 'callback' event only for invoices whose payload has a callback_url (in
paybot_paid_events and paybot_close_event). For the others, the triggers below queue the same
event in the same transaction when the seller has a default webhook URL set (url NULL: the
delivery worker uses the seller's default URL as it is at delivery time).

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-22
"""

from migrations.sql import run_script

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None

UPGRADE = r"""
-- Only the SHA-256 of a token is kept; the token itself is shown once, when issued.
CREATE TABLE api_tokens (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users (id),
    token_hash    bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    hint          text NOT NULL,  -- the token's first characters, to tell tokens apart
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX api_tokens_user ON api_tokens (user_id, id);

-- The secret signs callbacks (HMAC-SHA256), so it is stored as is. Made on first need:
-- two v4 UUIDs from the server's strong random source, 244 random bits.
CREATE FUNCTION paybot_new_webhook_secret() RETURNS text LANGUAGE sql VOLATILE AS $$
    SELECT 'whsec_' || replace(gen_random_uuid()::text, '-', '')
                    || replace(gen_random_uuid()::text, '-', '')
$$;
CREATE TABLE seller_webhooks (
    user_id     bigint PRIMARY KEY REFERENCES users (id),
    url         text CHECK (url ~ '^https?://' AND length(url) <= 512),
    secret      text NOT NULL DEFAULT paybot_new_webhook_secret() CHECK (length(secret) >= 32),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- POST /invoices with an Idempotency-Key: the key claims an invoice id first (its own short
-- statement), then the invoice is created under that id. Whoever finds a claimed id with no
-- invoice yet (the first request died in between) creates it: same key, same request.
-- No foreign key on purpose: for that moment the invoice does not exist.
CREATE TABLE api_idempotency (
    user_id       bigint NOT NULL REFERENCES users (id),
    key           text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    request_hash  bytea NOT NULL,
    public_id     text NOT NULL CHECK (public_id ~ '^[0-9A-HJKMNP-TV-Z]{13}$'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);

-- A seller's callbacks, newest first (GET /callbacks, `paybot admin callbacks`).
CREATE INDEX outbox_callback_seller ON outbox ((payload ->> 'seller_id'), id)
    WHERE topic = 'callback';
CREATE INDEX outbox_callback_failed ON outbox (id) WHERE topic = 'callback' AND failed_at IS NOT NULL;

-- One grant per payment: the payment's 'invoice_paid' event for the default webhook URL.
-- Mirrors paybot_fulfil's callback event (which covers invoices with a callback_url).
-- Statement-level with a transition table: one set-based insert per payment batch.
CREATE FUNCTION paybot_default_webhook_paid() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (topic, event_type, payload)
    SELECT 'callback', 'invoice_paid',
           jsonb_build_object('invoice', v.public_id, 'payment_id', p.id, 'payer_id', p.payer_id,
                              'seller_id', v.seller_id, 'method', p.method, 'grant_id', g.id,
                              'url', NULL)
      FROM new_grants g
      JOIN invoices v ON v.id = g.invoice_id
      JOIN payments p ON p.id = g.payment_id
      JOIN seller_webhooks w ON w.user_id = v.seller_id AND w.url IS NOT NULL
     WHERE g.payment_id IS NOT NULL AND NOT (v.payload ? 'callback_url');
    RETURN NULL;
END $$;
CREATE TRIGGER grants_default_webhook AFTER INSERT ON grants
    REFERENCING NEW TABLE AS new_grants
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_default_webhook_paid();

-- Cancelled or expired: mirrors paybot_close_event for invoices without a callback_url.
CREATE FUNCTION paybot_default_webhook_closed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (NEW.payload ? 'callback_url') AND EXISTS (
        SELECT 1 FROM seller_webhooks WHERE user_id = NEW.seller_id AND url IS NOT NULL) THEN
        INSERT INTO outbox (topic, event_type, payload) VALUES ('callback', 'invoice_' || NEW.status,
            jsonb_build_object('invoice', NEW.public_id, 'url', NULL, 'seller_id', NEW.seller_id));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER invoices_default_webhook AFTER UPDATE OF status ON invoices
    FOR EACH ROW WHEN (OLD.status = 'pending' AND NEW.status IN ('cancelled', 'expired'))
    EXECUTE FUNCTION paybot_default_webhook_closed();
"""

DOWNGRADE = r"""
DROP TRIGGER invoices_default_webhook ON invoices;
DROP TRIGGER grants_default_webhook ON grants;
DROP FUNCTION paybot_default_webhook_closed();
DROP FUNCTION paybot_default_webhook_paid();
DROP INDEX outbox_callback_failed;
DROP INDEX outbox_callback_seller;
DROP TABLE api_idempotency, seller_webhooks, api_tokens;
DROP FUNCTION paybot_new_webhook_secret();
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
