"""Composition root: read settings, get a database, migrate, start every part, stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.settings import DatabaseSettings, Settings
from ledger.migrate import upgrade
from ledger.postgres import embedded_postgres, make_engine
from watchers.jobs import schedule_ledger_jobs

log = logging.getLogger("paybot")


@contextlib.contextmanager
def database(settings: DatabaseSettings) -> Iterator[str]:
    """DATABASE_URL when set; otherwise an embedded PostgreSQL for the life of the block."""
    if settings.database_url is not None:
        yield settings.database_url.get_secret_value()
        return
    with embedded_postgres(settings.data_dir) as url:
        yield url


async def serve(settings: Settings, database_url: str, stop: asyncio.Event) -> None:
    await upgrade(database_url)
    engine = make_engine(database_url)
    scheduler = AsyncIOScheduler()
    schedule_ledger_jobs(
        scheduler, engine,
        expire_seconds=settings.jobs.expire_seconds,
        apply_credits_seconds=settings.jobs.apply_credits_seconds,
    )
    scheduler.start()
    log.info("paybot is running; Ctrl+C to stop")
    try:
        await stop.wait()
    finally:
        scheduler.shutdown(wait=False)
        await engine.dispose()
        log.info("paybot stopped")


def run(settings: Settings) -> None:
    with database(settings.database) as url:
        asyncio.run(_main(settings, url))


async def _main(settings: Settings, url: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, url, stop)
