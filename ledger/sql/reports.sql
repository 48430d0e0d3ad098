-- Revenue rollups: what each seller received per UTC day, currency and method (table
-- revenue_daily, migration 0018), kept up to date in the transaction that writes the payment
-- or its reversal, so the dashboard reads days, not payments, and its cost does not grow with
-- history (ledger/reports.py). Payments minus reversals: a reversal takes its payment back out
-- of the payment's own day.

-- Statement-level: a batch of balance payments (process_invoice_payments) is one upsert per
-- (seller, day, currency, method), taken in key order so two batches never deadlock.
CREATE OR REPLACE FUNCTION paybot_revenue_on_payments() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO revenue_daily AS r (seller_id, day, currency, method, amount, payments)
    SELECT i.seller_id, (p.created_at AT TIME ZONE 'UTC')::date, p.currency, p.method,
           sum(p.amount), count(*)
      FROM new_payments p JOIN invoices i ON i.id = p.invoice_id
     GROUP BY 1, 2, 3, 4
     ORDER BY 1, 2, 3, 4
    ON CONFLICT (seller_id, day, currency, method) DO UPDATE
       SET amount = r.amount + excluded.amount, payments = r.payments + excluded.payments;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION paybot_revenue_on_reversals() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- The payment's row exists: the payment's own insert put it there.
    UPDATE revenue_daily r
       SET amount = r.amount - x.amount, payments = r.payments - x.payments
      FROM (SELECT i.seller_id, (p.created_at AT TIME ZONE 'UTC')::date AS day, p.currency,
                   p.method, sum(p.amount) AS amount, count(*) AS payments
              FROM new_reversals v JOIN payments p ON p.id = v.payment_id
              JOIN invoices i ON i.id = p.invoice_id
             GROUP BY 1, 2, 3, 4) x
     WHERE r.seller_id = x.seller_id AND r.day = x.day AND r.currency = x.currency
       AND r.method = x.method;
    RETURN NULL;
END $$;

CREATE TRIGGER payments_revenue AFTER INSERT ON payments
    REFERENCING NEW TABLE AS new_payments
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_revenue_on_payments();

CREATE TRIGGER payment_reversals_revenue AFTER INSERT ON payment_reversals
    REFERENCING NEW TABLE AS new_reversals
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_revenue_on_reversals();

-- A rollup row is only ever moved by the triggers above; removing one would hide revenue.
CREATE TRIGGER revenue_daily_no_delete BEFORE DELETE OR TRUNCATE ON revenue_daily
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();

-- What each seller sold, per calendar month (UTC), currency and item (the invoice's title):
-- the dashboard's top items read months, not payments. Kept by the same triggers as
-- revenue_daily, in the same transaction.
CREATE OR REPLACE FUNCTION paybot_items_on_payments() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO item_revenue_monthly AS r (seller_id, month, currency, item, amount, payments)
    SELECT i.seller_id, date_trunc('month', p.created_at AT TIME ZONE 'UTC')::date, p.currency,
           i.title, sum(p.amount), count(*)
      FROM new_payments p JOIN invoices i ON i.id = p.invoice_id
     GROUP BY 1, 2, 3, 4
     ORDER BY 1, 2, 3, 4
    ON CONFLICT (seller_id, month, currency, item) DO UPDATE
       SET amount = r.amount + excluded.amount, payments = r.payments + excluded.payments;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION paybot_items_on_reversals() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE item_revenue_monthly r
       SET amount = r.amount - x.amount, payments = r.payments - x.payments
      FROM (SELECT i.seller_id, date_trunc('month', p.created_at AT TIME ZONE 'UTC')::date AS month,
                   p.currency, i.title AS item, sum(p.amount) AS amount, count(*) AS payments
              FROM new_reversals v JOIN payments p ON p.id = v.payment_id
              JOIN invoices i ON i.id = p.invoice_id
             GROUP BY 1, 2, 3, 4) x
     WHERE r.seller_id = x.seller_id AND r.month = x.month AND r.currency = x.currency
       AND r.item = x.item;
    RETURN NULL;
END $$;

CREATE TRIGGER payments_items AFTER INSERT ON payments
    REFERENCING NEW TABLE AS new_payments
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_items_on_payments();

CREATE TRIGGER payment_reversals_items AFTER INSERT ON payment_reversals
    REFERENCING NEW TABLE AS new_reversals
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_items_on_reversals();

CREATE TRIGGER item_revenue_monthly_no_delete BEFORE DELETE OR TRUNCATE ON item_revenue_monthly
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();

-- Conversion: per seller and UTC day of issue, the invoices issued that day and how many of
-- them are paid now. An invoice counts when it is issued (inserted issued, or a draft issued
-- later); it moves into `paid` when its status becomes paid and back out when a reversal
-- reopens it. Statement-level: a batch of payments is one upsert per (seller, day).
CREATE OR REPLACE FUNCTION paybot_conversion_on_invoices() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO invoices_daily AS r (seller_id, day, issued, paid)
        SELECT n.seller_id, (n.issued_at AT TIME ZONE 'UTC')::date, count(*),
               count(*) FILTER (WHERE n.status = 'paid')
          FROM new_invoices n
         WHERE n.issued_at IS NOT NULL
         GROUP BY 1, 2
         ORDER BY 1, 2
        ON CONFLICT (seller_id, day) DO UPDATE
           SET issued = r.issued + excluded.issued, paid = r.paid + excluded.paid;
        RETURN NULL;
    END IF;
    -- An update: each changed invoice takes its old contribution out and puts its new one in.
    INSERT INTO invoices_daily AS r (seller_id, day, issued, paid)
    SELECT n.seller_id, c.day, sum(c.issued), sum(c.paid)
      FROM new_invoices n JOIN old_invoices o ON o.id = n.id
     CROSS JOIN LATERAL (VALUES
           ((n.issued_at AT TIME ZONE 'UTC')::date, 1, (n.status = 'paid')::int,
            n.issued_at IS NOT NULL),
           ((o.issued_at AT TIME ZONE 'UTC')::date, -1, -(o.status = 'paid')::int,
            o.issued_at IS NOT NULL)) c (day, issued, paid, counted)
     WHERE c.counted
       AND ((o.status = 'paid') IS DISTINCT FROM (n.status = 'paid')
            OR o.issued_at IS DISTINCT FROM n.issued_at)
     GROUP BY 1, 2
    HAVING sum(c.issued) <> 0 OR sum(c.paid) <> 0
     ORDER BY 1, 2
    ON CONFLICT (seller_id, day) DO UPDATE
       SET issued = r.issued + excluded.issued, paid = r.paid + excluded.paid;
    RETURN NULL;
END $$;

CREATE TRIGGER invoices_conversion_insert AFTER INSERT ON invoices
    REFERENCING NEW TABLE AS new_invoices
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_conversion_on_invoices();

CREATE TRIGGER invoices_conversion_update AFTER UPDATE ON invoices
    REFERENCING OLD TABLE AS old_invoices NEW TABLE AS new_invoices
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_conversion_on_invoices();

CREATE TRIGGER invoices_daily_no_delete BEFORE DELETE OR TRUNCATE ON invoices_daily
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
