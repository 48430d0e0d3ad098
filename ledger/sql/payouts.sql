-- Payouts: money out through the hot wallet, exactly once. An order is written in the same
-- transaction as its debit; the money waits in the `payouts` system account until the hot
-- wallet's own transaction confirms it. Each external message is stored before broadcast;
-- one is in flight at a time; an unconfirmed one is replaced only once it can no longer land.

-- A payout changes only along its life: identity columns never, nothing is deleted.
CREATE OR REPLACE FUNCTION paybot_payout_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.id, NEW.kind, NEW.asset, NEW.amount, NEW.destination, NEW.bounceable,
        NEW.ledger_tx_id, NEW.created_at)
       IS DISTINCT FROM (OLD.id, OLD.kind, OLD.asset, OLD.amount, OLD.destination,
                         OLD.bounceable, OLD.ledger_tx_id, OLD.created_at)
       OR OLD.status IN ('confirmed', 'rejected', 'failed') THEN
        RAISE EXCEPTION 'payout % cannot change that way', OLD.id
            USING ERRCODE = paybot_error_sqlstate('immutable_record');
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END $$;

CREATE TRIGGER payouts_life BEFORE UPDATE ON payouts
    FOR EACH ROW EXECUTE FUNCTION paybot_payout_change();
CREATE TRIGGER payouts_no_delete BEFORE DELETE OR TRUNCATE ON payouts
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
-- A message is kept as signed; only its outcome is filled in, once.
CREATE TRIGGER payout_messages_no_delete BEFORE DELETE OR TRUNCATE ON payout_messages
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();

