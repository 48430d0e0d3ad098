-- Subscriptions. Every paid period is an ordinary one-time invoice of the seller, payable by
-- any path (balance, TON, the pay page, a manual payment for legal entities); when one is paid,
-- the trigger below activates or extends its subscription. The renewal job opens the next
-- period's invoice and pays it from the subscriber's balance through process_invoice_payments,
-- the one balance payment, so every money movement is the ledger's usual one.

-- Calendar months in UTC, counted from the anchor each time (like Stripe's billing-cycle
-- anchor): 31 Jan + 1 = 28/29 Feb, + 2 = 31 Mar.
CREATE OR REPLACE FUNCTION paybot_add_months(p_anchor timestamptz, p_months int)
RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ((p_anchor AT TIME ZONE 'UTC') + make_interval(months => p_months)) AT TIME ZONE 'UTC'
$$;

-- When period k of a subscription ends (and so when k + 1 starts).
CREATE OR REPLACE FUNCTION paybot_period_end(s subscriptions, p_k int)
RETURNS timestamptz LANGUAGE sql IMMUTABLE AS $$
    SELECT paybot_add_months(s.anchor_at,
                             (p_k - s.anchor_index + 1) * s.months + s.extra_months)
$$;

-- Nanotons for an amount at a rate (units of the currency per TON), rounded up: as
-- ledger/money.py quote_ton.
CREATE OR REPLACE FUNCTION paybot_quote_ton(p_amount bigint, p_currency text, p_rate numeric)
RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_currency = 'TON' THEN p_amount
                WHEN p_rate IS NULL OR p_rate <= 0 THEN NULL
                ELSE ceil(p_amount::numeric / 10 ^ c.decimals / p_rate * 1e9)::bigint END
      FROM currencies c WHERE c.code = p_currency
$$;

-- A subscription event's outbox rows: the seller's callback (to the default webhook, resolved
-- at delivery) and, when given, a Telegram notice to the subscriber. A plain SELECT, so the
-- planner inlines it where a whole batch is told at once (paybot_renew_due).
CREATE OR REPLACE FUNCTION paybot_subscription_event_rows(
    p_subscription text, p_seller bigint, p_subscriber bigint, p_period int, p_callback text,
    p_telegram text, p_extra jsonb DEFAULT '{}')
RETURNS TABLE (topic text, event_type text, payload jsonb)
LANGUAGE sql STABLE AS $$
    SELECT 'callback', p_callback, p_extra || jsonb_build_object(
               'subscription', p_subscription, 'seller_id', p_seller, 'url', NULL,
               'period_index', p_period)
     WHERE p_callback IS NOT NULL
       AND EXISTS (SELECT 1 FROM seller_webhooks w WHERE w.user_id = p_seller
                                                    AND w.url IS NOT NULL)
    UNION ALL
    SELECT 'telegram', p_telegram, p_extra || jsonb_build_object(
               'recipient', p_subscriber, 'subscription', p_subscription,
               'period_index', p_period)
     WHERE p_telegram IS NOT NULL
$$;

CREATE OR REPLACE FUNCTION paybot_subscription_event(s subscriptions, p_callback text,
                                                     p_telegram text, p_extra jsonb DEFAULT '{}')
RETURNS void LANGUAGE sql AS $$
    INSERT INTO outbox (topic, event_type, payload)
    SELECT * FROM paybot_subscription_event_rows(s.public_id, s.seller_id, s.subscriber_id,
                                                 s.period_index, p_callback, p_telegram,
                                                 p_extra)
$$;

-- The subscription has ended (cancelled or expired): its open period invoices are voided (no
-- payment can reopen it), and a channel plan's member is removed.
CREATE OR REPLACE FUNCTION paybot_subscription_end(s subscriptions, p_status text,
                                                   p_at timestamptz)
RETURNS subscriptions LANGUAGE plpgsql AS $$
DECLARE v subscriptions%ROWTYPE; v_chat bigint;
BEGIN
    UPDATE subscriptions SET status = p_status, ended_at = p_at, updated_at = now(),
           cancelled_at = CASE WHEN p_status = 'cancelled' THEN coalesce(cancelled_at, now())
                               ELSE cancelled_at END
     WHERE id = s.id RETURNING * INTO v;
    UPDATE invoices i SET status = 'void', closed_at = now(), updated_at = now()
      FROM subscription_periods p
     WHERE p.subscription_id = v.id AND p.status = 'open' AND i.id = p.invoice_id
       AND i.status IN ('pending', 'draft', 'expired') AND i.amount_paid = 0;
    UPDATE subscription_periods SET status = 'void'
     WHERE subscription_id = v.id AND status = 'open';
    PERFORM paybot_subscription_event(
        v, CASE WHEN p_status = 'cancelled' THEN 'subscription_cancelled'
                ELSE 'subscription_expired' END, 'subscription.ended');
    IF NOT s.cancel_at_period_end THEN  -- else Telegram was told when it was cancelled
        PERFORM paybot_stars_subscription_stop(v);
    END IF;
    SELECT channel_chat_id INTO v_chat FROM plans WHERE id = v.plan_id;
    IF v_chat IS NOT NULL THEN
        INSERT INTO outbox (topic, event_type, payload)
        SELECT 'telegram', 'channel.revoke',
               jsonb_build_object('chat_id', v_chat, 'telegram_id', u.telegram_id,
                                  'subscription', v.public_id, 'plan_id', v.plan_id)
          FROM users u WHERE u.id = v.subscriber_id;
    END IF;
    RETURN v;
