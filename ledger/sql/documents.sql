-- Invoices as documents: a draft is edited, then issued (numbered, amounts frozen), sent,
-- viewed; it ends paid, void or uncollectible (written off). Money received outside paybot
-- (bank transfer, cash) is recorded as a manual payment, partial allowed, and undone only by a
-- compensating reversal. Each function is one use case in its caller's one transaction.

-- The seller's invoice, locked; raises not found (another seller's looks the same, p_seller
-- NULL is the operator, who may act on any).
CREATE OR REPLACE FUNCTION paybot_seller_invoice(p_invoice text, p_seller bigint)
RETURNS invoices LANGUAGE plpgsql AS $$
DECLARE v invoices%ROWTYPE;
BEGIN
    SELECT * INTO v FROM invoices WHERE public_id = upper(p_invoice) FOR UPDATE;
    IF v.id IS NULL THEN
        PERFORM paybot_raise('invoice_not_found', p_invoice);
    ELSIF p_seller IS NOT NULL AND v.seller_id <> p_seller THEN
        PERFORM paybot_raise('not_invoice_seller', p_invoice);
    END IF;
    RETURN v;
END $$;

-- PUT on a draft: everything the seller can write is replaced; the version moves on (the PDF
-- of the new version is a new document).
CREATE OR REPLACE FUNCTION update_draft(
    p_invoice text, p_seller bigint, p_title text, p_description text, p_currency text,
    p_amount bigint, p_ton_amount bigint, p_ton_rate numeric, p_kind text, p_max_uses int,
    p_payload jsonb, p_expires_at timestamptz, p_document jsonb, p_due_at timestamptz)
RETURNS invoices LANGUAGE plpgsql AS $$
DECLARE v invoices%ROWTYPE;
BEGIN
    v := paybot_seller_invoice(p_invoice, p_seller);
    IF v.status <> 'draft' THEN
        PERFORM paybot_raise('invoice_not_draft', v.public_id);
    END IF;
    UPDATE invoices
       SET title = p_title, description = p_description, currency = p_currency,
           amount = p_amount, ton_amount = p_ton_amount, ton_rate = p_ton_rate, kind = p_kind,
           max_uses = p_max_uses, payload = p_payload, expires_at = p_expires_at,
           document = p_document, due_at = p_due_at, version = version + 1, updated_at = now()
     WHERE id = v.id RETURNING * INTO v;
    RETURN v;
END $$;

-- Issue a draft: it gets its number, its amounts are frozen, the link goes live; the link
-- lives as long from now as the draft's expiry was from its last edit. The TON quote is locked
-- now at the caller's rate, from the locked row's amount (an edit a moment earlier is priced
-- as it stands). Issuing an issued invoice returns it unchanged.
CREATE OR REPLACE FUNCTION finalize_invoice(p_invoice text, p_seller bigint,
                                            p_ton_rate numeric DEFAULT NULL)
RETURNS invoices LANGUAGE plpgsql AS $$
DECLARE v invoices%ROWTYPE; v_year int := extract(year FROM now() AT TIME ZONE 'UTC')::int;
        v_n bigint;
BEGIN
    v := paybot_seller_invoice(p_invoice, p_seller);
    IF v.status <> 'draft' THEN
        IF v.status = 'void' THEN
            PERFORM paybot_raise('invoice_void', v.public_id);
        END IF;
        RETURN v;
    END IF;
    INSERT INTO invoice_counters AS c (seller_id, year, last) VALUES (v.seller_id, v_year, 1)
    ON CONFLICT (seller_id, year) DO UPDATE SET last = c.last + 1
    RETURNING c.last INTO v_n;
    UPDATE invoices
       SET status = 'pending', issued_at = now(), updated_at = now(),
           number = 'INV-' || v_year || '-' || lpad(v_n::text, greatest(4, length(v_n::text)), '0'),
           expires_at = now() + greatest(expires_at - updated_at, interval '1 minute'),
           ton_amount = coalesce(paybot_quote_ton(amount, currency, p_ton_rate), ton_amount),
           ton_rate = CASE WHEN p_ton_rate > 0 AND currency <> 'TON' THEN p_ton_rate
                           ELSE ton_rate END
     WHERE id = v.id RETURNING * INTO v;
    RETURN v;
END $$;

