"""TON watcher: chain cursor, incoming transfers with their outcome, suspense holds, contacts.

Money arriving on chain, as balanced entries (all pending credits, folded in by the job):
- every counted transfer of X nanotons debits `chain_inflow` (TON) by X, once;
- the X goes to: the seller (TON invoices, through settle_external_payment), `fx` (TON that
  became Liquid $: LIQ invoices, deposits and excess credited at a rate), or `suspense` (TON held:
  unmatched, late/duplicate, partial, excess of a guest). Liquid $ issued against chain money
  comes from `chain_inflow` (LIQ), exactly as settle_external_payment and credit_deposit do.
- releasing a hold moves it out of `suspense` again (applied, credited, refunded on chain).

Error codes: PB101 below the cursor (never settled there)     PB110 transfer not found
             PB111 nothing held for this transfer             PB112 invoice has no TON price
             PB113 not enough to pay the invoice              PB114 hold belongs to that invoice

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from migrations.sql import run_script

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UPGRADE = r"""
-- Where the watcher stands on each followed address. The row is a base: the account's
-- transaction (lt, hash) and all before it are settled (or before the configured start; the
-- account's first transaction follows (0, 0…0)). The live cursor is the base followed along
-- ton_transfers, each recorded transfer naming its predecessor (paybot_ton_cursor): recording
-- a transfer IS the cursor advance, in the same database transaction as its settlement, and
-- the cursor can never move past a transaction that is not recorded.
CREATE TABLE ton_cursors (
    address     text PRIMARY KEY CHECK (address ~ '^-?[0-9]+:[0-9a-f]{64}$'),
    lt          bigint NOT NULL CHECK (lt >= 0),
    hash        text NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Every transaction of a followed account, once (unique hash), with what it did and the
-- transaction before it (the chain the cursor follows). Append-only. Like the other money
-- tables its references carry no foreign keys (written only by paybot_ton_receive and
-- paybot_ton_release; `paybot admin check` verifies them, ledger/invariants.py).
CREATE TABLE ton_transfers (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    address            text NOT NULL,
    tx_hash            text NOT NULL UNIQUE CHECK (tx_hash ~ '^[0-9a-f]{64}$'),
    lt                 bigint NOT NULL,
    prev_lt            bigint NOT NULL,
    prev_hash          text NOT NULL CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
    utime              timestamptz NOT NULL,
    incoming           boolean NOT NULL,
    source             text,
    value_nano         bigint NOT NULL CHECK (value_nano >= 0),
    body_kind          text NOT NULL
                       CHECK (body_kind IN ('text', 'empty', 'binary', 'invalid_utf8', 'none')),
    comment            text,
    outcome            text NOT NULL CHECK (outcome IN ('paid', 'partial', 'excess', 'late_or_duplicate',
                                                        'unmatched', 'deposit', 'ignored')),
    note               text,
    invoice_id         bigint,
    user_id            bigint,                             -- depositor, or payer credited with excess
    payment_id         bigint,
    claim_token        text,                               -- a guest's claim (from the grant)
    excess_nano        bigint NOT NULL DEFAULT 0 CHECK (excess_nano >= 0),
    held_nano          bigint NOT NULL DEFAULT 0 CHECK (held_nano >= 0),
    credited           bigint,                             -- minor units put on user_id's balance
    credited_currency  text,
    ledger_tx_id       bigint,                             -- the TON-side entries
    created_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT chain_goes_forward CHECK (prev_lt < lt),
    -- an account's history has no forks: one successor per transaction (the cursor's index)
    CONSTRAINT one_successor UNIQUE (address, prev_lt, prev_hash)
);
CREATE INDEX ton_transfers_invoice ON ton_transfers (invoice_id) WHERE invoice_id IS NOT NULL;

-- TON sitting in `suspense`, one row per holding. Released at most once (applied to an
-- invoice, credited to a user, refunded on chain, or completed by a later transfer).
CREATE TABLE ton_holds (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transfer_id           bigint NOT NULL REFERENCES ton_transfers (id),
    reason                text NOT NULL
                          CHECK (reason IN ('partial', 'excess', 'late_or_duplicate', 'unmatched')),
    amount_nano           bigint NOT NULL CHECK (amount_nano > 0),
    invoice_id            bigint REFERENCES invoices (id),
    claim_token           text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    released_at           timestamptz,
    release               text CHECK (release IN ('completed', 'applied', 'credited', 'refunded')),
    release_note          text,
    release_invoice_id    bigint REFERENCES invoices (id),
    release_user_id       bigint REFERENCES users (id),
    release_payment_id    bigint REFERENCES payments (id),
    release_ledger_tx_id  bigint REFERENCES ledger_transactions (id),
    completed_by          bigint REFERENCES ton_transfers (id),
    completed_by_hold     bigint REFERENCES ton_holds (id),
    CONSTRAINT released_together CHECK ((released_at IS NULL) = (release IS NULL))
);
-- At most one open holding per transfer: "resolve <tx-hash>" always means that one.
CREATE UNIQUE INDEX ton_holds_one_open ON ton_holds (transfer_id) WHERE released_at IS NULL;
CREATE INDEX ton_holds_open_partials ON ton_holds (invoice_id)
    WHERE released_at IS NULL AND reason = 'partial';
CREATE INDEX ton_holds_claim ON ton_holds (claim_token) WHERE claim_token IS NOT NULL;

-- Who said they are paying an invoice: a logged-in buyer (user_id: the payer is then known,
-- so an excess can go to their balance) or a guest's email / Telegram handle.
CREATE TABLE invoice_contacts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    invoice_id  bigint NOT NULL REFERENCES invoices (id),
    user_id     bigint REFERENCES users (id),
    email       text CHECK (length(email) BETWEEN 3 AND 254),
    telegram    text CHECK (telegram ~ '^[A-Za-z0-9_]{5,32}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT contact_given CHECK (num_nonnulls(user_id, email, telegram) > 0)
);
CREATE INDEX invoice_contacts_invoice ON invoice_contacts (invoice_id);

CREATE TRIGGER ton_transfers_immutable BEFORE UPDATE OR DELETE OR TRUNCATE ON ton_transfers
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
CREATE TRIGGER ton_cursors_no_delete BEFORE DELETE OR TRUNCATE ON ton_cursors
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
CREATE TRIGGER ton_holds_no_delete BEFORE DELETE OR TRUNCATE ON ton_holds
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();

-- A holding changes once: from open to released, nothing else.
CREATE FUNCTION paybot_hold_release_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.released_at IS NULL AND NEW.released_at IS NOT NULL
       AND (NEW.id, NEW.transfer_id, NEW.reason, NEW.amount_nano, NEW.created_at)
           = (OLD.id, OLD.transfer_id, OLD.reason, OLD.amount_nano, OLD.created_at)
       AND NEW.invoice_id IS NOT DISTINCT FROM OLD.invoice_id
       AND NEW.claim_token IS NOT DISTINCT FROM OLD.claim_token THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'holds are released once and never changed (hold %)', OLD.id
        USING ERRCODE = 'PB900';
END $$;
CREATE TRIGGER ton_holds_release_once BEFORE UPDATE ON ton_holds
    FOR EACH ROW EXECUTE FUNCTION paybot_hold_release_once();

-- Nanotons -> minor units of a currency at `p_rate` units per TON, rounded down.
CREATE FUNCTION paybot_ton_to(p_nano bigint, p_currency text, p_rate numeric) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_currency = 'TON' THEN p_nano
                ELSE floor(p_nano::numeric * p_rate
                           * power(10::numeric, c.decimals - 9))::bigint END
      FROM currencies c WHERE c.code = p_currency
$$;

-- The payer of an invoice, when exactly one logged-in buyer (not the seller) said they pay it.
CREATE FUNCTION paybot_invoice_payer(p_inv invoices) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN count(DISTINCT user_id) = 1 THEN min(user_id) END
      FROM invoice_contacts
     WHERE invoice_id = p_inv.id AND user_id IS NOT NULL AND user_id <> p_inv.seller_id
$$;

-- Writes the TON side of one receipt or release as one balanced ledger transaction.
-- Zero legs are left out; nothing at all is written when every leg is zero.
CREATE FUNCTION paybot_ton_legs(p_kind text, p_reason text, p_reference text,
                                p_chain bigint, p_suspense bigint, p_fx bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE v_tx bigint;
BEGIN
    IF p_chain + p_suspense + p_fx <> 0 THEN
        RAISE EXCEPTION 'unbalanced TON legs % % %', p_chain, p_suspense, p_fx;
    END IF;
    IF p_chain = 0 AND p_suspense = 0 AND p_fx = 0 THEN
        RETURN NULL;
    END IF;
    INSERT INTO ledger_transactions (kind, reason, reference) VALUES (p_kind, p_reason, p_reference)
        RETURNING id INTO v_tx;
    INSERT INTO entries (tx_id, account_id, currency, amount)
    SELECT v_tx, paybot_system_account(l.name, 'TON'), 'TON', l.amount
      FROM (VALUES ('chain_inflow', p_chain), ('suspense', p_suspense), ('fx', p_fx))
           AS l (name, amount)
     WHERE l.amount <> 0;
    RETURN v_tx;
END $$;

-- Credits a user's internal balance from chain money (deposit, excess, operator credit) and
-- queues a notification. Returns the TON-side split: (ton taken by the ledger, ton converted).
CREATE FUNCTION paybot_ton_credit_user(p_kind text, p_user bigint, p_nano bigint, p_currency text,
                                       p_rate numeric, p_reason text, p_reference text,
                                       p_tx_hash text,
                                       OUT o_credited bigint, OUT o_ton_debit bigint,
                                       OUT o_converted bigint)
LANGUAGE plpgsql AS $$
BEGIN
    o_credited := paybot_ton_to(p_nano, p_currency, p_rate);
    o_ton_debit := 0;
    o_converted := 0;
    IF o_credited <= 0 THEN
        o_credited := 0;
        RETURN;
    END IF;
    PERFORM paybot_move(p_kind, p_user, 'chain_inflow', p_currency, o_credited, p_reason, p_reference);
    IF p_currency = 'TON' THEN
        o_ton_debit := p_nano;
    ELSE
        o_converted := p_nano;
    END IF;
    INSERT INTO outbox (topic, event_type, payload)
    VALUES ('telegram', 'balance.credited',
            jsonb_build_object('recipient', p_user, 'kind', p_kind, 'amount', o_credited,
                               'currency', p_currency, 'ton_nano', p_nano, 'tx_hash', p_tx_hash));
END $$;

-- Puts p_amount nanotons, plus the invoice's open partial holdings, toward a payable invoice
-- (locked by the caller). Enough -> settled through settle_external_payment, the excess
-- credited to the known payer or held; not enough -> 'partial'. The caller writes the TON legs,
-- the records, and releases the partial holdings (o_partials is their sum).
CREATE FUNCTION paybot_ton_pay_invoice(
    p_inv invoices, p_amount bigint, p_exclude_hold bigint, p_reference text, p_claim text,
    p_currency text, p_rate numeric, p_tx_hash text, p_sent_at timestamptz DEFAULT NULL,
    OUT o_outcome text, OUT o_payer bigint, OUT o_payment bigint, OUT o_claim text,
    OUT o_status text, OUT o_partials bigint, OUT o_excess bigint, OUT o_excess_held bigint,
    OUT o_credited bigint, OUT o_ton_debit bigint, OUT o_converted bigint)
LANGUAGE plpgsql AS $$
DECLARE v_quote bigint := p_inv.ton_amount; c record; v_rate numeric;
BEGIN
    SELECT coalesce(sum(amount_nano), 0) INTO o_partials FROM ton_holds
     WHERE invoice_id = p_inv.id AND reason = 'partial' AND released_at IS NULL
       AND id IS DISTINCT FROM p_exclude_hold;
    o_excess := 0; o_excess_held := 0; o_credited := NULL; o_ton_debit := 0; o_converted := 0;
    UPDATE invoices SET ton_received = ton_received + p_amount WHERE id = p_inv.id;
    IF p_amount + o_partials < v_quote THEN
        o_outcome := 'partial';  -- the open partials stay open
        o_status := p_inv.status;
        RETURN;
    END IF;
    o_payer := paybot_invoice_payer(p_inv);
    SELECT s.payment_id, s.claim_token, s.invoice_status INTO o_payment, o_claim, o_status
      FROM settle_external_payment(p_inv.public_id, 'ton', p_reference, o_payer, p_claim,
                                   p_sent_at) s;
    IF p_inv.currency = 'TON' THEN
        o_ton_debit := v_quote;
    ELSE
        o_converted := v_quote;
    END IF;
    o_excess := p_amount + o_partials - v_quote;
    o_outcome := CASE WHEN o_excess > 0 THEN 'excess' ELSE 'paid' END;
    IF o_excess > 0 AND o_payer IS NOT NULL THEN
        -- The invoice's own locked rate when it is priced in the balance currency.
        v_rate := CASE WHEN p_inv.currency = p_currency AND p_inv.ton_rate IS NOT NULL
                       THEN p_inv.ton_rate ELSE p_rate END;
        c := paybot_ton_credit_user('excess', o_payer, o_excess, p_currency, v_rate,
                                    'ton excess of ' || p_inv.public_id, 'ton-excess:' || p_reference,
                                    p_tx_hash);
        o_credited := c.o_credited;
        o_ton_debit := o_ton_debit + c.o_ton_debit;
        o_converted := o_converted + c.o_converted;
    END IF;
    IF o_excess > 0 AND coalesce(o_credited, 0) = 0 THEN
        o_excess_held := o_excess;
        o_credited := NULL;
    END IF;
END $$;

-- The live cursor of an address: its base followed along the recorded transfers, each the
-- successor of the last. With p_compact the base row moves up to it (keeps the walk short).
CREATE FUNCTION paybot_ton_cursor(p_address text, p_compact boolean)
RETURNS TABLE (cursor_lt bigint, cursor_hash text)
LANGUAGE plpgsql AS $$
DECLARE v_lt bigint; v_hash text;
BEGIN
    WITH RECURSIVE chain (c_lt, c_hash) AS (
        SELECT k.lt, k.hash FROM ton_cursors k WHERE k.address = p_address
        UNION ALL
        SELECT t.lt, t.tx_hash FROM chain c JOIN ton_transfers t
            ON t.address = p_address AND t.prev_lt = c.c_lt AND t.prev_hash = c.c_hash
    )
    SELECT c.c_lt, c.c_hash INTO v_lt, v_hash FROM chain c ORDER BY c.c_lt DESC LIMIT 1;
    IF v_lt IS NULL THEN
        RETURN;  -- not started on this address
    END IF;
    IF p_compact THEN
        UPDATE ton_cursors k SET lt = v_lt, hash = v_hash, updated_at = now()
         WHERE k.address = p_address AND k.lt < v_lt;
    END IF;
    RETURN QUERY SELECT v_lt, v_hash;
END $$;

-- One chain transaction of the followed account, settled exactly once in this one database
-- transaction, which also records it as the successor of its predecessor: the cursor advance.
CREATE FUNCTION paybot_ton_receive(
    p_address text, p_hash text, p_lt bigint, p_utime bigint, p_prev_lt bigint, p_prev_hash text,
    p_incoming boolean, p_source text, p_value bigint, p_body_kind text, p_comment text,
    p_ignore text, p_invoice text, p_deposit text, p_currency text, p_rate numeric, p_claim text)
RETURNS TABLE (transfer_id bigint, outcome text, replayed boolean, invoice_status text,
               payment_id bigint, claim_token text, held_nano bigint, credited bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v invoices%ROWTYPE; r record; c record;
    v_outcome text; v_note text; v_invoice bigint; v_user bigint; v_payment bigint;
    v_claim text; v_status text; v_excess bigint := 0; v_held bigint := 0; v_hold_reason text;
    v_credited bigint; v_ccy text; v_partials bigint := 0; v_ton_debit bigint := 0;
    v_converted bigint := 0; v_counted bigint := 0; v_tx bigint; v_id bigint; v_base bigint;
BEGIN
    -- Two settlements of one transaction (a second watcher, a retry) queue here; the later
    -- one finds the first one's record and returns it.
    PERFORM pg_advisory_xact_lock(hashtextextended('paybot.ton:' || p_hash, 0));
    IF EXISTS (SELECT 1 FROM ton_transfers t WHERE t.tx_hash = p_hash) THEN
        RETURN QUERY SELECT t.id, t.outcome, true, i.status, t.payment_id, t.claim_token,
                            t.held_nano, t.credited
            FROM ton_transfers t LEFT JOIN invoices i ON i.id = t.invoice_id
           WHERE t.tx_hash = p_hash;
        RETURN;
    END IF;
    SELECT k.lt INTO v_base FROM ton_cursors k WHERE k.address = p_address;
    IF v_base IS NULL OR p_lt <= v_base THEN
        -- At or before the base, and not recorded: before the start, or a broken history.
        RAISE EXCEPTION 'below_cursor' USING ERRCODE = 'PB101',
            DETAIL = p_lt || ' <= ' || coalesce(v_base::text, 'no cursor');
    END IF;

    IF p_ignore IS NOT NULL THEN
        v_outcome := 'ignored';
        v_note := p_ignore;
    ELSE
        v_counted := p_value;
        IF p_invoice IS NOT NULL THEN
            SELECT * INTO v FROM invoices WHERE public_id = p_invoice FOR UPDATE;
            v_invoice := v.id;
            IF v.id IS NULL THEN
                v_outcome := 'unmatched'; v_note := 'unknown invoice';
            ELSIF v.ton_amount IS NULL THEN
                v_outcome := 'unmatched'; v_note := 'invoice has no TON price';
            -- Late is judged by when the transfer was made (its block time), not when the
            -- watcher saw it: a buyer who paid on time is not penalised for our delay.
            ELSIF v.status NOT IN ('pending', 'expired')
                  OR v.expires_at <= least(to_timestamp(p_utime), now())
                  OR (v.max_uses IS NOT NULL AND v.uses >= v.max_uses) THEN
                v_outcome := 'late_or_duplicate';
                v_note := CASE WHEN v.status = 'cancelled' THEN 'invoice cancelled'
                               WHEN v.status = 'paid' OR v.uses >= v.max_uses
                                    THEN 'invoice already paid'
                               ELSE 'invoice expired' END;
            ELSE
                r := paybot_ton_pay_invoice(v, p_value, NULL, 'ton:' || p_hash, p_claim,
                                            p_currency, p_rate, p_hash, to_timestamp(p_utime));
                v_outcome := r.o_outcome; v_payment := r.o_payment; v_claim := r.o_claim;
                v_status := r.o_status; v_excess := r.o_excess;
                v_partials := CASE WHEN r.o_outcome = 'partial' THEN 0 ELSE r.o_partials END;
                v_ton_debit := r.o_ton_debit; v_converted := r.o_converted;
                IF r.o_credited IS NOT NULL THEN
                    v_user := r.o_payer; v_credited := r.o_credited; v_ccy := p_currency;
                END IF;
                IF v_outcome = 'partial' THEN
                    v_held := p_value; v_hold_reason := 'partial';
                ELSIF r.o_excess_held > 0 THEN
                    v_held := r.o_excess_held; v_hold_reason := 'excess';
                END IF;
            END IF;
            IF v_outcome IN ('unmatched', 'late_or_duplicate') THEN
                v_held := p_value; v_hold_reason := v_outcome; v_status := v.status;
            END IF;
        ELSIF p_deposit IS NOT NULL THEN
            SELECT u.id INTO v_user FROM users u WHERE u.deposit_code = p_deposit;
            IF v_user IS NULL THEN
                v_outcome := 'unmatched'; v_note := 'unknown deposit code';
            ELSE
                c := paybot_ton_credit_user('deposit', v_user, p_value, p_currency, p_rate,
                                            'deposit', 'ton:' || p_hash, p_hash);
                IF c.o_credited > 0 THEN
                    v_outcome := 'deposit'; v_credited := c.o_credited; v_ccy := p_currency;
                    v_ton_debit := c.o_ton_debit; v_converted := c.o_converted;
                ELSE
                    v_outcome := 'unmatched'; v_note := 'deposit too small to credit';
                END IF;
            END IF;
            IF v_outcome = 'unmatched' THEN
                v_held := p_value; v_hold_reason := 'unmatched';
            END IF;
        ELSE
            v_outcome := 'unmatched';
            v_note := CASE p_body_kind WHEN 'empty' THEN 'no comment'
                                       WHEN 'binary' THEN 'binary body'
                                       WHEN 'invalid_utf8' THEN 'comment is not valid UTF-8'
                                       ELSE 'no invoice or deposit reference' END;
            v_held := p_value; v_hold_reason := 'unmatched';
        END IF;
    END IF;

    v_tx := paybot_ton_legs(
        CASE v_outcome WHEN 'paid' THEN 'external_payment' WHEN 'excess' THEN 'excess'
                       WHEN 'deposit' THEN 'deposit' ELSE 'suspense' END,
        'ton ' || v_outcome, 'ton-receipt:' || p_hash,
        v_ton_debit - v_counted, v_held - v_partials, v_converted);

    INSERT INTO ton_transfers (address, tx_hash, lt, prev_lt, prev_hash, utime, incoming, source,
                               value_nano, body_kind, comment, outcome, note, invoice_id, user_id,
                               payment_id, claim_token, excess_nano, held_nano, credited,
                               credited_currency, ledger_tx_id)
    VALUES (p_address, p_hash, p_lt, p_prev_lt, p_prev_hash, to_timestamp(p_utime), p_incoming,
            p_source, p_value,
            p_body_kind, p_comment, v_outcome, v_note, v_invoice, v_user, v_payment, v_claim,
            v_excess, v_held, v_credited, v_ccy, v_tx)
    RETURNING id INTO v_id;

    IF v_partials > 0 THEN
        UPDATE ton_holds h SET released_at = now(), release = 'completed', completed_by = v_id,
                               release_invoice_id = v_invoice, release_payment_id = v_payment,
                               release_ledger_tx_id = v_tx
         WHERE h.invoice_id = v_invoice AND h.reason = 'partial' AND h.released_at IS NULL;
    END IF;
    IF v_held > 0 THEN
        INSERT INTO ton_holds (transfer_id, reason, amount_nano, invoice_id, claim_token)
        VALUES (v_id, v_hold_reason, v_held, v_invoice, v_claim);
    END IF;
    RETURN QUERY SELECT v_id, v_outcome, false, v_status, v_payment, v_claim, v_held, v_credited;
END $$;

-- Releases an open holding by hand (operator) or by a guest's claim: 'apply' it to an
-- invoice, 'credit' it to a user's balance, or record that it was 'refund'ed on chain.
CREATE FUNCTION paybot_ton_release(
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
        RAISE EXCEPTION 'nothing_held' USING ERRCODE = 'PB111', DETAIL = p_hold::text;
    END IF;
    SELECT * INTO t FROM ton_transfers WHERE id = h.transfer_id;
    v_susp := -h.amount_nano;
    v_ref := 'ton-release:' || h.id;
    IF p_action = 'apply' THEN
        SELECT * INTO v FROM invoices WHERE public_id = upper(p_invoice);
        IF v.id IS NULL THEN
            RAISE EXCEPTION 'invoice_not_found' USING ERRCODE = 'PB001', DETAIL = p_invoice;
        ELSIF h.reason = 'partial' AND h.invoice_id = v.id THEN
            -- already counts toward that invoice; checked before locking it (lock order)
            RAISE EXCEPTION 'hold_of_invoice' USING ERRCODE = 'PB114', DETAIL = v.public_id;
        END IF;
        SELECT * INTO v FROM invoices WHERE id = v.id FOR UPDATE;
        IF v.ton_amount IS NULL THEN
            RAISE EXCEPTION 'invoice_not_ton' USING ERRCODE = 'PB112', DETAIL = v.public_id;
        ELSIF v.status <> 'pending' OR v.expires_at <= now()
              OR (v.max_uses IS NOT NULL AND v.uses >= v.max_uses) THEN
            PERFORM paybot_raise_not_payable(v.id);
        END IF;
        r := paybot_ton_pay_invoice(v, h.amount_nano, h.id, 'ton:' || t.tx_hash || ':' || h.id,
                                    p_claim, p_currency, p_rate, t.tx_hash);
        IF r.o_outcome = 'partial' THEN
            RAISE EXCEPTION 'not_enough_for_invoice' USING ERRCODE = 'PB113',
                DETAIL = json_build_object('needed', v.ton_amount,
                                           'available', h.amount_nano + r.o_partials,
                                           'currency', 'TON')::text;
        END IF;
        v_outcome := r.o_outcome; v_status := r.o_status; v_payment := r.o_payment;
        v_claim := r.o_claim; v_partials := r.o_partials; v_held := r.o_excess_held;
        v_chain := r.o_ton_debit; v_fx := r.o_converted;
        IF r.o_credited IS NOT NULL THEN v_credited := r.o_credited; v_user := r.o_payer; END IF;
        v_susp := v_susp - v_partials + v_held;
    ELSIF p_action = 'credit' THEN
        c := paybot_ton_credit_user('adjustment', p_user, h.amount_nano, p_currency, p_rate,
                                    coalesce(p_note, 'ton transfer credited'),
                                    'ton-credit:' || h.id, t.tx_hash);
        IF c.o_credited <= 0 THEN
            RAISE EXCEPTION 'invalid_amount' USING ERRCODE = 'PB009',
                DETAIL = 'too small to credit: ' || h.amount_nano || ' nanoton';
        END IF;
        v_credited := c.o_credited; v_user := p_user;
        v_chain := c.o_ton_debit; v_fx := c.o_converted;
    ELSIF p_action = 'refund' THEN
        IF p_note IS NULL OR btrim(p_note) = '' THEN
            RAISE EXCEPTION 'invalid_amount' USING ERRCODE = 'PB009', DETAIL = 'a refund needs a note';
        END IF;
        v_chain := h.amount_nano;  -- the TON leaves through the chain again
    ELSE
        RAISE EXCEPTION 'unknown release action %', p_action;
    END IF;

    v_tx := paybot_ton_legs('release', 'ton ' || p_action, v_ref, v_chain, v_susp, v_fx);
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
         WHERE x.invoice_id = v.id AND x.reason = 'partial' AND x.released_at IS NULL;
    END IF;
    IF v_held > 0 THEN
        INSERT INTO ton_holds (transfer_id, reason, amount_nano, invoice_id, claim_token)
        VALUES (t.id, 'excess', v_held, v.id, v_claim);
    END IF;
    RETURN QUERY SELECT h.id, p_action, h.amount_nano, v_outcome, v_status, v_payment, v_claim,
                        v_credited, v_held;
END $$;

-- The operator's "resolve <tx-hash>": the transfer's open holding, released once.
CREATE FUNCTION paybot_ton_resolve(p_hash text, p_action text, p_invoice text, p_user bigint,
                                   p_note text, p_currency text, p_rate numeric, p_claim text)
RETURNS TABLE (hold_id bigint, release text, amount_nano bigint, outcome text,
               invoice_status text, payment_id bigint, claim_token text, credited bigint,
               held_nano bigint)
LANGUAGE plpgsql AS $$
DECLARE t ton_transfers%ROWTYPE; v_hold bigint;
BEGIN
    SELECT * INTO t FROM ton_transfers WHERE tx_hash = lower(p_hash);
    IF t.id IS NULL THEN
        RAISE EXCEPTION 'transfer_not_found' USING ERRCODE = 'PB110', DETAIL = left(p_hash, 64);
    END IF;
    SELECT x.id INTO v_hold FROM ton_holds x WHERE x.transfer_id = t.id AND x.released_at IS NULL;
    IF v_hold IS NULL THEN
        RAISE EXCEPTION 'nothing_held' USING ERRCODE = 'PB111', DETAIL = t.outcome;
    END IF;
    RETURN QUERY SELECT * FROM paybot_ton_release(v_hold, p_action, p_invoice, p_user, p_note,
                                                  p_currency, p_rate, p_claim);
END $$;
"""

DOWNGRADE = r"""
DROP FUNCTION paybot_ton_resolve(text, text, text, bigint, text, text, numeric, text);
DROP FUNCTION paybot_ton_release(bigint, text, text, bigint, text, text, numeric, text);
DROP FUNCTION paybot_ton_receive(text, text, bigint, bigint, bigint, text, boolean, text, bigint,
                                 text, text, text, text, text, text, numeric, text);
DROP FUNCTION paybot_ton_cursor(text, boolean);
DROP FUNCTION paybot_ton_pay_invoice(invoices, bigint, bigint, text, text, text, numeric, text, timestamptz);
DROP FUNCTION paybot_ton_credit_user(text, bigint, bigint, text, numeric, text, text, text);
DROP FUNCTION paybot_ton_legs(text, text, text, bigint, bigint, bigint);
DROP FUNCTION paybot_invoice_payer(invoices);
DROP FUNCTION paybot_ton_to(bigint, text, numeric);
DROP TABLE invoice_contacts, ton_holds, ton_transfers, ton_cursors;
DROP FUNCTION paybot_hold_release_once();
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
