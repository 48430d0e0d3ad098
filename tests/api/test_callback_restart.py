"""At least once across crashes: a worker killed while a callback is in flight leaves the
event leased; once the lease runs out the restarted worker sends it again."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from ledger.payments import pay_from_balance
from tests.api.conftest import deliver
from tests.conftest import run_sql

LEASE_SECONDS = 2


async def test_worker_killed_mid_delivery_delivers_after_restart(
    api, engine, database_url, make_seller, make_user, receiver, sender
) -> None:
    seller = await make_seller()
    buyer = await make_user(balance=1000)
    resp = await api.post("/api/v1/invoices", headers=seller.auth,
                          json={"title": "Crash test", "amount": "1", "callback_url": receiver.url})
    invoice = (await resp.json())["id"]
    await pay_from_balance(engine, invoice, buyer.id, "crash-1")
    receiver.hold = asyncio.Event()  # the receiver takes the request and does not answer yet

    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.api.callback_worker", database_url, str(LEASE_SECONDS),
        env=os.environ, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await receiver.wait_for(1, within=60)
    finally:
        worker.kill()  # SIGKILL while the POST is in flight: no chance to mark anything
        output, _ = await worker.communicate()
    assert worker.returncode == -9, output.decode()

    [row] = await run_sql(engine, "SELECT * FROM outbox WHERE topic = 'callback' "
                                  "AND payload ->> 'invoice' = :i", i=invoice)
    assert row["delivered_at"] is None and row["failed_at"] is None and row["attempts"] == 1

    held, receiver.hold = receiver.hold, None  # the receiver answers from now on
    held.set()
    async with asyncio.timeout(60):  # the restarted worker, ticking until the lease is over
        while True:
            await deliver(engine, sender)
            [row] = await run_sql(engine, "SELECT * FROM outbox WHERE id = :id", id=row["id"])
            if row["delivered_at"] is not None:
                break
            await asyncio.sleep(0.2)
    assert row["attempts"] == 2
    ids = [json.loads(r.body)["id"] for r in receiver.received]
    assert ids == [str(row["event_id"])] * 2  # the same event id twice: receivers de-duplicate
