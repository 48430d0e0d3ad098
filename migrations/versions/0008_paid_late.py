"""Paid late: a transfer made before an invoice's expiry and settled after it pays the invoice
without reopening it.

The rule (README, "TON payments: the watcher"): lateness is judged by when the money was sent
(the transfer's block time), not by when the watcher saw it. Sent before `expires_at` ->
it pays, also after the expiry; sent at or after -> late (held in suspense). A payment settled
at or after the expiry is "paid late": the invoice is expired first, once, with its
`invoice_expired` event (if the expiry job had not got there yet), then the payment is recorded
(a use, the item, `invoice_paid`) and the invoice stays expired for new payments. Only a
payment that takes its last use turns it `paid` (a one-time invoice: paid). Before this, such
a payment put an expired multi-use invoice back to `pending` (closed_at cleared), the expiry
job expired it again, and the seller heard expired -> paid (pending) -> expired.

- paybot_take_invoice (0002): never reopens an expired invoice.
- settle_external_payment (0002): a payment settled past the expiry expires the invoice first.
- paybot_ton_receive (0003): notes "paid late: ..." on such a transfer.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from pathlib import Path

from migrations.sql import run_script

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_VERSIONS = Path(__file__).resolve().parent

UPGRADE = r"""
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
           paid_at = CASE WHEN kind = 'one_time' OR uses + 1 = max_uses THEN now() ELSE paid_at END
     WHERE id = p_invoice AND status IN ('pending', 'expired') AND expires_at > least(p_at, now())
       AND (max_uses IS NULL OR uses < max_uses)
    RETURNING * INTO v;
    IF v.id IS NULL THEN
        PERFORM paybot_raise_not_payable(p_invoice);
    END IF;
    RETURN v;
END $$;

-- Settle an invoice paid outside the internal balance (TON transfer seen by the watcher,
-- or a manual payment confirmed by the operator). Idempotent on the external reference.
-- The money comes from the system account of the method (chain_inflow / adjustments).
CREATE OR REPLACE FUNCTION settle_external_payment(
    p_invoice text, p_method text, p_reference text, p_payer bigint, p_claim_token text,
    p_paid_at timestamptz DEFAULT NULL)
RETURNS TABLE (payment_id bigint, replayed boolean, grant_id bigint, invoice_status text,
               claim_token text)
LANGUAGE plpgsql AS $$
DECLARE v invoices%ROWTYPE; v_tx bigint; v_pay bigint; v_grant bigint; v_prev payments%ROWTYPE;
BEGIN
    SELECT * INTO v FROM invoices WHERE public_id = upper(p_invoice) FOR UPDATE;
    IF v.id IS NULL THEN
        RAISE EXCEPTION 'invoice_not_found' USING ERRCODE = 'PB001', DETAIL = p_invoice;
    END IF;
    -- Read after the invoice lock, so a concurrent settlement of the same reference is seen.
    SELECT * INTO v_prev FROM payments WHERE external_ref = p_reference;
    IF v_prev.id IS NOT NULL THEN
        IF v_prev.invoice_id <> v.id THEN
            RAISE EXCEPTION 'reference_reused' USING ERRCODE = 'PB011', DETAIL = p_reference;
        END IF;
        RETURN QUERY SELECT v_prev.id, true, g.id, v.status, g.claim_token
            FROM grants g WHERE g.payment_id = v_prev.id;
        RETURN;
    END IF;
    IF p_payer IS NOT NULL AND v.seller_id = p_payer THEN
        RAISE EXCEPTION 'own_invoice' USING ERRCODE = 'PB005', DETAIL = v.public_id;
    END IF;
    IF v.status = 'pending' AND v.expires_at <= now() THEN
        -- Paid late (a transfer sent before the expiry, settled after it): the invoice expires
        -- first, as the expiry job would have, with its event, so the seller hears expired ->
        -- paid (late). Checked on the locked row: nothing extra for a payment on time.
        UPDATE invoices SET status = 'expired', closed_at = now() WHERE id = v.id RETURNING * INTO v;
        PERFORM paybot_close_event(v, 'invoice_expired');
    END IF;
    v := paybot_take_invoice(v.id, coalesce(p_paid_at, now()));
    INSERT INTO ledger_transactions (kind, reason) VALUES ('external_payment', p_method)
        RETURNING id INTO v_tx;
    INSERT INTO entries (tx_id, account_id, currency, amount) VALUES
        (v_tx, paybot_system_account(CASE WHEN p_method = 'ton' THEN 'chain_inflow'
                                          ELSE 'adjustments' END, v.currency), v.currency, -v.amount);
    PERFORM paybot_credit_user(v_tx, v.seller_id, v.currency, v.amount);
    INSERT INTO payments (invoice_id, payer_id, method, currency, amount, external_ref, ledger_tx_id)
        VALUES (v.id, p_payer, p_method, v.currency, v.amount, p_reference, v_tx)
        RETURNING id INTO v_pay;
    v_grant := paybot_fulfil(v, v_pay, p_payer, p_claim_token, p_method);
    RETURN QUERY SELECT v_pay, false, v_grant, v.status,
        CASE WHEN p_payer IS NULL THEN p_claim_token END;
END $$;

-- One chain transaction of the followed account, settled exactly once in this one database
-- transaction, which also records it as the successor of its predecessor: the cursor advance.
CREATE OR REPLACE FUNCTION paybot_ton_receive(
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
                IF v_outcome <> 'partial' AND v.expires_at <= now() THEN
                    -- settle_external_payment expired it first; it stays closed (see above)
                    v_note := 'paid late: sent before the expiry, seen after';
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
"""


def _previous(migration: str, function: str) -> str:
    """`function` exactly as an older migration created it, as CREATE OR REPLACE."""
    text = (_VERSIONS / migration).read_text(encoding="utf-8")
    start = text.index(f"CREATE FUNCTION {function}(")
    end = text.index("END $$;", start) + len("END $$;")
    return "CREATE OR REPLACE" + text[start + len("CREATE"):end]


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script("\n".join([_previous("0002_ledger_functions.py", "paybot_take_invoice"),
                           _previous("0002_ledger_functions.py", "settle_external_payment"),
                           _previous("0003_ton_watcher.py", "paybot_ton_receive")]))
