"""Paid late (the rule in README "TON payments: the watcher"): a transfer whose block time is
before the invoice's expiry pays it even when the watcher sees it after the expiry. The invoice
is never reopened: it is expired first (once, with its `invoice_expired` callback), the payment
is recorded (a use, the item), and it stays expired for new payments — unless that payment
took its last use, which makes it paid (a one-time invoice: paid). The seller hears
`invoice_expired` then `invoice_paid` with `paid_late: true`, never expired -> pending -> expired.
A transfer made at or after the expiry is late: held in suspense.

Driven by the real @ton/sandbox fixture transactions (tests/fixtures/ton/transactions.json)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.api.views import invoice_renderer
from bot.links import Links
from ledger.accounts import adjust_balance
from ledger.errors import InvoiceExpired
from ledger.invariants import check_invariants
from ledger.invoice_reads import get_invoice
from ledger.invoices import create_invoice, expire_due_invoices
from ledger.migrate import upgrade
from ledger.outbox import OutboxEvent
from ledger.payments import pay_from_balance
from ledger.postgres import make_engine
from ledger.users import ensure_user
from tests.conftest import run_sql
from tests.watchers.conftest import HASH_OF_CASE, RATE, TON, run_until_idle
from tests.watchers.standins import DESTINATION, TXS, Chain, FixtureLiteBalancer
from watchers.callbacks import event_body
from watchers.ton_sources import LiteserverSource
from watchers.ton_watcher import TonWatcher

UTIME = {t["case"]: int(t["utime"]) for t in TXS}
CALLBACK = "https://shop.example.com/paybot"


def at(utime: int) -> datetime:
    return datetime.fromtimestamp(utime, UTC)


async def callbacks_of(engine: Any, public_id: str) -> list[OutboxEvent]:
    rows = await run_sql(engine, """
        SELECT id, event_id, topic, event_type, payload, attempts, created_at FROM outbox
         WHERE topic = 'callback' AND payload ->> 'invoice' = :p ORDER BY id""", p=public_id)
    return [OutboxEvent(**r) for r in rows]  # type: ignore[arg-type]


async def test_a_transfer_sent_before_expiry_and_seen_after_is_paid_late(
    scratch_database: Any,
) -> None:
    url = await scratch_database()
    await upgrade(url)
    engine = make_engine(url, pool_size=5)
    try:
        seller = await ensure_user(engine, 2001, "seller")
        buyer = await ensure_user(engine, 2002, "buyer")
        await adjust_balance(engine, buyer.id, 10_000, "LIQ", reason="test funding")

        async def invoice(public_id: str, kind: str, expires_after: str) -> None:
            await create_invoice(engine, seller_id=seller.id, title=f"Item {public_id}",
                                 amount=500, currency="LIQ", ton_rate=RATE, kind=kind,
                                 public_id=public_id, expires_in=timedelta(days=30),
                                 payload={"item_id": f"item-{public_id}", "callback_url": CALLBACK})
            # It expired right after that fixture transaction was made (years ago).
            await run_sql(engine, "UPDATE invoices SET expires_at = :t WHERE public_id = :p",
                          t=at(UTIME[expires_after] + 1), p=public_id)

        # `plain` and `duplicate` name the multi-use ticket, both made before it expired.
        await invoice("7Q4M2X9KTBHWA", "multi_use", "duplicate")
        # `long_comment` pays a one-time invoice that expired after it was made.
        await invoice("9F2G7H4JKM0NQ", "one_time", "long_comment")
        # `late` was made after this multi-use invoice expired: late, held.
        await invoice("2K4M6N8P0Q1RS", "multi_use", "duplicate")
        assert len(await expire_due_invoices(engine)) == 3
        closed_at = (await get_invoice(engine, "7Q4M2X9KTBHWA")).closed_at
        # `over` (1.5 TON) pays a multi-use invoice past its expiry that the expiry job has
        # not marked yet (the watcher got there first).
        await invoice("1C3D5E7F9G0HJ", "multi_use", "over")

        client = FixtureLiteBalancer(Chain())

        async def connect() -> FixtureLiteBalancer:
            return client

        watcher = TonWatcher(engine, LiteserverSource(connect, page_size=4), DESTINATION,
                             currency="LIQ", ton_rate=RATE, retry_base=0.001, retry_max=0.01)
        await run_until_idle(watcher)
        await watcher.close()
        assert await expire_due_invoices(engine) == []  # nothing was reopened to expire again

        outcome = {c: r["outcome"] for c in ("plain", "duplicate", "long_comment", "over", "late")
                   for r in await run_sql(engine, "SELECT outcome, note FROM ton_transfers "
                                                  "WHERE tx_hash = :h", h=HASH_OF_CASE[c])}
        assert outcome == {"plain": "paid", "duplicate": "paid", "long_comment": "paid",
                           "over": "excess", "late": "late_or_duplicate"}
        notes = await run_sql(engine, "SELECT note FROM ton_transfers WHERE tx_hash = :h",
                              h=HASH_OF_CASE["plain"])
        assert notes[0]["note"] == "paid late: sent before the expiry, seen after"
        late = await run_sql(engine, "SELECT note, held_nano FROM ton_transfers "
                                     "WHERE tx_hash = :h", h=HASH_OF_CASE["late"])
        assert late[0] == {"note": "invoice expired", "held_nano": TON}

        ticket = await get_invoice(engine, "7Q4M2X9KTBHWA")
        assert (ticket.status, ticket.uses, ticket.closed_at) == ("expired", 2, closed_at)
        assert (await get_invoice(engine, "9F2G7H4JKM0NQ")).status == "paid"
        over = await get_invoice(engine, "1C3D5E7F9G0HJ")
        assert (over.status, over.uses) == ("expired", 1) and over.closed_at is not None
        assert (await get_invoice(engine, "2K4M6N8P0Q1RS")).uses == 0
        grants = await run_sql(engine, "SELECT count(*) AS n FROM grants g JOIN invoices i "
                                       "ON i.id = g.invoice_id WHERE i.public_id = :p",
                               p="7Q4M2X9KTBHWA")
        assert grants[0]["n"] == 2

        # Still closed for new payments.
        with pytest.raises(InvoiceExpired):
            await pay_from_balance(engine, "7Q4M2X9KTBHWA", buyer.id, "after-the-late-payments")

        # One consistent story per invoice, in the order the seller receives it.
        links = Links(public_url="https://pay.example.com", bot_username="paybot")
        story: dict[str, list[tuple[str, str, bool | None]]] = {}
        for public_id in ("7Q4M2X9KTBHWA", "9F2G7H4JKM0NQ", "1C3D5E7F9G0HJ", "2K4M6N8P0Q1RS"):
            inv = await get_invoice(engine, public_id)
            story[public_id] = []
            for e in await callbacks_of(engine, public_id):
                doc = json.loads(event_body(e, inv, invoice_renderer(links)))
                story[public_id].append((doc["type"], doc["invoice"]["status"],
                                         doc.get("payment", {}).get("paid_late")))
        assert story == {
            "7Q4M2X9KTBHWA": [("invoice_expired", "expired", None),
                              ("invoice_paid", "expired", True),
                              ("invoice_paid", "expired", True)],
            "9F2G7H4JKM0NQ": [("invoice_expired", "paid", None),
                              ("invoice_paid", "paid", True)],
            "1C3D5E7F9G0HJ": [("invoice_expired", "expired", None),
                              ("invoice_paid", "expired", True)],
            "2K4M6N8P0Q1RS": [("invoice_expired", "expired", None)],
        }
        assert await check_invariants(engine) == []
    finally:
        await engine.dispose()