-- The operator hears of a payout once per (kind, payout): waiting for approval, or for money
-- in the hot wallet.
CREATE OR REPLACE FUNCTION paybot_payout_alert(p payouts, p_kind text, p_detail text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rail_alerts (kind, subject, detail) VALUES (p_kind, 'payout:' || p.id, p_detail)
        ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO outbox (topic, event_type, payload)
    VALUES ('telegram', 'operator.payout',
            jsonb_build_object('kind', p_kind, 'payout_id', p.id, 'asset', p.asset,
                               'amount', p.amount, 'detail', p_detail));
    RETURN true;
END $$;

-- The user hears what became of their withdrawal (sent, or rejected and given back).
CREATE OR REPLACE FUNCTION paybot_payout_notice(p payouts, p_event text) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO outbox (topic, event_type, payload)
    SELECT 'telegram', p_event,
           jsonb_build_object('recipient', p.user_id, 'payout_id', p.id, 'asset', p.asset,
                              'amount', p.amount, 'destination', p.destination_given,
                              'tx_hash', p.tx_hash, 'note', p.note)
     WHERE p.user_id IS NOT NULL
$$;

-- An address paybot itself holds: a followed one (the shop, its jetton wallets), a jetton
-- wallet's owner, a hot wallet. Money withdrawn there would only come back as a transfer.
CREATE OR REPLACE FUNCTION paybot_own_address(p_address text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM ton_cursors WHERE address = p_address)
        OR EXISTS (SELECT 1 FROM jetton_wallets WHERE wallet = p_address OR owner = p_address)
        OR EXISTS (SELECT 1 FROM hot_wallets WHERE address = p_address)
$$;

-- A user's withdrawal: debit and order in one transaction. p_debit is what the balance pays
-- (p_currency minor units; = p_amount when the balance is in the asset itself). Above the
-- day's limit or the balance: refused, nothing written. Above p_approval_above: waits for the
-- operator. The same p_key again returns the first order.
CREATE OR REPLACE FUNCTION paybot_payout_withdraw(
    p_user bigint, p_asset text, p_amount bigint, p_destination text, p_given text,
    p_bounceable boolean, p_currency text, p_debit bigint, p_daily_limit bigint,
    p_approval_above bigint, p_key text)
RETURNS SETOF payouts LANGUAGE plpgsql AS $$
DECLARE p payouts%ROWTYPE; v_tx bigint; v_used bigint;
BEGIN
    IF p_amount <= 0 OR p_debit <= 0 OR (p_currency = p_asset AND p_debit <> p_amount) THEN
        PERFORM paybot_raise('invalid_amount', p_amount::text);
    ELSIF paybot_own_address(p_destination) THEN
        PERFORM paybot_raise('own_address', NULL);
    END IF;
    -- One user's withdrawals one at a time: the day's sum is read and raised together.
    PERFORM pg_advisory_xact_lock(hashtextextended('paybot.payout:' || p_user, 0));
    IF p_key IS NOT NULL THEN
        SELECT * INTO p FROM payouts WHERE request_key = p_key;
        IF p.id IS NOT NULL THEN
            IF (p.user_id, p.asset, p.amount, p.destination)
               IS DISTINCT FROM (p_user, p_asset, p_amount, p_destination) THEN
                PERFORM paybot_raise('idempotency_key_reused', left(p_key, 64));
            END IF;
            RETURN NEXT p;
            RETURN;
        END IF;
    END IF;
    SELECT coalesce(sum(amount), 0) INTO v_used FROM payouts
     WHERE user_id = p_user AND kind = 'withdrawal' AND asset = p_asset
       AND status NOT IN ('rejected', 'failed')
       AND created_at >= date_trunc('day', now(), 'UTC');
    IF v_used + p_amount > p_daily_limit THEN
        PERFORM paybot_raise('withdrawal_limit',
            json_build_object('needed', p_amount, 'available', greatest(p_daily_limit - v_used, 0),
                              'currency', p_asset)::text);
    END IF;
    INSERT INTO ledger_transactions (kind, reason)
    VALUES ('payout', 'withdrawal of ' || p_amount || ' ' || p_asset) RETURNING id INTO v_tx;
    PERFORM paybot_debit_user(v_tx, p_user, p_currency, p_debit);
    IF p_currency = p_asset THEN
        INSERT INTO entries (tx_id, account_id, currency, amount)
        VALUES (v_tx, paybot_system_account('payouts', p_asset), p_asset, p_amount);
    ELSE
        -- The balance's money goes back where it was issued; the asset leaves fx.
        INSERT INTO entries (tx_id, account_id, currency, amount)
        VALUES (v_tx, paybot_system_account('chain_inflow', p_currency), p_currency, p_debit);
        PERFORM paybot_rail_legs(v_tx, 'fx', 'payouts', p_asset, p_amount);
    END IF;
    INSERT INTO payouts (kind, asset, amount, destination, destination_given, bounceable,
                         user_id, debit_currency, debit_amount, request_key, ledger_tx_id,
                         status)
    VALUES ('withdrawal', p_asset, p_amount, p_destination, p_given, p_bounceable, p_user,
            p_currency, p_debit, p_key, v_tx,
            CASE WHEN p_amount > p_approval_above THEN 'pending_approval' ELSE 'queued' END)
    RETURNING * INTO p;
    IF p.status = 'pending_approval' THEN
        PERFORM paybot_payout_alert(p, 'payout_approval', NULL);
    END IF;
    RETURN NEXT p;
END $$;

-- A held transfer sent back to its sender: the holding released as 'refunded' and the order
-- written in one transaction. A holding is released once (a second refund: nothing_held).
CREATE OR REPLACE FUNCTION paybot_payout_refund(p_hash text, p_note text)
RETURNS SETOF payouts LANGUAGE plpgsql AS $$
DECLARE t ton_transfers%ROWTYPE; h ton_holds%ROWTYPE; p payouts%ROWTYPE; v_tx bigint;
BEGIN
    SELECT * INTO t FROM ton_transfers WHERE tx_hash = lower(p_hash);
    IF t.id IS NULL THEN
        PERFORM paybot_raise('transfer_not_found', left(p_hash, 64));
    END IF;
    SELECT * INTO h FROM ton_holds WHERE transfer_id = t.id AND released_at IS NULL FOR UPDATE;
    IF h.id IS NULL THEN
        PERFORM paybot_raise('nothing_held', t.outcome);
    ELSIF t.source IS NULL OR t.source !~ '^-?[0-9]+:[0-9a-f]{64}$' THEN
        PERFORM paybot_raise('no_refund_source', t.tx_hash);
    END IF;
    INSERT INTO ledger_transactions (kind, reason, reference)
    VALUES ('payout', 'refund of ' || t.tx_hash, 'payout-refund:' || h.id) RETURNING id INTO v_tx;
    PERFORM paybot_rail_legs(v_tx, 'suspense', 'payouts', h.asset, h.amount_nano);
    UPDATE ton_holds SET released_at = now(), release = 'refunded',
                         release_note = coalesce(nullif(btrim(p_note), ''), 'refund payout'),
                         release_ledger_tx_id = v_tx
     WHERE id = h.id;
    -- Back to the wallet that sent it, non-bounceable: it exists (it just sent this).
    INSERT INTO payouts (kind, asset, amount, destination, destination_given, bounceable,
                         transfer_id, hold_id, ledger_tx_id, status, note)
    VALUES ('refund', h.asset, h.amount_nano, t.source, t.source, false, t.id, h.id, v_tx,
            'queued', nullif(btrim(p_note), ''))
    RETURNING * INTO p;
    RETURN NEXT p;
END $$;

-- The money of a withdrawal that will not be sent goes back to the user's balance.
CREATE OR REPLACE FUNCTION paybot_payout_return(p payouts, p_reason text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE v_tx bigint;
BEGIN
    INSERT INTO ledger_transactions (kind, reason, reference)
    VALUES ('payout_return', p_reason, 'payout-return:' || p.id) RETURNING id INTO v_tx;
    IF p.debit_currency = p.asset THEN
        INSERT INTO entries (tx_id, account_id, currency, amount)
        VALUES (v_tx, paybot_system_account('payouts', p.asset), p.asset, -p.amount);
    ELSE
        PERFORM paybot_rail_legs(v_tx, 'payouts', 'fx', p.asset, p.amount);
        INSERT INTO entries (tx_id, account_id, currency, amount)
        VALUES (v_tx, paybot_system_account('chain_inflow', p.debit_currency),
                p.debit_currency, -p.debit_amount);
    END IF;
    PERFORM paybot_credit_user(v_tx, p.user_id, p.debit_currency, p.debit_amount);
    RETURN v_tx;
END $$;

-- A queued withdrawal the sender must not send (its destination turned out to be one of ours):
-- failed, the money back on the user's balance, the user told.
CREATE OR REPLACE FUNCTION paybot_payout_fail(p_id bigint, p_reason text)
RETURNS SETOF payouts LANGUAGE plpgsql AS $$
DECLARE p payouts%ROWTYPE;
BEGIN
    SELECT * INTO p FROM payouts WHERE id = p_id FOR UPDATE;
    IF p.id IS NULL OR p.status <> 'queued' OR p.kind <> 'withdrawal' THEN
        PERFORM paybot_raise('payout_state_changed', p_id::text);
    END IF;
    PERFORM paybot_payout_return(p, 'payout ' || p.id || ' failed');
    UPDATE payouts SET status = 'failed', note = left(p_reason, 500)
     WHERE id = p.id RETURNING * INTO p;
    PERFORM paybot_payout_notice(p, 'payout.failed');
    RETURN NEXT p;
END $$;

-- The operator approves (queued for sending) or rejects (money given back) a payout that
-- waits for approval; anything else is payout_not_pending.
CREATE OR REPLACE FUNCTION paybot_payout_decide(p_id bigint, p_approve boolean, p_note text)
RETURNS SETOF payouts LANGUAGE plpgsql AS $$
DECLARE p payouts%ROWTYPE;
BEGIN
    SELECT * INTO p FROM payouts WHERE id = p_id FOR UPDATE;
    IF p.id IS NULL THEN
        PERFORM paybot_raise('payout_not_found', p_id::text);
    ELSIF p.status <> 'pending_approval' THEN
        PERFORM paybot_raise('payout_not_pending', p.status);
    END IF;
    IF p_approve THEN
        UPDATE payouts SET status = 'queued', decided_at = now(), note = coalesce(p_note, note)
         WHERE id = p.id RETURNING * INTO p;
    ELSE
        PERFORM paybot_payout_return(p, 'payout ' || p.id || ' rejected');
        UPDATE payouts SET status = 'rejected', decided_at = now(),
                           note = coalesce(nullif(btrim(p_note), ''), 'rejected')
         WHERE id = p.id RETURNING * INTO p;
        PERFORM paybot_payout_notice(p, 'payout.rejected');
    END IF;
    RETURN NEXT p;
END $$;

-- The message for a queued payout is signed: stored (hash and BOC) BEFORE it is broadcast.
-- One in flight at a time (payouts_one_in_flight); a payout that moved on meanwhile:
-- payout_state_changed.
CREATE OR REPLACE FUNCTION paybot_payout_signed(p_id bigint, p_seqno bigint, p_valid_until bigint,
                                                p_hash text, p_boc bytea)
RETURNS SETOF payouts LANGUAGE plpgsql AS $$
DECLARE p payouts%ROWTYPE;
BEGIN
    BEGIN
        UPDATE payouts SET status = 'signed', seqno = p_seqno, valid_until = p_valid_until,
                           ext_msg_hash = p_hash, attempts = attempts + 1
         WHERE id = p_id AND status = 'queued' RETURNING * INTO p;
    EXCEPTION WHEN unique_violation THEN
        PERFORM paybot_raise('payout_state_changed', 'another payout is in flight');
    END;
    IF p.id IS NULL THEN
        PERFORM paybot_raise('payout_state_changed', p_id::text);
    END IF;
    INSERT INTO payout_messages (payout_id, seqno, valid_until, ext_msg_hash, boc)
    VALUES (p.id, p_seqno, p_valid_until, p_hash, p_boc);
    RETURN NEXT p;
END $$;

-- The stored message was handed to the network (again: a re-broadcast is the same message).
CREATE OR REPLACE FUNCTION paybot_payout_sent(p_id bigint, p_hash text)
RETURNS SETOF payouts LANGUAGE plpgsql AS $$
DECLARE p payouts%ROWTYPE;
BEGIN
    UPDATE payouts SET status = 'sent', sent_at = coalesce(sent_at, now())
     WHERE id = p_id AND ext_msg_hash = p_hash AND status IN ('signed', 'sent')
    RETURNING * INTO p;
    IF p.id IS NULL THEN
        PERFORM paybot_raise('payout_state_changed', p_id::text);
    END IF;
    RETURN NEXT p;
END $$;

-- The hot wallet's transaction carrying one of our messages. p_sent: it sent the payout's
-- message (the action phase succeeded). Sent -> confirmed, the money leaves through the chain.
-- Accepted but nothing sent (e.g. the wallet lacked the money at that moment) -> queued again:
-- that seqno is used, nothing left. Idempotent; a message that is not ours returns nothing.
CREATE OR REPLACE FUNCTION paybot_payout_landed(p_hash text, p_tx_hash text, p_sent boolean,
                                                p_detail text)
RETURNS SETOF payouts LANGUAGE plpgsql AS $$
DECLARE m payout_messages%ROWTYPE; p payouts%ROWTYPE; v_tx bigint;
BEGIN
    SELECT * INTO m FROM payout_messages WHERE ext_msg_hash = lower(p_hash);
    IF m.id IS NULL THEN
        RETURN;
    END IF;
    SELECT * INTO p FROM payouts WHERE id = m.payout_id FOR UPDATE;
    SELECT * INTO m FROM payout_messages WHERE id = m.id FOR UPDATE;
    IF m.outcome = 'landed' THEN
        RETURN NEXT p;  -- seen before
        RETURN;
    ELSIF m.outcome = 'expired' OR p.ext_msg_hash IS DISTINCT FROM m.ext_msg_hash
          OR p.status NOT IN ('signed', 'sent') THEN
        -- A message given up for one that replaced it landed after all: never by the rules
        -- (it was past valid_until with the seqno unmoved); stop and tell, do not guess.
        RAISE EXCEPTION 'payout %: message % landed in % but was replaced', p.id, m.ext_msg_hash,
            p_tx_hash;
    END IF;
    UPDATE payout_messages SET outcome = 'landed', tx_hash = lower(p_tx_hash), ended_at = now()
     WHERE id = m.id;
    IF p_sent THEN
        INSERT INTO ledger_transactions (kind, reason, reference)
        VALUES ('payout_sent', 'payout ' || p.id || ' in ' || lower(p_tx_hash),
                'payout-sent:' || p.id)
        RETURNING id INTO v_tx;
        PERFORM paybot_rail_legs(v_tx, 'payouts', 'chain_inflow', p.asset, p.amount);
        UPDATE payouts SET status = 'confirmed', tx_hash = lower(p_tx_hash), confirmed_at = now()
         WHERE id = p.id RETURNING * INTO p;
        PERFORM paybot_payout_notice(p, 'payout.confirmed');
    ELSE
        UPDATE payouts SET status = 'queued', seqno = NULL, valid_until = NULL,
                           ext_msg_hash = NULL, note = left(p_detail, 500)
         WHERE id = p.id RETURNING * INTO p;
        PERFORM paybot_payout_alert(p, 'payout_not_sent:' || m.id, p_detail);
    END IF;
    RETURN NEXT p;
END $$;

-- The message in flight can no longer land: the chain's time is past its valid_until and the
-- wallet's seqno is still the message's (nothing with that seqno was accepted). Only then is
-- the same order queued again, to be signed anew. Otherwise payout_state_changed.
CREATE OR REPLACE FUNCTION paybot_payout_expire(p_id bigint, p_hash text, p_wallet_seqno bigint,
                                                p_chain_now bigint)
RETURNS SETOF payouts LANGUAGE plpgsql AS $$
DECLARE p payouts%ROWTYPE;
BEGIN
    SELECT * INTO p FROM payouts WHERE id = p_id FOR UPDATE;
    IF p.id IS NULL OR p.status NOT IN ('signed', 'sent') OR p.ext_msg_hash <> lower(p_hash)
       OR p_chain_now <= p.valid_until OR p_wallet_seqno <> p.seqno THEN
        PERFORM paybot_raise('payout_state_changed',
            format('payout %s: seqno %s/%s, chain time %s, valid until %s', p_id,
                   p_wallet_seqno, p.seqno, p_chain_now, p.valid_until));
    END IF;
    UPDATE payout_messages SET outcome = 'expired', ended_at = now()
     WHERE ext_msg_hash = p.ext_msg_hash AND outcome IS NULL;
    UPDATE payouts SET status = 'queued', seqno = NULL, valid_until = NULL, ext_msg_hash = NULL
     WHERE id = p.id RETURNING * INTO p;
    RETURN NEXT p;
END $$;

-- The seller's "refund the difference": every overpayment of their invoice still held (excess
-- holdings, in their asset) sent back to the wallets that sent it, in one transaction.
-- Another seller's invoice looks like none; nothing held: nothing_held.
CREATE OR REPLACE FUNCTION paybot_payout_refund_excess(p_invoice text, p_seller bigint,
                                                       p_note text)
RETURNS SETOF payouts LANGUAGE plpgsql AS $$
DECLARE v invoices%ROWTYPE; h record; n int := 0;
BEGIN
    SELECT * INTO v FROM invoices WHERE public_id = upper(p_invoice);
    IF v.id IS NULL OR v.seller_id <> p_seller THEN
        PERFORM paybot_raise('invoice_not_found', left(p_invoice, 40));
    END IF;
    FOR h IN SELECT t.tx_hash FROM ton_holds x JOIN ton_transfers t ON t.id = x.transfer_id
              WHERE x.invoice_id = v.id AND x.reason = 'excess' AND x.released_at IS NULL
              ORDER BY x.id LOOP
        RETURN QUERY SELECT * FROM paybot_payout_refund(h.tx_hash, p_note);
        n := n + 1;
    END LOOP;
    IF n = 0 THEN
        PERFORM paybot_raise('nothing_held', v.public_id);
    END IF;
END $$;
