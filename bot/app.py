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

from bot.api import setup_api
from bot.api.wiring import schedule_callbacks
from bot.settings import DatabaseSettings, Settings
from bot.telegram.runtime import telegram_service
from bot.web import setup_pay_pages
from ledger.migrate import upgrade
from ledger.postgres import embedded_postgres, make_engine
from watchers.jobs import schedule_ledger_jobs
from watchers.ton_watcher import start_ton_watcher

log = logging.getLogger("paybot")


@contextlib.contextmanager
def database(settings: DatabaseSettings) -> Iterator[str]:
    """DATABASE_URL when set; otherwise an embedded PostgreSQL for the life of the block."""
    if settings.database_url is not None:
        yield settings.database_url.get_secret_value()
        return
    with embedded_postgres(settings.data_dir) as url:
        yield url


ENGINE = web.AppKey("engine", AsyncEngine)


async def healthz(request: web.Request) -> web.Response:
    engine: AsyncEngine = request.app[ENGINE]
    async with engine.connect() as conn:
        await conn.exec_driver_sql("SELECT 1")
    return web.json_response({"ok": True})


def build_web_app(settings: Settings, engine: AsyncEngine) -> web.Application:
    """One aiohttp app for everything HTTP: pay pages, Mini App API, seller API, webhook."""
    app = web.Application()
    app[ENGINE] = engine
    app.router.add_get("/healthz", healthz)
    setup_pay_pages(app, engine, settings)
    setup_api(app, engine, settings)  # /api/v1
    # The Telegram webhook route, when configured, is added by telegram_service() in serve().
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
    callbacks = schedule_callbacks(settings, engine, scheduler)  # signed seller callbacks
    # TON watcher (when TON_DESTINATION_ADDRESS is set): never blocks start-up, never raises.
    ton_watcher = start_ton_watcher(scheduler, engine, settings)
    app = build_web_app(settings, engine)
    # Before runner.setup(): the webhook route must be added while the app can still change.
    telegram = telegram_service(settings, engine, app, scheduler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, settings.web.host, settings.web.port)
    await site.start()
    scheduler.start()
    if telegram is not None:
        await telegram.start()
    log.info("paybot is running on http://%s:%s; Ctrl+C to stop",
             settings.web.host, settings.web.port)
    try:
        await stop.wait()
    finally:
        if telegram is not None:
            await telegram.stop()
        scheduler.shutdown(wait=False)
        if ton_watcher is not None:
            await ton_watcher.close()
        await callbacks.close()
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