END $$;

-- The invoice of period p_k (created when missing, or when its earlier one was voided by a
-- plan change): one-time, the subscription's price, its TON quote at p_rate, payable until the
-- period's end plus the grace. Returns the invoice's public id.
CREATE OR REPLACE FUNCTION paybot_open_period(s subscriptions, p_k int, p_public text,
                                              p_rate numeric, p_grace interval)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE v_row subscription_periods%ROWTYPE; v_start timestamptz; v_end timestamptz;
        v_name text; r record;
BEGIN
    SELECT * INTO v_row FROM subscription_periods
     WHERE subscription_id = s.id AND period_index = p_k FOR UPDATE;
    IF v_row.status IN ('open', 'paid') THEN
        RETURN (SELECT public_id FROM invoices WHERE id = v_row.invoice_id);
    END IF;
    v_start := CASE WHEN p_k = s.anchor_index THEN s.anchor_at
                    ELSE paybot_period_end(s, p_k - 1) END;
    v_end := paybot_period_end(s, p_k);
    SELECT name INTO v_name FROM plans WHERE id = s.plan_id;
    SELECT * INTO r FROM create_invoices(
        ARRAY[s.seller_id], ARRAY[NULL::text], ARRAY[NULL::bytea], ARRAY[p_public],
        ARRAY[left(v_name || ' · ' || to_char(v_start AT TIME ZONE 'UTC', 'YYYY-MM-DD') || ' – '
                   || to_char(v_end AT TIME ZONE 'UTC', 'YYYY-MM-DD'), 128)],
        ARRAY[NULL::text], ARRAY[s.currency], ARRAY[s.amount],
        ARRAY[paybot_quote_ton(s.amount, s.currency, p_rate)],
        ARRAY[CASE WHEN s.currency = 'TON' THEN NULL ELSE p_rate END],
        ARRAY['one_time'], ARRAY[NULL::int],
        ARRAY[jsonb_build_object('subscription', s.public_id, 'period', p_k)],
        -- the first payment is waited for a day (then the subscription expires); a renewal's
        -- invoice stays payable through the grace period
        ARRAY[CASE WHEN s.status = 'incomplete' THEN now() + interval '1 day'
                   ELSE greatest(v_end, now()) + p_grace + interval '1 day' END],
        -- due when the period starts (a renewal's invoice opened ahead); the first payment
        -- is waited for as long as its invoice lives, never "overdue"
        ARRAY[NULL::text], ARRAY[NULL::jsonb],
        ARRAY[CASE WHEN s.status = 'incomplete' THEN NULL ELSE v_start END]);
    IF v_row.subscription_id IS NULL THEN
        INSERT INTO subscription_periods (subscription_id, period_index, starts_at, ends_at,
                                          invoice_id, status)
        VALUES (s.id, p_k, v_start, v_end, (r.r_invoice).id, 'open');
    ELSE  -- voided by a plan change: the period gets a new invoice at the new price
        UPDATE subscription_periods SET invoice_id = (r.r_invoice).id, status = 'open',
                                        starts_at = v_start, ends_at = v_end
         WHERE subscription_id = s.id AND period_index = p_k;
    END IF;
    RETURN p_public;
END $$;

-- Subscribe: a live subscription per (plan, subscriber). With a trial (the first on this plan
-- for this subscriber) it starts trialing at once and the first charge comes at the trial's
-- end; otherwise it waits (incomplete) for its first period's invoice to be paid. Subscribing
-- again while incomplete with the same period answers the same subscription.
CREATE OR REPLACE FUNCTION subscribe(p_plan text, p_subscriber bigint, p_months int,
                                     p_public text, p_invoice_public text, p_rate numeric,
                                     p_grace interval)
RETURNS TABLE (r_subscription subscriptions, r_invoice text, r_replayed boolean)
LANGUAGE plpgsql AS $$
DECLARE pl plans%ROWTYPE; v_amount bigint; v subscriptions%ROWTYPE; v_trial boolean;
        v_inv text;
BEGIN
    SELECT * INTO pl FROM plans WHERE public_id = upper(p_plan) AND status = 'active';
    IF pl.id IS NULL THEN
        PERFORM paybot_raise('plan_not_found', p_plan);
    ELSIF pl.seller_id = p_subscriber THEN
        PERFORM paybot_raise('own_plan', pl.public_id);
    END IF;
    SELECT amount INTO v_amount FROM plan_prices WHERE plan_id = pl.id AND months = p_months;
    IF v_amount IS NULL THEN
        PERFORM paybot_raise('period_not_offered', p_months::text);
    END IF;
    -- Serialize this subscriber's subscribing to this plan (the unique index would refuse the
    -- second anyway; this turns the race into a clean answer).
    PERFORM pg_advisory_xact_lock(hashtextextended('paybot.sub:' || pl.id || ':' || p_subscriber, 0));
    SELECT * INTO v FROM subscriptions
     WHERE plan_id = pl.id AND subscriber_id = p_subscriber
       AND status IN ('incomplete', 'trialing', 'active', 'past_due') FOR UPDATE;
    IF v.id IS NOT NULL THEN
        IF v.status = 'incomplete' AND v.months = p_months THEN
            SELECT i.public_id INTO v_inv FROM subscription_periods p
              JOIN invoices i ON i.id = p.invoice_id
             WHERE p.subscription_id = v.id AND p.period_index = v.period_index;
            RETURN QUERY SELECT v, v_inv, true;
            RETURN;
        END IF;
        PERFORM paybot_raise('already_subscribed', v.public_id);
    END IF;
    -- One trial per plan and subscriber, ever: remembered by the plan it was had on (a later
    -- change of plan does not make it available again).
    v_trial := pl.trial_days > 0 AND NOT EXISTS (
        SELECT 1 FROM subscriptions x WHERE x.subscriber_id = p_subscriber
                                        AND x.trial_plan_id = pl.id);
    IF v_trial THEN
        INSERT INTO subscriptions (public_id, plan_id, seller_id, subscriber_id, months, amount,
                                   currency, status, anchor_at, anchor_index, period_index,
                                   current_period_start, current_period_end, trial_end,
                                   trial_plan_id)
        VALUES (p_public, pl.id, pl.seller_id, p_subscriber, p_months, v_amount, pl.currency,
                'trialing', now() + make_interval(days => pl.trial_days), 1, 0, now(),
                now() + make_interval(days => pl.trial_days),
                now() + make_interval(days => pl.trial_days), pl.id)
        RETURNING * INTO v;
        INSERT INTO subscription_periods (subscription_id, period_index, starts_at, ends_at,
                                          status)
        VALUES (v.id, 0, v.current_period_start, v.current_period_end, 'trial');
        PERFORM paybot_subscription_event(v, 'subscription_created', 'subscription.activated');
        RETURN QUERY SELECT v, NULL::text, false;
        RETURN;
    END IF;
    INSERT INTO subscriptions (public_id, plan_id, seller_id, subscriber_id, months, amount,
                               currency, status, anchor_at, anchor_index, period_index,
                               current_period_start, current_period_end)
    VALUES (p_public, pl.id, pl.seller_id, p_subscriber, p_months, v_amount, pl.currency,
            'incomplete', now(), 0, 0, now(), paybot_add_months(now(), p_months))
    RETURNING * INTO v;
    v_inv := paybot_open_period(v, 0, p_invoice_public, p_rate, p_grace);
    RETURN QUERY SELECT v, v_inv, false;
