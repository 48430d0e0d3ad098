"""Build the bot and its dispatcher, and run them: long polling by default, a webhook mounted
in the shared aiohttp app when TELEGRAM_WEBHOOK_URL is set. Start-up calls that fail (a Bot API
server without setMyCommands, Telegram unreachable) are logged and never take the service down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from urllib.parse import urlsplit

from aiogram import Bot, Dispatcher, Router
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.fsm.storage.base import BaseEventIsolation, BaseStorage
from aiogram.fsm.storage.memory import SimpleEventIsolation
from aiogram.types import BotCommand, BotCommandScopeDefault, MenuButtonWebApp, WebAppInfo
from aiogram.utils.token import TokenValidationError
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.documents.of_invoice import InvoicePdfs
from bot.links import Links
from bot.ratelimit import Rate
from bot.settings import Settings
from bot.telegram import (
    account,
    api_tokens,
    card_pay,
    channels,
    documents,
    errors,
    excess_refunds,
    fallback,
    invoice_actions,
    invoice_form,
    invoices,
    pay,
    plans,
    report,
    seller_settings,
    start,
    subscriptions,
    withdraw,
)
from bot.telegram.config import BotConfig
from bot.telegram.fsm_storage import PostgresEventIsolation, PostgresStorage
from bot.telegram.i18n import LANGUAGES, translator
from bot.telegram.links import usable_in_button
from bot.telegram.middlewares import UserMiddleware
from bot.telegram.notifier import Notifier
from bot.telegram.people import People
from bot.telegram.webhook import PaymentsFirstHandler
from ledger.core import Ledger

log = logging.getLogger(__name__)

COMMANDS = ("start", "invoice", "invoices", "report", "balance", "inventory", "history",
            "withdraw", "settings", "api", "plans", "subscriptions", "cancel")
DEFAULT_WEBHOOK_PATH = "/telegram/webhook"
# The default menu button has one text for every language (Telegram sets it per chat, not per
# language): the product's name, the same in English and Russian.
MENU_BUTTON_TEXT = "📊 paybot"
POLL_RESTART_MAX = 60.0
HANDLER_CONCURRENCY = 64  # polled updates in flight at once (the DB pool is the real limit)


def create_bot(settings: Settings) -> Bot:
    """A Bot for TELEGRAM_BOT_TOKEN, speaking to TELEGRAM_API_URL when set (a self-hosted Bot
    API server, or the tests' stand-in). Raises ValueError without a token."""
    token = settings.telegram.bot_token
    if token is None:
        raise ValueError("TELEGRAM_BOT_TOKEN is not set")
    api_url = settings.telegram.api_url
    session = AiohttpSession(api=TelegramAPIServer.from_base(api_url)) if api_url else None
    return Bot(
        token.get_secret_value(), session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML, link_preview_is_disabled=True),
    )


def create_dispatcher(
    ledger: Ledger, settings: Settings, *, storage: BaseStorage | None = None,
    links: Links | None = None, isolation: BaseEventIsolation | None = None,
) -> Dispatcher:
    """The dispatcher with every router. Dependencies reach handlers as dispatcher data:
    `ledger` (the use cases, ledger/core.py), `engine` (its engine, for plain reads),
    `people`, `cfg` (BotConfig).

    Conversations live in PostgreSQL: they survive restarts, and webhook replicas behind a
    round-robin share them. One update at a time per user and chat (a double tap is processed
    after the first) within this process by default; pass PostgresEventIsolation when other
    processes receive updates too (webhook mode, see TelegramService)."""
    engine = ledger.engine
    dp = Dispatcher(
        storage=storage or PostgresStorage(engine),
        events_isolation=isolation or SimpleEventIsolation(),
    )
    people = People(engine)
    dp["ledger"] = ledger
    dp["engine"] = engine
    dp["people"] = people
    dp["cfg"] = BotConfig.from_settings(settings, links)
    # rendered invoice PDFs, by version (TON address and comment printed when TON is set)
    dp["pdfs"] = InvoicePdfs(ledger, dp["cfg"].ton_destination)
    dp["payout_policy"] = withdraw.payout_policy(settings)  # limits, network, own addresses
    dp.update.outer_middleware(
        UserMiddleware(people, Rate.parse(settings.telegram.rate_per_user)))
    routers = (
        errors.router,
        card_pay.router,  # early: a successful_payment must reach it whatever state a chat is in
        start.router,
        invoice_form.router,
        invoices.router,
        invoice_actions.router,
        excess_refunds.router,
        seller_settings.router,
        plans.router,
        subscriptions.router,
        pay.router,
        documents.router,
        account.router,
        report.router,
        withdraw.router,
        api_tokens.router,
        channels.router,  # join requests to paid channels
        fallback.router,  # last: whatever nobody else took
    )
    for router in routers:
        _detach(router)
    dp.include_routers(*routers)
    return dp


def _detach(router: Router) -> None:
    """Routers are module singletons and aiogram lets a router have one parent: the newest
    dispatcher in the process takes them over (tests and benchmarks build more than one)."""
    parent = router.parent_router
    if parent is not None:
        parent.sub_routers.remove(router)
        router._parent_router = None


