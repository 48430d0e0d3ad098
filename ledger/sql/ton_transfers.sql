-- TON transfers: where a chain transaction is matched and settled, exactly once
-- (paybot_ton_receive), and the cursor that follows the recorded transactions.

-- Nanotons -> minor units of a currency at `p_rate` units per TON, rounded down.
CREATE OR REPLACE FUNCTION paybot_ton_to(p_nano bigint, p_currency text, p_rate numeric) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_currency = 'TON' THEN p_nano
                ELSE floor(p_nano::numeric * p_rate
                           * power(10::numeric, c.decimals - 9))::bigint END
      FROM currencies c WHERE c.code = p_currency
$$;

-- Minor units of a currency for an amount of a chain asset, rounded down: TON at p_rate; USDT,
-- a dollar, pays Liquid $ (and itself) 1:1 and converts to nothing else (0: held instead).
CREATE OR REPLACE FUNCTION paybot_asset_to(p_amount bigint, p_asset text, p_currency text,
                                           p_rate numeric) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_asset = 'TON' THEN paybot_ton_to(p_amount, p_currency, p_rate)
                WHEN p_asset = p_currency THEN p_amount
                WHEN p_asset = 'USDT' AND p_currency = 'LIQ'
                    THEN floor(p_amount::numeric / 10000)::bigint
                ELSE 0 END
$$;

-- What an invoice still asks in a chain asset: its locked TON quote (paybot_ton_due); in USDT
-- the amount due 1:1 for an invoice in Liquid $ (a dollar for a dollar); NULL: not payable in it.
CREATE OR REPLACE FUNCTION paybot_asset_due(p_inv invoices, p_asset text) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_asset = 'TON' THEN paybot_ton_due(p_inv)
                WHEN p_asset = 'USDT' AND p_inv.currency = 'LIQ'
                    THEN (CASE WHEN p_inv.kind = 'one_time' THEN p_inv.amount - p_inv.amount_paid
                               ELSE p_inv.amount END) * 10000
                WHEN p_asset = p_inv.currency
                    THEN CASE WHEN p_inv.kind = 'one_time' THEN p_inv.amount - p_inv.amount_paid
                              ELSE p_inv.amount END
           END
$$;

-- The payer of an invoice, when exactly one logged-in buyer (not the seller) said they pay it.
CREATE OR REPLACE FUNCTION paybot_invoice_payer(p_inv invoices) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN count(DISTINCT user_id) = 1 THEN min(user_id) END
      FROM invoice_contacts
     WHERE invoice_id = p_inv.id AND user_id IS NOT NULL AND user_id <> p_inv.seller_id
$$;

-- Writes the chain side (TON, or the jetton p_asset) of one receipt or release as one balanced
-- ledger transaction.
-- Zero legs are left out; nothing at all is written when every leg is zero.
CREATE OR REPLACE FUNCTION paybot_ton_legs(p_kind text, p_reason text, p_reference text,
                                p_chain bigint, p_suspense bigint, p_fx bigint,
                                p_asset text DEFAULT 'TON')
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE v_tx bigint;
BEGIN
    IF p_chain + p_suspense + p_fx <> 0 THEN
        RAISE EXCEPTION 'unbalanced TON legs % % %', p_chain, p_suspense, p_fx;
    END IF;
    IF p_chain = 0 AND p_suspense = 0 AND p_fx = 0 THEN
        RETURN NULL;
    END IF;
    INSERT INTO ledger_transactions (kind, reason, reference) VALUES (p_kind, p_reason, p_reference)
        RETURNING id INTO v_tx;
    INSERT INTO entries (tx_id, account_id, currency, amount)
    SELECT v_tx, paybot_system_account(l.name, p_asset), p_asset, l.amount
      FROM (VALUES ('chain_inflow', p_chain), ('suspense', p_suspense), ('fx', p_fx))
           AS l (name, amount)
     WHERE l.amount <> 0;
    RETURN v_tx;
END $$;