END $$;

-- A period's invoice was paid (any path) or closed unpaid. Paid: the subscription moves to that
-- period (active; created -> its first event). Closed unpaid while the subscription waits for
-- its first payment: it expires.
CREATE OR REPLACE FUNCTION paybot_subscription_invoice() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE p subscription_periods%ROWTYPE; v subscriptions%ROWTYPE; v_first boolean;
        v_chat bigint;
BEGIN
    IF current_setting('paybot.renewing', true) = 'on' THEN
        RETURN NULL;  -- paybot_renew_due moves its own subscriptions, set-based
    END IF;
    SELECT * INTO p FROM subscription_periods WHERE invoice_id = NEW.id FOR UPDATE;
    IF p.subscription_id IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT * INTO v FROM subscriptions WHERE id = p.subscription_id FOR UPDATE;
    IF NEW.status = 'paid' THEN
        UPDATE subscription_periods SET status = 'paid', paid_at = now()
         WHERE subscription_id = p.subscription_id AND period_index = p.period_index;
        IF v.status IN ('cancelled', 'expired') THEN
            RETURN NULL;  -- paid after the end (cannot happen: its invoice was voided)
        END IF;
        v_first := v.status = 'incomplete';
        IF p.period_index > v.period_index OR v_first THEN
            UPDATE subscriptions
               SET status = 'active', period_index = p.period_index,
                   current_period_start = p.starts_at, current_period_end = p.ends_at,
                   grace_until = NULL, updated_at = now()
             WHERE id = v.id RETURNING * INTO v;
            PERFORM paybot_subscription_event(
                v, CASE WHEN v_first THEN 'subscription_created' ELSE 'subscription_renewed' END,
                CASE WHEN v_first THEN 'subscription.activated' ELSE 'subscription.renewed' END,
                jsonb_build_object('invoice', NEW.public_id));
        END IF;
    ELSIF v.status = 'incomplete' AND p.period_index = v.period_index THEN
        UPDATE subscription_periods SET status = 'void'
         WHERE subscription_id = p.subscription_id AND period_index = p.period_index;
        PERFORM paybot_subscription_end(v, 'expired', now());
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER invoices_subscription AFTER UPDATE OF status ON invoices
    FOR EACH ROW WHEN (NEW.payload ? 'subscription' AND OLD.status IS DISTINCT FROM NEW.status
                       AND NEW.status IN ('paid', 'expired', 'cancelled', 'void'))
    EXECUTE FUNCTION paybot_subscription_invoice();

