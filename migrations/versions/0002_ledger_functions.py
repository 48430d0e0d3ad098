"""Ledger functions: every money movement is one of these, one transaction, one round trip.

Error codes (SQLSTATE class PB, mapped to typed errors in ledger/errors.py):
PB001 invoice not found     PB002 already paid        PB003 cancelled      PB004 expired
PB005 own invoice           PB006 insufficient funds  PB007 idempotency key reused
PB008 user not found        PB009 invalid amount      PB010 not the seller
PB011 reference reused      PB012 claim not found     PB013 claim already used
PB900 immutable record

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from migrations.sql import run_script

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE FUNCTION paybot_user_account(p_user bigint, p_currency text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE v_id bigint;
BEGIN
    SELECT id INTO v_id FROM accounts WHERE user_id = p_user AND currency = p_currency;
    IF v_id IS NULL THEN
        IF NOT EXISTS (SELECT 1 FROM users WHERE id = p_user) THEN
            RAISE EXCEPTION 'user_not_found' USING ERRCODE = 'PB008', DETAIL = p_user::text;
        END IF;
        INSERT INTO accounts (user_id, currency) VALUES (p_user, p_currency)
            ON CONFLICT (user_id, currency) DO NOTHING;
        SELECT id INTO v_id FROM accounts WHERE user_id = p_user AND currency = p_currency;
    END IF;
    RETURN v_id;
END $$;

CREATE FUNCTION paybot_system_account(p_name text, p_currency text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE v_id bigint;
BEGIN
    SELECT id INTO v_id FROM accounts WHERE system_name = p_name AND currency = p_currency;
    IF v_id IS NULL THEN
        INSERT INTO accounts (system_name, currency) VALUES (p_name, p_currency)
            ON CONFLICT (system_name, currency) DO NOTHING;
        SELECT id INTO v_id FROM accounts WHERE system_name = p_name AND currency = p_currency;
    END IF;
    RETURN v_id;
END $$;

-- Locks the account row and folds its committed pending entries into the balance, in entry
-- order, filling each entry's balance_before/after once. Returns the balance after.
CREATE FUNCTION apply_pending_credits(p_account bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE v_bal bigint; v_added bigint;
BEGIN
    SELECT balance INTO v_bal FROM accounts WHERE id = p_account FOR UPDATE;
    WITH pending AS (
        SELECT id, amount, sum(amount) OVER (ORDER BY id) AS running
          FROM entries WHERE account_id = p_account AND balance_after IS NULL
    ), applied AS (
        UPDATE entries e
           SET balance_before = v_bal + p.running - p.amount, balance_after = v_bal + p.running
          FROM pending p WHERE e.id = p.id
        RETURNING e.amount
    )
    SELECT sum(amount) INTO v_added FROM applied;
    IF v_added IS NOT NULL THEN
        v_bal := v_bal + v_added;
        UPDATE accounts SET balance = v_bal WHERE id = p_account;
    END IF;
    RETURN v_bal;
END $$;

-- Takes money out of a user's account at once, only if it is there. The conditional UPDATE
-- is the lock; pending credits are folded in first only when the balance alone falls short.
CREATE FUNCTION paybot_debit_user(p_tx bigint, p_user bigint, p_currency text, p_amount bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE v_acct bigint; v_bal bigint;
BEGIN
    UPDATE accounts SET balance = balance - p_amount
     WHERE user_id = p_user AND currency = p_currency AND balance >= p_amount
    RETURNING id, balance INTO v_acct, v_bal;
    IF v_acct IS NULL THEN
        v_acct := paybot_user_account(p_user, p_currency);
        v_bal := apply_pending_credits(v_acct);
        IF v_bal < p_amount THEN
            RAISE EXCEPTION 'insufficient_funds' USING ERRCODE = 'PB006',
                DETAIL = json_build_object('needed', p_amount, 'available', v_bal,
                                           'currency', p_currency)::text;
        END IF;
        UPDATE accounts SET balance = balance - p_amount WHERE id = v_acct
        RETURNING balance INTO v_bal;
    END IF;
    INSERT INTO entries (tx_id, account_id, currency, amount, balance_before, balance_after)
        VALUES (p_tx, v_acct, p_currency, -p_amount, v_bal + p_amount, v_bal);
    RETURN v_bal;
END $$;

-- A credit that cannot make a balance negative: written pending, no lock on the account row.
CREATE FUNCTION paybot_credit_user(p_tx bigint, p_user bigint, p_currency text, p_amount bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE v_acct bigint;
BEGIN
    SELECT id INTO v_acct FROM accounts WHERE user_id = p_user AND currency = p_currency;
    IF v_acct IS NULL THEN
        v_acct := paybot_user_account(p_user, p_currency);
    END IF;
    INSERT INTO entries (tx_id, account_id, currency, amount) VALUES (p_tx, v_acct, p_currency, p_amount);
END $$;

-- Explains why an invoice cannot take a payment now (raises).
CREATE FUNCTION paybot_raise_not_payable(p_invoice bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE v invoices%ROWTYPE;
BEGIN
    SELECT * INTO v FROM invoices WHERE id = p_invoice;
    IF v.status = 'cancelled' THEN
        RAISE EXCEPTION 'invoice_cancelled' USING ERRCODE = 'PB003', DETAIL = v.public_id;
    ELSIF v.status = 'expired' OR (v.status = 'pending' AND v.expires_at <= now()) THEN
        RAISE EXCEPTION 'invoice_expired' USING ERRCODE = 'PB004', DETAIL = v.public_id;
    END IF;
    RAISE EXCEPTION 'invoice_already_paid' USING ERRCODE = 'PB002', DETAIL = v.public_id;
END $$;

-- Counts one use of a payable invoice (row lock; concurrent payers queue here and re-check).
-- p_at is when the money was sent: a transfer made before the expiry still pays the invoice
-- even if it is seen, and the invoice marked expired, only afterwards.
CREATE FUNCTION paybot_take_invoice(p_invoice bigint, p_at timestamptz DEFAULT now())
RETURNS invoices LANGUAGE plpgsql AS $$
DECLARE v invoices%ROWTYPE;
BEGIN
    UPDATE invoices
       SET uses = uses + 1,
           status = CASE WHEN kind = 'one_time' OR uses + 1 = max_uses THEN 'paid' ELSE 'pending' END,
           paid_at = CASE WHEN kind = 'one_time' OR uses + 1 = max_uses THEN now() ELSE paid_at END,
           closed_at = CASE WHEN status = 'expired' THEN NULL ELSE closed_at END
     WHERE id = p_invoice AND status IN ('pending', 'expired') AND expires_at > least(p_at, now())
       AND (max_uses IS NULL OR uses < max_uses)
    RETURNING * INTO v;
    IF v.id IS NULL THEN
        PERFORM paybot_raise_not_payable(p_invoice);
    END IF;
    RETURN v;
END $$;

-- An item handed to a user outside any payment (operator gift, promotion). Returns the grant.
CREATE FUNCTION grant_item_to_user(p_user bigint, p_item text) RETURNS bigint
LANGUAGE sql AS $$
    INSERT INTO grants (user_id, item_id) VALUES (p_user, p_item) RETURNING id
$$;

-- The notices one payment sends: Telegram to the seller and to the buyer (if known), and the
-- seller's callback when the invoice names one.
CREATE FUNCTION paybot_paid_events(p_invoice text, p_payment bigint, p_payer bigint,
                                   p_seller bigint, p_method text, p_grant bigint,
                                   p_callback text)
RETURNS TABLE (topic text, event_type text, payload jsonb)
LANGUAGE sql IMMUTABLE AS $$
    SELECT 'telegram', 'invoice.paid', e || jsonb_build_object('recipient', r.user_id, 'role', r.role)
      FROM (SELECT jsonb_build_object('invoice', p_invoice, 'payment_id', p_payment,
                                      'payer_id', p_payer, 'seller_id', p_seller,
                                      'method', p_method, 'grant_id', p_grant) AS e) ev,
           (VALUES (p_seller, 'seller'), (p_payer, 'buyer')) AS r (user_id, role)
     WHERE r.user_id IS NOT NULL
    UNION ALL
    SELECT 'callback', 'invoice_paid', e || jsonb_build_object('url', p_callback)
      FROM (SELECT jsonb_build_object('invoice', p_invoice, 'payment_id', p_payment,
                                      'payer_id', p_payer, 'seller_id', p_seller,
                                      'method', p_method, 'grant_id', p_grant) AS e) ev
     WHERE p_callback IS NOT NULL
$$;

-- Raise the typed error (SQLSTATE class PB) for an error code.
CREATE FUNCTION paybot_raise(p_code text, p_detail text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', p_code USING DETAIL = coalesce(p_detail, ''), ERRCODE = CASE p_code
        WHEN 'invoice_not_found' THEN 'PB001' WHEN 'invoice_already_paid' THEN 'PB002'
        WHEN 'invoice_cancelled' THEN 'PB003' WHEN 'invoice_expired' THEN 'PB004'
        WHEN 'own_invoice' THEN 'PB005' WHEN 'insufficient_funds' THEN 'PB006'
        WHEN 'idempotency_key_reused' THEN 'PB007' WHEN 'user_not_found' THEN 'PB008'
        ELSE 'PB999' END;
END $$;

-- One request of a payment batch, as it moves through process_invoice_payments.
CREATE TYPE paybot_pay_item AS (
    idx int, invoice_id bigint, public_id text, buyer bigint, key text, seller_id bigint,
    currency text, amount bigint, kind text, buyer_account bigint, seller_account bigint,
    balance bigint, payload jsonb, outcome text, prev_payment bigint, status_after text,
    tx_id bigint, pay_id bigint, grant_id bigint
);

-- Fulfilment of one payment: the grant record (item, achievement, or a claim for a guest)
-- and the outbox events. Runs inside the paying transaction.
CREATE FUNCTION paybot_fulfil(p_inv invoices, p_payment bigint, p_payer bigint, p_claim_token text,
                              p_method text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE v_grant bigint; v_ach text; v_callback text;
BEGIN
    v_ach := p_inv.payload ->> 'achievement_id';
    v_callback := p_inv.payload ->> 'callback_url';
    -- The grant row is the item in the buyer's inventory (or the guest's claim).
    INSERT INTO grants (payment_id, invoice_id, user_id, item_id, achievement_id, claim_token)
        VALUES (p_payment, p_inv.id, p_payer, p_inv.payload ->> 'item_id', v_ach,
                CASE WHEN p_payer IS NULL THEN p_claim_token END)
        RETURNING id INTO v_grant;
    IF p_payer IS NOT NULL AND v_ach IS NOT NULL THEN
        INSERT INTO achievements (user_id, achievement_id, grant_id)
            VALUES (p_payer, v_ach, v_grant) ON CONFLICT DO NOTHING;
    END IF;
    INSERT INTO outbox (topic, event_type, payload)
    SELECT * FROM paybot_paid_events(p_inv.public_id, p_payment, p_payer, p_inv.seller_id,
                                     p_method, v_grant, v_callback);
    RETURN v_grant;
END $$;

-- Pay invoices from buyers' internal balances: a batch of independent requests in one
-- transaction and one round trip (ledger/batcher.py gathers concurrent requests). Each request
-- succeeds or fails on its own; a failed one changes nothing. Set-based: every statement below
-- handles the whole batch, so a payment costs its rows, not a dozen statement round trips.
-- Lock order: invoice rows by id, then buyer account rows by id. Seller credits are written
-- pending (no lock), so many buyers paying one seller never queue on the seller's row.
-- A request whose invoice or buyer already appears earlier in the batch comes back as
-- 'batch_conflict' untouched; the caller sends it again in the next batch.
CREATE FUNCTION process_invoice_payments(p_invoices text[], p_buyers bigint[], p_keys text[])
RETURNS TABLE (idx int, payment_id bigint, replayed boolean, buyer_balance bigint,
               grant_id bigint, invoice_status text, error text, error_detail text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    items paybot_pay_item[];
    v_missing bigint[];
BEGIN
    -- Lock the invoices in id order, then read them (a fresh snapshot after the wait).
    PERFORM 1 FROM invoices WHERE public_id = ANY (SELECT upper(x) FROM unnest(p_invoices) x)
     ORDER BY id FOR UPDATE;
    -- Buyers' and sellers' accounts must exist before they can be locked or credited.
    SELECT array_agg(DISTINCT u.id) INTO v_missing
      FROM (SELECT b AS id, i.currency FROM unnest(p_invoices, p_buyers) r (pub, b)
              JOIN invoices i ON i.public_id = upper(r.pub)
            UNION
            SELECT i.seller_id, i.currency FROM invoices i
             WHERE i.public_id = ANY (SELECT upper(x) FROM unnest(p_invoices) x)) u
      JOIN users ON users.id = u.id
     WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.user_id = u.id AND a.currency = u.currency);
    IF v_missing IS NOT NULL THEN
        PERFORM paybot_user_account(u.id, u.currency)
           FROM (SELECT b AS id, i.currency FROM unnest(p_invoices, p_buyers) r (pub, b)
                   JOIN invoices i ON i.public_id = upper(r.pub)
                 UNION
                 SELECT i.seller_id, i.currency FROM invoices i
                  WHERE i.public_id = ANY (SELECT upper(x) FROM unnest(p_invoices) x)) u
          WHERE u.id = ANY (v_missing);
    END IF;
    PERFORM 1 FROM accounts a
      JOIN (SELECT b, i.currency FROM unnest(p_invoices, p_buyers) r (pub, b)
              JOIN invoices i ON i.public_id = upper(r.pub)) q
        ON a.user_id = q.b AND a.currency = q.currency
     ORDER BY a.id FOR UPDATE OF a;

    -- Everything is locked: decide each request, in the order a single request would check.
    SELECT array_agg(ROW(t.*)::paybot_pay_item ORDER BY t.idx) INTO items FROM (
        SELECT r.idx::int, i.id AS invoice_id, i.public_id, r.buyer, r.key, i.seller_id,
               i.currency, i.amount, i.kind, ba.id AS buyer_account, sa.id AS seller_account,
               ba.balance AS balance, i.payload,
               CASE
                 WHEN count(*) OVER (PARTITION BY coalesce(i.id, -r.idx) ORDER BY r.idx) > 1
                   OR count(*) OVER (PARTITION BY r.buyer ORDER BY r.idx) > 1 THEN 'batch_conflict'
                 WHEN i.id IS NULL THEN 'invoice_not_found'
                 WHEN prev.id IS NOT NULL AND prev.invoice_id <> i.id THEN 'idempotency_key_reused'
                 WHEN prev.id IS NOT NULL THEN 'replay'
                 WHEN i.seller_id = r.buyer THEN 'own_invoice'
                 WHEN i.status = 'cancelled' THEN 'invoice_cancelled'
                 WHEN i.status = 'expired' OR (i.status = 'pending' AND i.expires_at <= now())
                   THEN 'invoice_expired'
                 WHEN i.status <> 'pending' OR i.uses >= coalesce(i.max_uses, i.uses + 1)
                   THEN 'invoice_already_paid'
                 WHEN ba.id IS NULL THEN 'user_not_found'
                 WHEN ba.balance < i.amount THEN 'insufficient_funds'
               END AS outcome,
               prev.id AS prev_payment,
               CASE WHEN i.kind = 'one_time' OR i.uses + 1 = i.max_uses THEN 'paid'
                    ELSE i.status END AS status_after,
               NULL::bigint AS tx_id, NULL::bigint AS pay_id, NULL::bigint AS grant_id
          FROM unnest(p_invoices, p_buyers, p_keys) WITH ORDINALITY r (pub, buyer, key, idx)
          LEFT JOIN invoices i ON i.public_id = upper(r.pub)
          LEFT JOIN payments prev ON prev.payer_id = r.buyer AND prev.idempotency_key = r.key
          LEFT JOIN accounts ba ON ba.user_id = r.buyer AND ba.currency = i.currency
          LEFT JOIN accounts sa ON sa.user_id = i.seller_id AND sa.currency = i.currency
    ) t;

    -- Short of money: fold in credits not yet applied to those accounts, then decide again.
    IF EXISTS (SELECT 1 FROM unnest(items) x WHERE x.outcome = 'insufficient_funds'
                  AND EXISTS (SELECT 1 FROM entries e WHERE e.account_id = x.buyer_account
                                 AND e.balance_after IS NULL)) THEN
        SELECT array_agg(ROW(t.*)::paybot_pay_item ORDER BY t.idx) INTO items FROM (
            SELECT x.idx, x.invoice_id, x.public_id, x.buyer, x.key, x.seller_id,
                   x.currency, x.amount, x.kind, x.buyer_account, x.seller_account,
                   nb.balance, x.payload,
                   CASE WHEN x.outcome = 'insufficient_funds' AND nb.balance >= x.amount
                        THEN NULL ELSE x.outcome END,
                   x.prev_payment, x.status_after, x.tx_id, x.pay_id, x.grant_id
              FROM unnest(items) x
              CROSS JOIN LATERAL (
                  SELECT CASE WHEN x.outcome = 'insufficient_funds'
                              THEN apply_pending_credits(x.buyer_account)
                              ELSE x.balance END AS balance) nb
        ) t;
    END IF;

    -- Ids for the rows about to be written, so the statements below can refer to each other.
    SELECT array_agg(ROW(t.*)::paybot_pay_item ORDER BY t.idx) INTO items FROM (
        SELECT x.idx, x.invoice_id, x.public_id, x.buyer, x.key, x.seller_id,
               x.currency, x.amount, x.kind, x.buyer_account, x.seller_account,
               x.balance, x.payload, x.outcome, x.prev_payment, x.status_after,
               CASE WHEN x.outcome IS NULL THEN nextval('ledger_transactions_id_seq') END,
               CASE WHEN x.outcome IS NULL THEN nextval('payments_id_seq') END,
               CASE WHEN x.outcome IS NULL THEN nextval('grants_id_seq') END
          FROM unnest(items) x
    ) t;

    IF EXISTS (SELECT 1 FROM unnest(items) x WHERE x.outcome IS NULL) THEN
        UPDATE invoices i
           SET uses = i.uses + 1, status = x.status_after,
               paid_at = CASE WHEN x.status_after = 'paid' THEN now() ELSE i.paid_at END
          FROM unnest(items) x
         WHERE x.outcome IS NULL AND i.id = x.invoice_id;
        UPDATE accounts a SET balance = a.balance - x.amount
          FROM unnest(items) x
         WHERE x.outcome IS NULL AND a.id = x.buyer_account;
        INSERT INTO ledger_transactions (id, kind) OVERRIDING SYSTEM VALUE
        SELECT x.tx_id, 'invoice_payment' FROM unnest(items) x WHERE x.outcome IS NULL;
        INSERT INTO entries (tx_id, account_id, currency, amount, balance_before, balance_after)
        SELECT x.tx_id, x.buyer_account, x.currency, -x.amount, x.balance, x.balance - x.amount
          FROM unnest(items) x WHERE x.outcome IS NULL
        UNION ALL
        SELECT x.tx_id, x.seller_account, x.currency, x.amount, NULL, NULL
          FROM unnest(items) x WHERE x.outcome IS NULL;
        INSERT INTO payments (id, invoice_id, payer_id, method, currency, amount, idempotency_key,
                              ledger_tx_id) OVERRIDING SYSTEM VALUE
        SELECT x.pay_id, x.invoice_id, x.buyer, 'internal', x.currency, x.amount, x.key, x.tx_id
          FROM unnest(items) x WHERE x.outcome IS NULL;
        -- Fulfilment: the grant is the item in the buyer's inventory; then the notices.
        INSERT INTO grants (id, payment_id, invoice_id, user_id, item_id, achievement_id)
            OVERRIDING SYSTEM VALUE
        SELECT x.grant_id, x.pay_id, x.invoice_id, x.buyer, x.payload ->> 'item_id',
               x.payload ->> 'achievement_id'
          FROM unnest(items) x WHERE x.outcome IS NULL;
        INSERT INTO achievements (user_id, achievement_id, grant_id)
        SELECT x.buyer, x.payload ->> 'achievement_id', x.grant_id
          FROM unnest(items) x WHERE x.outcome IS NULL AND x.payload ? 'achievement_id'
        ON CONFLICT DO NOTHING;
        INSERT INTO outbox (topic, event_type, payload)
        SELECT o.topic, o.event_type, o.payload FROM unnest(items) x
         CROSS JOIN LATERAL paybot_paid_events(x.public_id, x.pay_id, x.buyer, x.seller_id,
                                               'internal', x.grant_id,
                                               x.payload ->> 'callback_url') o
         WHERE x.outcome IS NULL;
    END IF;

    RETURN QUERY
    SELECT x.idx,
           coalesce(x.pay_id, x.prev_payment),
           x.outcome IS NOT DISTINCT FROM 'replay',
           CASE WHEN x.outcome IS NULL THEN x.balance - x.amount
                WHEN x.outcome = 'replay' THEN x.balance END,
           CASE WHEN x.outcome IS NULL THEN x.grant_id
                WHEN x.outcome = 'replay' THEN (SELECT g.id FROM grants g
                                                 WHERE g.payment_id = x.prev_payment) END,
           CASE WHEN x.outcome IS NULL THEN x.status_after
                ELSE (SELECT i.status FROM invoices i WHERE i.id = x.invoice_id) END,
           CASE WHEN x.outcome = 'replay' THEN NULL ELSE x.outcome END,
           CASE WHEN x.outcome = 'insufficient_funds'
                THEN json_build_object('needed', x.amount, 'available', x.balance,
                                       'currency', x.currency)::text
                ELSE coalesce(x.public_id, p_invoices[x.idx]) END
      FROM unnest(items) x;
END $$;

-- One request: the SQL face of the seed's process_invoice_payment(invoice, buyer), raising
-- the typed error a failed request gets.
CREATE FUNCTION process_invoice_payment(p_invoice text, p_buyer bigint, p_idempotency_key text)
RETURNS TABLE (payment_id bigint, replayed boolean, buyer_balance bigint, grant_id bigint,
               invoice_status text)
LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
    SELECT * INTO r FROM process_invoice_payments(ARRAY[p_invoice], ARRAY[p_buyer],
                                                  ARRAY[p_idempotency_key]);
    IF r.error IS NOT NULL THEN
        PERFORM paybot_raise(r.error, r.error_detail);
    END IF;
    RETURN QUERY SELECT r.payment_id, r.replayed, r.buyer_balance, r.grant_id, r.invoice_status;
END $$;

-- Settle an invoice paid outside the internal balance (TON transfer seen by the watcher,
-- or a manual payment confirmed by the operator). Idempotent on the external reference.
-- The money comes from the system account of the method (chain_inflow / adjustments).
CREATE FUNCTION settle_external_payment(p_invoice text, p_method text, p_reference text,
                                        p_payer bigint, p_claim_token text,
                                        p_paid_at timestamptz DEFAULT NULL)
RETURNS TABLE (payment_id bigint, replayed boolean, grant_id bigint, invoice_status text,
               claim_token text)
LANGUAGE plpgsql AS $$
DECLARE v invoices%ROWTYPE; v_tx bigint; v_pay bigint; v_grant bigint; v_prev payments%ROWTYPE;
BEGIN
    SELECT * INTO v FROM invoices WHERE public_id = upper(p_invoice) FOR UPDATE;
    IF v.id IS NULL THEN
        RAISE EXCEPTION 'invoice_not_found' USING ERRCODE = 'PB001', DETAIL = p_invoice;
    END IF;
    -- Read after the invoice lock, so a concurrent settlement of the same reference is seen.
    SELECT * INTO v_prev FROM payments WHERE external_ref = p_reference;
    IF v_prev.id IS NOT NULL THEN
        IF v_prev.invoice_id <> v.id THEN
            RAISE EXCEPTION 'reference_reused' USING ERRCODE = 'PB011', DETAIL = p_reference;
        END IF;
        RETURN QUERY SELECT v_prev.id, true, g.id, v.status, g.claim_token
            FROM grants g WHERE g.payment_id = v_prev.id;
        RETURN;
    END IF;
    IF p_payer IS NOT NULL AND v.seller_id = p_payer THEN
        RAISE EXCEPTION 'own_invoice' USING ERRCODE = 'PB005', DETAIL = v.public_id;
    END IF;
    v := paybot_take_invoice(v.id, coalesce(p_paid_at, now()));
    INSERT INTO ledger_transactions (kind, reason) VALUES ('external_payment', p_method)
        RETURNING id INTO v_tx;
    INSERT INTO entries (tx_id, account_id, currency, amount) VALUES
        (v_tx, paybot_system_account(CASE WHEN p_method = 'ton' THEN 'chain_inflow'
                                          ELSE 'adjustments' END, v.currency), v.currency, -v.amount);
    PERFORM paybot_credit_user(v_tx, v.seller_id, v.currency, v.amount);
    INSERT INTO payments (invoice_id, payer_id, method, currency, amount, external_ref, ledger_tx_id)
        VALUES (v.id, p_payer, p_method, v.currency, v.amount, p_reference, v_tx)
        RETURNING id INTO v_pay;
    v_grant := paybot_fulfil(v, v_pay, p_payer, p_claim_token, p_method);
    RETURN QUERY SELECT v_pay, false, v_grant, v.status,
        CASE WHEN p_payer IS NULL THEN p_claim_token END;
END $$;

-- Move money between a user and a system account: deposits (chain_inflow -> user),
-- operator adjustments either way, excess and suspense credits. Idempotent on reference.
CREATE FUNCTION paybot_move(p_kind text, p_user bigint, p_system text, p_currency text,
                            p_amount bigint, p_reason text, p_reference text)
RETURNS TABLE (ledger_tx_id bigint, replayed boolean, user_balance bigint)
LANGUAGE plpgsql AS $$
DECLARE v_tx bigint; v_acct bigint; v_bal bigint;
BEGIN
    IF p_amount = 0 THEN
        RAISE EXCEPTION 'invalid_amount' USING ERRCODE = 'PB009', DETAIL = p_amount::text;
    END IF;
    v_acct := paybot_user_account(p_user, p_currency);
    IF p_reference IS NOT NULL THEN
        INSERT INTO ledger_transactions (kind, reason, reference) VALUES (p_kind, p_reason, p_reference)
            ON CONFLICT (reference) WHERE reference IS NOT NULL DO NOTHING RETURNING id INTO v_tx;
        IF v_tx IS NULL THEN
            RETURN QUERY SELECT t.id, true, NULL::bigint FROM ledger_transactions t
                WHERE t.reference = p_reference;
            RETURN;
        END IF;
    ELSE
        INSERT INTO ledger_transactions (kind, reason) VALUES (p_kind, p_reason) RETURNING id INTO v_tx;
    END IF;
    IF p_amount > 0 THEN
        INSERT INTO entries (tx_id, account_id, currency, amount) VALUES
            (v_tx, paybot_system_account(p_system, p_currency), p_currency, -p_amount),
            (v_tx, v_acct, p_currency, p_amount);
    ELSE
        v_bal := paybot_debit_user(v_tx, p_user, p_currency, -p_amount);
        INSERT INTO entries (tx_id, account_id, currency, amount)
            VALUES (v_tx, paybot_system_account(p_system, p_currency), p_currency, -p_amount);
    END IF;
    RETURN QUERY SELECT v_tx, false, v_bal;
END $$;

-- A guest paid without logging in; whoever presents the claim token gets the item, once.
CREATE FUNCTION claim_grant(p_token text, p_user bigint) RETURNS grants
LANGUAGE plpgsql AS $$
DECLARE g grants%ROWTYPE;
BEGIN
    SELECT * INTO g FROM grants WHERE claim_token = p_token FOR UPDATE;
    IF g.id IS NULL THEN
        RAISE EXCEPTION 'claim_not_found' USING ERRCODE = 'PB012', DETAIL = left(p_token, 40);
    ELSIF g.user_id IS NOT NULL THEN
        IF g.user_id = p_user THEN
            RETURN g;  -- the same person opening the link again
        END IF;
        RAISE EXCEPTION 'claim_already_used' USING ERRCODE = 'PB013', DETAIL = left(p_token, 40);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM users WHERE id = p_user) THEN
        RAISE EXCEPTION 'user_not_found' USING ERRCODE = 'PB008', DETAIL = p_user::text;
    END IF;
    UPDATE grants SET user_id = p_user, claimed_at = now() WHERE id = g.id RETURNING * INTO g;
    IF g.achievement_id IS NOT NULL THEN
        INSERT INTO achievements (user_id, achievement_id, grant_id)
            VALUES (p_user, g.achievement_id, g.id) ON CONFLICT DO NOTHING;
    END IF;
    RETURN g;
END $$;

CREATE FUNCTION paybot_close_event(p_inv invoices, p_type text) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO outbox (topic, event_type, payload)
    SELECT 'callback', p_type, jsonb_build_object('invoice', p_inv.public_id,
                                                  'url', p_inv.payload ->> 'callback_url',
                                                  'seller_id', p_inv.seller_id)
     WHERE p_inv.payload ? 'callback_url'
$$;

CREATE FUNCTION cancel_invoice(p_invoice text, p_seller bigint) RETURNS invoices
LANGUAGE plpgsql AS $$
DECLARE v invoices%ROWTYPE;
BEGIN
    SELECT * INTO v FROM invoices WHERE public_id = upper(p_invoice) FOR UPDATE;
    IF v.id IS NULL THEN
        RAISE EXCEPTION 'invoice_not_found' USING ERRCODE = 'PB001', DETAIL = p_invoice;
    ELSIF v.seller_id <> p_seller THEN
        RAISE EXCEPTION 'not_invoice_seller' USING ERRCODE = 'PB010', DETAIL = p_invoice;
    ELSIF v.status = 'cancelled' THEN
        RETURN v;  -- cancelling twice is a no-op, not an error
    ELSIF v.status <> 'pending' THEN
        PERFORM paybot_raise_not_payable(v.id);
    END IF;
    UPDATE invoices SET status = 'cancelled', closed_at = now() WHERE id = v.id RETURNING * INTO v;
    PERFORM paybot_close_event(v, 'invoice_cancelled');
    RETURN v;
END $$;

CREATE FUNCTION expire_due_invoices(p_limit int) RETURNS SETOF invoices
LANGUAGE plpgsql AS $$
DECLARE v invoices%ROWTYPE;
BEGIN
    FOR v IN
        UPDATE invoices SET status = 'expired', closed_at = now()
         WHERE id IN (SELECT id FROM invoices WHERE status = 'pending' AND expires_at <= now()
                       ORDER BY expires_at LIMIT p_limit FOR UPDATE SKIP LOCKED)
        RETURNING *
    LOOP
        PERFORM paybot_close_event(v, 'invoice_expired');
        RETURN NEXT v;
    END LOOP;
END $$;
"""