-- Credits a user's internal balance from chain money (deposit, excess, operator credit) and
-- queues a notification. Returns the TON-side split: (ton taken by the ledger, ton converted).
CREATE OR REPLACE FUNCTION paybot_ton_credit_user(p_kind text, p_user bigint, p_nano bigint, p_currency text,
                                       p_rate numeric, p_reason text, p_reference text,
                                       p_tx_hash text,
                                       OUT o_credited bigint, OUT o_ton_debit bigint,
                                       OUT o_converted bigint, p_asset text DEFAULT 'TON')
LANGUAGE plpgsql AS $$
BEGIN
    o_credited := paybot_asset_to(p_nano, p_asset, p_currency, p_rate);
    o_ton_debit := 0;
    o_converted := 0;
    IF o_credited <= 0 THEN
        o_credited := 0;
        RETURN;
    END IF;
    PERFORM paybot_move(p_kind, p_user, 'chain_inflow', p_currency, o_credited, p_reason, p_reference);
    IF p_currency = p_asset THEN
        o_ton_debit := p_nano;
    ELSE
        o_converted := p_nano;
    END IF;
    INSERT INTO outbox (topic, event_type, payload)
    VALUES ('telegram', 'balance.credited',
            jsonb_build_object('recipient', p_user, 'kind', p_kind, 'amount', o_credited,
                               'currency', p_currency, 'ton_nano', p_nano, 'tx_hash', p_tx_hash,
                               'asset', p_asset));
END $$;

-- Puts p_amount nanotons, plus the invoice's open partial holdings, toward a payable invoice
-- (locked by the caller). Enough -> settled through settle_external_payment, the excess
-- credited to the payer or held; not enough -> 'partial'. The payer is the caller's: the user
-- the transfer's tag is bound to, else nobody (the grant waits under a claim).
CREATE OR REPLACE FUNCTION paybot_ton_pay_invoice(
    p_inv invoices, p_amount bigint, p_exclude_hold bigint, p_reference text, p_claim text,
    p_currency text, p_rate numeric, p_tx_hash text, p_sent_at timestamptz DEFAULT NULL,
    p_payer bigint DEFAULT NULL, p_asset text DEFAULT 'TON',
    OUT o_outcome text, OUT o_payer bigint, OUT o_payment bigint, OUT o_claim text,
    OUT o_status text, OUT o_partials bigint, OUT o_excess bigint, OUT o_excess_held bigint,
    OUT o_credited bigint, OUT o_ton_debit bigint, OUT o_converted bigint)
LANGUAGE plpgsql AS $$
DECLARE v_quote bigint := paybot_asset_due(p_inv, p_asset); c record; v_rate numeric;
BEGIN
    SELECT coalesce(sum(amount_nano), 0) INTO o_partials FROM ton_holds
     WHERE invoice_id = p_inv.id AND reason = 'partial' AND released_at IS NULL
       AND asset = p_asset AND id IS DISTINCT FROM p_exclude_hold;
    o_excess := 0; o_excess_held := 0; o_credited := NULL; o_ton_debit := 0; o_converted := 0;
    IF p_asset = 'TON' THEN
        UPDATE invoices SET ton_received = ton_received + p_amount WHERE id = p_inv.id;
    END IF;
    IF p_amount + o_partials < v_quote THEN
        o_outcome := 'partial';  -- the open partials stay open
        o_status := p_inv.status;
        RETURN;
    END IF;
    o_payer := p_payer;
    SELECT s.payment_id, s.claim_token, s.invoice_status INTO o_payment, o_claim, o_status
      FROM settle_external_payment(p_inv.public_id, lower(p_asset), p_reference, o_payer, p_claim,
                                   p_sent_at) s;
    IF p_inv.currency = p_asset THEN
        o_ton_debit := v_quote;
    ELSE
        o_converted := v_quote;
    END IF;
    o_excess := p_amount + o_partials - v_quote;
    o_outcome := CASE WHEN o_excess > 0 THEN 'excess' ELSE 'paid' END;
    IF o_excess > 0 AND o_payer IS NOT NULL THEN
        -- The invoice's own locked rate when it is priced in the balance currency.
        v_rate := CASE WHEN p_inv.currency = p_currency AND p_inv.ton_rate IS NOT NULL
                       THEN p_inv.ton_rate ELSE p_rate END;
        c := paybot_ton_credit_user('excess', o_payer, o_excess, p_currency, v_rate,
                                    'ton excess of ' || p_inv.public_id, 'ton-excess:' || p_reference,
                                    p_tx_hash, p_asset);
        o_credited := c.o_credited;
        o_ton_debit := o_ton_debit + c.o_ton_debit;
        o_converted := o_converted + c.o_converted;
    END IF;
    IF o_excess > 0 AND coalesce(o_credited, 0) = 0 THEN
        o_excess_held := o_excess;
        o_credited := NULL;
    END IF;