-- The renewal job's one step: up to p_limit subscriptions whose period has ended, locked (SKIP
-- LOCKED: replicas take different ones). Each is ended (cancelled at the period's end; past due
-- beyond the grace), or has its next period's invoice opened (once: the period row) and paid
-- from the subscriber's balance through process_invoice_payments (once: its idempotency key
-- sub:<id>:<period>); a short balance makes it past due. Set-based: one create_invoices, one
-- payment batch and one update per step, so a renewal costs its rows, not a dozen statements
-- (bench/subscriptions.py). Returns what happened to each.
CREATE OR REPLACE FUNCTION paybot_renew_due(p_now timestamptz, p_limit int, p_rate numeric,
                                            p_grace interval, p_invoice_ids text[])
RETURNS TABLE (r_subscription text, r_outcome text)
LANGUAGE plpgsql AS $$
DECLARE v_due subscriptions[]; s subscriptions%ROWTYPE; v_new int[];
BEGIN
    SELECT coalesce(array_agg(x ORDER BY x.current_period_end, x.id), '{}') INTO v_due
      FROM (SELECT * FROM subscriptions
             WHERE status IN ('trialing', 'active', 'past_due') AND current_period_end <= p_now
               -- past due: tried again every few hours, and ended when the grace runs out
               AND (status <> 'past_due' OR retry_at <= p_now OR grace_until <= p_now)
             ORDER BY current_period_end, id LIMIT p_limit FOR UPDATE SKIP LOCKED) x;
    IF cardinality(v_due) = 0 THEN
        RETURN;
    END IF;

    -- Endings (the few): one by one.
    FOR s IN SELECT * FROM unnest(v_due) x
              WHERE x.cancel_at_period_end OR (x.status = 'past_due' AND x.grace_until <= p_now)
    LOOP
        IF s.cancel_at_period_end THEN
            PERFORM paybot_subscription_end(s, 'cancelled', s.current_period_end);
            r_subscription := s.public_id; r_outcome := 'cancelled';
        ELSE
            PERFORM paybot_subscription_end(s, 'expired', p_now);
            r_subscription := s.public_id; r_outcome := 'expired';
        END IF;
        RETURN NEXT;
    END LOOP;

    -- Renewals: the next period of each, its invoice opened once (a reminder may have opened
    -- it already: then that one is paid), all in one create_invoices call.
    CREATE TEMP TABLE IF NOT EXISTS paybot_renewing (
        n int, sub_id bigint, public_id text, subscriber bigint, seller bigint, k int,
        starts_at timestamptz, ends_at timestamptz, invoice text, is_new boolean, row_void boolean
    ) ON COMMIT DROP;
    TRUNCATE paybot_renewing;
    INSERT INTO paybot_renewing
    SELECT row_number() OVER (ORDER BY x.current_period_end, x.id), x.id, x.public_id,
           x.subscriber_id, x.seller_id, x.period_index + 1,
           CASE WHEN x.period_index + 1 = x.anchor_index THEN x.anchor_at
                ELSE paybot_period_end(x, x.period_index) END,
           paybot_period_end(x, x.period_index + 1),
           CASE WHEN p.status IN ('open', 'paid') THEN i.public_id END,
           p.status IS NULL OR p.status = 'void', p.status = 'void'
      FROM unnest(v_due) x
      LEFT JOIN subscription_periods p ON p.subscription_id = x.id
                                      AND p.period_index = x.period_index + 1
      LEFT JOIN invoices i ON i.id = p.invoice_id
     WHERE NOT x.cancel_at_period_end AND NOT (x.status = 'past_due' AND x.grace_until <= p_now);
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE paybot_renewing r SET invoice = p_invoice_ids[r.n] WHERE r.is_new;
    PERFORM 1 FROM create_invoices(
        (SELECT array_agg(r.seller ORDER BY r.n) FROM paybot_renewing r WHERE r.is_new),
        (SELECT array_agg(NULL::text) FROM paybot_renewing r WHERE r.is_new),
        (SELECT array_agg(NULL::bytea) FROM paybot_renewing r WHERE r.is_new),
        (SELECT array_agg(r.invoice ORDER BY r.n) FROM paybot_renewing r WHERE r.is_new),
        (SELECT array_agg(left(pl.name || ' · ' || to_char(r.starts_at AT TIME ZONE 'UTC',
                                                           'YYYY-MM-DD')
                               || ' – ' || to_char(r.ends_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
                               128) ORDER BY r.n)
           FROM paybot_renewing r JOIN subscriptions x ON x.id = r.sub_id
           JOIN plans pl ON pl.id = x.plan_id WHERE r.is_new),
        (SELECT array_agg(NULL::text) FROM paybot_renewing r WHERE r.is_new),
        (SELECT array_agg(x.currency ORDER BY r.n)
           FROM paybot_renewing r JOIN subscriptions x ON x.id = r.sub_id WHERE r.is_new),
        (SELECT array_agg(x.amount ORDER BY r.n)
           FROM paybot_renewing r JOIN subscriptions x ON x.id = r.sub_id WHERE r.is_new),
        -- the TON quote as paybot_quote_ton, its scale looked up once per currency, not per row
        (SELECT array_agg(CASE WHEN x.currency = 'TON' THEN x.amount
                               WHEN p_rate > 0 THEN ceil(x.amount * 1e9 / (p_rate * c.scale))
                          END::bigint ORDER BY r.n)
           FROM paybot_renewing r JOIN subscriptions x ON x.id = r.sub_id
           JOIN (SELECT code, 10::numeric ^ decimals AS scale FROM currencies) c
             ON c.code = x.currency
          WHERE r.is_new),
        (SELECT array_agg(CASE WHEN x.currency = 'TON' THEN NULL ELSE p_rate END ORDER BY r.n)
           FROM paybot_renewing r JOIN subscriptions x ON x.id = r.sub_id WHERE r.is_new),
        (SELECT array_agg('one_time'::text) FROM paybot_renewing r WHERE r.is_new),
        (SELECT array_agg(NULL::int) FROM paybot_renewing r WHERE r.is_new),
        (SELECT array_agg(jsonb_build_object('subscription', r.public_id, 'period', r.k)
                          ORDER BY r.n) FROM paybot_renewing r WHERE r.is_new),
        (SELECT array_agg(greatest(r.ends_at, now()) + p_grace + interval '1 day' ORDER BY r.n)
           FROM paybot_renewing r WHERE r.is_new),
        (SELECT array_agg(NULL::text) FROM paybot_renewing r WHERE r.is_new),
        (SELECT array_agg(NULL::jsonb) FROM paybot_renewing r WHERE r.is_new),
        (SELECT array_agg(r.starts_at ORDER BY r.n) FROM paybot_renewing r WHERE r.is_new))
     WHERE EXISTS (SELECT 1 FROM paybot_renewing r WHERE r.is_new);
    INSERT INTO subscription_periods (subscription_id, period_index, starts_at, ends_at,
                                      invoice_id, status)
    SELECT r.sub_id, r.k, r.starts_at, r.ends_at, i.id, 'open'
      FROM paybot_renewing r JOIN invoices i ON i.public_id = r.invoice
     WHERE r.is_new
    ON CONFLICT (subscription_id, period_index) DO UPDATE   -- a period voided by a plan change
        SET invoice_id = EXCLUDED.invoice_id, status = 'open', starts_at = EXCLUDED.starts_at,
            ends_at = EXCLUDED.ends_at;

    -- The same balance payment as a tap on Pay. The paid invoices' subscriptions are moved on
    -- below, set-based, so the per-invoice trigger stands aside for this statement.
    PERFORM set_config('paybot.renewing', 'on', true);
    CREATE TEMP TABLE IF NOT EXISTS paybot_renewed (idx int, error text) ON COMMIT DROP;
    TRUNCATE paybot_renewed;
    INSERT INTO paybot_renewed
    SELECT x.idx, x.error FROM process_invoice_payments(
        (SELECT array_agg(r.invoice ORDER BY r.n) FROM paybot_renewing r),
        (SELECT array_agg(r.subscriber ORDER BY r.n) FROM paybot_renewing r),
        (SELECT array_agg('sub:' || r.public_id || ':' || r.k ORDER BY r.n)
           FROM paybot_renewing r)) x;
    PERFORM set_config('paybot.renewing', 'off', true);

    -- Paid (or paid before, ahead: a replay): the period is paid, the subscription in it.
    WITH paid AS (
        UPDATE subscription_periods p SET status = 'paid', paid_at = coalesce(p.paid_at, now())
          FROM paybot_renewing r JOIN paybot_renewed d ON d.idx = r.n AND d.error IS NULL
         WHERE p.subscription_id = r.sub_id AND p.period_index = r.k
        RETURNING p.subscription_id, p.period_index, p.starts_at, p.ends_at
    ), moved AS (
        UPDATE subscriptions x
           SET status = 'active', period_index = paid.period_index,
               current_period_start = paid.starts_at, current_period_end = paid.ends_at,
               grace_until = NULL, retry_at = NULL, updated_at = now()
          FROM paid
         WHERE x.id = paid.subscription_id AND paid.period_index > x.period_index
        RETURNING x.*
    )
    INSERT INTO outbox (topic, event_type, payload)
    SELECT e.* FROM moved m JOIN paybot_renewing r ON r.sub_id = m.id
     CROSS JOIN LATERAL paybot_subscription_event_rows(
         m.public_id, m.seller_id, m.subscriber_id, m.period_index, 'subscription_renewed',
         'subscription.renewed', jsonb_build_object('invoice', r.invoice)) e;

    -- Short of money: past due (told once), tried again in a few hours.
    WITH short AS (
        UPDATE subscriptions x
           SET retry_at = p_now + interval '6 hours', updated_at = now(),
               status = 'past_due',
               grace_until = CASE WHEN x.status = 'past_due' THEN x.grace_until
                                  ELSE x.current_period_end + p_grace END
          FROM paybot_renewing r JOIN paybot_renewed d ON d.idx = r.n
         WHERE x.id = r.sub_id AND d.error = 'insufficient_funds'
        RETURNING x.*, (SELECT o.status FROM unnest(v_due) o WHERE o.id = x.id) AS was,
                  r.invoice
    )
    INSERT INTO outbox (topic, event_type, payload)
    SELECT e.* FROM short m
     CROSS JOIN LATERAL paybot_subscription_event_rows(
         m.public_id, m.seller_id, m.subscriber_id, m.period_index, 'subscription_past_due',
         'subscription.past_due', jsonb_build_object('invoice', m.invoice)) e
     WHERE m.was <> 'past_due';

    RETURN QUERY
    SELECT r.public_id, CASE WHEN d.error IS NULL THEN 'renewed'
                             WHEN d.error = 'insufficient_funds' THEN 'past_due'
                             ELSE d.error END
      FROM paybot_renewing r JOIN paybot_renewed d ON d.idx = r.n;
END $$;

-- Reminders, each once per (subscription, period, kind): three days before a renewal (the next
-- period's invoice is opened then, so it can also be paid by TON ahead of time), and once in
-- the grace period of a past-due subscription.
CREATE OR REPLACE FUNCTION paybot_subscription_reminders(p_now timestamptz, p_limit int,
                                                         p_rate numeric, p_grace interval,
                                                         p_invoice_ids text[])
RETURNS int LANGUAGE plpgsql AS $$
DECLARE s subscriptions%ROWTYPE; v_n int := 0; v_inv text; r record;
BEGIN
    FOR r IN
        SELECT x.id, k.kind FROM subscriptions x
         CROSS JOIN LATERAL (SELECT CASE
                 WHEN x.status IN ('active', 'trialing') AND NOT x.cancel_at_period_end
                      AND x.current_period_end - interval '3 days' <= p_now
                      AND x.current_period_end > p_now THEN 'before_3'
                 WHEN x.status = 'past_due' AND x.current_period_end + interval '1 day' <= p_now
                      AND x.grace_until > p_now THEN 'grace' END AS kind) k
         WHERE k.kind IS NOT NULL
           AND x.status IN ('active', 'trialing', 'past_due')
           AND x.current_period_end <= p_now + interval '3 days'
           AND NOT EXISTS (SELECT 1 FROM subscription_reminders m
                            WHERE m.subscription_id = x.id
                              AND m.period_index = x.period_index + 1 AND m.kind = k.kind)
         ORDER BY x.current_period_end, x.id LIMIT p_limit
         FOR UPDATE OF x SKIP LOCKED
    LOOP
        SELECT * INTO s FROM subscriptions WHERE id = r.id;
        INSERT INTO subscription_reminders (subscription_id, period_index, kind)
        VALUES (s.id, s.period_index + 1, r.kind) ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            CONTINUE;
        END IF;
        v_n := v_n + 1;
        v_inv := paybot_open_period(s, s.period_index + 1, p_invoice_ids[v_n], p_rate, p_grace);
        PERFORM paybot_subscription_event(s, NULL, 'subscription.reminder',
            jsonb_build_object('kind', r.kind, 'invoice', v_inv,
                               'charge_at', s.current_period_end));
    END LOOP;
    RETURN v_n;
END $$;

-- Cancel, by the subscriber, the seller or the operator (p_actor NULL): at the period's end
-- (access until then; the renewal job ends it) or at once (access ends now; no refund).
CREATE OR REPLACE FUNCTION cancel_subscription(p_sub text, p_actor bigint, p_at_period_end boolean,
                                               p_reason text)
RETURNS subscriptions LANGUAGE plpgsql AS $$
DECLARE v subscriptions%ROWTYPE;
BEGIN
    SELECT * INTO v FROM subscriptions WHERE public_id = upper(p_sub) FOR UPDATE;
    IF v.id IS NULL OR (p_actor IS NOT NULL AND p_actor NOT IN (v.subscriber_id, v.seller_id)) THEN
        PERFORM paybot_raise('subscription_not_found', p_sub);
    ELSIF v.status IN ('cancelled', 'expired') THEN
        PERFORM paybot_raise('subscription_ended', v.public_id);
    END IF;
    INSERT INTO subscription_changes (subscription_id, kind, detail, reason, actor_id)
    VALUES (v.id, 'cancel', jsonb_build_object('at_period_end', p_at_period_end), p_reason,
            p_actor);
    IF p_at_period_end AND v.status <> 'incomplete' THEN
        UPDATE subscriptions SET cancel_at_period_end = true, cancelled_at = now(),
                                 updated_at = now()
         WHERE id = v.id RETURNING * INTO v;
        PERFORM paybot_subscription_event(v, 'subscription_cancelled', NULL,
                                          jsonb_build_object('at_period_end', true));
        PERFORM paybot_stars_subscription_stop(v);  -- rails.sql
        RETURN v;
    END IF;
    RETURN paybot_subscription_end(v, 'cancelled', now());
END $$;

-- The seller or the operator gives N more months (a reason is required): the current period
-- ends N months later (the anchor day is kept); a past-due subscription is current again and
-- the unpaid period's invoice is voided.
CREATE OR REPLACE FUNCTION extend_subscription(p_sub text, p_seller bigint, p_months int,
                                               p_reason text)
RETURNS subscriptions LANGUAGE plpgsql AS $$
DECLARE v subscriptions%ROWTYPE;
BEGIN
    SELECT * INTO v FROM subscriptions WHERE public_id = upper(p_sub) FOR UPDATE;
    IF v.id IS NULL OR (p_seller IS NOT NULL AND v.seller_id <> p_seller) THEN
        PERFORM paybot_raise('subscription_not_found', p_sub);
    ELSIF v.status NOT IN ('trialing', 'active', 'past_due') THEN
        PERFORM paybot_raise('subscription_ended', v.public_id);
    ELSIF p_months IS NULL OR p_months NOT BETWEEN 1 AND 120 THEN
        PERFORM paybot_raise('invalid_plan', 'extend by 1 to 120 months');
    END IF;
    UPDATE invoices i SET status = 'void', closed_at = now(), updated_at = now()
      FROM subscription_periods p
     WHERE p.subscription_id = v.id AND p.period_index > v.period_index AND p.status = 'open'
       AND i.id = p.invoice_id AND i.status IN ('pending', 'expired') AND i.amount_paid = 0;
    UPDATE subscription_periods SET status = 'void'
     WHERE subscription_id = v.id AND period_index > v.period_index AND status = 'open';
    IF v.status = 'trialing' THEN
        -- a trial has no anchor months yet: it simply lasts longer
        UPDATE subscriptions
           SET anchor_at = paybot_add_months(anchor_at, p_months),
               current_period_end = paybot_add_months(current_period_end, p_months),
               trial_end = paybot_add_months(trial_end, p_months), updated_at = now()
         WHERE id = v.id RETURNING * INTO v;
    ELSE
        UPDATE subscriptions SET extra_months = extra_months + p_months, updated_at = now()
         WHERE id = v.id RETURNING * INTO v;
        UPDATE subscriptions
           SET current_period_end = paybot_period_end(v, v.period_index), status = 'active',
               grace_until = NULL
         WHERE id = v.id RETURNING * INTO v;
    END IF;
    INSERT INTO subscription_changes (subscription_id, kind, detail, reason, actor_id)
    VALUES (v.id, 'extend', jsonb_build_object('months', p_months), p_reason, p_seller);
    PERFORM paybot_subscription_event(v, 'subscription_renewed', 'subscription.renewed',
                                      jsonb_build_object('extended_months', p_months));
    RETURN v;
END $$;

-- Change to another plan of the same seller, or another period: prorated over the unused part
-- of the current period, in seconds — credit = floor(old price × unused), charge = ceil(new
-- price × unused); more to pay is charged now from the balance (an invoice paid at once), less
-- is credited to the subscriber's balance from the seller's. The period's end stays; the next
-- renewal charges the new price. A change of period length re-anchors at the period's end.
CREATE OR REPLACE FUNCTION change_subscription(p_sub text, p_subscriber bigint, p_plan text,
                                               p_months int, p_invoice_public text,
                                               p_rate numeric)
RETURNS TABLE (r_subscription subscriptions, r_charged bigint, r_credited bigint)
LANGUAGE plpgsql AS $$
DECLARE v subscriptions%ROWTYPE; pl plans%ROWTYPE; v_new bigint; v_total numeric;
        v_unused numeric; v_credit bigint; v_charge bigint; v_diff bigint; v_tx bigint;
        r record;
BEGIN
    SELECT * INTO v FROM subscriptions WHERE public_id = upper(p_sub) FOR UPDATE;
    IF v.id IS NULL OR v.subscriber_id <> p_subscriber THEN
        PERFORM paybot_raise('subscription_not_found', p_sub);
    ELSIF v.status IN ('cancelled', 'expired') THEN
        PERFORM paybot_raise('subscription_ended', v.public_id);
    ELSIF v.status NOT IN ('active', 'trialing') THEN
        PERFORM paybot_raise('subscription_not_current', v.public_id);  -- unpaid: pay first
    END IF;
    SELECT * INTO pl FROM plans WHERE public_id = upper(p_plan) AND status = 'active';
    IF pl.id IS NULL OR pl.seller_id <> v.seller_id OR pl.currency <> v.currency THEN
        PERFORM paybot_raise('plan_not_found', p_plan);
    END IF;
    SELECT amount INTO v_new FROM plan_prices WHERE plan_id = pl.id AND months = p_months;
    IF v_new IS NULL THEN
        PERFORM paybot_raise('period_not_offered', p_months::text);
    ELSIF pl.id = v.plan_id AND p_months = v.months THEN
        PERFORM paybot_raise('same_plan', v.public_id);
    ELSIF pl.id <> v.plan_id AND EXISTS (
            SELECT 1 FROM subscriptions x WHERE x.plan_id = pl.id
               AND x.subscriber_id = v.subscriber_id
               AND x.status IN ('incomplete', 'trialing', 'active', 'past_due')) THEN
        PERFORM paybot_raise('already_subscribed', pl.public_id);
    END IF;
    v_credit := 0; v_charge := 0;
    IF v.status = 'active' THEN
        v_total := extract(epoch FROM v.current_period_end - v.current_period_start);
        v_unused := greatest(0, extract(epoch FROM v.current_period_end - now()));
        v_credit := floor(v.amount * v_unused / v_total);
        v_charge := ceil(v_new * v_unused / v_total);
    END IF;
    v_diff := v_charge - v_credit;
    IF v_diff > 0 THEN
        SELECT * INTO r FROM create_invoices(
            ARRAY[v.seller_id], ARRAY[NULL::text], ARRAY[NULL::bytea], ARRAY[p_invoice_public],
            ARRAY[left(pl.name || ' · change of plan', 128)], ARRAY[NULL::text],
            ARRAY[v.currency], ARRAY[v_diff], ARRAY[NULL::bigint], ARRAY[NULL::numeric],
            ARRAY['one_time'], ARRAY[NULL::int], ARRAY['{}'::jsonb],
            ARRAY[now() + interval '1 day'], ARRAY[NULL::text], ARRAY[NULL::jsonb],
            ARRAY[NULL::timestamptz]);
        SELECT x.error, x.error_detail INTO r FROM process_invoice_payments(
            ARRAY[p_invoice_public], ARRAY[p_subscriber],
            ARRAY['sub-change:' || v.public_id || ':' || p_invoice_public]) x;
        IF r.error IS NOT NULL THEN
            PERFORM paybot_raise(r.error, r.error_detail);  -- nothing changed (rolled back)
        END IF;
    ELSIF v_diff < 0 THEN
        INSERT INTO ledger_transactions (kind, reason, reference)
        VALUES ('proration', 'plan change credit', 'proration:' || v.public_id || ':'
                || p_invoice_public)
        RETURNING id INTO v_tx;
        BEGIN
            PERFORM paybot_debit_user(v_tx, v.seller_id, v.currency, -v_diff);
        EXCEPTION WHEN OTHERS THEN
            IF SQLSTATE <> paybot_error_sqlstate('insufficient_funds') THEN
                RAISE;
            END IF;
            -- The seller's balance is short, not the subscriber's: say so.
            PERFORM paybot_raise('proration_unfunded', v.public_id);
        END;
        PERFORM paybot_credit_user(v_tx, v.subscriber_id, v.currency, -v_diff);
    END IF;
    -- The next period's invoice (if opened ahead) was at the old price: void it.
    UPDATE invoices i SET status = 'void', closed_at = now(), updated_at = now()
      FROM subscription_periods p
     WHERE p.subscription_id = v.id AND p.period_index > v.period_index AND p.status = 'open'
       AND i.id = p.invoice_id AND i.status IN ('pending', 'expired') AND i.amount_paid = 0;
    UPDATE subscription_periods SET status = 'void'
     WHERE subscription_id = v.id AND period_index > v.period_index AND status = 'open';
    INSERT INTO subscription_changes (subscription_id, kind, detail, actor_id)
    VALUES (v.id, 'change', jsonb_build_object('from_plan', v.plan_id, 'from_months', v.months,
                                               'to_plan', pl.id, 'to_months', p_months,
                                               'charged', v_diff), p_subscriber);
    UPDATE subscriptions
       SET plan_id = pl.id, amount = v_new, updated_at = now(),
           months = p_months,
           anchor_at = CASE WHEN p_months = v.months THEN anchor_at ELSE current_period_end END,
           anchor_index = CASE WHEN p_months = v.months THEN anchor_index
                               ELSE v.period_index + 1 END,
           extra_months = CASE WHEN p_months = v.months THEN extra_months ELSE 0 END
     WHERE id = v.id RETURNING * INTO v;
    RETURN QUERY SELECT v, greatest(v_diff, 0), greatest(-v_diff, 0);
END $$;
