-- Payer tags: the INV-<id>-<tag> reference bound to a payer, and a guest's purchase bound to
-- a Telegram account on proof.

-- A tag keeps its invoice, tag, guest and proof; its user is set once.
CREATE OR REPLACE FUNCTION paybot_payer_tag_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.id, NEW.invoice_id, NEW.tag, NEW.created_at) = (OLD.id, OLD.invoice_id, OLD.tag, OLD.created_at)
       AND NEW.guest_key IS NOT DISTINCT FROM OLD.guest_key
       AND NEW.proof IS NOT DISTINCT FROM OLD.proof
       AND (OLD.user_id IS NULL OR NEW.user_id IS NOT DISTINCT FROM OLD.user_id) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'a payer tag keeps its invoice, tag, guest and user (tag %)', OLD.id
        USING ERRCODE = paybot_error_sqlstate('immutable_record');
END $$;

CREATE TRIGGER payer_tags_change BEFORE UPDATE ON payer_tags
    FOR EACH ROW EXECUTE FUNCTION paybot_payer_tag_change();

-- The tag of a user or of a guest browser for an invoice: the existing one, else a new one
-- (the first candidate not taken on this invoice). Idempotent per (invoice, user | guest).
CREATE OR REPLACE FUNCTION paybot_payer_tag(p_invoice text, p_user bigint, p_guest text, p_proof text,
                                 p_candidates text[])
RETURNS payer_tags LANGUAGE plpgsql AS $$
DECLARE v invoices%ROWTYPE; t payer_tags%ROWTYPE; c text;
BEGIN
    SELECT * INTO v FROM invoices WHERE public_id = upper(p_invoice);
    IF v.id IS NULL THEN
        PERFORM paybot_raise('invoice_not_found', left(p_invoice, 40));
    ELSIF p_user IS NOT NULL AND v.seller_id = p_user THEN
        PERFORM paybot_raise('own_invoice', v.public_id);
    ELSIF p_user IS NOT NULL AND NOT EXISTS (SELECT 1 FROM users WHERE id = p_user) THEN
        PERFORM paybot_raise('user_not_found', p_user::text);
    END IF;
    FOREACH c IN ARRAY p_candidates LOOP
        SELECT * INTO t FROM payer_tags x
         WHERE x.invoice_id = v.id
           AND (x.user_id = p_user OR x.guest_key = p_guest);
        IF t.id IS NOT NULL THEN
            RETURN t;
        END IF;
        INSERT INTO payer_tags (invoice_id, tag, user_id, guest_key, proof)
        VALUES (v.id, c, p_user, p_guest, CASE WHEN p_guest IS NOT NULL THEN p_proof END)
        ON CONFLICT DO NOTHING
        RETURNING * INTO t;
        IF t.id IS NOT NULL THEN
            RETURN t;
        END IF;
        -- the candidate was taken on this invoice, or a concurrent call made our tag: look again
    END LOOP;
    SELECT * INTO t FROM payer_tags x
     WHERE x.invoice_id = v.id AND (x.user_id = p_user OR x.guest_key = p_guest);
    IF t.id IS NULL THEN
        RAISE EXCEPTION 'no free payer tag for invoice %', v.public_id;
    END IF;
    RETURN t;
END $$;

-- A guest proved their Telegram account (opened the bot with the tag's secret proof): the
-- tag becomes theirs, and so does everything paid with it — unclaimed grants (claim_grant) and
-- held excess (credited at the invoice's locked rate when it is priced in p_currency, else at
-- p_rate; with no rate it stays held for the operator). One transaction. Returns the tag.
CREATE OR REPLACE FUNCTION paybot_bind_payer(p_invoice text, p_tag text, p_user bigint, p_proof text,
                                  p_currency text, p_rate numeric)
RETURNS payer_tags LANGUAGE plpgsql AS $$
DECLARE v invoices%ROWTYPE; t payer_tags%ROWTYPE; g record; h record; v_rate numeric;
BEGIN
    SELECT * INTO v FROM invoices WHERE public_id = upper(p_invoice);
    SELECT * INTO t FROM payer_tags x WHERE x.invoice_id = v.id AND x.tag = upper(p_tag) FOR UPDATE;
    IF t.id IS NULL THEN
        PERFORM paybot_raise('unknown_tag', left(p_tag, 16));
    ELSIF t.user_id IS NOT NULL THEN
        IF t.user_id = p_user THEN
            RETURN t;  -- the same person again
        END IF;
        PERFORM paybot_raise('tag_taken', t.tag);
    ELSIF p_proof IS NULL OR t.proof IS DISTINCT FROM p_proof THEN
        -- the tag is public on chain: only the secret shown to the guest's browser proves it
        PERFORM paybot_raise('claim_not_found', t.tag);
    ELSIF v.seller_id = p_user THEN
        PERFORM paybot_raise('own_invoice', v.public_id);
    ELSIF NOT EXISTS (SELECT 1 FROM users WHERE id = p_user) THEN
        PERFORM paybot_raise('user_not_found', p_user::text);
    ELSIF EXISTS (SELECT 1 FROM payer_tags x WHERE x.invoice_id = v.id AND x.user_id = p_user) THEN
        PERFORM paybot_raise('tag_taken', 'user has a tag');
    END IF;
    UPDATE payer_tags SET user_id = p_user, bound_at = now() WHERE id = t.id RETURNING * INTO t;
    FOR g IN SELECT gr.claim_token FROM grants gr
              WHERE gr.payment_id IN (
                        SELECT tt.payment_id FROM ton_transfers tt WHERE tt.payer_tag_id = t.id
                        UNION ALL  -- paid by card from the guest's browser (rails.sql)
                        SELECT rp.payment_id FROM rail_payments rp WHERE rp.payer_tag_id = t.id)
                AND gr.user_id IS NULL AND gr.claim_token IS NOT NULL
                AND gr.revoked_at IS NULL  -- refunded: nothing to hand over
              ORDER BY gr.id LOOP
        PERFORM claim_grant(g.claim_token, p_user);
    END LOOP;
    v_rate := CASE WHEN v.currency = p_currency AND v.ton_rate IS NOT NULL THEN v.ton_rate
                   ELSE p_rate END;
    IF v_rate IS NOT NULL THEN
        FOR h IN SELECT x.id FROM ton_transfers tt JOIN ton_holds x ON x.transfer_id = tt.id
                  WHERE tt.payer_tag_id = t.id AND x.reason = 'excess' AND x.released_at IS NULL
                  ORDER BY x.id LOOP
            PERFORM paybot_ton_release(h.id, 'credit', NULL, p_user,
                                       'excess of ' || v.public_id || ' paid with tag ' || t.tag,
                                       p_currency, v_rate, NULL);
        END LOOP;
    END IF;
    RETURN t;
END $$;
