"""One seller's dead endpoint does not hold up another seller's callbacks: claims go round-robin
over endpoints and sellers, an endpoint gets a bounded share of the connections, and one that
keeps failing is backed off (its events go back untried and claims skip it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ledger.core import Ledger
from ledger.payments import pay_from_balance
from tests.api.conftest import RENDER, LoopbackOnlySender, Receiver
from tests.conftest import run_sql
from watchers.callbacks import deliver_due

BASE = "/api/v1"
BACKLOG = 500


@pytest.fixture
async def dead_receiver() -> AsyncIterator[Receiver]:
    """Seller A's backend: takes every connection and never answers."""
    rec = Receiver(hold=asyncio.Event())
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    rec.url = str(server.make_url("/hook"))
    yield rec
    if rec.hold is not None:
        rec.hold.set()
    await server.close()


async def retire(engine, invoice: str) -> None:  # type: ignore[no-untyped-def]
    """The test is over: its undelivered events must not crowd later tests' queues (the test
    database is shared)."""
    await run_sql(engine, "UPDATE outbox SET failed_at = now(), last_error = 'test over' "
                          "WHERE topic = 'callback' AND payload ->> 'invoice' = :i "
                          "AND delivered_at IS NULL AND failed_at IS NULL", i=invoice)


async def paid_invoice(api, engine, seller, buyer, url: str, key: str) -> str:  # type: ignore[no-untyped-def]
    resp = await api.post(f"{BASE}/invoices", headers=seller.auth,
                          json={"title": "Item", "amount": "1", "callback_url": url})
    invoice = (await resp.json())["id"]
    await pay_from_balance(engine, invoice, buyer.id, key)
    return invoice


# (claim size, rounds B may wait): with claims of 100 (window 2,000) B's event is in the first
# claim; with claims of 10 (window 200) A's backlog hides it until A's breaker opens and A's
# events are moved out of the way, so it goes in the second (a few more when other tests left
# backed-off endpoints whose back-off runs out meanwhile; today's code needs 50).
@pytest.mark.parametrize(("claim", "rounds_before_b"), [(100, 0), (10, 5)])
async def test_a_dead_endpoint_does_not_delay_another_sellers_callback(
    api, engine, make_seller, make_user, receiver, dead_receiver, claim: int,
    rounds_before_b: int,
) -> None:
    seller_a, seller_b = await make_seller(), await make_seller()
    buyer = await make_user(balance=10_000)
    # A's backlog: BACKLOG due events for A's endpoint, all older than B's event
    a_invoice = await paid_invoice(api, engine, seller_a, buyer, dead_receiver.url, "fair-a")
    await run_sql(
        engine,
        "INSERT INTO outbox (topic, event_type, payload) "
        "SELECT topic, event_type, payload FROM outbox, generate_series(2, :n) "
        "WHERE topic = 'callback' AND payload ->> 'invoice' = :i",
        n=BACKLOG, i=a_invoice,
    )
    b_invoice = await paid_invoice(api, engine, seller_b, buyer, receiver.url, "fair-b")

    sender = LoopbackOnlySender(allow_private=True, timeout=2.0, per_endpoint=4)
    rounds: list[int] = []  # claimed per completed round
    round_done = asyncio.Event()

    async def worker() -> None:
        while True:
            stats = await deliver_due(Ledger(engine), sender, RENDER, limit=claim)
            rounds.append(stats.claimed)
            round_done.set()
            await asyncio.sleep(0)  # let the test look

    running = asyncio.create_task(worker())
    try:
        await receiver.wait_for(1, within=60)
        b_arrived_after = len(rounds)
        # A's endpoint is backed off: two more rounds go by without asking it again
        async with asyncio.timeout(60):
            while len(rounds) < b_arrived_after + 2:
                round_done.clear()
                await round_done.wait()
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await sender.close()

    # B's callback went out in the first (second) round, while A's requests were hanging
    assert b_arrived_after <= rounds_before_b
    [b_row] = await run_sql(engine, "SELECT * FROM outbox WHERE topic = 'callback' "
                                    "AND payload ->> 'invoice' = :i", i=b_invoice)
    assert b_row["delivered_at"] is not None
    # A got no more than its share of connections, and then a few probes at most
    assert len(dead_receiver.received) <= 4 + 2
    # A's events were given back untried, not spent: none failed, almost none attempted
    a_rows = await run_sql(engine, "SELECT attempts, failed_at, delivered_at FROM outbox "
                                   "WHERE topic = 'callback' AND payload ->> 'invoice' = :i",
                           i=a_invoice)
    assert len(a_rows) == BACKLOG
    assert all(r["failed_at"] is None and r["delivered_at"] is None for r in a_rows)
    assert sum(1 for r in a_rows if r["attempts"] > 0) <= 4 + 2
    [breaker] = await run_sql(engine, "SELECT * FROM callback_endpoints WHERE endpoint = :e",
                              e=dead_receiver.url.removesuffix("/hook"))
    assert breaker["failures"] >= 3
    await retire(engine, a_invoice)


