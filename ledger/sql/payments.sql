-- Payments and fulfilment: where an invoice is paid. From the balance, batched
-- (process_invoice_payments), or from outside (settle_external_payment: TON, operator); either
-- way the purchase is completed by the same fulfilment (grant, achievement, notices).

-- The notices one payment sends: Telegram to the seller and to the buyer (if known), and the
-- seller's callback when the invoice names one.
CREATE OR REPLACE FUNCTION paybot_paid_events(p_invoice text, p_payment bigint, p_payer bigint,
                                   p_seller bigint, p_method text, p_grant bigint,
                                   p_callback text)
RETURNS TABLE (topic text, event_type text, payload jsonb)
LANGUAGE sql IMMUTABLE AS $$
    SELECT 'telegram', 'invoice.paid', e || jsonb_build_object('recipient', r.user_id, 'role', r.role)
      FROM (SELECT jsonb_build_object('invoice', p_invoice, 'payment_id', p_payment,
                                      'payer_id', p_payer, 'seller_id', p_seller,
                                      'method', p_method, 'grant_id', p_grant) AS e) ev,
           (VALUES (p_seller, 'seller'), (p_payer, 'buyer')) AS r (user_id, role)
     WHERE r.user_id IS NOT NULL
    UNION ALL
    SELECT 'callback', 'invoice_paid', e || jsonb_build_object('url', p_callback)
      FROM (SELECT jsonb_build_object('invoice', p_invoice, 'payment_id', p_payment,
                                      'payer_id', p_payer, 'seller_id', p_seller,
                                      'method', p_method, 'grant_id', p_grant) AS e) ev
     WHERE p_callback IS NOT NULL
$$;

