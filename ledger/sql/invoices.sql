-- Invoices: issuing (in batches), taking a use, cancelling, expiring, and the events a
-- closed invoice sends.

CREATE OR REPLACE FUNCTION create_invoices(
    p_sellers bigint[], p_keys text[], p_hashes bytea[], p_public_ids text[], p_titles text[],
    p_descriptions text[], p_currencies text[], p_amounts bigint[], p_ton_amounts bigint[],
    p_ton_rates numeric[], p_kinds text[], p_max_uses int[], p_payloads jsonb[],
    p_expires_at timestamptz[], p_statuses text[], p_documents jsonb[], p_due_at timestamptz[]
) RETURNS TABLE (r_idx int, r_outcome text, r_invoice invoices)
LANGUAGE plpgsql AS $$
DECLARE
    v_year int := extract(year FROM now() AT TIME ZONE 'UTC')::int;
    v_claimed int[];
    v_keyed int := cardinality(array_remove(p_keys, NULL));
    v_orphans int[] := '{}';
    v_public text[] := p_public_ids;
    v_create int[];
BEGIN
    -- 1. Claim the idempotency keys. A key held by a transaction still running makes this
    --    wait for it; afterwards the key is either ours or someone else's, committed.
    v_claimed := '{}';
    IF v_keyed > 0 THEN
        WITH req AS (
            SELECT u.seller, u.key, u.hash, u.public_id, u.i::int AS i
              FROM unnest(p_sellers, p_keys, p_hashes, p_public_ids)
                   WITH ORDINALITY AS u(seller, key, hash, public_id, i)
             WHERE u.key IS NOT NULL
             ORDER BY u.seller, u.key
        ), claimed AS (
            INSERT INTO api_idempotency (user_id, key, request_hash, public_id)
            SELECT seller, key, hash, public_id FROM req
            ON CONFLICT (user_id, key) DO NOTHING
            RETURNING user_id, key
        )
        SELECT coalesce(array_agg(req.i), '{}') INTO v_claimed
          FROM req JOIN claimed ON claimed.user_id = req.seller AND claimed.key = req.key;
    END IF;

    -- 2. Keys used before (a new statement: it sees what the waited-for transaction wrote).
    --    Usually every key is new, and there is nothing to look up.
    IF cardinality(v_claimed) < v_keyed THEN
        RETURN QUERY
        SELECT u.i::int,
               CASE WHEN k.request_hash = u.hash THEN 'replayed' ELSE 'key_reused' END, inv
          FROM unnest(p_sellers, p_keys, p_hashes) WITH ORDINALITY AS u(seller, key, hash, i)
          JOIN api_idempotency k ON k.user_id = u.seller AND k.key = u.key
          JOIN invoices inv ON inv.public_id = k.public_id
         WHERE u.key IS NOT NULL AND u.i::int <> ALL (v_claimed);

        -- A key claimed without its invoice (written by an older version that claimed first and
        -- created second, then died in between): create the invoice under the claimed id now.
        SELECT coalesce(array_agg(u.i::int), '{}') INTO v_orphans
          FROM unnest(p_sellers, p_keys, p_hashes) WITH ORDINALITY AS u(seller, key, hash, i)
          JOIN api_idempotency k ON k.user_id = u.seller AND k.key = u.key
         WHERE u.key IS NOT NULL AND u.i::int <> ALL (v_claimed) AND k.request_hash = u.hash
           AND NOT EXISTS (SELECT 1 FROM invoices WHERE public_id = k.public_id);
        IF cardinality(v_orphans) > 0 THEN
            SELECT array_agg(coalesce(k.public_id, u.public_id) ORDER BY u.i) INTO v_public
              FROM unnest(p_sellers, p_keys, p_public_ids) WITH ORDINALITY AS u(seller, key, public_id, i)
              LEFT JOIN api_idempotency k ON u.i::int = ANY (v_orphans)
                                         AND k.user_id = u.seller AND k.key = u.key;
        END IF;
    END IF;

    v_create := ARRAY(SELECT u.i::int FROM unnest(p_keys) WITH ORDINALITY AS u(key, i)
                       WHERE u.key IS NULL OR u.i::int = ANY (v_claimed)
                          OR u.i::int = ANY (v_orphans));
    IF cardinality(v_create) = 0 THEN
        RETURN;
    END IF;

    -- 3. Number and insert the new invoices: one counter bump per seller, in seller order.
    --    A draft gets its number when it is issued (finalize_invoice), not now.
    RETURN QUERY
    WITH req AS (
        SELECT u.*, u.i::int AS idx, coalesce(u.status, 'pending') = 'draft' AS draft
          FROM unnest(p_sellers, v_public, p_titles, p_descriptions, p_currencies, p_amounts,
                      p_ton_amounts, p_ton_rates, p_kinds, p_max_uses, p_payloads, p_expires_at,
                      p_statuses, p_documents, p_due_at)
               WITH ORDINALITY AS u(seller, public_id, title, description, currency, amount,
                                    ton_amount, ton_rate, kind, max_uses, payload, expires_at,
                                    status, document, due_at, i)
         WHERE u.i::int = ANY (v_create)
    ), bumped AS (
        INSERT INTO invoice_counters AS c (seller_id, year, last)
        SELECT seller, v_year, count(*) FROM req WHERE NOT draft GROUP BY seller ORDER BY seller
        ON CONFLICT (seller_id, year) DO UPDATE SET last = c.last + EXCLUDED.last
        RETURNING c.seller_id, c.last
    ), numbered AS (
        SELECT req.*, b.last - count(*) OVER w + row_number() OVER (w ORDER BY req.idx) AS n
          FROM req LEFT JOIN bumped b ON b.seller_id = req.seller AND NOT req.draft
        WINDOW w AS (PARTITION BY req.seller, req.draft)
    ), ins AS (
        INSERT INTO invoices (public_id, seller_id, number, title, description, currency,
                              amount, ton_amount, ton_rate, kind, max_uses, payload, expires_at,
                              status, document, due_at, issued_at)
        SELECT public_id, seller,
               CASE WHEN NOT draft
                    THEN 'INV-' || v_year || '-' || lpad(n::text, greatest(4, length(n::text)), '0')
               END,
               title, description, currency, amount, ton_amount, ton_rate, kind, max_uses,
               payload, expires_at, CASE WHEN draft THEN 'draft' ELSE 'pending' END, document,
               due_at, CASE WHEN NOT draft THEN now() END
          FROM numbered ORDER BY idx
        RETURNING *
    )
    SELECT numbered.idx,
           CASE WHEN numbered.idx = ANY (v_orphans) THEN 'replayed' ELSE 'created' END,
           ROW(ins.*)::invoices
      FROM ins JOIN numbered ON numbered.public_id = ins.public_id;
