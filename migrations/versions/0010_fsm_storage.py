"""Bot conversations in PostgreSQL: aiogram's FSM state and data per storage key, so a restart
or a deploy in the middle of /invoice continues where the person was, and replicas behind a
round-robin share one conversation (bot/telegram/fsm_storage.py).

Rows are never deleted: ending a conversation sets the state to NULL and the data to {}.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27
"""

from migrations.sql import run_script

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE bot_fsm_states (
    -- aiogram's storage key: bot, business connection, chat, thread, user, destiny
    key        text PRIMARY KEY CHECK (length(key) <= 512),
    state      text CHECK (length(state) <= 256),
    data       jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(data) = 'object'),
    updated_at timestamptz NOT NULL DEFAULT now()
);
"""

DOWNGRADE = r"""
DROP TABLE bot_fsm_states;
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