END $$;

-- The live cursor of an address: its base followed along the recorded transfers, each the
-- successor of the last. With p_compact the base row moves up to it (keeps the walk short).
CREATE OR REPLACE FUNCTION paybot_ton_cursor(p_address text, p_compact boolean)
RETURNS TABLE (cursor_lt bigint, cursor_hash text)
LANGUAGE plpgsql AS $$
DECLARE v_lt bigint; v_hash text;
BEGIN
    WITH RECURSIVE chain (c_lt, c_hash) AS (
        SELECT k.lt, k.hash FROM ton_cursors k WHERE k.address = p_address
        UNION ALL
        SELECT t.lt, t.tx_hash FROM chain c JOIN ton_transfers t
            ON t.address = p_address AND t.prev_lt = c.c_lt AND t.prev_hash = c.c_hash
    )
    SELECT c.c_lt, c.c_hash INTO v_lt, v_hash FROM chain c ORDER BY c.c_lt DESC LIMIT 1;
    IF v_lt IS NULL THEN
        RETURN;  -- not started on this address
    END IF;
    IF p_compact THEN
        UPDATE ton_cursors k SET lt = v_lt, hash = v_hash, updated_at = now()
         WHERE k.address = p_address AND k.lt < v_lt;
    END IF;
    RETURN QUERY SELECT v_lt, v_hash;
END $$;

-- One chain transaction of the followed account, settled exactly once in this one database
-- transaction, which also records it as the successor of its predecessor: the cursor advance.
-- p_tag: the payer tag of `INV-<invoice>-<tag>` (canonical), or NULL for a bare reference.
CREATE OR REPLACE FUNCTION paybot_ton_receive(
    p_address text, p_hash text, p_lt bigint, p_utime bigint, p_prev_lt bigint, p_prev_hash text,
    p_incoming boolean, p_source text, p_value bigint, p_body_kind text, p_comment text,
    p_ignore text, p_invoice text, p_deposit text, p_currency text, p_rate numeric, p_claim text,
    p_tag text DEFAULT NULL, p_asset text DEFAULT 'TON', p_asset_amount bigint DEFAULT NULL,
    p_no_notification boolean DEFAULT false)
