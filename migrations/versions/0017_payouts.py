"""Payouts: refunds of held transfers and withdrawals of balances, sent by one hot wallet.

An order is written in the same transaction as its debit (the money waits in the `payouts`
system account until the chain confirms it); every external message signed for it is kept
(`payout_messages`: seqno, valid_until, hash, BOC) before it is broadcast.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-27
"""

from migrations.sql import apply_sql_files, restore_sql_files, run_script

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# ledger.sql.checksum() of the files this revision applies (frozen by the lead on release)
SQL_FILES_SHA256 = "d476aa57b33457eebd42cc0e34613544f6a4cf402a055c5f222632e77a20371b"

ACCOUNTS = "accounts_system_name_check"
KINDS = "ledger_transactions_kind_check"


def _recheck(table: str, constraint: str, column: str, add: tuple[str, ...],
             drop: tuple[str, ...] = ()) -> str:
    """Re-create a `column IN (...)` check with values added or dropped, keeping whatever the
    earlier revisions allowed (read from the catalog, so their lists are not repeated here)."""
    added = "ARRAY[" + ", ".join(f"'{v}'" for v in add) + "]::text[]"
    dropped = "ARRAY[" + ", ".join(f"'{v}'" for v in drop) + "]::text[]"
    return f"""
DO $$
DECLARE v_values text;
BEGIN
    SELECT string_agg(quote_literal(v), ', ' ORDER BY v) INTO v_values
      FROM (SELECT m[1] AS v FROM pg_constraint c,
                   regexp_matches(pg_get_constraintdef(c.oid), '''([a-z_0-9]+)''', 'g') m
             WHERE c.conname = '{constraint}' AND c.conrelid = '{table}'::regclass
            UNION SELECT unnest({added})) x
     WHERE v <> ALL ({dropped});
    EXECUTE 'ALTER TABLE {table} DROP CONSTRAINT {constraint}';
    EXECUTE format('ALTER TABLE {table} ADD CONSTRAINT {constraint} CHECK ({column} IN (%s))',
                   v_values);
END $$;
"""


NEW_ACCOUNTS = ("payouts",)
NEW_KINDS = ("payout", "payout_return", "payout_sent")


def upgrade() -> None:
    run_script(_recheck("accounts", ACCOUNTS, "system_name", NEW_ACCOUNTS)
               + _recheck("ledger_transactions", KINDS, "kind", NEW_KINDS) + """
-- One order of money out. Its debit (a user's balance, or a held transfer released as
-- 'refunded') is written with it; the money sits in the `payouts` account until confirmed.
CREATE TABLE payouts (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind              text NOT NULL CHECK (kind IN ('refund', 'withdrawal')),
    asset             text NOT NULL REFERENCES currencies (code),
    amount            bigint NOT NULL CHECK (amount > 0),  -- the asset's minor units
    destination       text NOT NULL CHECK (destination ~ '^-?[0-9]+:[0-9a-f]{64}$'),
    destination_given text NOT NULL CHECK (length(destination_given) BETWEEN 1 AND 100),
    bounceable        boolean NOT NULL,
    user_id           bigint REFERENCES users (id),
    transfer_id       bigint REFERENCES ton_transfers (id),
    hold_id           bigint UNIQUE REFERENCES ton_holds (id),
    -- what the user's balance paid for a withdrawal (its currency and minor units)
    debit_currency    text REFERENCES currencies (code),
    debit_amount      bigint CHECK (debit_amount > 0),
    request_key       text UNIQUE CHECK (length(request_key) BETWEEN 1 AND 200),
    ledger_tx_id      bigint NOT NULL REFERENCES ledger_transactions (id),
    status            text NOT NULL CHECK (status IN ('pending_approval', 'queued', 'signed',
                                           'sent', 'confirmed', 'failed', 'rejected')),
    note              text CHECK (length(note) <= 500),
    -- the message in flight (also kept in payout_messages, with every earlier one)
    seqno             bigint,
    valid_until       bigint,  -- unix time: the wallet refuses the message after it
    ext_msg_hash      text CHECK (ext_msg_hash ~ '^[0-9a-f]{64}$'),
    tx_hash           text CHECK (tx_hash ~ '^[0-9a-f]{64}$'),
    attempts          int NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    decided_at        timestamptz,
    sent_at           timestamptz,
    confirmed_at      timestamptz,
    CONSTRAINT payout_of_what CHECK (
        (kind = 'withdrawal' AND user_id IS NOT NULL AND debit_amount IS NOT NULL)
        OR (kind = 'refund' AND transfer_id IS NOT NULL AND hold_id IS NOT NULL)),
    CONSTRAINT message_together CHECK (
        (status IN ('signed', 'sent', 'confirmed'))
        = (seqno IS NOT NULL AND valid_until IS NOT NULL AND ext_msg_hash IS NOT NULL)),
    CONSTRAINT confirmed_by_tx CHECK ((status = 'confirmed') = (tx_hash IS NOT NULL))
);
-- One message of the hot wallet in flight at a time: its seqno decides what lands.
CREATE UNIQUE INDEX payouts_one_in_flight ON payouts ((true)) WHERE status IN ('signed', 'sent');
CREATE INDEX payouts_queued ON payouts (id) WHERE status = 'queued';
CREATE INDEX payouts_of_user ON payouts (user_id, created_at) WHERE user_id IS NOT NULL;

-- Every external message signed for a payout, stored before it is broadcast.
CREATE TABLE payout_messages (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payout_id    bigint NOT NULL REFERENCES payouts (id),
    seqno        bigint NOT NULL,
    valid_until  bigint NOT NULL,
    ext_msg_hash text NOT NULL UNIQUE CHECK (ext_msg_hash ~ '^[0-9a-f]{64}$'),
    boc          bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- set once: 'landed' (its transaction) or 'expired' (past valid_until, seqno unmoved)
    outcome      text CHECK (outcome IN ('landed', 'expired')),
    tx_hash      text,
    ended_at     timestamptz
);
CREATE INDEX payout_messages_of ON payout_messages (payout_id);

-- The hot wallets that ever sent payouts (written by the sender when it starts): a withdrawal
-- to one of them, or to any address paybot follows or owns, is refused.
CREATE TABLE hot_wallets (
    address    text PRIMARY KEY CHECK (address ~ '^-?[0-9]+:[0-9a-f]{64}$'),
    version    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
""")
    apply_sql_files(revision, SQL_FILES_SHA256)


def downgrade() -> None:
    restore_sql_files(revision)
    run_script("DROP TABLE hot_wallets, payout_messages, payouts;"
               + _recheck("ledger_transactions", KINDS, "kind", (), NEW_KINDS)
               + _recheck("accounts", ACCOUNTS, "system_name", (), NEW_ACCOUNTS))