async def test_claims_take_turns_across_sellers(api, engine, make_seller, make_user,
                                                receiver) -> None:
    """With one seller's backlog queued first, a small claim still takes the other seller's
    event (round-robin), instead of the oldest ids only."""
    seller_a, seller_b = await make_seller(), await make_seller()
    buyer = await make_user(balance=10_000)
    a_invoice = await paid_invoice(api, engine, seller_a, buyer, receiver.url + "/a", "turn-a")
    await run_sql(
        engine,
        "INSERT INTO outbox (topic, event_type, payload) "
        "SELECT topic, event_type, payload FROM outbox, generate_series(2, 50) "
        "WHERE topic = 'callback' AND payload ->> 'invoice' = :i", i=a_invoice,
    )
    b_invoice = await paid_invoice(api, engine, seller_b, buyer, receiver.url + "/b", "turn-b")
    sender = LoopbackOnlySender(allow_private=True, timeout=5.0)
    try:
        await deliver_due(Ledger(engine), sender, RENDER, limit=4)
    finally:
        await sender.close()
    [b_row] = await run_sql(engine, "SELECT * FROM outbox WHERE topic = 'callback' "
                                    "AND payload ->> 'invoice' = :i", i=b_invoice)
    assert b_row["delivered_at"] is not None
    await retire(engine, a_invoice)


async def test_a_backed_off_endpoint_is_probed_and_then_gets_everything(
    api, engine, make_seller, make_user, dead_receiver
) -> None:
    """Once the back-off is over one event probes the endpoint; when it answers, the breaker
    closes and the whole backlog is delivered, each event once."""
    seller = await make_seller()
    buyer = await make_user(balance=10_000)
    invoice = await paid_invoice(api, engine, seller, buyer, dead_receiver.url, "probe-a")
    await run_sql(
        engine,
        "INSERT INTO outbox (topic, event_type, payload) "
        "SELECT topic, event_type, payload FROM outbox, generate_series(2, 40) "
        "WHERE topic = 'callback' AND payload ->> 'invoice' = :i", i=invoice,
    )
    endpoint = dead_receiver.url.removesuffix("/hook")
    sender = LoopbackOnlySender(allow_private=True, timeout=1.0, per_endpoint=4)
    try:
        stats = await deliver_due(Ledger(engine), sender, RENDER, limit=100)
        assert stats.delivered == 0 and stats.deferred > 0
        [breaker] = await run_sql(engine, "SELECT *, open_until > now() AS open "
                                          "FROM callback_endpoints WHERE endpoint = :e",
                                  e=endpoint)
        assert breaker["open"]
        # the endpoint comes back; the clock moves on to the end of the back-off, and the
        # events' own retry delays
        assert dead_receiver.hold is not None
        dead_receiver.hold.set()
        dead_receiver.hold = None
        await run_sql(engine, "UPDATE callback_endpoints SET open_until = now() "
                              "WHERE endpoint = :e", e=endpoint)
        await run_sql(engine, "UPDATE outbox SET available_at = now() WHERE topic = 'callback' "
                              "AND payload ->> 'invoice' = :i AND delivered_at IS NULL",
                      i=invoice)
        before = len(dead_receiver.received)
        probe = await deliver_due(Ledger(engine), sender, RENDER, limit=100)
        assert probe.delivered == 1  # one probe, not the backlog
        assert len(dead_receiver.received) == before + 1
        async with asyncio.timeout(60):
            while (await deliver_due(Ledger(engine), sender, RENDER, limit=100)).claimed:
                pass
    finally:
        await sender.close()
    rows = await run_sql(engine, "SELECT event_id, delivered_at FROM outbox "
                                 "WHERE topic = 'callback' AND payload ->> 'invoice' = :i",
                         i=invoice)
    assert len(rows) == 40 and all(r["delivered_at"] is not None for r in rows)
    [breaker] = await run_sql(engine, "SELECT * FROM callback_endpoints WHERE endpoint = :e",
                              e=endpoint)
    assert breaker["failures"] == 0