-- Completing purchases, for every path that pays (the balance batch, TON, the operator): per
-- payment the grant (the item in the buyer's inventory, or a guest's claim), the achievement,
-- and the paid notices and callback. Set-based and one statement, so a batch of payments costs
-- what one does. The caller draws the grant ids (grants_id_seq), so it needs no RETURNING to
-- tell whose grant is whose. A guest (no payer) gets the claim token; a known payer never does.
CREATE OR REPLACE FUNCTION paybot_fulfil(p_grants bigint[], p_payments bigint[],
                                         p_invoices bigint[], p_payers bigint[],
                                         p_claim_tokens text[], p_method text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    WITH f AS (
        SELECT f.grant_id, f.payment_id, f.payer, f.claim_token,
               i.id AS invoice_id, i.public_id, i.seller_id, i.payload, i.document
          FROM unnest(p_grants, p_payments, p_invoices, p_payers, p_claim_tokens)
               AS f (grant_id, payment_id, invoice_id, payer, claim_token)
          JOIN invoices i ON i.id = f.invoice_id
    ), granted AS (
        INSERT INTO grants (id, payment_id, invoice_id, user_id, item_id, achievement_id,
                            claim_token, line_items) OVERRIDING SYSTEM VALUE
        SELECT grant_id, payment_id, invoice_id, payer, payload ->> 'item_id',
               payload ->> 'achievement_id', CASE WHEN payer IS NULL THEN claim_token END,
               -- a document's lines may each name an item (ledger/documents.py)
               CASE WHEN document IS NOT NULL THEN ARRAY(
                   SELECT l ->> 'item_id' FROM jsonb_array_elements(document -> 'lines') l
                    WHERE l ? 'item_id') END
          FROM f
    ), unlocked AS (
        INSERT INTO achievements (user_id, achievement_id, grant_id)
        SELECT payer, payload ->> 'achievement_id', grant_id FROM f
         WHERE payer IS NOT NULL AND payload ->> 'achievement_id' IS NOT NULL
        ON CONFLICT DO NOTHING
    )
    INSERT INTO outbox (topic, event_type, payload)
    SELECT o.topic, o.event_type, o.payload
      FROM f CROSS JOIN LATERAL paybot_paid_events(f.public_id, f.payment_id, f.payer,
                                                   f.seller_id, p_method, f.grant_id,
                                                   f.payload ->> 'callback_url') o;
END $$;

-- Pay invoices from buyers' internal balances: a batch of independent requests in one
-- transaction and one round trip (ledger/batcher.py gathers concurrent requests). Each request
-- succeeds or fails on its own; a failed one changes nothing. Set-based: every statement below
-- handles the whole batch, so a payment costs its rows, not a dozen statement round trips.
-- Lock order: invoice rows by id, then buyer account rows by id. Seller credits are written
-- pending (no lock), so many buyers paying one seller never queue on the seller's row.
-- A request whose invoice or buyer already appears earlier in the batch comes back as
-- 'batch_conflict' untouched; the caller sends it again in the next batch.
CREATE OR REPLACE FUNCTION process_invoice_payments(p_invoices text[], p_buyers bigint[], p_keys text[])
RETURNS TABLE (idx int, payment_id bigint, replayed boolean, buyer_balance bigint,
               grant_id bigint, invoice_status text, error text, error_detail text,
               r_invoice invoices, r_seller_username text, r_amount bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    items paybot_pay_item[];
    v_missing bigint[];
BEGIN
    -- The caller (Ledger.pay_from_balance) wakes its own process's delivery after commit: no
    -- NOTIFY, whose lock would serialize the commits of concurrent batches (outbox.sql).
    PERFORM set_config('paybot.quiet_outbox', 'on', true);
    -- Lock the invoices in id order, then read them (a fresh snapshot after the wait).
    PERFORM 1 FROM invoices WHERE public_id = ANY (SELECT upper(x) FROM unnest(p_invoices) x)
     ORDER BY id FOR UPDATE;
    -- Buyers' and sellers' accounts must exist before they can be locked or credited.
    SELECT array_agg(DISTINCT u.id) INTO v_missing
      FROM (SELECT b AS id, i.currency FROM unnest(p_invoices, p_buyers) r (pub, b)
              JOIN invoices i ON i.public_id = upper(r.pub)
            UNION
            SELECT i.seller_id, i.currency FROM invoices i
             WHERE i.public_id = ANY (SELECT upper(x) FROM unnest(p_invoices) x)) u
      JOIN users ON users.id = u.id
     WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.user_id = u.id AND a.currency = u.currency);
    IF v_missing IS NOT NULL THEN
        PERFORM paybot_user_account(u.id, u.currency)
           FROM (SELECT b AS id, i.currency FROM unnest(p_invoices, p_buyers) r (pub, b)
                   JOIN invoices i ON i.public_id = upper(r.pub)
                 UNION
                 SELECT i.seller_id, i.currency FROM invoices i
                  WHERE i.public_id = ANY (SELECT upper(x) FROM unnest(p_invoices) x)) u
          WHERE u.id = ANY (v_missing);
    END IF;
    PERFORM 1 FROM accounts a
      JOIN (SELECT b, i.currency FROM unnest(p_invoices, p_buyers) r (pub, b)
              JOIN invoices i ON i.public_id = upper(r.pub)) q
        ON a.user_id = q.b AND a.currency = q.currency
     ORDER BY a.id FOR UPDATE OF a;

    -- Everything is locked: decide each request, in the order a single request would check.
    SELECT array_agg(ROW(t.*)::paybot_pay_item ORDER BY t.idx) INTO items FROM (
        SELECT r.idx::int, i.id AS invoice_id, i.public_id, r.buyer, r.key, i.seller_id,
               -- What this payment pays: the amount due (a one-time invoice may be partly
               -- paid by manual payments already).
               i.currency, CASE WHEN i.kind = 'one_time' THEN i.amount - i.amount_paid
                                ELSE i.amount END AS amount,
               i.kind, ba.id AS buyer_account, sa.id AS seller_account,
               ba.balance AS balance, i.payload,
               CASE
                 WHEN count(*) OVER (PARTITION BY coalesce(i.id, -r.idx) ORDER BY r.idx) > 1
                   OR count(*) OVER (PARTITION BY r.buyer ORDER BY r.idx) > 1 THEN 'batch_conflict'
                 WHEN i.id IS NULL THEN 'invoice_not_found'
                 WHEN prev.id IS NOT NULL AND prev.invoice_id <> i.id THEN 'idempotency_key_reused'
                 WHEN prev.id IS NOT NULL THEN 'replay'
                 WHEN i.seller_id = r.buyer THEN 'own_invoice'
                 WHEN i.status = 'cancelled' THEN 'invoice_cancelled'
                 WHEN i.status = 'draft' THEN 'invoice_draft'
                 WHEN i.status = 'void' THEN 'invoice_void'
                 WHEN i.status = 'uncollectible' THEN 'invoice_uncollectible'
                 WHEN i.status = 'expired' OR (i.status = 'pending' AND i.expires_at <= now())
                   THEN 'invoice_expired'
                 WHEN i.status <> 'pending' OR i.uses >= coalesce(i.max_uses, i.uses + 1)
                   THEN 'invoice_already_paid'
                 WHEN ba.id IS NULL THEN 'user_not_found'
                 WHEN ba.balance < CASE WHEN i.kind = 'one_time' THEN i.amount - i.amount_paid
                                        ELSE i.amount END THEN 'insufficient_funds'
               END AS outcome,
               prev.id AS prev_payment,
               CASE WHEN i.kind = 'one_time' OR i.uses + 1 = i.max_uses THEN 'paid'
                    ELSE i.status END AS status_after,
               NULL::bigint AS tx_id, NULL::bigint AS pay_id, NULL::bigint AS grant_id
          FROM unnest(p_invoices, p_buyers, p_keys) WITH ORDINALITY r (pub, buyer, key, idx)
          LEFT JOIN invoices i ON i.public_id = upper(r.pub)
          LEFT JOIN payments prev ON prev.payer_id = r.buyer AND prev.idempotency_key = r.key
          LEFT JOIN accounts ba ON ba.user_id = r.buyer AND ba.currency = i.currency
          LEFT JOIN accounts sa ON sa.user_id = i.seller_id AND sa.currency = i.currency
    ) t;

    -- Short of money: fold in credits not yet applied to those accounts, then decide again.
    IF EXISTS (SELECT 1 FROM unnest(items) x WHERE x.outcome = 'insufficient_funds'
                  AND EXISTS (SELECT 1 FROM entries e WHERE e.account_id = x.buyer_account
                                 AND e.balance_after IS NULL)) THEN
        SELECT array_agg(ROW(t.*)::paybot_pay_item ORDER BY t.idx) INTO items FROM (
            SELECT x.idx, x.invoice_id, x.public_id, x.buyer, x.key, x.seller_id,
                   x.currency, x.amount, x.kind, x.buyer_account, x.seller_account,
                   nb.balance, x.payload,
                   CASE WHEN x.outcome = 'insufficient_funds' AND nb.balance >= x.amount
                        THEN NULL ELSE x.outcome END,
                   x.prev_payment, x.status_after, x.tx_id, x.pay_id, x.grant_id
              FROM unnest(items) x
              CROSS JOIN LATERAL (
                  SELECT CASE WHEN x.outcome = 'insufficient_funds'
                              THEN apply_pending_credits(x.buyer_account)
                              ELSE x.balance END AS balance) nb
        ) t;
    END IF;

    -- Ids for the rows about to be written, so the statements below can refer to each other.
    SELECT array_agg(ROW(t.*)::paybot_pay_item ORDER BY t.idx) INTO items FROM (
        SELECT x.idx, x.invoice_id, x.public_id, x.buyer, x.key, x.seller_id,
               x.currency, x.amount, x.kind, x.buyer_account, x.seller_account,
               x.balance, x.payload, x.outcome, x.prev_payment, x.status_after,
               CASE WHEN x.outcome IS NULL THEN nextval('ledger_transactions_id_seq') END,
               CASE WHEN x.outcome IS NULL THEN nextval('payments_id_seq') END,
               CASE WHEN x.outcome IS NULL THEN nextval('grants_id_seq') END
          FROM unnest(items) x
    ) t;

    IF EXISTS (SELECT 1 FROM unnest(items) x WHERE x.outcome IS NULL) THEN
        UPDATE invoices i
           SET uses = i.uses + 1, status = x.status_after,
               paid_at = CASE WHEN x.status_after = 'paid' THEN now() ELSE i.paid_at END,
               amount_paid = CASE WHEN i.kind = 'one_time' THEN i.amount ELSE i.amount_paid END
          FROM unnest(items) x
         WHERE x.outcome IS NULL AND i.id = x.invoice_id;
        UPDATE accounts a SET balance = a.balance - x.amount
          FROM unnest(items) x
         WHERE x.outcome IS NULL AND a.id = x.buyer_account;
        INSERT INTO ledger_transactions (id, kind) OVERRIDING SYSTEM VALUE
        SELECT x.tx_id, 'invoice_payment' FROM unnest(items) x WHERE x.outcome IS NULL;
        INSERT INTO entries (tx_id, account_id, currency, amount, balance_before, balance_after)
        SELECT x.tx_id, x.buyer_account, x.currency, -x.amount, x.balance, x.balance - x.amount
          FROM unnest(items) x WHERE x.outcome IS NULL
        UNION ALL
        SELECT x.tx_id, x.seller_account, x.currency, x.amount, NULL, NULL
          FROM unnest(items) x WHERE x.outcome IS NULL;
        INSERT INTO payments (id, invoice_id, payer_id, method, currency, amount, idempotency_key,
                              ledger_tx_id) OVERRIDING SYSTEM VALUE
        SELECT x.pay_id, x.invoice_id, x.buyer, 'internal', x.currency, x.amount, x.key, x.tx_id
          FROM unnest(items) x WHERE x.outcome IS NULL;
        PERFORM paybot_fulfil(array_agg(x.grant_id), array_agg(x.pay_id), array_agg(x.invoice_id),
                              array_agg(x.buyer), '{}', 'internal')
           FROM unnest(items) x WHERE x.outcome IS NULL;
    END IF;

    RETURN QUERY
    SELECT x.idx,
           coalesce(x.pay_id, x.prev_payment),
           x.outcome IS NOT DISTINCT FROM 'replay',
           CASE WHEN x.outcome IS NULL THEN x.balance - x.amount
                WHEN x.outcome = 'replay' THEN x.balance END,
           CASE WHEN x.outcome IS NULL THEN x.grant_id
                WHEN x.outcome = 'replay' THEN (SELECT g.id FROM grants g
                                                 WHERE g.payment_id = x.prev_payment) END,
           CASE WHEN x.outcome IS NULL THEN x.status_after
                ELSE (SELECT i.status FROM invoices i WHERE i.id = x.invoice_id) END,
           CASE WHEN x.outcome = 'replay' THEN NULL ELSE x.outcome END,
           CASE WHEN x.outcome = 'insufficient_funds'
                THEN json_build_object('needed', x.amount, 'available', x.balance,
                                       'currency', x.currency)::text
                ELSE coalesce(x.public_id, p_invoices[x.idx]) END,
           -- The invoice as this batch left it, and its seller's name: what the answer shows,
           -- so no edge reads the invoice again around a payment.
           CASE WHEN x.outcome IS NULL OR x.outcome = 'replay'
                THEN (SELECT i FROM invoices i WHERE i.id = x.invoice_id) END,
           CASE WHEN x.outcome IS NULL OR x.outcome = 'replay'
                THEN (SELECT u.username FROM users u WHERE u.id = x.seller_id) END,
           -- what this payment took (the amount due: a partly paid invoice takes the rest)
           CASE WHEN x.outcome IS NULL THEN x.amount
                WHEN x.outcome = 'replay' THEN (SELECT p.amount FROM payments p
                                                 WHERE p.id = x.prev_payment) END
      FROM unnest(items) x;
END $$;

-- One request: the SQL face of the seed's process_invoice_payment(invoice, buyer), raising
-- the typed error a failed request gets.
CREATE OR REPLACE FUNCTION process_invoice_payment(p_invoice text, p_buyer bigint, p_idempotency_key text)
RETURNS TABLE (payment_id bigint, replayed boolean, buyer_balance bigint, grant_id bigint,
               invoice_status text)
LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
    SELECT * INTO r FROM process_invoice_payments(ARRAY[p_invoice], ARRAY[p_buyer],
                                                  ARRAY[p_idempotency_key]);
    IF r.error IS NOT NULL THEN
        PERFORM paybot_raise(r.error, r.error_detail);
    END IF;
    RETURN QUERY SELECT r.payment_id, r.replayed, r.buyer_balance, r.grant_id, r.invoice_status;
END $$;

-- Settle an invoice paid outside the internal balance (TON transfer seen by the watcher, a card
-- or Stars payment (paybot_rail_settle), or a manual payment confirmed by the operator).
-- Idempotent on the external reference.
-- The money comes from the system account of the method (chain_inflow / adjustments).
CREATE OR REPLACE FUNCTION settle_external_payment(
    p_invoice text, p_method text, p_reference text, p_payer bigint, p_claim_token text,
    p_paid_at timestamptz DEFAULT NULL)
RETURNS TABLE (payment_id bigint, replayed boolean, grant_id bigint, invoice_status text,
               claim_token text)
LANGUAGE plpgsql AS $$
DECLARE v invoices%ROWTYPE; v_tx bigint; v_pay bigint; v_grant bigint; v_prev payments%ROWTYPE;
        v_due bigint;
BEGIN
    SELECT * INTO v FROM invoices WHERE public_id = upper(p_invoice) FOR UPDATE;
    IF v.id IS NULL THEN
        PERFORM paybot_raise('invoice_not_found', p_invoice);
    END IF;
    -- Read after the invoice lock, so a concurrent settlement of the same reference is seen.
    SELECT * INTO v_prev FROM payments WHERE external_ref = p_reference;
    IF v_prev.id IS NOT NULL THEN
        IF v_prev.invoice_id <> v.id THEN
            PERFORM paybot_raise('reference_reused', p_reference);
        END IF;
        RETURN QUERY SELECT v_prev.id, true, g.id, v.status, g.claim_token
            FROM grants g WHERE g.payment_id = v_prev.id;
        RETURN;
    END IF;
    IF p_payer IS NOT NULL AND v.seller_id = p_payer THEN
        PERFORM paybot_raise('own_invoice', v.public_id);
    END IF;
    IF v.status = 'pending' AND v.expires_at <= now() THEN
        -- Paid late (a transfer sent before the expiry, settled after it): the invoice expires
        -- first, as the expiry job would have, with its event, so the seller hears expired ->
        -- paid (late). Checked on the locked row: nothing extra for a payment on time.
        UPDATE invoices SET status = 'expired', closed_at = now() WHERE id = v.id RETURNING * INTO v;
        PERFORM paybot_close_event(v, 'invoice_expired');
    END IF;
    -- What this payment pays: the amount due (manual payments may have paid part already).
    v_due := CASE WHEN v.kind = 'one_time' THEN v.amount - v.amount_paid ELSE v.amount END;
    v := paybot_take_invoice(v.id, coalesce(p_paid_at, now()));
    INSERT INTO ledger_transactions (kind, reason) VALUES ('external_payment', p_method)
        RETURNING id INTO v_tx;
    INSERT INTO entries (tx_id, account_id, currency, amount) VALUES
        (v_tx, paybot_system_account(CASE WHEN p_method = 'ton' THEN 'chain_inflow'
                                          WHEN p_method = 'stars' THEN 'stars_inflow'
                                          WHEN p_method LIKE 'card:%' THEN 'card_inflow'
                                          ELSE 'adjustments' END, v.currency), v.currency, -v_due);
    PERFORM paybot_credit_user(v_tx, v.seller_id, v.currency, v_due);
    INSERT INTO payments (invoice_id, payer_id, method, currency, amount, external_ref, ledger_tx_id)
        VALUES (v.id, p_payer, p_method, v.currency, v_due, p_reference, v_tx)
        RETURNING id INTO v_pay;
    v_grant := nextval('grants_id_seq');
    PERFORM paybot_fulfil(ARRAY[v_grant], ARRAY[v_pay], ARRAY[v.id], ARRAY[p_payer],
                          ARRAY[p_claim_token], p_method);
    RETURN QUERY SELECT v_pay, false, v_grant, v.status,
        CASE WHEN p_payer IS NULL THEN p_claim_token END;
END $$;
