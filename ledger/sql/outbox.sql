-- Outbox and callbacks: the wake-up every outbox insert sends, seller webhooks, the
-- default-webhook events, and the endpoint key that keeps one seller's dead endpoint from
-- slowing the others.

-- One after-commit wake for every path: an insert into the outbox notifies channel
-- paybot_outbox. PostgreSQL delivers a NOTIFY only when the transaction commits, never for
-- one rolled back, so a listener in whatever process delivers (watchers/wakeup.py) wakes
-- exactly after commit: an operator's command, a job, a cancellation, a guest binding a
-- purchase, another replica.
-- Except the two hot paths, balance payments (process_invoice_payments) and chain transfers
-- (paybot_ton_receive): PostgreSQL serializes the commits of notifying transactions (a
-- database-wide lock held through the commit's WAL flush), which cost them a quarter to a
-- half of their rate. They mark their transaction quiet (paybot.quiet_outbox), and their
-- callers in a `paybot run` process — the Ledger and the TON watcher — wake that process's
-- delivery after commit instead (ledger/core.py, watchers/ton_watcher.py).
-- Statement-level, and repeated notifications of a transaction fold into one.
CREATE OR REPLACE FUNCTION paybot_outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('paybot.quiet_outbox', true) IS DISTINCT FROM 'on' THEN
        PERFORM pg_notify('paybot_outbox', TG_TABLE_NAME);  -- one wake-up wakes every deliverer
    END IF;
    RETURN NULL;
END $$;

-- No transition table: its rows would be captured on every insert, quiet or not.
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_outbox_notify();

-- The secret signs callbacks (HMAC-SHA256), so it is stored as is. Made on first need:
-- two v4 UUIDs from the server's strong random source, 244 random bits.
CREATE OR REPLACE FUNCTION paybot_new_webhook_secret() RETURNS text LANGUAGE sql VOLATILE AS $$
    SELECT 'whsec_' || replace(gen_random_uuid()::text, '-', '')
                    || replace(gen_random_uuid()::text, '-', '')
$$;

-- One grant per payment: the payment's 'invoice_paid' event for the default webhook URL.
-- Mirrors the callback event of paybot_fulfil (payments.sql), which covers invoices with a
-- callback_url.
-- Statement-level with a transition table: one set-based insert per payment batch.
CREATE OR REPLACE FUNCTION paybot_default_webhook_paid() RETURNS trigger
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
CREATE OR REPLACE FUNCTION paybot_default_webhook_closed() RETURNS trigger
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

-- 'scheme://authority' of an http(s) URL, lowercased (string functions: claims compute it for
-- every due event, and a regular expression costs several times as much).
CREATE OR REPLACE FUNCTION paybot_callback_endpoint(url text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT lower(split_part(url, '/', 1) || '//'
                 || split_part(split_part(split_part(url, '/', 3), '?', 1), '#', 1))
$$;
