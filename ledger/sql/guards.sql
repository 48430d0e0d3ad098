-- Immutability guards: money records are never deleted, and an entry's balance is filled in once.
-- The triggers sit on every money table; the error is immutable_record (ledger/errors.py).

-- Nothing is ever deleted; money rows never change (pending credits are filled in once).
CREATE OR REPLACE FUNCTION paybot_forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% on % is not allowed: money records are immutable; cancel or void instead',
        TG_OP, TG_TABLE_NAME USING ERRCODE = paybot_error_sqlstate('immutable_record');
END $$;

CREATE OR REPLACE FUNCTION paybot_entry_apply_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.balance_after IS NULL AND NEW.balance_after IS NOT NULL
       AND (NEW.id, NEW.tx_id, NEW.account_id, NEW.currency, NEW.amount, NEW.created_at)
           = (OLD.id, OLD.tx_id, OLD.account_id, OLD.currency, OLD.amount, OLD.created_at) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'entries are immutable (entry %)', OLD.id USING ERRCODE = paybot_error_sqlstate('immutable_record');
END $$;

CREATE TRIGGER entries_immutable BEFORE UPDATE ON entries
    FOR EACH ROW EXECUTE FUNCTION paybot_entry_apply_once();
CREATE TRIGGER entries_no_delete BEFORE DELETE OR TRUNCATE ON entries
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
CREATE TRIGGER ledger_transactions_immutable BEFORE UPDATE OR DELETE OR TRUNCATE ON ledger_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
CREATE TRIGGER payments_immutable BEFORE UPDATE OR DELETE OR TRUNCATE ON payments
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
CREATE TRIGGER invoices_no_delete BEFORE DELETE OR TRUNCATE ON invoices
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
CREATE TRIGGER accounts_no_delete BEFORE DELETE OR TRUNCATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
CREATE TRIGGER users_no_delete BEFORE DELETE OR TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
CREATE TRIGGER grants_no_delete BEFORE DELETE OR TRUNCATE ON grants
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
CREATE TRIGGER outbox_no_delete BEFORE DELETE OR TRUNCATE ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
CREATE TRIGGER ton_transfers_immutable BEFORE UPDATE OR DELETE OR TRUNCATE ON ton_transfers
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
CREATE TRIGGER ton_cursors_no_delete BEFORE DELETE OR TRUNCATE ON ton_cursors
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
CREATE TRIGGER ton_holds_no_delete BEFORE DELETE OR TRUNCATE ON ton_holds
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
CREATE TRIGGER payer_tags_no_delete BEFORE DELETE OR TRUNCATE ON payer_tags
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
CREATE TRIGGER payment_reversals_immutable BEFORE UPDATE OR DELETE OR TRUNCATE ON payment_reversals
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
CREATE TRIGGER invoice_reminders_no_delete BEFORE DELETE OR TRUNCATE ON invoice_reminders
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
CREATE TRIGGER plans_no_delete BEFORE DELETE OR TRUNCATE ON plans
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
CREATE TRIGGER subscriptions_no_delete BEFORE DELETE OR TRUNCATE ON subscriptions
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
CREATE TRIGGER subscription_periods_no_delete BEFORE DELETE OR TRUNCATE ON subscription_periods
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
CREATE TRIGGER subscription_changes_immutable BEFORE UPDATE OR DELETE OR TRUNCATE
    ON subscription_changes FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
CREATE TRIGGER rail_payments_immutable BEFORE UPDATE OR DELETE OR TRUNCATE ON rail_payments
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
CREATE TRIGGER rail_quotes_no_delete BEFORE DELETE OR TRUNCATE ON rail_quotes
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
CREATE TRIGGER rail_refunds_no_delete BEFORE DELETE OR TRUNCATE ON rail_refunds
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
CREATE TRIGGER rail_alerts_immutable BEFORE UPDATE OR DELETE OR TRUNCATE ON rail_alerts
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
CREATE TRIGGER jetton_wallets_immutable BEFORE UPDATE OR DELETE OR TRUNCATE ON jetton_wallets
    FOR EACH STATEMENT EXECUTE FUNCTION paybot_forbid_change();
