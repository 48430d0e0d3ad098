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
