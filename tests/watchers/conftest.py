"""Fixtures for the TON watcher tests: a fresh database per scenario (the fixture
transactions and invoice ids are fixed, and unique), the fixture invoices and users, and the
local stand-ins for the two chain sources."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.invariants import check_invariants
from ledger.invoices import cancel_invoice, create_invoice
from ledger.migrate import upgrade
from ledger.models import Invoice, User
from ledger.postgres import make_engine
from ledger.users import ensure_user, get_user
from tests.conftest import run_sql
from tests.watchers.standins import DESTINATION, TXS, Chain, toncenter_app
from watchers.ton_sources import TransactionSource
from watchers.ton_watcher import TonWatcher

RATE = Decimal("5")  # Liquid $ per TON: a 5.00 LIQ invoice is quoted 1 TON
TON = 1_000_000_000
DEPOSIT_CODE = "7Q4M2X9KTB"  # the fixture's `DEP-7Q4M2X9KTB`

# The invoices the fixture transactions name (tests/fixtures/ton/README.md), each quoted 1 TON:
# some priced in TON, some in Liquid $ with a locked rate, so both ledger paths are exercised.
FIXTURE_INVOICES: dict[str, str] = {
    "7Q4M2X9KTBHWA": "LIQ",  # plain, then duplicate
    "3N8P5R1CVD6YE": "TON",  # lowercase_spaces: 2 TON -> excess
    "9F2G7H4JKM0NQ": "TON",  # long_comment
    "5T6V8W2XYZ4AB": "TON",  # under_1 + under_2
    "1C3D5E7F9G0HJ": "LIQ",  # over: 1.5 TON -> excess
    "2K4M6N8P0Q1RS": "TON",  # late: cancelled before the transfer is seen
    "8B2D4F6H8K0MP": "TON",  # aborted: a dust transfer that must not count
    "4A6C8E0G2J4KM": "LIQ",  # user_tag: 1.5 TON with the buyer's tag -> item + excess to them
    "6D8F0H2K4M6PR": "TON",  # guest_tag: 1.2 TON with a guest's tag (typed in lower case)
    "0R2T4V6X8Z0B1": "TON",  # foreign_tag: the buyer's tag of 4A6C8E0G2J4KM -> bare
    "3W5Y7A9C1E3GH": "LIQ",  # unknown_tag: a tag nobody was given -> bare
}
# The payer tags the fixture comments carry (tests/fixtures/ton/README.md), bound in make_world.
USER_TAG = ("4A6C8E0G2J4KM", "K3M9P")  # the buyer's
GUEST_TAG = ("6D8F0H2K4M6PR", "G7H10")  # a guest browser's
GUEST_KEY = "fixture-guest-browser-key"
GUEST_PROOF = "fixture-guest-proof-0001"

EXPECTED: dict[str, str] = {
    "prefund": "ignored",
    "deploy": "ignored",
    "plain": "paid",
    "lowercase_spaces": "excess",
    "non_ascii": "unmatched",
    "long_comment": "paid",
    "no_comment": "unmatched",
    "binary_body": "unmatched",
    "invalid_utf8": "unmatched",
    "wrong_comment": "unmatched",
    "under_1": "partial",
    "under_2": "paid",
    "over": "excess",
    "duplicate": "late_or_duplicate",
    "late": "late_or_duplicate",
    "deposit": "deposit",
    "aborted": "ignored",
    "bounce_send": "ignored",
    "bounced": "ignored",
    "outgoing": "ignored",
    "user_tag": "excess",
    "guest_tag": "excess",
    "foreign_tag": "paid",
    "unknown_tag": "paid",
}
CASE_OF_HASH = {t["hash_hex"]: t["case"] for t in TXS}
HASH_OF_CASE = {t["case"]: t["hash_hex"] for t in TXS}


@dataclass
class World:
    url: str
    engine: AsyncEngine
    seller: User
    buyer: User
    depositor: User
    invoices: dict[str, Invoice]

    def watcher(self, source: TransactionSource, **kw: Any) -> TonWatcher:
        kw.setdefault("retry_base", 0.001)
        kw.setdefault("retry_max", 0.01)
        return TonWatcher(self.engine, source, DESTINATION, currency="LIQ", ton_rate=RATE, **kw)

    async def outcomes(self) -> dict[str, str]:
        rows = await run_sql(self.engine, "SELECT tx_hash, outcome FROM ton_transfers")
        return {CASE_OF_HASH[str(r["tx_hash"])]: str(r["outcome"]) for r in rows}

    async def account_sums(self) -> dict[tuple[str, str], int]:
        """(owner, currency) -> sum of entries, pending ones included."""
        rows = await run_sql(self.engine, """
            SELECT coalesce(a.system_name, 'user:' || a.user_id) AS owner, a.currency,
                   coalesce(sum(e.amount), 0) AS total
              FROM accounts a LEFT JOIN entries e ON e.account_id = a.id
             GROUP BY 1, 2""")
        return {(str(r["owner"]), str(r["currency"])): int(r["total"]) for r in rows}  # type: ignore[call-overload]

    async def invariants(self) -> list[str]:
        return await check_invariants(self.engine)


async def make_world(url: str) -> World:
    await upgrade(url)
    engine = make_engine(url, pool_size=5)
    seller = await ensure_user(engine, 1001, "seller")
    buyer = await ensure_user(engine, 1002, "buyer")
    depositor = await ensure_user(engine, 1003, "depositor")
    await run_sql(engine, "UPDATE users SET deposit_code = :c WHERE id = :id",
                  c=DEPOSIT_CODE, id=depositor.id)
    depositor = await get_user(engine, depositor.id)
    invoices = {}
    for public_id, currency in FIXTURE_INVOICES.items():
        if currency == "TON":
            inv = await create_invoice(engine, seller_id=seller.id, title=f"Item {public_id}",
                                       amount=TON, currency="TON", public_id=public_id,
                                       payload={"item_id": f"item-{public_id}"},
                                       expires_in=timedelta(days=30))
        else:
            inv = await create_invoice(engine, seller_id=seller.id, title=f"Item {public_id}",
                                       amount=500, currency="LIQ", ton_rate=RATE,
                                       public_id=public_id,
                                       payload={"item_id": f"item-{public_id}"},
                                       expires_in=timedelta(days=30))
        assert inv.ton_amount == TON
        invoices[public_id] = inv
    await cancel_invoice(engine, "2K4M6N8P0Q1RS", seller.id)
    # Fixed tags (the server picks random ones; the fixture comments were written with these).
    await run_sql(engine, "INSERT INTO payer_tags (invoice_id, tag, user_id) VALUES (:i, :t, :u)",
                  i=invoices[USER_TAG[0]].id, t=USER_TAG[1], u=buyer.id)
    await run_sql(engine, "INSERT INTO payer_tags (invoice_id, tag, guest_key, proof) "
                          "VALUES (:i, :t, :g, :p)",
                  i=invoices[GUEST_TAG[0]].id, t=GUEST_TAG[1], g=GUEST_KEY, p=GUEST_PROOF)
    return World(url, engine, seller, buyer, depositor, invoices)


@pytest.fixture
async def world(scratch_database: Any) -> AsyncIterator[World]:
    w = await make_world(await scratch_database())
    yield w
    await w.engine.dispose()


@dataclass
class Toncenter:
    url: str
    chain: Chain


@pytest.fixture
async def toncenter() -> AsyncIterator[Toncenter]:
    chain = Chain()
    runner = web.AppRunner(toncenter_app(chain))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield Toncenter(f"http://127.0.0.1:{port}/api/v2", chain)
    chain.released.set()
    await runner.cleanup()


async def run_until_idle(watcher: TonWatcher, max_polls: int = 20) -> int:
    total = 0
    for _ in range(max_polls):
        n = await watcher.poll_once()
        total += n
        if n == 0:
            return total
    raise AssertionError("the watcher never became idle")
