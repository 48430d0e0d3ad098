"""Running the bot: long polling through getUpdates, the webhook in the shared aiohttp app
(secret checked), start-up calls that fail, and `paybot run` with and without a token."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient, TestServer
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from pydantic import SecretStr

from bot.app import serve
from bot.settings import Settings, TelegramSettings, WebSettings
from bot.telegram import TelegramService
from ledger.core import Ledger
from tests.bot.botapi import BotApiStandIn
from tests.bot.conftest import bot_settings
from tests.waiting import wait_until


def start_update(api: BotApiStandIn, telegram_id: int, text: str = "/start") -> None:
    api.post_update({"message": {
        "message_id": api.user_message(telegram_id, text).message_id, "date": 1_700_000_000,
        "chat": {"id": telegram_id, "type": "private", "first_name": "P"},
        "from": {"id": telegram_id, "is_bot": False, "first_name": "P", "language_code": "en"},
        "text": text,
    }})


def _replied(api: BotApiStandIn, telegram_id: int) -> Callable[[], bool]:
    return lambda: any(m.plain.startswith("👋 paybot") for m in api.messages(telegram_id))


async def test_long_polling_and_start_up_calls(engine, bot_api, settings, make_user) -> None:
    bot_api.missing_methods.add("setmycommands")  # a Bot API server without it: not fatal
    scheduler = AsyncIOScheduler()
    service = TelegramService(settings, Ledger(engine), web.Application(), scheduler)
    assert scheduler.get_job("telegram_notifier") is not None
    await service.start()
    try:
        user = await make_user()
        start_update(bot_api, user.telegram_id)
        await wait_until(_replied(bot_api, user.telegram_id), "the bot's answer to /start")
    finally:
        await service.stop()
    methods = [c.method for c in bot_api.calls]
    assert {"getme", "deletewebhook", "getupdates"} <= set(methods)
    commands = bot_api.calls_of("setMyCommands")
    assert [c.params.get("language_code") for c in commands] == [None, "ru"]
    assert [c["command"] for c in commands[0].params["commands"]][:3] == [
        "start", "invoice", "invoices"]


async def test_polling_survives_get_me_failing_at_first(engine, bot_api, settings,
                                                        make_user) -> None:
    bot_api.fail(500, "Internal Server Error", method="getMe", times=2)
    service = TelegramService(settings, Ledger(engine), web.Application())
    await service.start()  # the first getMe fails here, the second in polling: it restarts
    try:
        user = await make_user()
        start_update(bot_api, user.telegram_id)
        await wait_until(_replied(bot_api, user.telegram_id), "the bot's answer to /start")
    finally:
        await service.stop()


async def test_username_from_get_me_is_used_in_links(engine, bot_api) -> None:
    settings = bot_settings(bot_api.url, bot_api.token)
    settings.telegram = settings.telegram.model_copy(update={"bot_username": "stale_name"})
    service = TelegramService(settings, Ledger(engine), web.Application())
    try:
        await service._refresh_username()
        assert service.dp["cfg"].bot_username == "paybot_test_bot"
    finally:
        await service.stop()


@pytest.fixture
def webhook_settings(bot_api: BotApiStandIn) -> Settings:
    s = bot_settings(bot_api.url, bot_api.token)
    s.telegram = s.telegram.model_copy(update={
        "webhook_url": "https://bot.example.com/tg/hook",
        "webhook_secret": SecretStr("s3cret-token")})
    return s


async def test_webhook_checks_the_secret(engine, bot_api, webhook_settings, make_user) -> None:
    app = web.Application()
    service = TelegramService(webhook_settings, Ledger(engine), app)
    user = await make_user()
    update = {"update_id": 1, "message": {
        "message_id": 1, "date": 1_700_000_000, "text": "/start",
        "chat": {"id": user.telegram_id, "type": "private", "first_name": "P"},
        "from": {"id": user.telegram_id, "is_bot": False, "first_name": "P"}}}
    bot_api.fail(502, "Bad Gateway", method="setWebhook")  # Telegram unreachable at first
    async with TestClient(TestServer(app)) as http:
        await service.start()
        await wait_until(lambda: len(bot_api.calls_of("setWebhook")) == 2,
                         "setWebhook asked again after Telegram failed it")
        [_failed, hook] = bot_api.calls_of("setWebhook")
        assert hook.params["url"] == "https://bot.example.com/tg/hook"
        assert hook.params["secret_token"] == "s3cret-token"
        assert bot_api.calls_of("getUpdates") == []  # no polling in webhook mode

        for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "wrong"}):
            response = await http.post("/tg/hook", json=update, headers=headers)
            assert response.status == 401
        assert bot_api.messages(user.telegram_id) == []

        response = await http.post("/tg/hook", json=update,
                                   headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret-token"})
        assert response.status == 200
        await wait_until(_replied(bot_api, user.telegram_id), "the bot's answer to /start")
        await service.stop()
    # The refused copies came first (and one user's updates are handled in turn): had either
    # been let in, its answer would be here too.
    assert [m.from_bot for m in bot_api.messages(user.telegram_id)] == [True]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _serve_until(settings: Settings, database_url: str,
                       until: Callable[[int], asyncio.Future | None]) -> None:
    port = _free_port()
    settings.web = WebSettings(port=port, public_url="https://pay.example.com")
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, database_url, stop))
    try:
        async with ClientSession() as http:

            async def serving() -> bool:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                        return r.status == 200
                except OSError:
                    return False

            await wait_until(serving, "paybot serving /healthz", task=task)
            await until(port)
    finally:
        stop.set()
        await task


async def test_run_without_a_token_keeps_serving(database_url, caplog) -> None:
    settings = Settings()
    settings.telegram = TelegramSettings(bot_token=None)
    caplog.set_level(logging.WARNING)

    async def healthy(port: int) -> None:
        async with ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as r:
            assert r.status == 200

    await _serve_until(settings, database_url, healthy)
    assert "TELEGRAM_BOT_TOKEN is not set" in caplog.text


async def test_run_with_a_malformed_token_keeps_serving(database_url, caplog) -> None:
    settings = Settings()
    settings.telegram = TelegramSettings(bot_token=SecretStr("not a token"))
    caplog.set_level(logging.WARNING)

    async def healthy(port: int) -> None:
        async with ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as r:
            assert r.status == 200

    await _serve_until(settings, database_url, healthy)
    assert "the Telegram bot is not started" in caplog.text


async def test_run_with_a_token_answers_in_telegram(database_url, bot_api, make_user) -> None:
    settings = bot_settings(bot_api.url, bot_api.token)
    user = await make_user()

    async def answers(port: int) -> None:
        start_update(bot_api, user.telegram_id)
        await wait_until(_replied(bot_api, user.telegram_id), "the bot's answer to /start")

    await _serve_until(settings, database_url, answers)


async def test_every_edge_links_to_the_bot_get_me_names(database_url, engine, bot_api,
                                                         make_user) -> None:
    """TELEGRAM_BOT_USERNAME left at its default: the pay page, its JSON and the seller API
    name the bot that getMe reports, as the bot's own links do."""
    from ledger.api_tokens import issue_token
    from ledger.invoices import create_invoice

    settings = bot_settings(bot_api.url, bot_api.token)
    settings.telegram = settings.telegram.model_copy(update={"bot_username": "paybot"})
    seller = await make_user()
    invoice = await create_invoice(engine, seller_id=seller.id, title="Tea", amount=100)
    token, _ = await issue_token(engine, seller.id)
    login = f"https://t.me/paybot_test_bot?start=pay_{invoice.public_id}"

    async def links_name_the_real_bot(port: int) -> None:
        base = f"http://127.0.0.1:{port}"
        async with ClientSession() as http:

            async def page_links_the_real_bot() -> str | None:
                async with http.get(f"{base}/pay/{invoice.public_id}") as r:
                    page = await r.text()
                return page if login in page else None

            # getMe runs right after the site starts serving
            page = await wait_until(page_links_the_real_bot,
                                    "the pay page linking the bot getMe names")
            assert "t.me/paybot?" not in page
            async with http.get(f"{base}/pay/{invoice.public_id}/status") as r:
                status = await r.text()
            assert "t.me/paybot_test_bot" in status and "t.me/paybot?" not in status
            async with http.get(f"{base}/api/v1/invoices/{invoice.public_id}",
                                headers={"Authorization": f"Bearer {token}"}) as r:
                assert (await r.json())["bot_url"] == login

    await _serve_until(settings, database_url, links_name_the_real_bot)
