"""Jettons in: USDT (6 decimals) is a ledger currency; a chain transfer records its asset and
the jetton amount it carried, a holding its asset; our jetton wallet of each master is
remembered once; the payment method `usdt`.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-27
"""

from migrations.sql import apply_sql_files, restore_sql_files, run_script

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# ledger.sql.checksum() of the files this revision applies
SQL_FILES_SHA256 = "6a3dfbde2d08cad9b160d804ee741fadf75a7e71c5e7b6b69b3e308e96426a11"


def upgrade() -> None:
    run_script("""
INSERT INTO currencies (code, decimals) VALUES ('USDT', 6) ON CONFLICT DO NOTHING;
-- What a transfer carried: TON (value_nano is what counts) or a jetton (asset_amount, in the
-- jetton's minor units, counts; value_nano is the TON its message carried for fees).
ALTER TABLE ton_transfers
    ADD COLUMN asset        text NOT NULL DEFAULT 'TON' REFERENCES currencies (code),
    ADD COLUMN asset_amount bigint CHECK (asset_amount >= 0),
    ADD CONSTRAINT jetton_has_amount CHECK ((asset = 'TON') = (asset_amount IS NULL));
-- A holding is in its transfer's asset (amount_nano: minor units of that asset).
ALTER TABLE ton_holds ADD COLUMN asset text NOT NULL DEFAULT 'TON' REFERENCES currencies (code);
ALTER TABLE payments DROP CONSTRAINT payments_method_check;
ALTER TABLE payments ADD CONSTRAINT payments_method_check
    CHECK (method IN ('internal', 'ton', 'usdt', 'manual', 'stars')
           OR method ~ '^card:[a-z0-9_]{1,32}$');

-- Our jetton wallet of a master (its get_wallet_address(owner), asked once): a notification
-- counts only from it.
CREATE TABLE jetton_wallets (
    symbol     text NOT NULL REFERENCES currencies (code),
    master     text NOT NULL CHECK (master ~ '^-?[0-9]+:[0-9a-f]{64}$'),
    owner      text NOT NULL CHECK (owner ~ '^-?[0-9]+:[0-9a-f]{64}$'),
    wallet     text NOT NULL CHECK (wallet ~ '^-?[0-9]+:[0-9a-f]{64}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (master, owner)
);
""")
    apply_sql_files(revision, SQL_FILES_SHA256)


def downgrade() -> None:
    restore_sql_files(revision)
    run_script("""
DROP TABLE jetton_wallets;
ALTER TABLE payments DROP CONSTRAINT payments_method_check;
ALTER TABLE payments ADD CONSTRAINT payments_method_check
    CHECK (method IN ('internal', 'ton', 'manual', 'stars') OR method ~ '^card:[a-z0-9_]{1,32}$');
ALTER TABLE ton_holds DROP COLUMN asset;
ALTER TABLE ton_transfers DROP CONSTRAINT jetton_has_amount, DROP COLUMN asset_amount,
    DROP COLUMN asset;
""")
