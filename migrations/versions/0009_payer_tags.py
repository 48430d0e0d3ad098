"""Payer tags: the comment a payer sends names the payer as well as the invoice.

`INV-<invoice>-<tag>`: the tag (5 Crockford characters, chosen by the server, unique per
invoice) is bound to a Telegram user (bot, Mini App), or to one guest browser (an opaque
`guest_key` kept in its signed cookie), which may leave a contact and later prove its Telegram
account (a secret `proof` shown only to that browser; the tag itself is public on chain).

- payer_tags: the tags; a tag's user is set once.
- ton_transfers.payer_tag_id: the tag a transfer carried (for its own invoice), so a guest's
  purchase and held excess can be found and handed over when the guest proves who they are.
- paybot_ton_pay_invoice (0003) takes the payer from the caller instead of from
  invoice_contacts ("exactly one logged-in buyer said they pay" handed a guest's item to
  whoever was there).
- paybot_ton_receive (0008) looks the tag up (an index lookup): a user's tag makes that user
  the payer (item and excess at once); a guest's tag leaves the item under a claim tied to the
  tag; an unknown tag or another invoice's tag pays like a bare `INV-<id>`, noted.
- paybot_bind_payer: a guest who proved their Telegram account gets the tag and everything paid
  with it (unclaimed grants, held excess) in one transaction.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27
"""

from pathlib import Path

from migrations.sql import run_script

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_VERSIONS = Path(__file__).resolve().parent

