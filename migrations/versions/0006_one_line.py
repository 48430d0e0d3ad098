"""Join the two lines of migrations (0003 TON watcher, 0005 seller API) into one, so that a
plain `alembic upgrade head` works. No schema change.

Revision ID: 0006
Revises: 0003, 0005
Create Date: 2026-11-27
"""

revision = "0006"
down_revision = ("0003", "0005")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
