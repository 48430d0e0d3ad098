"""At least once across crashes, and as few doubles as possible: a live worker renews the short
lease of the callbacks it is delivering (nobody else sends them meanwhile, however long they
take); a worker killed while a callback is in flight leaves it leased for seconds only, then the
restarted worker sends it again (the same event id: receivers de-duplicate)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime

from ledger.core import Ledger
from ledger.payments import pay_from_balance
from tests.api.conftest import RENDER, LoopbackOnlySender, deliver
from tests.conftest import run_sql
from watchers.callbacks import deliver_due

LEASE_SECONDS = 2
PROMPT = 15  # seconds: a crashed worker's callback must be due again within this


async def paid_with_callback(api, engine, make_seller, make_user, url: str, key: str) -> str:  # type: ignore[no-untyped-def]
    seller = await make_seller()
    buyer = await make_user(balance=1000)
    resp = await api.post("/api/v1/invoices", headers=seller.auth,
                          json={"title": "Crash test", "amount": "1", "callback_url": url})
    invoice = (await resp.json())["id"]
    await pay_from_balance(engine, invoice, buyer.id, key)
    return invoice


async def event_row(engine, invoice: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    [row] = await run_sql(engine, "SELECT *, now() AS db_now FROM outbox "
                                  "WHERE topic = 'callback' AND payload ->> 'invoice' = :i",
                          i=invoice)
    return row


async def kill_mid_delivery(database_url: str, receiver, *lease: str) -> None:  # type: ignore[no-untyped-def]
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.api.callback_worker", database_url, *lease,
        env=os.environ, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await receiver.wait_for(1, within=60)
    finally:
        worker.kill()  # SIGKILL while the POST is in flight: no chance to mark anything
        output, _ = await worker.communicate()
    assert worker.returncode == -9, output.decode()


async def test_worker_killed_mid_delivery_delivers_after_restart(
    api, engine, database_url, make_seller, make_user, receiver, sender
) -> None:
    invoice = await paid_with_callback(api, engine, make_seller, make_user, receiver.url,
                                       "crash-1")
    receiver.hold = asyncio.Event()  # the receiver takes the request and does not answer yet
    await kill_mid_delivery(database_url, receiver, str(LEASE_SECONDS))

    row = await event_row(engine, invoice)
    assert row["delivered_at"] is None and row["failed_at"] is None and row["attempts"] == 1

    held, receiver.hold = receiver.hold, None  # the receiver answers from now on
    held.set()
    async with asyncio.timeout(60):  # the restarted worker, ticking until the lease is over
        while True:
            await deliver(engine, sender)
            row = await event_row(engine, invoice)
            if row["delivered_at"] is not None:
                break
            await asyncio.sleep(0.2)
    assert row["attempts"] == 2
    ids = [json.loads(r.body)["id"] for r in receiver.received]
    assert ids == [str(row["event_id"])] * 2  # the same event id twice: receivers de-duplicate


async def test_a_crash_delays_a_callback_by_seconds_not_minutes(
    api, engine, database_url, make_seller, make_user, receiver, sender
) -> None:
    """With the production lease setting, a callback held by a killed worker is due again
    within PROMPT seconds; the restarted worker sends it once more."""
    invoice = await paid_with_callback(api, engine, make_seller, make_user, receiver.url,
                                       "crash-2")
    receiver.hold = asyncio.Event()
    await kill_mid_delivery(database_url, receiver)  # the configured lease

    row = await event_row(engine, invoice)
    assert row["delivered_at"] is None and row["attempts"] == 1
    assert (row["available_at"] - row["db_now"]).total_seconds() <= PROMPT

    held, receiver.hold = receiver.hold, None
    held.set()
    # the clock moves on to the end of the lease
    await run_sql(engine, "UPDATE outbox SET available_at = now() WHERE id = :id", id=row["id"])
    await deliver(engine, sender)
    row = await event_row(engine, invoice)
    assert row["delivered_at"] is not None and row["attempts"] == 2
    assert [json.loads(r.body)["id"] for r in receiver.received] == [str(row["event_id"])] * 2


async def test_a_live_worker_keeps_its_lease_while_delivering(
    api, engine, make_seller, make_user, receiver
) -> None:
    """A delivery that outlasts the lease is not claimed (and sent) by another worker: the
    lease is renewed while the request is in flight. Exactly one request, one attempt."""
    invoice = await paid_with_callback(api, engine, make_seller, make_user, receiver.url,
                                       "lease-1")
    receiver.hold = asyncio.Event()
    first = LoopbackOnlySender(allow_private=True, timeout=60.0)
    second = LoopbackOnlySender(allow_private=True, timeout=60.0)
    delivering = asyncio.create_task(
        deliver_due(Ledger(engine), first, RENDER, limit=100, lease_seconds=1.0))
    try:
        await receiver.wait_for(1, within=60)
        leased_until = (await event_row(engine, invoice))["available_at"]
        # wait until the first lease term is over by the database's clock, while the
        # request is still held: the event must still be leased (renewed), not due
        async with asyncio.timeout(30):
            while True:
                row = await event_row(engine, invoice)
                if row["db_now"] > leased_until:
                    break
                await asyncio.sleep(0.1)
        assert row["available_at"] > row["db_now"], "the lease ran out mid-delivery"
        stats = await deliver_due(Ledger(engine), second, RENDER, limit=100, lease_seconds=1.0)
        assert invoice not in {json.loads(r.body)["invoice"]["id"]
                               for r in receiver.received[1:]}
        assert len(receiver.received) == 1, stats
    finally:
        assert receiver.hold is not None
        receiver.hold.set()
        await delivering
        await first.close()
        await second.close()
    row = await event_row(engine, invoice)
    assert row["delivered_at"] is not None and row["attempts"] == 1
    assert row["delivered_at"] <= datetime.now(UTC)
