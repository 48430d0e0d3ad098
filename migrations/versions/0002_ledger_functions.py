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
DECLARE v_bal bigint; v_start bigint; r record;
BEGIN
    SELECT balance INTO v_bal FROM accounts WHERE id = p_account FOR UPDATE;
    v_start := v_bal;
    FOR r IN SELECT id, amount FROM entries
             WHERE account_id = p_account AND balance_after IS NULL ORDER BY id LOOP
        UPDATE entries SET balance_before = v_bal, balance_after = v_bal + r.amount WHERE id = r.id;
        v_bal := v_bal + r.amount;
    END LOOP;
    IF v_bal <> v_start THEN
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
CREATE FUNCTION paybot_take_invoice(p_invoice bigint) RETURNS invoices
LANGUAGE plpgsql AS $$
DECLARE v invoices%ROWTYPE;
BEGIN
    UPDATE invoices
       SET uses = uses + 1,
           status = CASE WHEN kind = 'one_time' OR uses + 1 = max_uses THEN 'paid' ELSE status END,
           paid_at = CASE WHEN kind = 'one_time' OR uses + 1 = max_uses THEN now() ELSE paid_at END
     WHERE id = p_invoice AND status = 'pending' AND expires_at > now()
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

-- Fulfilment of one payment: the grant record (item, achievement, or a claim for a guest)
-- and the outbox events. Runs inside the paying transaction.
CREATE FUNCTION paybot_fulfil(p_inv invoices, p_payment bigint, p_payer bigint, p_claim_token text,
                              p_method text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE v_grant bigint; v_ach text; v_callback text; v_event jsonb;
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
    v_event := jsonb_build_object('invoice', p_inv.public_id, 'payment_id', p_payment,
                                  'payer_id', p_payer, 'seller_id', p_inv.seller_id,
                                  'method', p_method, 'grant_id', v_grant);
    INSERT INTO outbox (topic, event_type, payload)
    SELECT 'telegram', 'invoice.paid', v_event || jsonb_build_object('recipient', r.user_id, 'role', r.role)
      FROM (VALUES (p_inv.seller_id, 'seller'), (p_payer, 'buyer')) AS r (user_id, role)
     WHERE r.user_id IS NOT NULL
    UNION ALL
    SELECT 'callback', 'invoice_paid', v_event || jsonb_build_object('url', v_callback)
     WHERE v_callback IS NOT NULL;
    RETURN v_grant;
END $$;

-- The first result for a buyer's idempotency key, if the key was used; an error if it was used
-- for another invoice. (A concurrent first use is caught by the unique index on commit; the
-- caller retries and lands here.)
CREATE FUNCTION paybot_replay(p_invoice bigint, p_buyer bigint, p_key text)
RETURNS TABLE (payment_id bigint, replayed boolean, buyer_balance bigint, grant_id bigint,
               invoice_status text)
LANGUAGE plpgsql AS $$
DECLARE v_prev payments%ROWTYPE;
BEGIN
    IF p_key IS NULL THEN
        RETURN;
    END IF;
    SELECT * INTO v_prev FROM payments p WHERE p.payer_id = p_buyer AND p.idempotency_key = p_key;
    IF v_prev.id IS NULL THEN
        RETURN;
    ELSIF v_prev.invoice_id <> p_invoice THEN
        RAISE EXCEPTION 'idempotency_key_reused' USING ERRCODE = 'PB007', DETAIL = p_key;
    END IF;
    RETURN QUERY SELECT v_prev.id, true,
        (SELECT (a.balance + coalesce((SELECT sum(e.amount) FROM entries e
                                        WHERE e.account_id = a.id AND e.balance_after IS NULL),
                                       0))::bigint
           FROM accounts a WHERE a.user_id = p_buyer AND a.currency = v_prev.currency),
        (SELECT g.id FROM grants g WHERE g.payment_id = v_prev.id),
        (SELECT i.status FROM invoices i WHERE i.id = p_invoice);
END $$;

-- Pay an invoice from the buyer's internal balance. All or nothing, one round trip.
-- Lock order: invoice row, then the buyer's account row. The seller's credit is written pending
-- (no lock), so many buyers paying one seller never queue on the seller's row.
CREATE FUNCTION process_invoice_payment(p_invoice text, p_buyer bigint, p_idempotency_key text)
RETURNS TABLE (payment_id bigint, replayed boolean, buyer_balance bigint, grant_id bigint,
               invoice_status text)
LANGUAGE plpgsql AS $$
DECLARE
    v invoices%ROWTYPE;
    v_id bigint; v_tx bigint; v_pay bigint; v_grant bigint; v_bal bigint;
BEGIN
    SELECT * INTO v FROM invoices WHERE public_id = upper(p_invoice);
    IF v.id IS NULL THEN
        RAISE EXCEPTION 'invoice_not_found' USING ERRCODE = 'PB001', DETAIL = p_invoice;
    END IF;
    v_id := v.id;
    RETURN QUERY SELECT * FROM paybot_replay(v_id, p_buyer, p_idempotency_key);
    IF FOUND THEN
        RETURN;
    END IF;
    IF v.seller_id = p_buyer THEN
        RAISE EXCEPTION 'own_invoice' USING ERRCODE = 'PB005', DETAIL = v.public_id;
    END IF;
    UPDATE invoices
       SET uses = uses + 1,
           status = CASE WHEN kind = 'one_time' OR uses + 1 = max_uses THEN 'paid' ELSE status END,
           paid_at = CASE WHEN kind = 'one_time' OR uses + 1 = max_uses THEN now() ELSE paid_at END
     WHERE id = v_id AND status = 'pending' AND expires_at > now()
       AND (max_uses IS NULL OR uses < max_uses)
    RETURNING * INTO v;
    IF NOT FOUND THEN
        -- A concurrent request with the same key may have just paid it: that is a replay.
        RETURN QUERY SELECT * FROM paybot_replay(v_id, p_buyer, p_idempotency_key);
        IF FOUND THEN
            RETURN;
        END IF;
        PERFORM paybot_raise_not_payable(v_id);
    END IF;
    INSERT INTO ledger_transactions (kind) VALUES ('invoice_payment') RETURNING id INTO v_tx;
    v_bal := paybot_debit_user(v_tx, p_buyer, v.currency, v.amount);
    PERFORM paybot_credit_user(v_tx, v.seller_id, v.currency, v.amount);
    INSERT INTO payments (invoice_id, payer_id, method, currency, amount, idempotency_key, ledger_tx_id)
        VALUES (v.id, p_buyer, 'internal', v.currency, v.amount, p_idempotency_key, v_tx)
        RETURNING id INTO v_pay;
    v_grant := paybot_fulfil(v, v_pay, p_buyer, NULL, 'internal');
    RETURN QUERY SELECT v_pay, false, v_bal, v_grant, v.status;
END $$;

-- Settle an invoice paid outside the internal balance (TON transfer seen by the watcher,
-- or a manual payment confirmed by the operator). Idempotent on the external reference.
-- The money comes from the system account of the method (chain_inflow / adjustments).
CREATE FUNCTION settle_external_payment(p_invoice text, p_method text, p_reference text,
                                        p_payer bigint, p_claim_token text)
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
    v := paybot_take_invoice(v.id);
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
DROP FUNCTION settle_external_payment(text, text, text, bigint, text);
DROP FUNCTION process_invoice_payment(text, bigint, text);
DROP FUNCTION paybot_replay(bigint, bigint, text);
DROP FUNCTION paybot_fulfil(invoices, bigint, bigint, text, text);
DROP FUNCTION grant_item_to_user(bigint, text);
DROP FUNCTION paybot_take_invoice(bigint);
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