-- Void: the document stays (with its number, stamped VOID), nothing can pay it. Only while no
-- money was recorded for it; voiding twice is a no-op.
CREATE OR REPLACE FUNCTION void_invoice(p_invoice text, p_seller bigint, p_reason text)
RETURNS invoices LANGUAGE plpgsql AS $$
DECLARE v invoices%ROWTYPE;
BEGIN
    v := paybot_seller_invoice(p_invoice, p_seller);
    IF v.status = 'void' THEN
        RETURN v;
    ELSIF v.status NOT IN ('draft', 'pending', 'expired') THEN
        PERFORM paybot_raise_not_payable(v.id);
    ELSIF v.amount_paid > 0 OR v.uses > 0 THEN
        PERFORM paybot_raise('invoice_partly_paid', v.public_id);
    END IF;
    UPDATE invoices SET status = 'void', closed_at = now(), updated_at = now()
     WHERE id = v.id RETURNING * INTO v;
    PERFORM paybot_invoice_event(v, 'invoice_voided',
                                 jsonb_build_object('reason', left(p_reason, 500)));
    RETURN v;
END $$;

-- Uncollectible: the seller writes off what is still due (an issued invoice, open or expired,
-- partly paid or not). It takes no more payments. Twice is a no-op.
CREATE OR REPLACE FUNCTION mark_invoice_uncollectible(p_invoice text, p_seller bigint,
                                                      p_reason text)
RETURNS invoices LANGUAGE plpgsql AS $$
DECLARE v invoices%ROWTYPE;
BEGIN
    v := paybot_seller_invoice(p_invoice, p_seller);
    IF v.status = 'uncollectible' THEN
        RETURN v;
    ELSIF v.status NOT IN ('pending', 'expired') OR v.kind <> 'one_time' THEN
        PERFORM paybot_raise_not_payable(v.id);
    END IF;
    UPDATE invoices SET status = 'uncollectible', closed_at = now(), updated_at = now()
     WHERE id = v.id RETURNING * INTO v;
    PERFORM paybot_invoice_event(v, 'invoice_uncollectible',
                                 jsonb_build_object('reason', left(p_reason, 500)));
    RETURN v;
END $$;

-- Send to a client: to a Telegram user who has started the bot (by Telegram id or
-- @username), or as a link (neither given). A draft is issued first. Sending again is allowed
-- (a new message). Returns the invoice and the recipient's users.id (NULL for a link).
CREATE OR REPLACE FUNCTION send_invoice(p_invoice text, p_seller bigint, p_to_telegram bigint,
                                        p_to_username text, p_ton_rate numeric DEFAULT NULL)
RETURNS TABLE (r_invoice invoices, r_recipient bigint)
LANGUAGE plpgsql AS $$
DECLARE v invoices%ROWTYPE; v_to bigint;
BEGIN
    IF p_to_telegram IS NOT NULL THEN
        SELECT id INTO v_to FROM users WHERE telegram_id = p_to_telegram;
    ELSIF p_to_username IS NOT NULL THEN
        SELECT id INTO v_to FROM users
         WHERE lower(username) = lower(ltrim(p_to_username, '@')) AND username IS NOT NULL
         ORDER BY id DESC LIMIT 1;
    END IF;
    IF (p_to_telegram IS NOT NULL OR p_to_username IS NOT NULL) AND v_to IS NULL THEN
        PERFORM paybot_raise('recipient_not_found',
                             left(coalesce(p_to_telegram::text, p_to_username), 40));
    END IF;
    v := finalize_invoice(p_invoice, p_seller, p_ton_rate);
    IF v.status <> 'pending' OR v.expires_at <= now() THEN
        PERFORM paybot_raise_not_payable(v.id);
    ELSIF v_to = v.seller_id THEN
        PERFORM paybot_raise('own_invoice', v.public_id);
    END IF;
    UPDATE invoices SET sent_at = now(), sent_to = coalesce(v_to, sent_to)
     WHERE id = v.id RETURNING * INTO v;
    IF v_to IS NOT NULL THEN
        INSERT INTO outbox (topic, event_type, payload)
        VALUES ('telegram', 'invoice.sent',
                jsonb_build_object('recipient', v_to, 'invoice', v.public_id,
                                   'seller_id', v.seller_id));
    END IF;
    PERFORM paybot_invoice_event(v, 'invoice_sent', jsonb_build_object(
        'channel', CASE WHEN v_to IS NULL THEN 'link' ELSE 'telegram' END));
    RETURN QUERY SELECT v, v_to;
END $$;

