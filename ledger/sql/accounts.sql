-- Accounts and moves: finding or opening accounts, debits that never go below zero,
-- pending credits folded in order, and moves between a user and a system account.

CREATE OR REPLACE FUNCTION paybot_user_account(p_user bigint, p_currency text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE v_id bigint;
BEGIN
    SELECT id INTO v_id FROM accounts WHERE user_id = p_user AND currency = p_currency;
    IF v_id IS NULL THEN
        IF NOT EXISTS (SELECT 1 FROM users WHERE id = p_user) THEN
            PERFORM paybot_raise('user_not_found', p_user::text);
        END IF;
        INSERT INTO accounts (user_id, currency) VALUES (p_user, p_currency)
            ON CONFLICT (user_id, currency) DO NOTHING;
        SELECT id INTO v_id FROM accounts WHERE user_id = p_user AND currency = p_currency;
    END IF;
    RETURN v_id;
END $$;

CREATE OR REPLACE FUNCTION paybot_system_account(p_name text, p_currency text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE v_id bigint;
BEGIN
    SELECT id INTO v_id FROM accounts WHERE system_name = p_name AND currency = p_currency;
    IF v_id IS NULL THEN
        INSERT INTO accounts (system_name, currency) VALUES (p_name, p_currency)
            ON CONFLICT (system_name, currency) DO NOTHING;
        SELECT id INTO v_id FROM accounts WHERE system_name = p_name AND currency = p_currency;
    END IF;
    RETURN v_id;
END $$;

-- Locks the account row and folds its committed pending entries into the balance, in entry
-- order, filling each entry's balance_before/after once. Returns the balance after.
CREATE OR REPLACE FUNCTION apply_pending_credits(p_account bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE v_bal bigint; v_added bigint;
BEGIN
    SELECT balance INTO v_bal FROM accounts WHERE id = p_account FOR UPDATE;
    WITH pending AS (
        SELECT id, amount, sum(amount) OVER (ORDER BY id) AS running
          FROM entries WHERE account_id = p_account AND balance_after IS NULL
    ), applied AS (
        UPDATE entries e
           SET balance_before = v_bal + p.running - p.amount, balance_after = v_bal + p.running
          FROM pending p WHERE e.id = p.id
        RETURNING e.amount
    )
    SELECT sum(amount) INTO v_added FROM applied;
    IF v_added IS NOT NULL THEN
        v_bal := v_bal + v_added;
        UPDATE accounts SET balance = v_bal WHERE id = p_account;
    END IF;
    RETURN v_bal;
END $$;

-- Takes money out of a user's account at once, only if it is there. The conditional UPDATE
-- is the lock; pending credits are folded in first only when the balance alone falls short.
CREATE OR REPLACE FUNCTION paybot_debit_user(p_tx bigint, p_user bigint, p_currency text, p_amount bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE v_acct bigint; v_bal bigint;
BEGIN
    UPDATE accounts SET balance = balance - p_amount
     WHERE user_id = p_user AND currency = p_currency AND balance >= p_amount
    RETURNING id, balance INTO v_acct, v_bal;
    IF v_acct IS NULL THEN
        v_acct := paybot_user_account(p_user, p_currency);
        v_bal := apply_pending_credits(v_acct);
        IF v_bal < p_amount THEN
            PERFORM paybot_raise('insufficient_funds',
                json_build_object('needed', p_amount, 'available', v_bal,
                                  'currency', p_currency)::text);
        END IF;
        UPDATE accounts SET balance = balance - p_amount WHERE id = v_acct
        RETURNING balance INTO v_bal;
    END IF;
    INSERT INTO entries (tx_id, account_id, currency, amount, balance_before, balance_after)
        VALUES (p_tx, v_acct, p_currency, -p_amount, v_bal + p_amount, v_bal);
    RETURN v_bal;
END $$;

-- A credit that cannot make a balance negative: written pending, no lock on the account row.
CREATE OR REPLACE FUNCTION paybot_credit_user(p_tx bigint, p_user bigint, p_currency text, p_amount bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE v_acct bigint;
BEGIN
    SELECT id INTO v_acct FROM accounts WHERE user_id = p_user AND currency = p_currency;
    IF v_acct IS NULL THEN
        v_acct := paybot_user_account(p_user, p_currency);
    END IF;
    INSERT INTO entries (tx_id, account_id, currency, amount) VALUES (p_tx, v_acct, p_currency, p_amount);
END $$;

-- Move money between a user and a system account: deposits (chain_inflow -> user),
-- operator adjustments either way, excess and suspense credits. Idempotent on reference.
CREATE OR REPLACE FUNCTION paybot_move(p_kind text, p_user bigint, p_system text, p_currency text,
                            p_amount bigint, p_reason text, p_reference text)
RETURNS TABLE (ledger_tx_id bigint, replayed boolean, user_balance bigint)
LANGUAGE plpgsql AS $$
DECLARE v_tx bigint; v_acct bigint; v_bal bigint;
BEGIN
    IF p_amount = 0 THEN
        PERFORM paybot_raise('invalid_amount', p_amount::text);
    END IF;
    v_acct := paybot_user_account(p_user, p_currency);
    IF p_reference IS NOT NULL THEN
        INSERT INTO ledger_transactions (kind, reason, reference) VALUES (p_kind, p_reason, p_reference)
            ON CONFLICT (reference) WHERE reference IS NOT NULL DO NOTHING RETURNING id INTO v_tx;
        IF v_tx IS NULL THEN
            RETURN QUERY SELECT t.id, true, NULL::bigint FROM ledger_transactions t
                WHERE t.reference = p_reference;
            RETURN;
        END IF;
    ELSE
        INSERT INTO ledger_transactions (kind, reason) VALUES (p_kind, p_reason) RETURNING id INTO v_tx;
    END IF;
    IF p_amount > 0 THEN
        INSERT INTO entries (tx_id, account_id, currency, amount) VALUES
            (v_tx, paybot_system_account(p_system, p_currency), p_currency, -p_amount),
            (v_tx, v_acct, p_currency, p_amount);
    ELSE
        v_bal := paybot_debit_user(v_tx, p_user, p_currency, -p_amount);
        INSERT INTO entries (tx_id, account_id, currency, amount)
            VALUES (v_tx, paybot_system_account(p_system, p_currency), p_currency, -p_amount);
    END IF;
    RETURN QUERY SELECT v_tx, false, v_bal;
END $$;