DOWNGRADE = r"""
DROP FUNCTION expire_due_invoices(int);
DROP FUNCTION cancel_invoice(text, bigint);
DROP FUNCTION paybot_close_event(invoices, text);
DROP FUNCTION claim_grant(text, bigint);
DROP FUNCTION paybot_move(text, bigint, text, text, bigint, text, text);
DROP FUNCTION settle_external_payment(text, text, text, bigint, text, timestamptz);
DROP FUNCTION process_invoice_payment(text, bigint, text);
DROP FUNCTION process_invoice_payments(text[], bigint[], text[]);
DROP TYPE paybot_pay_item;
DROP FUNCTION paybot_raise(text, text);
DROP FUNCTION paybot_paid_events(text, bigint, bigint, bigint, text, bigint, text);
DROP FUNCTION paybot_fulfil(invoices, bigint, bigint, text, text);
DROP FUNCTION grant_item_to_user(bigint, text);
DROP FUNCTION paybot_take_invoice(bigint, timestamptz);
DROP FUNCTION paybot_raise_not_payable(bigint);
DROP FUNCTION paybot_credit_user(bigint, bigint, text, bigint);
DROP FUNCTION paybot_debit_user(bigint, bigint, text, bigint);
DROP FUNCTION apply_pending_credits(bigint);
DROP FUNCTION paybot_system_account(text, text);
DROP FUNCTION paybot_user_account(bigint, text);
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