-- The first time someone other than the seller opens an issued invoice (p_viewer NULL: a
-- guest). Returns whether this call recorded it.
CREATE OR REPLACE FUNCTION mark_invoice_viewed(p_invoice text, p_viewer bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE v invoices%ROWTYPE;
BEGIN
    UPDATE invoices SET viewed_at = now()
     WHERE public_id = upper(p_invoice) AND viewed_at IS NULL AND status <> 'draft'
       AND seller_id IS DISTINCT FROM p_viewer
    RETURNING * INTO v;
    IF v.id IS NULL THEN
        RETURN false;
    END IF;
    PERFORM paybot_invoice_event(v, 'invoice_viewed');
    RETURN true;
END $$;

-- The buyer it was sent to (or the seller) stops the reminders of one invoice.
CREATE OR REPLACE FUNCTION stop_invoice_reminders(p_invoice text, p_user bigint)
RETURNS invoices LANGUAGE plpgsql AS $$
DECLARE v invoices%ROWTYPE;
BEGIN
    UPDATE invoices SET reminders_off = true
     WHERE public_id = upper(p_invoice) AND p_user IN (seller_id, sent_to)
    RETURNING * INTO v;
    IF v.id IS NULL THEN
        PERFORM paybot_raise('invoice_not_found', p_invoice);
    END IF;
    RETURN v;
END $$;

-- Money received outside paybot (bank transfer, cash), recorded by the seller (p_seller) or
-- the operator (NULL): balanced entries from the `manual` system account to the seller.
-- Idempotent by (seller, reference): the same reference for the same invoice and amount is a
-- replay; anything else under it is reference_reused. Partial payments add up; the payment
-- that completes the invoice pays it as any payment does (grant, notices, invoice_paid).
-- More than is due is refused (an overpayment is not this invoice's money to keep).
CREATE OR REPLACE FUNCTION record_manual_payment(
    p_invoice text, p_seller bigint, p_amount bigint, p_received_on date, p_reference text,
    p_note text, p_recorded_by bigint, p_claim_token text)
RETURNS TABLE (payment_id bigint, replayed boolean, r_invoice invoices)
LANGUAGE plpgsql AS $$
DECLARE v invoices%ROWTYPE; v_prev payments%ROWTYPE; v_ref text; v_tx bigint; v_pay bigint;
        v_due bigint; v_grant bigint;
BEGIN
    v := paybot_seller_invoice(p_invoice, p_seller);
    IF p_amount IS NULL OR p_amount <= 0 THEN
        PERFORM paybot_raise('invalid_amount', coalesce(p_amount::text, 'none'));
    END IF;
    v_ref := 'manual:' || v.seller_id || ':' || p_reference;
    SELECT * INTO v_prev FROM payments WHERE external_ref = v_ref;
    IF v_prev.id IS NOT NULL THEN
        IF v_prev.invoice_id <> v.id OR v_prev.amount <> p_amount THEN
            PERFORM paybot_raise('reference_reused', p_reference);
        END IF;
        RETURN QUERY SELECT v_prev.id, true, v;
        RETURN;
    END IF;
    IF v.kind <> 'one_time' THEN
        PERFORM paybot_raise('manual_payment_multi_use', v.public_id);
    END IF;
    -- Money is never refused for lateness: a transfer for an expired invoice is recorded
    -- (and pays it, as a late TON payment does). Closed by the seller, or paid: refused.
    IF v.status NOT IN ('pending', 'expired') THEN
        PERFORM paybot_raise_not_payable(v.id);
    END IF;
    v_due := v.amount - v.amount_paid;
    IF p_amount > v_due THEN
        PERFORM paybot_raise('manual_payment_too_large', json_build_object(
            'needed', v_due, 'available', p_amount, 'currency', v.currency)::text);
    END IF;
    INSERT INTO ledger_transactions (kind, reason, reference)
    VALUES ('manual_payment', left(coalesce(p_note, 'manual payment'), 200), v_ref)
    RETURNING id INTO v_tx;
    INSERT INTO entries (tx_id, account_id, currency, amount)
    VALUES (v_tx, paybot_system_account('manual', v.currency), v.currency, -p_amount);
    PERFORM paybot_credit_user(v_tx, v.seller_id, v.currency, p_amount);
    IF p_amount = v_due THEN
        -- Pays the invoice: the same taking and fulfilment as every other payment.
        UPDATE invoices
           SET uses = uses + 1, status = 'paid', paid_at = now(), amount_paid = amount,
               updated_at = now()
         WHERE id = v.id RETURNING * INTO v;
    ELSE
        UPDATE invoices SET amount_paid = amount_paid + p_amount, updated_at = now()
         WHERE id = v.id RETURNING * INTO v;
    END IF;
    INSERT INTO payments (invoice_id, payer_id, method, currency, amount, external_ref,
                          ledger_tx_id, reference, note, received_on, recorded_by)
    VALUES (v.id, v.sent_to, 'manual', v.currency, p_amount, v_ref, v_tx, p_reference, p_note,
            p_received_on, p_recorded_by)
    RETURNING id INTO v_pay;
    PERFORM paybot_invoice_event(v, 'invoice_payment_recorded', jsonb_build_object(
        'payment_id', v_pay, 'amount', p_amount, 'reference', p_reference));
    IF v.status = 'paid' THEN
        v_grant := nextval('grants_id_seq');
        -- The buyer it was sent to gets the purchase; nobody known: a claim, as for a guest.
        PERFORM paybot_fulfil(ARRAY[v_grant], ARRAY[v_pay], ARRAY[v.id], ARRAY[v.sent_to],
                              ARRAY[p_claim_token], 'manual');
    END IF;
    RETURN QUERY SELECT v_pay, false, v;
END $$;

-- Undo a manual payment recorded by mistake: the compensating entries (seller -> manual), the
-- invoice's paid amount back down, a paid invoice open again. Once per payment (again = the
-- same answer); the payment row itself stays, with its reversal beside it.
CREATE OR REPLACE FUNCTION reverse_manual_payment(p_payment bigint, p_seller bigint,
                                                  p_reason text, p_reversed_by bigint)
RETURNS invoices LANGUAGE plpgsql AS $$
DECLARE p payments%ROWTYPE; v invoices%ROWTYPE; v_tx bigint; v_public text;
BEGIN
    SELECT i.public_id INTO v_public FROM payments x JOIN invoices i ON i.id = x.invoice_id
     WHERE x.id = p_payment AND (p_seller IS NULL OR i.seller_id = p_seller);
    IF v_public IS NULL THEN
        PERFORM paybot_raise('payment_not_found', p_payment::text);
    END IF;
    v := paybot_seller_invoice(v_public, p_seller);  -- the invoice lock orders reversals
    SELECT * INTO p FROM payments WHERE id = p_payment;
    IF p.method <> 'manual' THEN
        PERFORM paybot_raise('payment_not_reversible', p_payment::text);
    ELSIF EXISTS (SELECT 1 FROM payment_reversals WHERE payment_id = p.id) THEN
        RETURN v;
    END IF;
    INSERT INTO ledger_transactions (kind, reason, reference)
    VALUES ('manual_reversal', left(p_reason, 200), 'manual-reversal:' || p.id)
    RETURNING id INTO v_tx;
    -- The seller gives the money back to the manual account: refused when their balance no
    -- longer holds it (insufficient_funds), and then nothing changes.
    PERFORM paybot_debit_user(v_tx, v.seller_id, p.currency, p.amount);
    INSERT INTO entries (tx_id, account_id, currency, amount)
    VALUES (v_tx, paybot_system_account('manual', p.currency), p.currency, p.amount);
    -- The invoice before the reversal: every payment path updates invoices before it
    -- writes payments, so their rollups' rows (ledger/sql/reports.sql) are locked in one order.
    UPDATE invoices
       SET amount_paid = amount_paid - p.amount, updated_at = now(),
           -- A paid invoice owes money again: open, or expired when its link already is.
           status = CASE WHEN status <> 'paid' THEN status
                         WHEN expires_at <= now() THEN 'expired' ELSE 'pending' END,
           uses = CASE WHEN amount_paid = amount THEN uses - 1 ELSE uses END,
           paid_at = CASE WHEN amount_paid = amount THEN NULL ELSE paid_at END
     WHERE id = v.id RETURNING * INTO v;
    INSERT INTO payment_reversals (payment_id, reason, ledger_tx_id, reversed_by)
    VALUES (p.id, p_reason, v_tx, p_reversed_by);
    PERFORM paybot_invoice_event(v, 'invoice_payment_reversed', jsonb_build_object(
        'payment_id', p.id, 'amount', p.amount, 'reason', left(p_reason, 500)));
    RETURN v;
END $$;