UPGRADE = r"""
CREATE TABLE payer_tags (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    invoice_id  bigint NOT NULL REFERENCES invoices (id),
    tag         text NOT NULL CHECK (tag ~ '^[0-9A-HJKMNP-TV-Z]{5}$'),
    user_id     bigint REFERENCES users (id),
    guest_key   text CHECK (guest_key ~ '^[A-Za-z0-9_-]{16,128}$'),
    proof       text CHECK (proof ~ '^[A-Za-z0-9_-]{16,64}$'),
    contact     text CHECK (length(contact) BETWEEN 3 AND 254),
    bound_at    timestamptz,            -- when a guest proved their Telegram account
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT payer_tag_holder CHECK (user_id IS NOT NULL OR guest_key IS NOT NULL),
    CONSTRAINT guest_tag_has_proof CHECK (guest_key IS NULL OR proof IS NOT NULL),
    CONSTRAINT payer_tag_unique UNIQUE (invoice_id, tag),
    CONSTRAINT payer_tag_user UNIQUE (invoice_id, user_id),
    CONSTRAINT payer_tag_guest UNIQUE (invoice_id, guest_key)
);
CREATE TRIGGER payer_tags_no_delete BEFORE DELETE OR TRUNCATE ON payer_tags
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();

-- A tag keeps its invoice, tag, guest and proof; its user is set once.
CREATE FUNCTION paybot_payer_tag_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.id, NEW.invoice_id, NEW.tag, NEW.created_at) = (OLD.id, OLD.invoice_id, OLD.tag, OLD.created_at)
       AND NEW.guest_key IS NOT DISTINCT FROM OLD.guest_key
       AND NEW.proof IS NOT DISTINCT FROM OLD.proof
       AND (OLD.user_id IS NULL OR NEW.user_id IS NOT DISTINCT FROM OLD.user_id) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'a payer tag keeps its invoice, tag, guest and user (tag %)', OLD.id
        USING ERRCODE = 'PB900';
END $$;
CREATE TRIGGER payer_tags_change BEFORE UPDATE ON payer_tags
    FOR EACH ROW EXECUTE FUNCTION paybot_payer_tag_change();

ALTER TABLE ton_transfers ADD COLUMN payer_tag_id bigint;
CREATE INDEX ton_transfers_payer_tag ON ton_transfers (payer_tag_id) WHERE payer_tag_id IS NOT NULL;

-- The tag of a user or of a guest browser for an invoice: the existing one, else a new one
-- (the first candidate not taken on this invoice). Idempotent per (invoice, user | guest).
CREATE FUNCTION paybot_payer_tag(p_invoice text, p_user bigint, p_guest text, p_proof text,
                                 p_candidates text[])
RETURNS payer_tags LANGUAGE plpgsql AS $$
DECLARE v invoices%ROWTYPE; t payer_tags%ROWTYPE; c text;
BEGIN
    SELECT * INTO v FROM invoices WHERE public_id = upper(p_invoice);
    IF v.id IS NULL THEN
        RAISE EXCEPTION 'invoice_not_found' USING ERRCODE = 'PB001', DETAIL = left(p_invoice, 40);
    ELSIF p_user IS NOT NULL AND v.seller_id = p_user THEN
        RAISE EXCEPTION 'own_invoice' USING ERRCODE = 'PB005', DETAIL = v.public_id;
    ELSIF p_user IS NOT NULL AND NOT EXISTS (SELECT 1 FROM users WHERE id = p_user) THEN
        RAISE EXCEPTION 'user_not_found' USING ERRCODE = 'PB008', DETAIL = p_user::text;
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
CREATE FUNCTION paybot_bind_payer(p_invoice text, p_tag text, p_user bigint, p_proof text,
                                  p_currency text, p_rate numeric)
RETURNS payer_tags LANGUAGE plpgsql AS $$
DECLARE v invoices%ROWTYPE; t payer_tags%ROWTYPE; g record; h record; v_rate numeric;
BEGIN
    SELECT * INTO v FROM invoices WHERE public_id = upper(p_invoice);
    SELECT * INTO t FROM payer_tags x WHERE x.invoice_id = v.id AND x.tag = upper(p_tag) FOR UPDATE;
    IF t.id IS NULL THEN
        RAISE EXCEPTION 'unknown_tag' USING ERRCODE = 'PB120', DETAIL = left(p_tag, 16);
    ELSIF t.user_id IS NOT NULL THEN
        IF t.user_id = p_user THEN
            RETURN t;  -- the same person again
        END IF;
        RAISE EXCEPTION 'tag_taken' USING ERRCODE = 'PB121', DETAIL = t.tag;
    ELSIF p_proof IS NULL OR t.proof IS DISTINCT FROM p_proof THEN
        -- the tag is public on chain: only the secret shown to the guest's browser proves it
        RAISE EXCEPTION 'claim_not_found' USING ERRCODE = 'PB012', DETAIL = t.tag;
    ELSIF v.seller_id = p_user THEN
        RAISE EXCEPTION 'own_invoice' USING ERRCODE = 'PB005', DETAIL = v.public_id;
    ELSIF NOT EXISTS (SELECT 1 FROM users WHERE id = p_user) THEN
        RAISE EXCEPTION 'user_not_found' USING ERRCODE = 'PB008', DETAIL = p_user::text;
    ELSIF EXISTS (SELECT 1 FROM payer_tags x WHERE x.invoice_id = v.id AND x.user_id = p_user) THEN
        RAISE EXCEPTION 'tag_taken' USING ERRCODE = 'PB121', DETAIL = 'user has a tag';
    END IF;
    UPDATE payer_tags SET user_id = p_user, bound_at = now() WHERE id = t.id RETURNING * INTO t;
    FOR g IN SELECT gr.claim_token FROM ton_transfers tt JOIN grants gr ON gr.payment_id = tt.payment_id
              WHERE tt.payer_tag_id = t.id AND gr.user_id IS NULL AND gr.claim_token IS NOT NULL
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

DROP FUNCTION paybot_ton_pay_invoice(invoices, bigint, bigint, text, text, text, numeric, text,
                                     timestamptz);
-- Puts p_amount nanotons, plus the invoice's open partial holdings, toward a payable invoice
-- (locked by the caller). Enough -> settled through settle_external_payment, the excess
-- credited to the payer or held; not enough -> 'partial'. The payer is the caller's: the user
-- the transfer's tag is bound to, else nobody (the grant waits under a claim).
CREATE FUNCTION paybot_ton_pay_invoice(
    p_inv invoices, p_amount bigint, p_exclude_hold bigint, p_reference text, p_claim text,
    p_currency text, p_rate numeric, p_tx_hash text, p_sent_at timestamptz DEFAULT NULL,
    p_payer bigint DEFAULT NULL,
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
    o_payer := p_payer;
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

DROP FUNCTION paybot_ton_receive(text, text, bigint, bigint, bigint, text, boolean, text, bigint,
                                 text, text, text, text, text, text, numeric, text);
-- One chain transaction of the followed account, settled exactly once in this one database
-- transaction, which also records it as the successor of its predecessor: the cursor advance.
-- p_tag: the payer tag of `INV-<invoice>-<tag>` (canonical), or NULL for a bare reference.
CREATE FUNCTION paybot_ton_receive(
    p_address text, p_hash text, p_lt bigint, p_utime bigint, p_prev_lt bigint, p_prev_hash text,
    p_incoming boolean, p_source text, p_value bigint, p_body_kind text, p_comment text,
    p_ignore text, p_invoice text, p_deposit text, p_currency text, p_rate numeric, p_claim text,
    p_tag text DEFAULT NULL)
RETURNS TABLE (transfer_id bigint, outcome text, replayed boolean, invoice_status text,
               payment_id bigint, claim_token text, held_nano bigint, credited bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v invoices%ROWTYPE; r record; c record; pt payer_tags%ROWTYPE;
    v_outcome text; v_note text; v_invoice bigint; v_user bigint; v_payment bigint;
    v_claim text; v_status text; v_excess bigint := 0; v_held bigint := 0; v_hold_reason text;
    v_credited bigint; v_ccy text; v_partials bigint := 0; v_ton_debit bigint := 0;
    v_converted bigint := 0; v_counted bigint := 0; v_tx bigint; v_id bigint; v_base bigint;
    v_tag_note text;
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
            IF v.id IS NOT NULL AND p_tag IS NOT NULL THEN
                -- The tag decides the payer, for its own invoice only (unique index lookup).
                -- Unknown, or another invoice's: paid like a bare reference (money is never
                -- refused), and noted.
                SELECT * INTO pt FROM payer_tags x WHERE x.invoice_id = v.id AND x.tag = p_tag;
                IF pt.id IS NULL THEN
                    v_tag_note := 'unknown payer tag ' || left(p_tag, 16);
                ELSIF pt.user_id = v.seller_id THEN
                    pt := NULL;
                    v_tag_note := 'payer tag of the seller';
                END IF;
            END IF;
            IF v.id IS NULL THEN
                v_outcome := 'unmatched'; v_note := 'unknown invoice';
            ELSIF v.ton_amount IS NULL THEN
                v_outcome := 'unmatched'; v_note := 'invoice has no TON price';
            -- Late is judged by when the transfer was made (its block time), not when the
            -- watcher saw it: a buyer who paid on time is not penalised for our delay. Sent
            -- before the expiry and seen after, it is "paid late" (the invoice stays closed).
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
                                            p_currency, p_rate, p_hash, to_timestamp(p_utime),
                                            pt.user_id);
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
                IF v_outcome <> 'partial' AND v.expires_at <= now() THEN
                    -- settle_external_payment expired it first; it stays closed (see above)
                    v_note := 'paid late: sent before the expiry, seen after';
                END IF;
            END IF;
            IF v_outcome IN ('unmatched', 'late_or_duplicate') THEN
                v_held := p_value; v_hold_reason := v_outcome; v_status := v.status;
            END IF;
            IF v_tag_note IS NOT NULL THEN
                v_note := coalesce(v_note || '; ', '') || v_tag_note;
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
                               credited_currency, ledger_tx_id, payer_tag_id)
    VALUES (p_address, p_hash, p_lt, p_prev_lt, p_prev_hash, to_timestamp(p_utime), p_incoming,
            p_source, p_value,
            p_body_kind, p_comment, v_outcome, v_note, v_invoice, v_user, v_payment, v_claim,
            v_excess, v_held, v_credited, v_ccy, v_tx, pt.id)
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
"""

