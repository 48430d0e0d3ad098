-- TON held in suspense: released once, resolved by the operator (apply to an invoice,
-- credit a user, record a refund) or claimed by a guest.

-- A holding changes once: from open to released, nothing else.
CREATE OR REPLACE FUNCTION paybot_hold_release_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.released_at IS NULL AND NEW.released_at IS NOT NULL
       AND (NEW.id, NEW.transfer_id, NEW.reason, NEW.amount_nano, NEW.created_at)
           = (OLD.id, OLD.transfer_id, OLD.reason, OLD.amount_nano, OLD.created_at)
       AND NEW.invoice_id IS NOT DISTINCT FROM OLD.invoice_id
       AND NEW.claim_token IS NOT DISTINCT FROM OLD.claim_token THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'holds are released once and never changed (hold %)', OLD.id
        USING ERRCODE = paybot_error_sqlstate('immutable_record');
END $$;

CREATE TRIGGER ton_holds_release_once BEFORE UPDATE ON ton_holds
    FOR EACH ROW EXECUTE FUNCTION paybot_hold_release_once();

-- Releases an open holding by hand (operator) or by a guest's claim: 'apply' it to an
-- invoice, 'credit' it to a user's balance, or record that it was 'refund'ed on chain.
CREATE OR REPLACE FUNCTION paybot_ton_release(
    p_hold bigint, p_action text, p_invoice text, p_user bigint, p_note text,
    p_currency text, p_rate numeric, p_claim text)
RETURNS TABLE (hold_id bigint, release text, amount_nano bigint, outcome text,
               invoice_status text, payment_id bigint, claim_token text, credited bigint,
               held_nano bigint)
LANGUAGE plpgsql AS $$
DECLARE
    h ton_holds%ROWTYPE; t ton_transfers%ROWTYPE; v invoices%ROWTYPE; r record; c record;
    v_tx bigint; v_ref text; v_chain bigint := 0; v_susp bigint; v_fx bigint := 0;
    v_outcome text; v_status text; v_payment bigint; v_claim text; v_credited bigint;
    v_held bigint := 0; v_partials bigint := 0; v_user bigint;
