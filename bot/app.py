"""Composition root: read settings, get a database, migrate, start every part, stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncEngine

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


async def healthz(request: web.Request) -> web.Response:
    engine: AsyncEngine = request.app[ENGINE]
    async with engine.connect() as conn:
        await conn.exec_driver_sql("SELECT 1")
    return web.json_response({"ok": True})


ENGINE = web.AppKey("engine", AsyncEngine)


def build_web_app(settings: Settings, engine: AsyncEngine) -> web.Application:
    """One aiohttp app for everything HTTP: pay pages, Mini App API, seller API, webhook."""
    app = web.Application()
    app[ENGINE] = engine
    app.router.add_get("/healthz", healthz)
    # Each part mounts its routes here (pay page, seller API, Telegram webhook).
    return app


async def serve(settings: Settings, database_url: str, stop: asyncio.Event) -> None:
    await upgrade(database_url)
    engine = make_engine(database_url)
    scheduler = AsyncIOScheduler()
    schedule_ledger_jobs(
        scheduler, engine,
        expire_seconds=settings.jobs.expire_seconds,
        apply_credits_seconds=settings.jobs.apply_credits_seconds,
    )
    app = build_web_app(settings, engine)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, settings.web.host, settings.web.port)
    await site.start()
    scheduler.start()
    log.info("paybot is running on http://%s:%s; Ctrl+C to stop",
             settings.web.host, settings.web.port)
    try:
        await stop.wait()
    finally:
        scheduler.shutdown(wait=False)
        await runner.cleanup()
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
