"""Apply Alembic migrations from code (`paybot migrate`, `paybot run`, tests)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

from ledger.postgres import asyncpg_url

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(database_url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["database_url"] = asyncpg_url(database_url)
    return cfg


def upgrade_sync(database_url: str, revision: str = "heads") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade_sync(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


async def upgrade(database_url: str, revision: str = "heads") -> None:
    # Alembic's async env runs its own event loop, so it gets a thread of its own.
    await asyncio.to_thread(upgrade_sync, database_url, revision)
