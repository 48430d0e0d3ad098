"""Composition root: read settings, get a database, migrate, start every part, stop cleanly."""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import timedelta

from aiohttp import web

from bot.api import setup_api
from bot.api.wiring import schedule_callbacks
from bot.database import database
from bot.health import HealthProbe, livez
from bot.http_errors import install_security_headers
from bot.http_limits import LimitedRunner, max_connections, runner_options
from bot.links import Links, links_from_settings
from bot.metrics import WatcherView, setup_metrics
from bot.settings import Settings
from bot.telegram.runtime import telegram_service
from bot.telegram.stars_reconcile import schedule_stars_reconcile
from bot.web import setup_pay_pages
from bot.web.cards import CARDS
from bot.web.invoice_links import TELEGRAM_BOT
from bot.web.tonconnect import JettonWalletOf
from ledger.core import Ledger
from ledger.migrate import upgrade
from ledger.postgres import make_engine
from watchers.alerts import schedule_alerts
from watchers.card_sessions import schedule_card_sessions
from watchers.jobs import JOB_DEFAULTS, Scheduler, schedule_ledger_jobs
from watchers.payout_sender import start_payout_sender
from watchers.reminders import schedule_reminders
from watchers.subscriptions import schedule_subscriptions
from watchers.ton_watcher import start_ton_watcher
from watchers.wakeup import OutboxListener, Waker
from watchers.weekly_summary import schedule_weekly_summaries

log = logging.getLogger("paybot")

SHUTDOWN_GRACE_SECONDS = 10.0  # how long a stop waits for a settlement or job run in flight


LEDGER = web.AppKey("ledger", Ledger)
HEALTH = web.AppKey("health", HealthProbe)


def build_web_app(settings: Settings, ledger: Ledger, links: Links | None = None,
                  jetton_wallet_of: JettonWalletOf | None = None,
                  watcher: WatcherView | None = None) -> web.Application:
    """One aiohttp app for everything HTTP: pay pages, Mini App API, seller API, webhook.
    Bodies are capped app-wide (413 past WEB_MAX_BODY_BYTES, never buffered further)."""
    app = web.Application(client_max_size=settings.web.max_body_bytes)
    app[LEDGER] = ledger
    app[HEALTH] = health = HealthProbe(ledger.engine)
    app.on_cleanup.append(lambda _app: health.close())  # a probe still waiting on the database
    install_security_headers(app)
    app.router.add_get("/healthz", health.healthz)  # readiness: the database answers too
    app.router.add_get("/livez", livez)  # liveness: the process answers
    token = settings.metrics.token
    metrics = setup_metrics(app, ledger.engine,
                            token=token.get_secret_value() if token else None,
                            address_header=settings.web.client_address_header, watcher=watcher)
    ledger.observe = metrics.latency.observe  # payment latency, /metrics' histogram
    links = links or links_from_settings(settings)  # one per process, shared by every edge
    setup_pay_pages(app, ledger, settings, links=links, jetton_wallet_of=jetton_wallet_of)
    setup_api(app, ledger, settings, links)  # /api/v1
    # The Telegram webhook route, when configured, is added by telegram_service() in serve().
    return app


