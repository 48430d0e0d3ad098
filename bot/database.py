"""Where `paybot` gets its database: DATABASE_URL, or an embedded PostgreSQL in its data dir.

Its own module so that the operator CLI reaches the database without importing the bot, the
web app or the watchers (`paybot admin …` stays fast)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from bot.settings import DatabaseSettings
from ledger.postgres import embedded_postgres


@contextlib.contextmanager
def database(settings: DatabaseSettings) -> Iterator[str]:
    """DATABASE_URL when set; otherwise an embedded PostgreSQL for the life of the block."""
    if settings.database_url is not None:
        yield settings.database_url.get_secret_value()
        return
    with embedded_postgres(settings.data_dir) as url:
        yield url