DOWNGRADE = r"""
DROP FUNCTION paybot_ton_receive(text, text, bigint, bigint, bigint, text, boolean, text, bigint,
                                 text, text, text, text, text, text, numeric, text, text);
DROP FUNCTION paybot_ton_pay_invoice(invoices, bigint, bigint, text, text, text, numeric, text,
                                     timestamptz, bigint);
DROP FUNCTION paybot_bind_payer(text, text, bigint, text, text, numeric);
DROP FUNCTION paybot_payer_tag(text, bigint, text, text, text[]);
DROP INDEX ton_transfers_payer_tag;
ALTER TABLE ton_transfers DROP COLUMN payer_tag_id;
DROP TABLE payer_tags;
DROP FUNCTION paybot_payer_tag_change();
"""


def _previous(migration: str, function: str) -> str:
    """`function` exactly as an older migration created it, as CREATE OR REPLACE."""
    text = (_VERSIONS / migration).read_text(encoding="utf-8")
    start = text.index(f"FUNCTION {function}(")
    end = text.index("END $$;", start) + len("END $$;")
    return "CREATE OR REPLACE " + text[start:end]


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script("\n".join([DOWNGRADE,
                          _previous("0003_ton_watcher.py", "paybot_ton_pay_invoice"),
                          _previous("0008_paid_late.py", "paybot_ton_receive")]))
