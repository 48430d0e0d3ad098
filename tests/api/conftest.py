"""Fixtures for the seller API and callback tests: the API mounted on a real aiohttp server
over the test database, sellers with tokens, and a local callback receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.api import ApiConfig, mount_api
from bot.api.views import invoice_renderer
from bot.links import Links
from ledger.api_tokens import issue_token
from ledger.core import Ledger
from ledger.models import User
from watchers.callbacks import CallbackSender, DeliveryStats, deliver_all_due

LINKS = Links("https://pay.example.test", "paybot_test")
RENDER = invoice_renderer(LINKS)  # callback bodies, as the composition root hands them in


@pytest.fixture(scope="session")
def api_config() -> ApiConfig:
    return ApiConfig(links=LINKS, ton_rate=Decimal("5.00"), default_expiry=timedelta(days=7),
                     allow_private_callbacks=True, replay_window=300)


@pytest.fixture
async def api(engine: AsyncEngine, api_config: ApiConfig) -> AsyncIterator[TestClient]:
    app = web.Application()
    mount_api(app, Ledger(engine), api_config)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    yield client
    await client.close()


@dataclass
class Seller:
    user: User
    token: str
    token_id: int

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def make_seller(engine: AsyncEngine, make_user):  # type: ignore[no-untyped-def]
    async def _make(**kw: Any) -> Seller:
        user = await make_user(**kw)
        token, token_id = await issue_token(engine, user.id)
        return Seller(user, token, token_id)

    return _make


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A seller's backend stand-in: records every callback, answers from `statuses` (then
    200), and with `hold` set keeps requests open until it is cleared."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    hold: asyncio.Event | None = None
    got_one: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(dict(request.headers), await request.read()))
        self.got_one.set()
        if self.hold is not None:
            await self.hold.wait()
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status, text="ok")

    async def wait_for(self, count: int, within: float = 20.0) -> None:
        async with asyncio.timeout(within):
            while len(self.received) < count:
                self.got_one.clear()
                await self.got_one.wait()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    app.router.add_post("/hook/{name}", rec.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    rec.url = str(server.make_url("/hook"))
    yield rec
    if rec.hold is not None:
        rec.hold.set()
    await server.close()


class LoopbackOnlySender(CallbackSender):
    """The production sender with private targets allowed (the receiver is on 127.0.0.1),
    that also refuses anything but 127.0.0.1: the test database is shared, and an event some
    other test queued for https://shop.example must never leave this machine."""

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> str | None:
        if urlsplit(url).hostname != "127.0.0.1":
            return "test sender: only 127.0.0.1 is reachable"
        return await super().post(url, body, headers)


@pytest.fixture
async def sender() -> AsyncIterator[CallbackSender]:
    s = LoopbackOnlySender(allow_private=True, timeout=5.0)
    yield s
    await s.close()


async def deliver(engine: AsyncEngine, sender: CallbackSender, **kw: Any) -> DeliveryStats:
    """One worker pass over everything due."""
    return await deliver_all_due(Ledger(engine), sender, RENDER, batch=100, lease_seconds=30,
                                 **kw)