async def serve(settings: Settings, database_url: str, stop: asyncio.Event) -> None:
    await upgrade(database_url)
    db = settings.database
    engine = make_engine(database_url, connect_timeout=db.connect_timeout,
                         command_timeout=db.command_timeout, pool_timeout=db.pool_timeout)
    # After commit, one hook: a notice or callback queued by any path, in any process, is
    # delivered now (watchers/wakeup.py); the polls below stay as the safety net. Its wakers
    # (the deliverers) join as they are built.
    wakers: list[Waker] = []
    listener = OutboxListener(database_url, wakers)
    # The one Ledger of this process: every edge and worker below calls its use cases.
    ledger = Ledger(engine, invoice_cache_seconds=settings.ledger.invoice_cache_seconds,
                    after_commit=listener.wake,  # balance payments wake without NOTIFY
                    subscription_grace=timedelta(days=settings.ledger.subscription_grace_days))
    scheduler = Scheduler()  # stop() lets the job runs in flight finish
    schedule_ledger_jobs(
        scheduler, engine,
        expire_seconds=settings.jobs.expire_seconds,
        apply_credits_seconds=settings.jobs.apply_credits_seconds,
    )
    schedule_reminders(scheduler, engine, interval_seconds=settings.jobs.reminder_interval_seconds,
                       digest_hour=settings.jobs.digest_hour_utc)
    schedule_weekly_summaries(scheduler, engine, weekday=settings.jobs.weekly_summary_weekday,
                              hour=settings.jobs.weekly_summary_hour_utc)
    schedule_subscriptions(scheduler, ledger, interval_seconds=settings.jobs.renew_seconds,
                           ton_rate=settings.ledger.ton_rate)
    links = links_from_settings(settings)  # the bot corrects its username from getMe
    # Signed callbacks to sellers' backends.
    callbacks, callback_waker = schedule_callbacks(settings, ledger, scheduler, links)
    wakers.append(callback_waker)
    # TON watcher (when TON_DESTINATION_ADDRESS is set): never blocks start-up, never raises.
    ton_watcher = start_ton_watcher(scheduler, engine, settings, after_commit=listener.wake)
    # TON Connect pays USDT from the buyer's own jetton wallet: the watcher's source asks the
    # master (get_wallet_address) for it.
    app = build_web_app(settings, ledger, links, jetton_wallet_of=(
        ton_watcher.source.get_wallet_address if ton_watcher is not None else None),
        watcher=ton_watcher)
    # Operators told once per incident (watcher lag, failing callbacks, broken invariants).
    schedule_alerts(scheduler, engine, watcher=ton_watcher,
                    interval_seconds=settings.metrics.alert_seconds,
                    lag_threshold=settings.metrics.lag_alert_seconds)
    # Payouts (when PAYOUTS_HOT_WALLET_MNEMONIC is set): one sender, never raises.
    payout_sender = start_payout_sender(
        scheduler, engine, settings, ton_watcher.source if ton_watcher is not None else None)
    # Before runner.setup(): the webhook route must be added while the app can still change.
    telegram = telegram_service(settings, ledger, app, scheduler, links)
    if telegram is not None:  # the Mini App's card and Stars invoice links
        app[TELEGRAM_BOT] = telegram.bot
    if telegram is not None and settings.payments.stars_enabled:  # missed Stars, refunds
        schedule_stars_reconcile(scheduler, ledger, telegram.bot, **JOB_DEFAULTS,
                                 interval_seconds=settings.jobs.stars_reconcile_seconds)
    if app[CARDS].providers:  # browser card checkouts whose webhook never came
        schedule_card_sessions(scheduler, ledger, app[CARDS].verify_quote,
                               interval_seconds=settings.jobs.card_sessions_seconds)
    runner = LimitedRunner(app, max_connections=max_connections(settings.web.max_connections),
                           **runner_options(settings.web.header_timeout_seconds))
    await runner.setup()
    site = web.TCPSite(runner, settings.web.host, settings.web.port)
    await site.start()
    if telegram is not None:
        wakers.append(telegram.notifier.waker)
    scheduler.start()
    listener.start()
    if telegram is not None:
        await telegram.start()
    log.info("paybot is running on http://%s:%s; Ctrl+C to stop",
             settings.web.host, settings.web.port)
    try:
        await stop.wait()
    finally:
        # Work in flight ends on its own (bounded), never cancelled mid-transaction: a
        # settlement commits and is logged, or never starts.
        log.info("paybot stopping; letting work in flight finish (up to %.0fs)",
                 SHUTDOWN_GRACE_SECONDS)
        scheduler.pause_runs()
        await listener.close()
        if telegram is not None:
            await telegram.stop()
        if ton_watcher is not None:
            await ton_watcher.close(SHUTDOWN_GRACE_SECONDS)
        if payout_sender is not None:
            await payout_sender.close(SHUTDOWN_GRACE_SECONDS)
        await scheduler.stop(SHUTDOWN_GRACE_SECONDS)
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
