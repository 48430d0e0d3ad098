"""Bot fixtures: the Bot API stand-in, a bot pointed at it, a dispatcher per test, and Telegram
people bound to ledger users."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from decimal import Decimal

import pytest
from aiogram import Bot, Dispatcher
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.settings import LedgerSettings, Settings, TelegramSettings, TonSettings, WebSettings
from bot.telegram import create_bot, create_dispatcher
from bot.telegram.config import BotConfig
from ledger.core import Ledger
from tests.bot.botapi import BotApiStandIn
from tests.bot.client import TgClient

# A real mainnet wallet address form (the ledger only ever sees it as text).
TON_WALLET = "UQCD39VS5jcptHL8vMjEXrzGaRcCVYto7HUn4bpAOg8xqEBI"


def bot_settings(api_url: str, token: str, **web: str) -> Settings:
    settings = Settings()
    settings.telegram = TelegramSettings(bot_token=SecretStr(token), api_url=api_url,
                                         bot_username="paybot_test_bot", webhook_url=None)
    settings.web = WebSettings(public_url=web.get("public_url", "https://pay.example.com"))
    # Cards read the invoice every time here (tests change invoices behind the bot's back);
    # test_card_snapshots covers the cached read.
    settings.ledger = LedgerSettings(currency="LIQ", ton_rate=Decimal("5.00"),
                                     invoice_expiry_hours=168, invoice_cache_seconds=0)
    settings.ton = TonSettings(destination_address=TON_WALLET)
    return settings


@pytest.fixture(scope="session")
async def bot_api() -> AsyncIterator[BotApiStandIn]:
    api = BotApiStandIn()
    await api.start()
    yield api
    await api.close()


@pytest.fixture(scope="session")
def settings(bot_api: BotApiStandIn) -> Settings:
    return bot_settings(bot_api.url, bot_api.token)


@pytest.fixture(scope="session")
async def bot(settings: Settings) -> AsyncIterator[Bot]:
    b = create_bot(settings)
    yield b
    await b.session.close()


@pytest.fixture
def dp(engine: AsyncEngine, settings: Settings) -> Dispatcher:
    """A fresh dispatcher per test (fresh form state); it takes the routers over."""
    return create_dispatcher(Ledger(engine), settings)


@pytest.fixture(autouse=True)
def _clean_api(bot_api: BotApiStandIn) -> Iterator[None]:
    bot_api.reset()
    yield
    bot_api.reset()


@pytest.fixture
def cfg(dp: Dispatcher) -> BotConfig:
    """This test's dispatcher config (changing it affects this test only)."""
    return dp["cfg"]


Person = Callable[..., Awaitable[TgClient]]


@pytest.fixture
def person(make_user, bot_api: BotApiStandIn, dp: Dispatcher, bot: Bot) -> Person:  # type: ignore[no-untyped-def]
    """A Telegram person with a ledger user (optionally with money on the balance)."""

    async def _make(balance: int = 0, *, language: str | None = "en",
                    username: str | None = None) -> TgClient:
        user = await make_user(balance=balance, username=username, language=language)
        return TgClient(bot_api, dp, bot, user, language=language, username=username)

    return _make