BEGIN
    SELECT * INTO h FROM ton_holds WHERE id = p_hold AND released_at IS NULL FOR UPDATE;
    IF h.id IS NULL THEN
        PERFORM paybot_raise('nothing_held', p_hold::text);
    END IF;
    SELECT * INTO t FROM ton_transfers WHERE id = h.transfer_id;
    v_susp := -h.amount_nano;
    v_ref := 'ton-release:' || h.id;
    IF p_action = 'apply' THEN
        SELECT * INTO v FROM invoices WHERE public_id = upper(p_invoice);
        IF v.id IS NULL THEN
            PERFORM paybot_raise('invoice_not_found', p_invoice);
        ELSIF h.reason = 'partial' AND h.invoice_id = v.id THEN
            -- already counts toward that invoice; checked before locking it (lock order)
            PERFORM paybot_raise('hold_of_invoice', v.public_id);
        END IF;
        SELECT * INTO v FROM invoices WHERE id = v.id FOR UPDATE;
        IF paybot_asset_due(v, h.asset) IS NULL THEN  -- not payable in the holding's asset
            PERFORM paybot_raise('invoice_not_ton', v.public_id);
        ELSIF v.status <> 'pending' OR v.expires_at <= now()
              OR (v.max_uses IS NOT NULL AND v.uses >= v.max_uses) THEN
            PERFORM paybot_raise_not_payable(v.id);
        END IF;
        r := paybot_ton_pay_invoice(v, h.amount_nano, h.id, 'ton:' || t.tx_hash || ':' || h.id,
                                    p_claim, p_currency, p_rate, t.tx_hash, p_asset => h.asset);
        IF r.o_outcome = 'partial' THEN
            PERFORM paybot_raise('not_enough_for_invoice',
                json_build_object('needed', paybot_asset_due(v, h.asset),
                                  'available', h.amount_nano + r.o_partials,
                                  'currency', h.asset)::text);
        END IF;
        v_outcome := r.o_outcome; v_status := r.o_status; v_payment := r.o_payment;
        v_claim := r.o_claim; v_partials := r.o_partials; v_held := r.o_excess_held;
        v_chain := r.o_ton_debit; v_fx := r.o_converted;
        IF r.o_credited IS NOT NULL THEN v_credited := r.o_credited; v_user := r.o_payer; END IF;
        v_susp := v_susp - v_partials + v_held;
    ELSIF p_action = 'credit' THEN
        c := paybot_ton_credit_user('adjustment', p_user, h.amount_nano, p_currency, p_rate,
                                    coalesce(p_note, 'ton transfer credited'),
                                    'ton-credit:' || h.id, t.tx_hash, h.asset);
        IF c.o_credited <= 0 THEN
            PERFORM paybot_raise('invalid_amount',
                                 'too small to credit: ' || h.amount_nano || ' nanoton');
        END IF;
        v_credited := c.o_credited; v_user := p_user;
        v_chain := c.o_ton_debit; v_fx := c.o_converted;
    ELSIF p_action = 'refund' THEN
        IF p_note IS NULL OR btrim(p_note) = '' THEN
            PERFORM paybot_raise('invalid_amount', 'a refund needs a note');
        END IF;
        v_chain := h.amount_nano;  -- the TON leaves through the chain again
    ELSE
        RAISE EXCEPTION 'unknown release action %', p_action;
    END IF;

    v_tx := paybot_ton_legs('release', 'ton ' || p_action, v_ref, v_chain, v_susp, v_fx,
                            h.asset);
    UPDATE ton_holds SET released_at = now(),
                         release = CASE p_action WHEN 'apply' THEN 'applied'
                                                 WHEN 'credit' THEN 'credited'
                                                 ELSE 'refunded' END,
                         release_note = p_note, release_invoice_id = v.id,
                         release_user_id = v_user, release_payment_id = v_payment,
                         release_ledger_tx_id = v_tx
     WHERE id = h.id;
    IF v_partials > 0 THEN
        UPDATE ton_holds x SET released_at = now(), release = 'completed', completed_by_hold = h.id,
                               release_invoice_id = v.id, release_payment_id = v_payment,
                               release_ledger_tx_id = v_tx
         WHERE x.invoice_id = v.id AND x.reason = 'partial' AND x.released_at IS NULL
           AND x.asset = h.asset;
    END IF;
    IF v_held > 0 THEN
        INSERT INTO ton_holds (transfer_id, reason, amount_nano, invoice_id, claim_token, asset)
        VALUES (t.id, 'excess', v_held, v.id, v_claim, h.asset);
    END IF;
    RETURN QUERY SELECT h.id, p_action, h.amount_nano, v_outcome, v_status, v_payment, v_claim,
                        v_credited, v_held;
END $$;

-- The operator's "resolve <tx-hash>": the transfer's open holding, released once.
CREATE OR REPLACE FUNCTION paybot_ton_resolve(p_hash text, p_action text, p_invoice text, p_user bigint,
                                   p_note text, p_currency text, p_rate numeric, p_claim text)
RETURNS TABLE (hold_id bigint, release text, amount_nano bigint, outcome text,
               invoice_status text, payment_id bigint, claim_token text, credited bigint,
               held_nano bigint)
LANGUAGE plpgsql AS $$
DECLARE t ton_transfers%ROWTYPE; v_hold bigint;
BEGIN
    SELECT * INTO t FROM ton_transfers WHERE tx_hash = lower(p_hash);
    IF t.id IS NULL THEN
        PERFORM paybot_raise('transfer_not_found', left(p_hash, 64));
    END IF;
    SELECT x.id INTO v_hold FROM ton_holds x WHERE x.transfer_id = t.id AND x.released_at IS NULL;
    IF v_hold IS NULL THEN
        PERFORM paybot_raise('nothing_held', t.outcome);
    END IF;
    RETURN QUERY SELECT * FROM paybot_ton_release(v_hold, p_action, p_invoice, p_user, p_note,
                                                  p_currency, p_rate, p_claim);
END $$;