RETURNS TABLE (transfer_id bigint, outcome text, replayed boolean, invoice_status text,
               payment_id bigint, claim_token text, held_nano bigint, credited bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v invoices%ROWTYPE; r record; c record; pt payer_tags%ROWTYPE;
    v_outcome text; v_note text; v_invoice bigint; v_user bigint; v_payment bigint;
    v_claim text; v_status text; v_excess bigint := 0; v_held bigint := 0; v_hold_reason text;
    v_credited bigint; v_ccy text; v_partials bigint := 0; v_ton_debit bigint := 0;
    v_converted bigint := 0; v_counted bigint := 0; v_tx bigint; v_id bigint; v_base bigint;
    v_tag_note text;
    -- What counts: the TON value, or for a jetton the jetton amount (the TON its notification
    -- carried pays the network, like an ignored transfer's: not booked).
    v_amt bigint := CASE WHEN p_asset = 'TON' THEN p_value ELSE coalesce(p_asset_amount, 0) END;
BEGIN
    -- The watcher settles several transfers at once and wakes its own process's delivery
    -- after each commit: no NOTIFY, whose lock would serialize these commits (outbox.sql).
    PERFORM set_config('paybot.quiet_outbox', 'on', true);
    -- Two settlements of one transaction (a second watcher, a retry) queue here; the later
    -- one finds the first one's record and returns it.
    PERFORM pg_advisory_xact_lock(hashtextextended('paybot.ton:' || p_hash, 0));
    IF EXISTS (SELECT 1 FROM ton_transfers t WHERE t.tx_hash = p_hash) THEN
        RETURN QUERY SELECT t.id, t.outcome, true, i.status, t.payment_id, t.claim_token,
                            t.held_nano, t.credited
            FROM ton_transfers t LEFT JOIN invoices i ON i.id = t.invoice_id
           WHERE t.tx_hash = p_hash;
        RETURN;
    END IF;
    SELECT k.lt INTO v_base FROM ton_cursors k WHERE k.address = p_address;
    IF v_base IS NULL OR p_lt <= v_base THEN
        -- At or before the base, and not recorded: before the start, or a broken history.
        PERFORM paybot_raise('below_cursor',
                             p_lt || ' <= ' || coalesce(v_base::text, 'no cursor'));
    END IF;

    IF p_ignore IS NOT NULL THEN
        v_outcome := 'ignored';
        v_note := p_ignore;
    ELSIF p_no_notification THEN
        -- A jetton transfer sent without a forward amount: no notification came, so nobody
        -- said what it pays. Recorded from our jetton wallet's own transaction and held.
        v_counted := v_amt;
        v_outcome := 'unmatched';
        v_note := 'jetton transfer without a forward amount: no notification';
        v_held := v_amt; v_hold_reason := 'unmatched';
    ELSE
        v_counted := v_amt;
        IF p_invoice IS NOT NULL THEN
            SELECT * INTO v FROM invoices WHERE public_id = p_invoice FOR UPDATE;
            v_invoice := v.id;
            IF v.id IS NOT NULL AND p_tag IS NOT NULL THEN
                -- The tag decides the payer, for its own invoice only (unique index lookup).
                -- Unknown, or another invoice's: paid like a bare reference (money is never
                -- refused), and noted.
                SELECT * INTO pt FROM payer_tags x WHERE x.invoice_id = v.id AND x.tag = p_tag;
                IF pt.id IS NULL THEN
                    v_tag_note := 'unknown payer tag ' || left(p_tag, 16);
                ELSIF pt.user_id = v.seller_id THEN
                    pt := NULL;
                    v_tag_note := 'payer tag of the seller';
                END IF;
            END IF;
            IF v.id IS NULL THEN
                v_outcome := 'unmatched'; v_note := 'unknown invoice';
            ELSIF paybot_asset_due(v, p_asset) IS NULL THEN
                v_outcome := 'unmatched';
                v_note := 'invoice has no ' || p_asset || ' price';
            -- Late is judged by when the transfer was made (its block time), not when the
            -- watcher saw it: a buyer who paid on time is not penalised for our delay. Sent
            -- before the expiry and seen after, it is "paid late" (the invoice stays closed).
            ELSIF v.status NOT IN ('pending', 'expired')
                  OR v.expires_at <= least(to_timestamp(p_utime), now())
                  OR (v.max_uses IS NOT NULL AND v.uses >= v.max_uses) THEN
                v_outcome := 'late_or_duplicate';
                v_note := CASE WHEN v.status = 'cancelled' THEN 'invoice cancelled'
                               WHEN v.status = 'void' THEN 'invoice void'
                               WHEN v.status = 'uncollectible' THEN 'invoice written off'
                               WHEN v.status = 'draft' THEN 'invoice not issued yet'
                               WHEN v.status = 'paid' OR v.uses >= v.max_uses
                                    THEN 'invoice already paid'
                               ELSE 'invoice expired' END;
            ELSE
                r := paybot_ton_pay_invoice(v, v_amt, NULL, 'ton:' || p_hash, p_claim,
                                            p_currency, p_rate, p_hash, to_timestamp(p_utime),
                                            pt.user_id, p_asset);
                v_outcome := r.o_outcome; v_payment := r.o_payment; v_claim := r.o_claim;
                v_status := r.o_status; v_excess := r.o_excess;
                v_partials := CASE WHEN r.o_outcome = 'partial' THEN 0 ELSE r.o_partials END;
                v_ton_debit := r.o_ton_debit; v_converted := r.o_converted;
                IF r.o_credited IS NOT NULL THEN
                    v_user := r.o_payer; v_credited := r.o_credited; v_ccy := p_currency;
                END IF;
                IF v_outcome = 'partial' THEN
                    v_held := v_amt; v_hold_reason := 'partial';
                ELSIF r.o_excess_held > 0 THEN
                    v_held := r.o_excess_held; v_hold_reason := 'excess';
                END IF;
                IF v_outcome <> 'partial' AND v.expires_at <= now() THEN
                    -- settle_external_payment expired it first; it stays closed (see above)
                    v_note := 'paid late: sent before the expiry, seen after';
                END IF;
            END IF;
            IF v_outcome IN ('unmatched', 'late_or_duplicate') THEN
                v_held := v_amt; v_hold_reason := v_outcome; v_status := v.status;
            END IF;
            IF v_tag_note IS NOT NULL THEN
                v_note := coalesce(v_note || '; ', '') || v_tag_note;
            END IF;
        ELSIF p_deposit IS NOT NULL THEN
            SELECT u.id INTO v_user FROM users u WHERE u.deposit_code = p_deposit;
            IF v_user IS NULL THEN
                v_outcome := 'unmatched'; v_note := 'unknown deposit code';
            ELSE
                c := paybot_ton_credit_user('deposit', v_user, v_amt, p_currency, p_rate,
                                            'deposit', 'ton:' || p_hash, p_hash, p_asset);
                IF c.o_credited > 0 THEN
                    v_outcome := 'deposit'; v_credited := c.o_credited; v_ccy := p_currency;
                    v_ton_debit := c.o_ton_debit; v_converted := c.o_converted;
                ELSE
                    v_outcome := 'unmatched'; v_note := 'deposit too small to credit';
                END IF;
            END IF;
            IF v_outcome = 'unmatched' THEN
                v_held := v_amt; v_hold_reason := 'unmatched';
            END IF;
        ELSE
            v_outcome := 'unmatched';
            v_note := CASE p_body_kind WHEN 'empty' THEN 'no comment'
                                       WHEN 'binary' THEN 'binary body'
                                       WHEN 'invalid_utf8' THEN 'comment is not valid UTF-8'
                                       ELSE 'no invoice or deposit reference' END;
            v_held := v_amt; v_hold_reason := 'unmatched';
        END IF;
    END IF;

    v_tx := paybot_ton_legs(
        CASE v_outcome WHEN 'paid' THEN 'external_payment' WHEN 'excess' THEN 'excess'
                       WHEN 'deposit' THEN 'deposit' ELSE 'suspense' END,
        'ton ' || v_outcome, 'ton-receipt:' || p_hash,
        v_ton_debit - v_counted, v_held - v_partials, v_converted, p_asset);

    INSERT INTO ton_transfers (address, tx_hash, lt, prev_lt, prev_hash, utime, incoming, source,
                               value_nano, body_kind, comment, outcome, note, invoice_id, user_id,
                               payment_id, claim_token, excess_nano, held_nano, credited,
                               credited_currency, ledger_tx_id, payer_tag_id, asset, asset_amount)
    VALUES (p_address, p_hash, p_lt, p_prev_lt, p_prev_hash, to_timestamp(p_utime), p_incoming,
            p_source, p_value,
            p_body_kind, p_comment, v_outcome, v_note, v_invoice, v_user, v_payment, v_claim,
            v_excess, v_held, v_credited, v_ccy, v_tx, pt.id, p_asset,
            CASE WHEN p_asset <> 'TON' THEN coalesce(p_asset_amount, 0) END)
    RETURNING id INTO v_id;

    IF v_partials > 0 THEN
        UPDATE ton_holds h SET released_at = now(), release = 'completed', completed_by = v_id,
                               release_invoice_id = v_invoice, release_payment_id = v_payment,
                               release_ledger_tx_id = v_tx
         WHERE h.invoice_id = v_invoice AND h.reason = 'partial' AND h.released_at IS NULL
           AND h.asset = p_asset;
    END IF;
    IF v_held > 0 THEN
        INSERT INTO ton_holds (transfer_id, reason, amount_nano, invoice_id, claim_token, asset)
        VALUES (v_id, v_hold_reason, v_held, v_invoice, v_claim, p_asset);
    END IF;
    RETURN QUERY SELECT v_id, v_outcome, false, v_status, v_payment, v_claim, v_held, v_credited;
END $$;
