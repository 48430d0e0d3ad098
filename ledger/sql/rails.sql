-- Cards and Telegram Stars (ledger/rails.py): a quote locked when the payment is offered, every
-- payment a provider reports settled once (paybot_rail_settle: paid, top-up or held), two-phase
-- refunds around the provider's call.
--
-- Booking. A settled payment is the invoice's ordinary external settlement in the invoice's
-- currency (settle_external_payment: <rail>_inflow -> seller), plus, in the same ledger
-- transaction, the provider's currency taken in: <rail>_inflow(XTR/USD) -> fx. So the operator
-- reads what arrived per currency (-balance of card_inflow / stars_inflow) and every currency
-- sums to zero. A held payment is provider money only: <rail>_inflow -> suspense, until refunded.

-- A quote changes once: its provider reference is set, nothing else.
CREATE OR REPLACE FUNCTION paybot_rail_quote_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.provider_ref IS NULL AND NEW.provider_ref IS NOT NULL
       AND (NEW.id, NEW.token, NEW.purpose, NEW.rail, NEW.channel, NEW.currency, NEW.amount,
            NEW.ledger_currency, NEW.ledger_amount, NEW.rate, NEW.created_at, NEW.expires_at)
           = (OLD.id, OLD.token, OLD.purpose, OLD.rail, OLD.channel, OLD.currency, OLD.amount,
              OLD.ledger_currency, OLD.ledger_amount, OLD.rate, OLD.created_at, OLD.expires_at)
       AND (NEW.invoice_id, NEW.subscription_id, NEW.user_id, NEW.payer_tag_id)
           IS NOT DISTINCT FROM (OLD.invoice_id, OLD.subscription_id, OLD.user_id,
                                 OLD.payer_tag_id) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'a quote is locked; only its provider reference is set, once (quote %)', OLD.id
        USING ERRCODE = paybot_error_sqlstate('immutable_record');
END $$;

CREATE TRIGGER rail_quotes_locked BEFORE UPDATE ON rail_quotes
    FOR EACH ROW EXECUTE FUNCTION paybot_rail_quote_change();

-- A refund goes from pending to done or failed, once; nothing else about it changes.
CREATE OR REPLACE FUNCTION paybot_rail_refund_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'pending' AND NEW.status IN ('done', 'failed')
       AND (NEW.id, NEW.rail_payment_id, NEW.currency, NEW.amount, NEW.reason, NEW.reserve_tx_id,
            NEW.created_at) = (OLD.id, OLD.rail_payment_id, OLD.currency, OLD.amount, OLD.reason,
                               OLD.reserve_tx_id, OLD.created_at)
       AND NEW.actor_id IS NOT DISTINCT FROM OLD.actor_id THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'a refund finishes once (refund %)', OLD.id
        USING ERRCODE = paybot_error_sqlstate('immutable_record');
END $$;

CREATE TRIGGER rail_refunds_finish_once BEFORE UPDATE ON rail_refunds
    FOR EACH ROW EXECUTE FUNCTION paybot_rail_refund_change();

