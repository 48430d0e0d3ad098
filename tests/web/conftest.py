"""Fixtures for the pay pages: settings, the app on aiohttp's test server, signed init data."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.settings import LedgerSettings, Settings, TelegramSettings, TonSettings, WebSettings
from bot.web import setup_pay_pages
from ledger.core import Ledger
from ledger.invoices import create_invoice
from ledger.models import Invoice, User
from tests.web.cdp import find_chromium

BOT_TOKEN = "123456789:TEST-token-for-the-pay-pages"
BOT_USERNAME = "paybot_test"
MAX_AGE = 600
FIXTURE = Path(__file__).parent.parent / "fixtures" / "ton" / "transactions.json"
DEST = json.loads(FIXTURE.read_text(encoding="utf-8"))["destination"]
TON_RATE = Decimal("5.00")  # Liquid $ per TON: 12.50 -> 2.5 TON


def make_settings(*, token: str | None = BOT_TOKEN, address: str | None = DEST["raw"],
                  public_url: str = "https://pay.example.com",
                  page_cache_seconds: float = 0) -> Settings:
    settings = Settings()
    settings.telegram = TelegramSettings(bot_token=token, bot_username=BOT_USERNAME)
    # No page cache by default: most tests look at the page right after changing the invoice.
    settings.web = WebSettings(public_url=public_url, init_data_max_age=MAX_AGE,
                               cookie_secret="test-cookie-secret")
    settings.ledger = LedgerSettings(invoice_cache_seconds=page_cache_seconds)
    settings.ton = TonSettings(destination_address=address)
    return settings


def sign_init_data(user: dict[str, Any] | None, /, *, auth_date: float | None = None,
                   token: str = BOT_TOKEN, **extra: str) -> str:
    """Init data as Telegram signs it: HMAC-SHA256 over the sorted `key=value` lines, keyed by
    HMAC-SHA256("WebAppData", bot token) (core.telegram.org/bots/webapps)."""
    fields = {"auth_date": str(int(time.time() if auth_date is None else auth_date)),
              "query_id": "AAHdF6IQAAAAAN0XohDhrOrc", **extra}
    if user is not None:
        fields["user"] = json.dumps(user, separators=(",", ":"), ensure_ascii=False)
    check = "\n".join(f"{k}={v}" for k, v in sorted(fields.items()))
    secret = hmac.new(b"WebAppData", token.encode(), hashlib.sha256).digest()
    fields["hash"] = hmac.new(secret, check.encode(), hashlib.sha256).hexdigest()
    return urlencode(fields)


def tg_user(user: User, language: str = "en") -> dict[str, Any]:
    return {"id": user.telegram_id, "first_name": "Test", "username": user.username,
            "language_code": language}


def tma(init_data: str) -> dict[str, str]:
    return {"Authorization": f"tma {init_data}"}


@pytest.fixture
def settings() -> Settings:
    return make_settings()


def make_app(engine: AsyncEngine, settings: Settings) -> web.Application:
    app = web.Application()
    ledger = Ledger(engine, invoice_cache_seconds=settings.ledger.invoice_cache_seconds)
    setup_pay_pages(app, ledger, settings)
    return app


@pytest.fixture
async def client_for(
    engine: AsyncEngine,
) -> AsyncIterator[Callable[[Settings], Awaitable[TestClient]]]:
    """A factory of test clients, each serving the pay pages with the given settings."""
    clients: list[TestClient] = []

    async def _make(settings: Settings) -> TestClient:
        client = TestClient(TestServer(make_app(engine, settings)))
        await client.start_server()
        clients.append(client)
        return client

    yield _make
    for client in clients:
        await client.close()


@pytest.fixture
async def client(client_for, settings: Settings) -> TestClient:  # type: ignore[no-untyped-def]
    return await client_for(settings)


@pytest.fixture
def make_invoice(engine: AsyncEngine, make_user):  # type: ignore[no-untyped-def]
    """An invoice of a new seller (or the given one): 12.50 Liquid $, quoted 2.5 TON."""

    async def _make(seller: User | None = None, *, amount: int = 1250,
                    title: str = "Coffee beans", **kw: Any) -> Invoice:
        if seller is None:
            seller = await make_user(username="coffee_shop")
        kw.setdefault("ton_rate", TON_RATE)
        kw.setdefault("expires_in", timedelta(days=1))
        return await create_invoice(engine, seller_id=seller.id, title=title, amount=amount,
                                    **kw)

    return _make


@pytest.fixture
def chromium() -> str:
    """Debian's chromium (scripts/install-chromium.sh) for the browser tests: skipped locally
    without it, a failure in CI (CI=true), so a missing browser never passes silently there."""
    binary = find_chromium()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is missing: run scripts/install-chromium.sh", pytrace=False)
        pytest.skip("chromium not installed (scripts/install-chromium.sh)")
    return binary


@contextlib.asynccontextmanager
async def pages_on_a_port(engine: AsyncEngine,
                          configure: Callable[[Settings], None] | None = None
                          ) -> AsyncIterator[str]:
    """The pay pages and the Mini App on a real TCP port of 127.0.0.1 (for the browser);
    yields the base URL. `configure` adjusts the settings (operators, …) before mounting."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = make_settings(public_url=base)
    if configure is not None:
        configure(settings)
    app = web.Application()
    setup_pay_pages(app, Ledger(engine), settings)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        yield base
    finally:
        await runner.cleanup()