class TelegramService:
    """The bot inside `paybot run`: built before the web app starts (the webhook route must be
    added before the app is frozen), started after it, stopped before it."""

    def __init__(
        self, settings: Settings, ledger: Ledger, app: web.Application,
        scheduler: AsyncIOScheduler | None = None, links: Links | None = None,
    ) -> None:
        engine = ledger.engine
        self.bot = create_bot(settings)
        self.webhook_url = settings.telegram.webhook_url
        # Polling: Telegram hands updates to one getUpdates consumer, so a per-process lock is
        # enough (and costs no database round trips). Webhook: any replica behind the load
        # balancer may get the next tap, so the lock is a PostgreSQL advisory lock.
        isolation = PostgresEventIsolation(engine) if self.webhook_url else None
        self.dp = create_dispatcher(ledger, settings, links=links, isolation=isolation)
        self.notifier = Notifier(ledger, self.bot, cfg=self.dp["cfg"],
                                 operators=settings.operator.telegram_ids)
        secret = settings.telegram.webhook_secret
        # Telegram echoes the secret in a header; without a configured one, a random one per
        # run is set with setWebhook, so requests are always checked.
        self.secret = secret.get_secret_value() if secret else secrets.token_urlsafe(32)
        self._background: asyncio.Task[None] | None = None  # polling, or webhook set-up
        if self.webhook_url:
            path = urlsplit(self.webhook_url).path or DEFAULT_WEBHOOK_PATH
            PaymentsFirstHandler(self.dp, self.bot, ledger,
                                 secret_token=self.secret).register(app, path)
        if scheduler is not None:
            scheduler.add_job(
                self.notifier.deliver_due, "interval", seconds=settings.jobs.notify_seconds,
                id="telegram_notifier", coalesce=True, max_instances=1,
            )

    async def start(self) -> None:
        await self._refresh_username()
        await self._set_commands()
        await self._set_menu_button()
        if self.webhook_url:
            self._background = asyncio.create_task(self._register_webhook(),
                                                   name="telegram-webhook")
        else:
            await self._guarded("deleteWebhook", self.bot.delete_webhook())
            self._background = asyncio.create_task(self._poll_forever(), name="telegram-polling")
            log.info("Telegram long polling started")

    async def stop(self) -> None:
        if self._background is not None:
            if not self.webhook_url:
                # RuntimeError: not running (between restarts); TimeoutError: cancelled below.
                with contextlib.suppress(RuntimeError, TimeoutError):
                    await asyncio.wait_for(self.dp.stop_polling(), timeout=10)
            self._background.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._background
        await self.notifier.close()
        await self.bot.session.close()

    async def _register_webhook(self) -> None:
        # Without setWebhook no update arrives: keep trying (Telegram may be unreachable now).
        delay = 1.0
        while True:
            try:
                await self.bot.set_webhook(
                    self.webhook_url or "", secret_token=self.secret,
                    allowed_updates=self.dp.resolve_used_update_types(),
                )
                log.info("Telegram webhook mode: %s", self.webhook_url)
                return
            except Exception as exc:
                log.error("Telegram setWebhook failed (%s); retrying in %.0fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, POLL_RESTART_MAX)

    async def _poll_forever(self) -> None:
        # start_polling retries getUpdates by itself, but fails outright when getMe does
        # (bad token, API down at start): start again later rather than give up.
        delay = 1.0
        while True:
            try:
                await self.dp.start_polling(
                    self.bot, handle_signals=False, close_bot_session=False,
                    tasks_concurrency_limit=HANDLER_CONCURRENCY,
                )
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("Telegram polling stopped (%s); restarting in %.0fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, POLL_RESTART_MAX)

    async def _refresh_username(self) -> None:
        me = await self._guarded("getMe", self.bot.me())
        cfg: BotConfig = self.dp["cfg"]
        if me is not None and me.username and me.username != cfg.bot_username:
            log.warning("TELEGRAM_BOT_USERNAME is %s but the bot is @%s; using @%s in links",
                        cfg.bot_username, me.username, me.username)
            cfg.links.bot_username = me.username  # the web app and the API share it

    async def _set_commands(self) -> None:
        for lang in LANGUAGES:
            tr = translator(lang)
            commands = [BotCommand(command=c, description=tr(f"cmd.{c}")) for c in COMMANDS]
            await self._guarded(f"setMyCommands({lang})", self.bot.set_my_commands(
                commands, scope=BotCommandScopeDefault(),
                language_code=None if lang == "en" else lang,
            ))

    async def _set_menu_button(self) -> None:
        """The chat's menu button opens the Mini App (/app). Only when the public URL can be a
        Web App (https, a public host): otherwise the default menu (the commands) stays."""
        url = f"{self.dp['cfg'].public_url}/app"
        if not usable_in_button(url):
            return
        await self._guarded("setChatMenuButton", self.bot.set_chat_menu_button(
            menu_button=MenuButtonWebApp(text=MENU_BUTTON_TEXT, web_app=WebAppInfo(url=url))))

    @staticmethod
    async def _guarded(what: str, call):  # type: ignore[no-untyped-def]
        try:
            return await call
        except Exception as exc:
            log.warning("Telegram %s failed at start-up (continuing): %s", what, exc)
            return None


def telegram_service(
    settings: Settings, ledger: Ledger, app: web.Application,
    scheduler: AsyncIOScheduler | None, links: Links | None = None,
) -> TelegramService | None:
    """The bot for `paybot run`, or None (logged) when it cannot run: the rest keeps serving."""
    if settings.telegram.bot_token is None:
        log.warning("TELEGRAM_BOT_TOKEN is not set: the Telegram bot is not started "
                    "(the web app and the watchers run without it)")
        return None
    try:
        return TelegramService(settings, ledger, app, scheduler, links)
    except (ValueError, TokenValidationError) as exc:  # a malformed token, before any request
        log.error("the Telegram bot is not started: %s", exc)
        return None
