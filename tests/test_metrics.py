"""GET /metrics: Prometheus text read at scrape time, protected, never a 500."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import build_web_app
from bot.settings import MetricsSettings
from ledger.core import Ledger
from ledger.invoices import create_invoice
from ledger.payments import pay_from_balance
from ledger.postgres import make_engine
from ledger.transfers import ChainTransfer, record_transfer, start_cursor
from tests.test_limits import limited_settings
from tests.watchers.conftest import make_world
from tests.watchers.standins import TXS, Chain, FixtureLiteBalancer
from watchers.ton_decode import BODY_TEXT
from watchers.ton_sources import LiteserverSource

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
MakeClient = Callable[..., Awaitable[TestClient]]


def parse(text: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture
async def client_with(engine: AsyncEngine) -> AsyncIterator[MakeClient]:
    clients: list[TestClient] = []

    async def _make(*, token: str | None = None, web_kw: dict[str, Any] | None = None,
                    db: AsyncEngine | None = None, watcher: Any = None) -> TestClient:
        settings = limited_settings(web_kw)
        settings.metrics = MetricsSettings(token=SecretStr(token) if token else None)
        app = build_web_app(settings, Ledger(db or engine), watcher=watcher)
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield _make
    for c in clients:
        await c.close()


async def scrape(client: TestClient, **headers: str) -> Samples:
    resp = await client.get("/metrics", headers=headers)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse(await resp.text())


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_a_payment_shows_in_payments_callbacks_and_notices(
        client_with: MakeClient, engine: AsyncEngine, make_user: Any) -> None:
    client = await client_with()
    seller, buyer = await make_user(), await make_user(balance=5000)
    inv = await create_invoice(engine, seller_id=seller.id, title="Tea", amount=700,
                               payload={"callback_url": "https://shop.example/paid"})
    before = await scrape(client)
    assert value(before, "paybot_up", part="database") == 1
    await pay_from_balance(engine, inv.public_id, buyer.id, "metrics-1")
    after = await scrape(client)
    assert value(after, "paybot_payments_last_hour", method="internal") \
        == value(before, "paybot_payments_last_hour", method="internal") + 1
    # The seller and the buyer are told (two notices), the shop's backend called (one callback).
    assert value(after, "paybot_notices_pending") == value(before, "paybot_notices_pending") + 2
    assert value(after, "paybot_callbacks", state="pending") \
        == value(before, "paybot_callbacks", state="pending") + 1
    assert value(after, "paybot_db_pool_size") > 0


async def test_an_unmatched_transfer_is_a_held_transfer(
        client_with: MakeClient, engine: AsyncEngine) -> None:
    client = await client_with()
    before = await scrape(client)
    address = "0:" + secrets.token_hex(32)
    await start_cursor(engine, address, 0, "0" * 64)
    await record_transfer(engine, ChainTransfer(
        address=address, tx_hash=secrets.token_hex(32), lt=1000, utime=int(time.time()),
        prev_lt=0, prev_hash="0" * 64, incoming=True, source="0:" + "ab" * 32,
        value_nano=2_500_000_000, body_kind=BODY_TEXT, comment="no reference here",
    ), currency="LIQ", ton_rate=Decimal("5.00"))
    after = await scrape(client)
    assert value(after, "paybot_held_transfers", asset="TON") \
        == value(before, "paybot_held_transfers", asset="TON") + 1
    assert value(after, "paybot_held_transfers_amount", asset="TON") \
        == value(before, "paybot_held_transfers_amount", asset="TON") + 2_500_000_000


class LaggingWatcher:
    head = (2000, 1_700_000_000)
    cursor_lt = 1500
    behind = 3

    def lag_seconds(self, now: float | None = None) -> float | None:
        return 420.0


async def test_the_watchers_lag_is_exposed(client_with: MakeClient) -> None:
    samples = await scrape(await client_with(watcher=LaggingWatcher()))
    assert value(samples, "paybot_ton_watcher_lag_seconds") == 420.0
    assert value(samples, "paybot_ton_watcher_lag_transactions") == 3
    assert value(samples, "paybot_ton_watcher_head_lt") == 2000
    assert value(samples, "paybot_ton_watcher_cursor_lt") == 1500


async def test_a_database_down_is_a_zero_not_a_500(client_with: MakeClient,
                                                   tmp_path: Any) -> None:
    dead = make_engine(f"postgresql://postgres:@/postgres?host={tmp_path}", connect_timeout=1)
    try:
        samples = await scrape(await client_with(db=dead))
    finally:
        await dead.dispose()
    assert value(samples, "paybot_up", part="database") == 0
    assert not any(name.startswith(("paybot_callbacks", "paybot_payments"))
                   for name, _ in samples)


async def test_a_token_is_required_when_set(client_with: MakeClient) -> None:
    client = await client_with(token="s3cret-token")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
        resp = await client.get("/metrics", headers=headers)
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "unauthorized"
    samples = await scrape(client, Authorization="Bearer s3cret-token")
    assert value(samples, "paybot_up", part="database") == 1


async def test_without_a_token_only_loopback_is_served(client_with: MakeClient) -> None:
    client = await client_with(web_kw={"client_address_header": "X-Real-IP"})
    resp = await client.get("/metrics", headers={"X-Real-IP": "203.0.113.7"})
    assert resp.status == 403
    resp = await client.get("/metrics", headers={"X-Real-IP": "not an address"})
    assert resp.status == 403
    await scrape(client, **{"X-Real-IP": "127.0.0.1"})
    await scrape(await client_with())  # the test client connects from 127.0.0.1


async def test_the_real_watcher_reports_its_head_and_cursor(client_with: MakeClient,
                                                            scratch_database: Any) -> None:
    world = await make_world(await scratch_database())
    chain = Chain(visible=5)
    client = FixtureLiteBalancer(chain)

    async def connect() -> FixtureLiteBalancer:
        return client

    watcher = world.watcher(LiteserverSource(connect, page_size=3))
    try:
        metrics = await client_with(db=world.engine, watcher=watcher)
        before = await scrape(metrics)
        # No poll yet (the watcher does not hold the chain here): no watcher gauges.
        assert not any(name.startswith("paybot_ton_watcher") for name, _ in before)
        await watcher.poll_once()
        samples = await scrape(metrics)
        newest = int(TXS[4]["lt"])
        assert value(samples, "paybot_ton_watcher_head_lt") == newest
        assert value(samples, "paybot_ton_watcher_cursor_lt") == newest
        assert value(samples, "paybot_ton_watcher_lag_transactions") == 0
        assert ("paybot_ton_watcher_lag_seconds", ()) in samples
        chain.visible = 9  # four more arrive; the next poll settles them
        await watcher.poll_once()
        samples = await scrape(metrics)
        assert value(samples, "paybot_ton_watcher_head_lt") == int(TXS[8]["lt"])
        assert value(samples, "paybot_ton_watcher_cursor_lt") == int(TXS[8]["lt"])
    finally:
        await watcher.close()
        await world.engine.dispose()