CREATE OR REPLACE FUNCTION paybot_rail_inflow(p_rail text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_rail = 'stars' THEN 'stars_inflow' ELSE 'card_inflow' END
$$;

-- A provider currency is a ledger currency too (its own accounts, summing to zero).
CREATE OR REPLACE FUNCTION paybot_rail_currency(p_code text, p_exp int) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO currencies (code, decimals) VALUES (p_code, p_exp) ON CONFLICT DO NOTHING
$$;

-- Two legs of one ledger transaction between system accounts.
CREATE OR REPLACE FUNCTION paybot_rail_legs(p_tx bigint, p_from text, p_to text, p_currency text,
                                            p_amount bigint)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO entries (tx_id, account_id, currency, amount)
    VALUES (p_tx, paybot_system_account(p_from, p_currency), p_currency, -p_amount),
           (p_tx, paybot_system_account(p_to, p_currency), p_currency, p_amount)
$$;

-- What an invoice still asks of one payment: the amount due of a one-time invoice, a
-- multi-use invoice's price.
CREATE OR REPLACE FUNCTION paybot_invoice_due(v invoices) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN v.kind = 'one_time' THEN v.amount - v.amount_paid ELSE v.amount END
$$;

-- Why an invoice cannot take this payment now (NULL: it can), as a hold/pre-checkout reason.
CREATE OR REPLACE FUNCTION paybot_rail_invoice_refusal(v invoices, p_payer bigint,
                                                       p_ledger_amount bigint, p_at timestamptz)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN v.status = 'paid' OR (v.max_uses IS NOT NULL AND v.uses >= v.max_uses)
            THEN 'invoice_paid'
        WHEN v.status NOT IN ('pending', 'expired') OR v.expires_at <= least(p_at, now())
            THEN 'invoice_closed'
        WHEN p_payer IS NOT NULL AND p_payer = v.seller_id THEN 'own_invoice'
        WHEN paybot_invoice_due(v) <> p_ledger_amount THEN 'amount_mismatch'
    END
$$;

-- Lock the price of a card or Stars payment. p_rate: provider units per unit of the ledger
-- currency; the provider amount is rounded up at the currency's exponent (and p_step).
CREATE OR REPLACE FUNCTION paybot_rail_quote(
    p_token text, p_purpose text, p_rail text, p_channel text, p_currency text, p_exp int,
    p_rate numeric, p_invoice text, p_topup bigint, p_topup_currency text, p_subscription text,
    p_user bigint, p_tag text, p_ttl int, p_step int DEFAULT 1)
RETURNS TABLE (token text) LANGUAGE plpgsql AS $$
DECLARE v invoices%ROWTYPE; s subscriptions%ROWTYPE; v_cur text; v_amount bigint;
        v_tag bigint; v_dec int; v_price bigint; v_refusal text;
BEGIN
    IF p_purpose = 'invoice' THEN
        SELECT * INTO v FROM invoices WHERE public_id = upper(p_invoice);
        IF v.id IS NULL THEN
            PERFORM paybot_raise('invoice_not_found', p_invoice);
        END IF;
        v_refusal := paybot_rail_invoice_refusal(v, p_user, paybot_invoice_due(v), now());
        IF v_refusal = 'own_invoice' THEN
            PERFORM paybot_raise('own_invoice', v.public_id);
        ELSIF v_refusal IS NOT NULL OR v.status <> 'pending' THEN
            PERFORM paybot_raise_not_payable(v.id);
        END IF;
        v_cur := v.currency;
        v_amount := paybot_invoice_due(v);
        IF p_tag IS NOT NULL THEN
            SELECT x.id INTO v_tag FROM payer_tags x WHERE x.invoice_id = v.id AND x.tag = upper(p_tag);
            IF v_tag IS NULL THEN
                PERFORM paybot_raise('unknown_tag', left(p_tag, 16));
            END IF;
        END IF;
    ELSIF p_purpose = 'topup' THEN
        IF p_user IS NULL OR p_topup IS NULL OR p_topup <= 0 THEN
            PERFORM paybot_raise('invalid_amount', 'a top-up needs a user and an amount');
        END IF;
        v_cur := p_topup_currency;
        v_amount := p_topup;
    ELSE
        SELECT * INTO s FROM subscriptions WHERE public_id = upper(p_subscription);
        IF s.id IS NULL THEN
            PERFORM paybot_raise('subscription_not_found', p_subscription);
        ELSIF s.status NOT IN ('incomplete', 'trialing', 'active', 'past_due') THEN
            PERFORM paybot_raise('subscription_ended', s.public_id);
        END IF;
        v_cur := s.currency;
        v_amount := s.amount;
        p_user := s.subscriber_id;
    END IF;
    SELECT decimals INTO v_dec FROM currencies WHERE code = v_cur;
    IF v_dec IS NULL THEN
        PERFORM paybot_raise('invalid_amount', 'unknown currency ' || v_cur);
    END IF;
    PERFORM paybot_rail_currency(p_currency, p_exp);
    -- Rounded up to the provider's step (Stripe takes three-decimal currencies in tens).
    v_price := (ceil(v_amount::numeric * p_rate * power(10::numeric, p_exp - v_dec) / p_step)
                * p_step)::bigint;
    IF v_price <= 0 THEN
        PERFORM paybot_raise('invalid_amount', 'too small to pay in ' || p_currency);
    END IF;
    INSERT INTO rail_quotes (token, purpose, rail, channel, currency, amount, ledger_currency,
                             ledger_amount, rate, invoice_id, subscription_id, user_id,
                             payer_tag_id, expires_at)
    VALUES (p_token, p_purpose, p_rail, p_channel, p_currency, v_price, v_cur, v_amount, p_rate,
            v.id, s.id, p_user, v_tag, now() + make_interval(secs => p_ttl));
    RETURN QUERY SELECT p_token;
END $$;

CREATE OR REPLACE FUNCTION paybot_rail_quote_ref(p_token text, p_ref text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE q rail_quotes%ROWTYPE;
BEGIN
    SELECT * INTO q FROM rail_quotes WHERE token = p_token FOR UPDATE;
    IF q.id IS NULL THEN
        PERFORM paybot_raise('quote_not_found', left(p_token, 40));
    ELSIF q.provider_ref IS NULL THEN
        UPDATE rail_quotes SET provider_ref = p_ref WHERE id = q.id;
    ELSIF q.provider_ref <> p_ref THEN
        PERFORM paybot_raise('invalid_amount', 'the quote was already sent as another payment');
    END IF;
END $$;

-- Telegram's pre_checkout_query: may this quote be paid now, for exactly this amount? NULL =
-- yes, else the reason. Read-only.
CREATE OR REPLACE FUNCTION paybot_rail_precheck(p_token text, p_currency text, p_amount bigint,
                                                p_payer bigint)
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE q rail_quotes%ROWTYPE; v invoices%ROWTYPE; v_status text; v_refusal text;
BEGIN
    SELECT * INTO q FROM rail_quotes WHERE token = p_token;
    IF q.id IS NULL THEN
        RETURN 'quote_unknown';
    ELSIF q.currency <> p_currency OR q.amount <> p_amount THEN
        RETURN 'amount_changed';
    ELSIF q.expires_at <= now() THEN
        RETURN 'quote_expired';
    ELSIF q.purpose = 'invoice' THEN
        SELECT * INTO v FROM invoices WHERE id = q.invoice_id;
        v_refusal := paybot_rail_invoice_refusal(v, p_payer, q.ledger_amount, now());
        IF v_refusal IS NULL AND v.status <> 'pending' THEN
            v_refusal := 'invoice_closed';
        END IF;
        RETURN replace(v_refusal, 'amount_mismatch', 'amount_changed');
    ELSIF q.purpose = 'subscription' THEN
        SELECT status INTO v_status FROM subscriptions WHERE id = q.subscription_id;
        IF v_status NOT IN ('incomplete', 'trialing', 'active', 'past_due') THEN
            RETURN 'subscription_ended';
        END IF;
    END IF;
    RETURN NULL;
END $$;

-- Money a provider says arrived: recorded once per (rail, reference) and settled — the quote's
-- invoice paid, a top-up credited, a subscription's open period paid (or, none open, the
-- subscriber's balance credited for the renewal to take) — or held for a refund, the operator
-- told. Never refuses: the money is always recorded.
CREATE OR REPLACE FUNCTION paybot_rail_settle(
    p_rail text, p_channel text, p_reference text, p_provider_ref text, p_token text,
    p_currency text, p_exp int, p_amount bigint, p_payer bigint, p_details jsonb,
    p_paid_at timestamptz, p_claim text)
RETURNS TABLE (rail_payment_id bigint, outcome text, hold_reason text, replayed boolean,
               invoice_public_id text, invoice_status text, payment_id bigint, grant_id bigint,
               claim_token text, credited bigint, user_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    r rail_payments%ROWTYPE; q rail_quotes%ROWTYPE; v invoices%ROWTYPE; s subscriptions%ROWTYPE;
    v_payment bigint; v_grant bigint; v_claim text; v_outcome text; v_hold text; v_tx bigint; v_user bigint; v_payer bigint;
    v_tag payer_tags%ROWTYPE; v_at timestamptz := coalesce(p_paid_at, now());
    v_inflow text := paybot_rail_inflow(p_rail);
BEGIN
    -- One settlement per reference: concurrent deliveries of the same payment queue here.
    PERFORM pg_advisory_xact_lock(hashtextextended('rail:' || p_rail || ':' || p_reference, 0));
    SELECT * INTO r FROM rail_payments p WHERE p.rail = p_rail AND p.reference = p_reference;
    IF r.id IS NOT NULL THEN
        RETURN QUERY
        SELECT r.id, r.outcome, r.hold_reason, true, i.public_id, i.status, r.payment_id, g.id,
               g.claim_token, CASE WHEN r.outcome = 'topup' THEN r.ledger_amount END,
               coalesce(r.credited_user_id, r.payer_id)
          FROM (SELECT 1) one
          LEFT JOIN invoices i ON i.id = r.invoice_id
          LEFT JOIN grants g ON g.payment_id = r.payment_id;
        RETURN;
    END IF;
    PERFORM paybot_rail_currency(p_currency, p_exp);
    SELECT * INTO q FROM rail_quotes WHERE token = p_token;
    v_payer := p_payer;
    IF q.id IS NULL THEN
        v_hold := 'unknown_quote';
    ELSIF q.currency <> p_currency OR q.amount <> p_amount OR q.rail <> p_rail THEN
        v_hold := 'amount_mismatch';
    ELSIF q.purpose = 'topup' THEN
        v_outcome := 'topup';
        v_user := coalesce(p_payer, q.user_id);
    ELSIF q.purpose = 'subscription' THEN
        SELECT * INTO s FROM subscriptions WHERE id = q.subscription_id FOR UPDATE;
        v_payer := coalesce(p_payer, s.subscriber_id);
        SELECT i.* INTO v FROM subscription_periods sp JOIN invoices i ON i.id = sp.invoice_id
         WHERE sp.subscription_id = s.id AND sp.status = 'open' AND i.status = 'pending'
           AND i.expires_at > now()
         ORDER BY sp.period_index LIMIT 1;
        IF v.id IS NOT NULL THEN
            SELECT * INTO v FROM invoices WHERE id = v.id FOR UPDATE;
        END IF;
        IF v.id IS NOT NULL AND paybot_rail_invoice_refusal(v, v_payer, q.ledger_amount, v_at) IS NULL THEN
            v_outcome := 'paid';
        ELSIF s.status NOT IN ('incomplete', 'trialing', 'active', 'past_due') THEN
            v_hold := 'subscription_ended';
            v := NULL;
        ELSE
            -- Paid ahead of its period's invoice (Telegram renews every 30 days, our periods
            -- are calendar months): the balance keeps it and the renewal takes it from there.
            v_outcome := 'topup';
            v_user := s.subscriber_id;
            v := NULL;
        END IF;
    ELSE
        SELECT * INTO v FROM invoices WHERE id = q.invoice_id FOR UPDATE;
        IF q.payer_tag_id IS NOT NULL THEN
            SELECT * INTO v_tag FROM payer_tags WHERE id = q.payer_tag_id;
            v_payer := coalesce(v_payer, v_tag.user_id);  -- a guest's tag bound since
        END IF;
        v_hold := paybot_rail_invoice_refusal(v, v_payer, q.ledger_amount, v_at);
        v_outcome := CASE WHEN v_hold IS NULL THEN 'paid' END;
    END IF;

    IF v_outcome = 'paid' THEN
        SELECT e.payment_id, e.grant_id, e.claim_token INTO v_payment, v_grant, v_claim
          FROM settle_external_payment(v.public_id, p_rail, p_rail || ':' || p_reference,
                                       v_payer, p_claim, v_at) e;
        SELECT p.ledger_tx_id INTO v_tx FROM payments p WHERE p.id = v_payment;
        PERFORM paybot_rail_legs(v_tx, v_inflow, 'fx', p_currency, p_amount);
        SELECT * INTO v FROM invoices WHERE id = v.id;
    ELSIF v_outcome = 'topup' THEN
        INSERT INTO ledger_transactions (kind, reason, reference)
        VALUES ('topup', p_rail, 'topup:' || p_rail || ':' || p_reference) RETURNING id INTO v_tx;
        INSERT INTO entries (tx_id, account_id, currency, amount)
        VALUES (v_tx, paybot_system_account(v_inflow, q.ledger_currency), q.ledger_currency,
                -q.ledger_amount);
        PERFORM paybot_credit_user(v_tx, v_user, q.ledger_currency, q.ledger_amount);
        PERFORM paybot_rail_legs(v_tx, v_inflow, 'fx', p_currency, p_amount);
        INSERT INTO outbox (topic, event_type, payload)
        VALUES ('telegram', 'balance.credited', jsonb_build_object(
            'recipient', v_user, 'kind', 'topup', 'amount', q.ledger_amount,
            'currency', q.ledger_currency, 'rail', p_rail,
            'subscription', (SELECT public_id FROM subscriptions WHERE id = q.subscription_id)));
    ELSE
        INSERT INTO ledger_transactions (kind, reason, reference)
        VALUES ('rail_hold', v_hold, 'hold:' || p_rail || ':' || p_reference) RETURNING id INTO v_tx;
        PERFORM paybot_rail_legs(v_tx, v_inflow, 'suspense', p_currency, p_amount);
        IF v.id IS NULL AND q.invoice_id IS NOT NULL THEN
            SELECT * INTO v FROM invoices WHERE id = q.invoice_id;
        END IF;
    END IF;

    INSERT INTO rail_payments (rail, channel, reference, provider_reference, quote_id, invoice_id,
                               payer_id, credited_user_id, payer_tag_id, currency, amount,
                               ledger_currency, ledger_amount, outcome, hold_reason, payment_id,
                               ledger_tx_id, details, paid_at)
    VALUES (p_rail, p_channel, p_reference, p_provider_ref, q.id, v.id, p_payer,
            CASE WHEN v_outcome = 'topup' THEN v_user END, q.payer_tag_id, p_currency, p_amount,
            CASE WHEN v_outcome IS NOT NULL THEN q.ledger_currency END,
            CASE WHEN v_outcome IS NOT NULL THEN q.ledger_amount END,
            coalesce(v_outcome, 'held'), v_hold, v_payment, v_tx, coalesce(p_details, '{}'),
            p_paid_at)
    RETURNING * INTO r;

    IF v_hold IS NOT NULL THEN
        INSERT INTO outbox (topic, event_type, payload)
        SELECT 'telegram', e.t, jsonb_build_object(
                   'rail_payment_id', r.id, 'reason', v_hold, 'amount', p_amount,
                   'currency', p_currency, 'invoice', v.public_id, 'rail', p_rail)
                   || CASE WHEN e.t = 'rail.held' THEN jsonb_build_object('recipient', p_payer)
                           ELSE '{}' END
          FROM (VALUES ('rail.held'), ('operator.rail_held')) e (t)
         WHERE e.t <> 'rail.held' OR p_payer IS NOT NULL;
    END IF;
    RETURN QUERY SELECT r.id, r.outcome, r.hold_reason, false, v.public_id, v.status,
                        v_payment, v_grant, v_claim,
                        CASE WHEN r.outcome = 'topup' THEN r.ledger_amount END,
                        coalesce(v_user, v_payer);
END $$;

-- Reserve a refund before the provider is asked: the money leaves the balance that holds it
-- (the seller's for a paid invoice, the user's for a top-up, suspense for a held payment) for
-- the refunds account. p_record: the operator refunded outside paybot already (a card, in the
-- provider's dashboard): reserved and completed at once. p_seller: a seller refunds only their
-- own invoices' payments (NULL: the operator).
CREATE OR REPLACE FUNCTION paybot_rail_refund_begin(p_rail_payment bigint, p_seller bigint,
                                                    p_actor bigint, p_reason text,
                                                    p_record boolean)
RETURNS rail_refunds LANGUAGE plpgsql AS $$
DECLARE r rail_payments%ROWTYPE; v invoices%ROWTYPE; f rail_refunds%ROWTYPE; v_tx bigint;
BEGIN
    SELECT * INTO r FROM rail_payments WHERE id = p_rail_payment FOR UPDATE;
    IF r.id IS NOT NULL AND p_seller IS NOT NULL THEN
        SELECT * INTO v FROM invoices WHERE id = r.invoice_id;
        IF r.outcome <> 'paid' OR v.seller_id IS DISTINCT FROM p_seller THEN
            r := NULL;  -- a seller sees only their invoices' payments
        END IF;
    END IF;
    IF r.id IS NULL THEN
        PERFORM paybot_raise('rail_payment_not_found', p_rail_payment::text);
    ELSIF r.rail <> 'stars' AND NOT p_record THEN
        PERFORM paybot_raise('refund_not_supported', r.rail);
    ELSIF EXISTS (SELECT 1 FROM rail_refunds x WHERE x.rail_payment_id = r.id
                   AND x.status IN ('pending', 'done'))
          OR EXISTS (SELECT 1 FROM payment_reversals x WHERE x.payment_id = r.payment_id) THEN
        PERFORM paybot_raise('already_refunded', r.id::text);
    END IF;
    INSERT INTO ledger_transactions (kind, reason) VALUES ('rail_refund', left(p_reason, 200))
    RETURNING id INTO v_tx;
    IF r.outcome = 'held' THEN
        PERFORM paybot_rail_legs(v_tx, 'suspense', 'refunds', r.currency, r.amount);
    ELSE
        SELECT * INTO v FROM invoices WHERE id = r.invoice_id;
        -- insufficient_funds when the balance no longer holds it; then nothing changes
        PERFORM paybot_debit_user(v_tx, CASE WHEN r.outcome = 'paid' THEN v.seller_id
                                             ELSE r.credited_user_id END,
                                  r.ledger_currency, r.ledger_amount);
        INSERT INTO entries (tx_id, account_id, currency, amount)
        VALUES (v_tx, paybot_system_account('refunds', r.ledger_currency), r.ledger_currency,
                r.ledger_amount);
    END IF;
    INSERT INTO rail_refunds (rail_payment_id, status, currency, amount, reason, actor_id,
                              reserve_tx_id)
    VALUES (r.id, 'pending', r.currency, r.amount, p_reason, p_actor, v_tx)
    RETURNING * INTO f;
    IF p_record THEN
        f := paybot_rail_refund_complete(f.id);
    END IF;
    RETURN f;
END $$;

-- The provider refunded: the reserved money goes back out where it came in, and a refunded
-- invoice payment is reversed like a manual one (the invoice owes it again).
CREATE OR REPLACE FUNCTION paybot_rail_refund_complete(p_refund bigint)
RETURNS rail_refunds LANGUAGE plpgsql AS $$
DECLARE f rail_refunds%ROWTYPE; r rail_payments%ROWTYPE; v invoices%ROWTYPE; v_tx bigint;
        v_inflow text;
BEGIN
    SELECT * INTO f FROM rail_refunds WHERE id = p_refund FOR UPDATE;
    IF f.id IS NULL THEN
        PERFORM paybot_raise('rail_payment_not_found', 'refund ' || p_refund);
    ELSIF f.status = 'done' THEN
        RETURN f;
    ELSIF f.status <> 'pending' THEN
        PERFORM paybot_raise('refund_not_pending', p_refund::text);
    END IF;
    SELECT * INTO r FROM rail_payments WHERE id = f.rail_payment_id;
    v_inflow := paybot_rail_inflow(r.rail);
    INSERT INTO ledger_transactions (kind, reason, reference)
    VALUES ('rail_refund', left(f.reason, 200), 'refund:' || f.id) RETURNING id INTO v_tx;
    IF r.outcome = 'held' THEN
        PERFORM paybot_rail_legs(v_tx, 'refunds', v_inflow, r.currency, r.amount);
    ELSE
        PERFORM paybot_rail_legs(v_tx, 'refunds', v_inflow, r.ledger_currency, r.ledger_amount);
        PERFORM paybot_rail_legs(v_tx, 'fx', v_inflow, r.currency, r.amount);
    END IF;
    IF r.outcome = 'paid' THEN
        SELECT * INTO v FROM invoices WHERE id = r.invoice_id FOR UPDATE;
        -- Invoice first, as in every payment path (the rollups' lock order).
        UPDATE invoices
           SET amount_paid = CASE WHEN kind = 'one_time' THEN amount_paid - r.ledger_amount
                                  ELSE amount_paid END,
               uses = uses - 1, updated_at = now(),
               status = CASE WHEN status <> 'paid' THEN status
                             WHEN expires_at <= now() THEN 'expired' ELSE 'pending' END,
               paid_at = CASE WHEN status = 'paid' THEN NULL ELSE paid_at END
         WHERE id = v.id RETURNING * INTO v;
        INSERT INTO payment_reversals (payment_id, reason, ledger_tx_id, reversed_by)
        VALUES (r.payment_id, f.reason, v_tx, f.actor_id);
        PERFORM paybot_invoice_event(v, 'invoice_payment_reversed', jsonb_build_object(
            'payment_id', r.payment_id, 'amount', r.ledger_amount, 'reason', f.reason,
            'refund', true));
    END IF;
    UPDATE rail_refunds SET status = 'done', finish_tx_id = v_tx, completed_at = now()
     WHERE id = f.id RETURNING * INTO f;
    INSERT INTO outbox (topic, event_type, payload)
    SELECT 'telegram', 'rail.refunded', jsonb_build_object(
               'recipient', coalesce(r.payer_id, r.credited_user_id), 'rail_payment_id', r.id,
               'amount', r.amount, 'currency', r.currency,
               'invoice', (SELECT public_id FROM invoices WHERE id = r.invoice_id))
     WHERE coalesce(r.payer_id, r.credited_user_id) IS NOT NULL;
    RETURN f;
END $$;

-- The provider refused the refund: the reservation goes back where it came from.
CREATE OR REPLACE FUNCTION paybot_rail_refund_fail(p_refund bigint, p_error text)
RETURNS rail_refunds LANGUAGE plpgsql AS $$
DECLARE f rail_refunds%ROWTYPE; r rail_payments%ROWTYPE; v_tx bigint; v_user bigint;
BEGIN
    SELECT * INTO f FROM rail_refunds WHERE id = p_refund FOR UPDATE;
    IF f.id IS NULL THEN
        PERFORM paybot_raise('rail_payment_not_found', 'refund ' || p_refund);
    ELSIF f.status = 'failed' THEN
        RETURN f;
    ELSIF f.status <> 'pending' THEN
        PERFORM paybot_raise('refund_not_pending', p_refund::text);
    END IF;
    SELECT * INTO r FROM rail_payments WHERE id = f.rail_payment_id;
    INSERT INTO ledger_transactions (kind, reason, reference)
    VALUES ('rail_refund', left('refund failed: ' || p_error, 200), 'refund-failed:' || f.id)
    RETURNING id INTO v_tx;
    IF r.outcome = 'held' THEN
        PERFORM paybot_rail_legs(v_tx, 'refunds', 'suspense', r.currency, r.amount);
    ELSE
        v_user := CASE WHEN r.outcome = 'paid'
                       THEN (SELECT seller_id FROM invoices WHERE id = r.invoice_id)
                       ELSE r.credited_user_id END;
        INSERT INTO entries (tx_id, account_id, currency, amount)
        VALUES (v_tx, paybot_system_account('refunds', r.ledger_currency), r.ledger_currency,
                -r.ledger_amount);
        PERFORM paybot_credit_user(v_tx, v_user, r.ledger_currency, r.ledger_amount);
    END IF;
    UPDATE rail_refunds SET status = 'failed', finish_tx_id = v_tx, completed_at = now(),
                            error = left(p_error, 500)
     WHERE id = f.id RETURNING * INTO f;
    RETURN f;
END $$;

-- Tell the operator once per (kind, subject): a reconciliation mismatch seen again on the next
-- run is not news.
CREATE OR REPLACE FUNCTION paybot_rail_alert(p_kind text, p_subject text, p_detail text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rail_alerts (kind, subject, detail) VALUES (p_kind, p_subject, p_detail)
        ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO outbox (topic, event_type, payload)
    VALUES ('telegram', 'operator.reconcile',
            jsonb_build_object('kind', p_kind, 'tx_id', p_subject, 'detail', p_detail));
    RETURN true;
END $$;

-- A subscription paid with Telegram Stars renews at Telegram every 30 days until told not to:
-- when it is cancelled or ends here, Telegram is told to stop charging (the notifier calls
-- editUserStarSubscription with the first payment's charge id, which names the Telegram
-- subscription; one per invoice link paid).
CREATE OR REPLACE FUNCTION paybot_stars_subscription_stop(s subscriptions) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO outbox (topic, event_type, payload)
    SELECT DISTINCT ON (q.id) 'telegram', 'stars.subscription_stop',
           jsonb_build_object('telegram_id', u.telegram_id, 'charge_id', r.reference,
                              'subscription', s.public_id)
      FROM rail_quotes q
      JOIN rail_payments r ON r.quote_id = q.id AND r.rail = 'stars'
      JOIN users u ON u.id = coalesce(r.payer_id, s.subscriber_id)
     WHERE q.subscription_id = s.id AND q.purpose = 'subscription'
     ORDER BY q.id, r.id
$$;
