-- Payment reminders to buyers and the sellers' daily digest of overdue invoices. A job calls
-- these every few minutes (watchers/reminders.py); each reminder and each digest is sent once
-- (tables invoice_reminders and seller_digests), however many replicas run the job, across
-- restarts and after downtime. Their outbox inserts notify on commit (outbox.sql): delivery
-- wakes at once.

-- Which reminder an invoice is due at p_now, or NULL. Before the due date: 'before_<d>' for the
-- smallest scheduled d whose window (the last d days before due_at) has begun, if the invoice
-- was issued before that window began — so after downtime only the most recent reminder goes
-- out, and an invoice issued 2 days before its due date gets no 7-day reminder. From the due
-- date on: 'overdue', if the seller wants it. Days are 24 hours.
CREATE OR REPLACE FUNCTION paybot_reminder_kind(p_now timestamptz, p_due timestamptz,
                                                p_issued timestamptz, p_days int[],
                                                p_overdue boolean) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN p_now >= p_due THEN CASE WHEN p_overdue THEN 'overdue' END
        ELSE (SELECT 'before_' || d FROM unnest(p_days) AS d
               WHERE d > 0 AND p_now >= p_due - make_interval(hours => 24 * d)
                 -- the windows nest: when the smallest begun one opened after issuing,
                 -- so did every larger one, and no reminder is due
                 AND p_issued <= p_due - make_interval(hours => 24 * d)
               ORDER BY d LIMIT 1)
    END
$$;

-- Queue the reminders due at p_now (at most p_limit): one invoice_reminders row and one
-- 'invoice.reminder' Telegram event per reminder, the event only for a row this statement
-- inserted — so two replicas racing send each (invoice, kind) exactly once (the second waits
-- on the first's row, then inserts nothing). Only pending one-time invoices with money due,
-- sent to a buyer (who else would be reminded), not opted out, still payable. Returns how many
-- were queued.
CREATE OR REPLACE FUNCTION paybot_queue_reminders(p_now timestamptz, p_limit int)
RETURNS int
LANGUAGE sql VOLATILE AS $$
    WITH candidate AS (
        SELECT i.id, r.kind
          FROM invoices i
          LEFT JOIN seller_settings s ON s.user_id = i.seller_id
         CROSS JOIN LATERAL (SELECT paybot_reminder_kind(
                   p_now, i.due_at, coalesce(i.issued_at, i.created_at),
                   coalesce(s.reminder_days, '{7,1}'), coalesce(s.remind_overdue, true)) AS kind
               ) r
         WHERE i.status = 'pending' AND i.kind = 'one_time' AND i.due_at IS NOT NULL
           AND i.sent_to IS NOT NULL AND NOT i.reminders_off AND i.amount_paid < i.amount
           AND i.expires_at > p_now AND r.kind IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM invoice_reminders x
                            WHERE x.invoice_id = i.id AND x.kind = r.kind)
         ORDER BY i.due_at, i.id
         LIMIT p_limit
    ), still_due AS (
        -- Locked and checked again on the latest row: an invoice being paid, voided or opted
        -- out right now is skipped (the next run sees how that ended), so no reminder is
        -- queued after a payment. Only the few rows reminded now are locked, never waited on.
        SELECT i.id, i.public_id, i.seller_id, i.sent_to, i.due_at, c.kind
          FROM invoices i JOIN candidate c ON c.id = i.id
         WHERE i.status = 'pending' AND NOT i.reminders_off AND i.amount_paid < i.amount
           AND i.sent_to IS NOT NULL
           FOR SHARE OF i SKIP LOCKED
    ), sent AS (
        INSERT INTO invoice_reminders (invoice_id, kind, sent_at)
        SELECT id, kind, now() FROM still_due
        ON CONFLICT DO NOTHING
        RETURNING invoice_id, kind
    ), queued AS (
        INSERT INTO outbox (topic, event_type, payload)
        SELECT 'telegram', 'invoice.reminder',
               jsonb_build_object('recipient', d.sent_to, 'invoice', d.public_id,
                                  'kind', d.kind, 'seller_id', d.seller_id, 'due_at', d.due_at)
          FROM sent JOIN still_due d ON d.id = sent.invoice_id AND d.kind = sent.kind
        RETURNING 1
    )
    SELECT count(*)::int FROM queued
$$;

-- Queue the overdue digest of p_day for every seller who wants it and has an overdue invoice
-- (pending, one-time, money due, still payable, due before p_now): one seller_digests row and
-- one 'seller.overdue_digest' event per seller and day, exactly once (as above). The event
-- names the oldest 20 by due date and counts them all. Returns how many were queued.
CREATE OR REPLACE FUNCTION paybot_queue_overdue_digests(p_day date,
                                                        p_now timestamptz DEFAULT now())
RETURNS int
LANGUAGE sql VOLATILE AS $$
    WITH overdue AS (
        SELECT i.seller_id, count(*)::int AS n,
               (array_agg(i.public_id ORDER BY i.due_at, i.id))[1:20] AS ids
          FROM invoices i
          LEFT JOIN seller_settings s ON s.user_id = i.seller_id
         WHERE i.status = 'pending' AND i.kind = 'one_time' AND i.due_at < p_now
           AND i.amount_paid < i.amount AND i.expires_at > p_now
           AND coalesce(s.overdue_digest, true)
         GROUP BY i.seller_id
    ), sent AS (
        INSERT INTO seller_digests (seller_id, day)
        SELECT seller_id, p_day FROM overdue
        ON CONFLICT DO NOTHING
        RETURNING seller_id
    ), queued AS (
        INSERT INTO outbox (topic, event_type, payload)
        SELECT 'telegram', 'seller.overdue_digest',
               jsonb_build_object('recipient', o.seller_id, 'invoices', to_jsonb(o.ids),
                                  'count', o.n, 'day', p_day)
          FROM sent JOIN overdue o ON o.seller_id = sent.seller_id
        RETURNING 1
    )
    SELECT count(*)::int FROM queued
$$;
