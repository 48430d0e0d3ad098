"""The chat's menu button opens the Mini App when the public URL can be a Web App (https); on a
plain-http or local address the default menu stays (Telegram would refuse the button)."""

from __future__ import annotations

from aiohttp import web

from bot.settings import WebSettings
from bot.telegram import TelegramService
from ledger.core import Ledger
from tests.bot.botapi import BotApiStandIn
from tests.bot.conftest import bot_settings


async def _started(engine, bot_api: BotApiStandIn, public_url: str) -> None:  # type: ignore[no-untyped-def]
    settings = bot_settings(bot_api.url, bot_api.token)
    settings.web = WebSettings(public_url=public_url)
    service = TelegramService(settings, Ledger(engine), web.Application())
    try:
        await service.start()
    finally:
        await service.stop()


async def test_https_sets_the_menu_button_to_the_mini_app(engine, bot_api) -> None:
    await _started(engine, bot_api, "https://pay.example.com/")

    [call] = bot_api.calls_of("setChatMenuButton")
    assert call.params["menu_button"] == {
        "type": "web_app", "text": "📊 paybot",
        "web_app": {"url": "https://pay.example.com/app"}}
    assert "chat_id" not in call.params  # the default button, for every chat


async def test_plain_http_keeps_the_default_menu(engine, bot_api) -> None:
    await _started(engine, bot_api, "http://localhost:8080")

    assert bot_api.calls_of("setChatMenuButton") == []
    assert len(bot_api.calls_of("setMyCommands")) == 2  # the commands are still set


async def test_a_server_without_the_method_is_not_fatal(engine, bot_api) -> None:
    bot_api.missing_methods.add("setchatmenubutton")

    await _started(engine, bot_api, "https://pay.example.com")

    assert len(bot_api.calls_of("setChatMenuButton")) == 1
    assert bot_api.calls_of("getUpdates") or bot_api.calls_of("deleteWebhook")
