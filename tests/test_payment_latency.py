"""/metrics tells how long payments take: `paybot_payment_seconds{kind}`, a histogram the Ledger
feeds around its payment use cases (balance, manual, card, Stars), and the delay from a TON
transfer's block time to its settlement over the last hour."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import LEDGER, build_web_app
from bot.settings import MetricsSettings
from ledger.core import Ledger
from ledger.errors import LedgerError
from ledger.invoices import new_invoice
from ledger.transfers import ChainTransfer, record_transfer, start_cursor
from tests.test_limits import limited_settings
from tests.test_metrics import Samples, scrape, value
from watchers.ton_decode import BODY_TEXT


@pytest.fixture
async def client(engine: AsyncEngine) -> AsyncIterator[TestClient]:
    settings = limited_settings()
    settings.metrics = MetricsSettings(token=None)  # loopback scrapes
    c = TestClient(TestServer(build_web_app(settings, Ledger(engine)), host="127.0.0.1"))
    await c.start_server()
    yield c
    await c.close()


def _count(samples: Samples, kind: str) -> float:
    return value(samples, "paybot_payment_seconds_count", kind=kind)


async def test_balance_and_manual_payments_are_timed(client: TestClient, make_user) -> None:  # type: ignore[no-untyped-def]
    ledger: Ledger = client.app[LEDGER]
    seller, buyer = await make_user(), await make_user(balance=10_000)
    before = await scrape(client)
    assert _count(before, "balance") == 0  # a new process has observed nothing

    one, _ = await ledger.issue_invoice(new_invoice(seller_id=seller.id, amount=500, title="A"))
    await ledger.pay_from_balance(one.public_id, buyer.id, "lat-1")
    two, _ = await ledger.issue_invoice(new_invoice(seller_id=seller.id, amount=900, title="B"))
    await ledger.record_manual_payment(two.public_id, seller_id=seller.id, amount=900,
                                       received_on=datetime.now(UTC).date(), reference="L-1")

    after = await scrape(client)
    assert _count(after, "balance") == 1
    assert _count(after, "manual") == 1
    assert value(after, "paybot_payment_seconds_sum", kind="balance") > 0
    # Every observation falls in the +Inf bucket; the buckets are cumulative.
    assert value(after, "paybot_payment_seconds_bucket", kind="manual", le="+Inf") == 1


async def test_a_refused_payment_is_not_timed(client: TestClient, make_user) -> None:  # type: ignore[no-untyped-def]
    ledger: Ledger = client.app[LEDGER]
    seller, broke = await make_user(), await make_user()
    invoice, _ = await ledger.issue_invoice(new_invoice(seller_id=seller.id, amount=500,
                                                        title="A"))
    with pytest.raises(LedgerError):  # no money on the balance
        await ledger.pay_from_balance(invoice.public_id, broke.id, "lat-2")
    assert _count(await scrape(client), "balance") == 0


async def test_ton_settle_delay_of_the_last_hour(client: TestClient, engine) -> None:  # type: ignore[no-untyped-def]
    before = await scrape(client)
    address = "0:" + secrets.token_hex(32)
    await start_cursor(engine, address, 0, "0" * 64)
    await record_transfer(engine, ChainTransfer(
        address=address, tx_hash=secrets.token_hex(32), lt=1000,
        utime=int(time.time()) - 3000,  # in a block 50 minutes ago, settled now
        prev_lt=0, prev_hash="0" * 64, incoming=True, source="0:" + "ab" * 32,
        value_nano=1_000_000_000, body_kind=BODY_TEXT, comment="no reference here",
    ), currency="LIQ", ton_rate=Decimal("5.00"))

    after = await scrape(client)
    assert value(after, "paybot_ton_settled_last_hour") == value(
        before, "paybot_ton_settled_last_hour") + 1
    assert value(after, "paybot_ton_settle_delay_seconds", quantile="1") >= 3000