END
$$;

-- Explains why an invoice cannot take a payment now (raises).
CREATE OR REPLACE FUNCTION paybot_raise_not_payable(p_invoice bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE v invoices%ROWTYPE;
BEGIN
    SELECT * INTO v FROM invoices WHERE id = p_invoice;
    IF v.status = 'cancelled' THEN
        PERFORM paybot_raise('invoice_cancelled', v.public_id);
    ELSIF v.status = 'draft' THEN
        PERFORM paybot_raise('invoice_draft', v.public_id);
    ELSIF v.status = 'void' THEN
        PERFORM paybot_raise('invoice_void', v.public_id);
    ELSIF v.status = 'uncollectible' THEN
        PERFORM paybot_raise('invoice_uncollectible', v.public_id);
    ELSIF v.status = 'expired' OR (v.status = 'pending' AND v.expires_at <= now()) THEN
        PERFORM paybot_raise('invoice_expired', v.public_id);
    END IF;
    PERFORM paybot_raise('invoice_already_paid', v.public_id);
END $$;

-- Counts one use of a payable invoice (the caller holds its row lock). p_at is when the money
-- was sent: a transfer made before the expiry pays the invoice even when settled after it.
-- An expired invoice is never reopened by it: it takes the use and stays expired, unless this
-- was its last use (then paid, as on time).
CREATE OR REPLACE FUNCTION paybot_take_invoice(p_invoice bigint, p_at timestamptz DEFAULT now())
RETURNS invoices LANGUAGE plpgsql AS $$
DECLARE v invoices%ROWTYPE;
BEGIN
    UPDATE invoices
       SET uses = uses + 1,
           status = CASE WHEN kind = 'one_time' OR uses + 1 = max_uses THEN 'paid' ELSE status END,
           paid_at = CASE WHEN kind = 'one_time' OR uses + 1 = max_uses THEN now() ELSE paid_at END,
           amount_paid = CASE WHEN kind = 'one_time' THEN amount ELSE amount_paid END
     WHERE id = p_invoice AND status IN ('pending', 'expired') AND expires_at > least(p_at, now())
       AND (max_uses IS NULL OR uses < max_uses)
    RETURNING * INTO v;
    IF v.id IS NULL THEN
        PERFORM paybot_raise_not_payable(p_invoice);
    END IF;
    RETURN v;
END $$;

CREATE OR REPLACE FUNCTION paybot_close_event(p_inv invoices, p_type text) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO outbox (topic, event_type, payload)
    SELECT 'callback', p_type, jsonb_build_object('invoice', p_inv.public_id,
                                                  'url', p_inv.payload ->> 'callback_url',
                                                  'seller_id', p_inv.seller_id)
     WHERE p_inv.payload ? 'callback_url'
$$;

CREATE OR REPLACE FUNCTION cancel_invoice(p_invoice text, p_seller bigint) RETURNS invoices
LANGUAGE plpgsql AS $$
DECLARE v invoices%ROWTYPE;
BEGIN
    SELECT * INTO v FROM invoices WHERE public_id = upper(p_invoice) FOR UPDATE;
    IF v.id IS NULL THEN
        PERFORM paybot_raise('invoice_not_found', p_invoice);
    ELSIF v.seller_id <> p_seller THEN
        PERFORM paybot_raise('not_invoice_seller', p_invoice);
    ELSIF v.status = 'cancelled' THEN
        RETURN v;  -- cancelling twice is a no-op, not an error
    ELSIF v.status <> 'pending' THEN
        PERFORM paybot_raise_not_payable(v.id);
    ELSIF v.amount_paid > 0 THEN
        PERFORM paybot_raise('invoice_partly_paid', v.public_id);
    END IF;
    UPDATE invoices SET status = 'cancelled', closed_at = now() WHERE id = v.id RETURNING * INTO v;
    PERFORM paybot_close_event(v, 'invoice_cancelled');
    RETURN v;
END $$;

CREATE OR REPLACE FUNCTION expire_due_invoices(p_limit int) RETURNS SETOF invoices
LANGUAGE plpgsql AS $$
DECLARE v invoices%ROWTYPE;
BEGIN
    FOR v IN
        UPDATE invoices SET status = 'expired', closed_at = now()
         WHERE id IN (SELECT id FROM invoices WHERE status = 'pending' AND expires_at <= now()
                       ORDER BY expires_at LIMIT p_limit FOR UPDATE SKIP LOCKED)
        RETURNING *
    LOOP
        PERFORM paybot_close_event(v, 'invoice_expired');
        RETURN NEXT v;
    END LOOP;
END $$;

-- An event about an invoice for the seller's server: to the invoice's callback_url, else to
-- the seller's default webhook (resolved at delivery, url NULL), else nowhere.
CREATE OR REPLACE FUNCTION paybot_invoice_event(p_inv invoices, p_type text,
                                                p_extra jsonb DEFAULT '{}')
RETURNS void LANGUAGE sql AS $$
    INSERT INTO outbox (topic, event_type, payload)
    SELECT 'callback', p_type, p_extra || jsonb_build_object(
               'invoice', p_inv.public_id, 'url', p_inv.payload ->> 'callback_url',
               'seller_id', p_inv.seller_id)
     WHERE p_inv.payload ? 'callback_url'
        OR EXISTS (SELECT 1 FROM seller_webhooks w
                    WHERE w.user_id = p_inv.seller_id AND w.url IS NOT NULL)
$$;

-- What is still to pay in TON: the locked quote, or for a one-time invoice already partly paid
-- (manual payments) the same share of it as the amount due, rounded up (never short).
CREATE OR REPLACE FUNCTION paybot_ton_due(p_inv invoices) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_inv.kind = 'one_time' AND p_inv.amount_paid > 0
                THEN div(p_inv.ton_amount::numeric * (p_inv.amount - p_inv.amount_paid)
                         + p_inv.amount - 1, p_inv.amount)::bigint
                ELSE p_inv.ton_amount END
$$;
