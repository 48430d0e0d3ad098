"""Exactly once: a failure inside a transaction undoes all of it; a crash (SIGKILL) anywhere
loses nothing and counts nothing twice; two watchers never both settle."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy.exc import DBAPIError

from ledger.errors import BelowCursor
from ledger.invoice_reads import get_invoice
from ledger.transfers import get_cursor, record_transfer, start_cursor
from tests.conftest import run_sql
from tests.watchers.conftest import HASH_OF_CASE, RATE, Toncenter, World, run_until_idle
from tests.watchers.standins import DESTINATION, TXS
from tests.watchers.test_fixture_outcomes import assert_fixture_world
from watchers.ton_decode import decode_transaction
from watchers.ton_sources import HttpApiSource
from watchers.ton_watcher import to_chain_transfer

ROOT = Path(__file__).resolve().parents[2]
INDEX = {t["case"]: i for i, t in enumerate(TXS)}


async def count_transfers(world: World) -> int:
    rows = await run_sql(world.engine, "SELECT count(*) AS n FROM ton_transfers")
    return int(rows[0]["n"])  # type: ignore[call-overload]


async def assert_each_once(world: World) -> None:
    rows = await run_sql(world.engine, "SELECT tx_hash, count(*) AS n FROM ton_transfers "
                                       "GROUP BY tx_hash")
    assert sorted(str(r["tx_hash"]) for r in rows) == sorted(t["hash_hex"] for t in TXS)
    refs = await run_sql(world.engine, "SELECT external_ref FROM payments")
    assert len(refs) == 9 and len({r["external_ref"] for r in refs}) == 9


async def test_failure_inside_the_transaction_undoes_all_of_it(
        world: World, toncenter: Toncenter) -> None:
    """The settlement of `over` fails at its very last statement: its payment, grant, entries,
    outbox events and the cursor advance are all rolled back; after the fault is gone the
    watcher settles it exactly once."""
    await run_sql(world.engine, """
        CREATE FUNCTION test_fail() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'injected failure'; END $$""")
    await run_sql(world.engine, f"""
        CREATE TRIGGER test_fail BEFORE INSERT ON ton_transfers FOR EACH ROW
            WHEN (NEW.tx_hash = '{HASH_OF_CASE["over"]}') EXECUTE FUNCTION test_fail()""")
    watcher = world.watcher(HttpApiSource(toncenter.url, page_size=7))
    try:
        with pytest.raises(DBAPIError, match="injected failure"):
            await watcher.poll_once()
        # Transfers of other invoices went on; `over` left no trace, and the cursor stays
        # right before it.
        assert await count_transfers(world) == len(TXS) - 1
        assert await get_cursor(world.engine, DESTINATION) == (
            int(TXS[INDEX["over"] - 1]["lt"]), TXS[INDEX["over"] - 1]["hash_hex"])
        over = await get_invoice(world.engine, "1C3D5E7F9G0HJ")
        assert (over.status, over.uses, over.ton_received) == ("pending", 0, 0)
        assert await run_sql(world.engine, "SELECT 1 FROM payments p JOIN invoices i "
                             "ON i.id = p.invoice_id WHERE i.public_id = '1C3D5E7F9G0HJ'") == []
        assert await world.invariants() == []

        # tick() never raises: it logs, backs off, and the poll after that goes on.
        await watcher.tick()
        await run_sql(world.engine, "DROP TRIGGER test_fail ON ton_transfers")
        assert await run_until_idle(watcher) == 1
    finally:
        await watcher.close()
    await assert_each_once(world)
    await assert_fixture_world(world)


async def test_stopped_mid_stream_then_restarted(world: World, toncenter: Toncenter) -> None:
    """The poll is cancelled (as on a crash of the event loop) right after the fifth
    settlement, with others in flight; a new watcher settles the rest, once."""
    settled = 0
    poll: asyncio.Task[int] | None = None

    async def stop_after_five(*_: object) -> None:
        nonlocal settled
        settled += 1
        if settled == 5:
            assert poll is not None
            poll.cancel()
        await asyncio.sleep(0.005)

    first = world.watcher(HttpApiSource(toncenter.url, page_size=50), on_settled=stop_after_five)
    poll = asyncio.ensure_future(first.poll_once())
    with pytest.raises(asyncio.CancelledError):
        await poll
    await first.close()
    done = await count_transfers(world)
    # Those in flight at the cancel committed whole or not at all; on a slow machine the cancel
    # may land after the last one, so only the lower bound is certain.
    assert 5 <= done <= len(TXS)
    second = world.watcher(HttpApiSource(toncenter.url, page_size=50))
    try:
        assert await run_until_idle(second) == len(TXS) - done
    finally:
        await second.close()
    await assert_each_once(world)
    await assert_fixture_world(world)


async def test_two_watchers_only_one_is_active(world: World, toncenter: Toncenter) -> None:
    a = world.watcher(HttpApiSource(toncenter.url, page_size=4))
    b = world.watcher(HttpApiSource(toncenter.url, page_size=4))
    try:
        results = await asyncio.gather(a.poll_once(), b.poll_once(), a.poll_once(),
                                       b.poll_once())
        assert sum(results) == len(TXS)
        assert a.active != b.active  # one holds the advisory lock, the other stands by
        standby, active = (a, b) if b.active else (b, a)
        assert await standby.poll_once() == 0 and not standby.active
        await active.close()  # it goes away: the other one takes over
        for _ in range(100):
            await standby.poll_once()
            if standby.active:
                break
            await asyncio.sleep(0.01)
        assert standby.active
    finally:
        await a.close()
        await b.close()
    await assert_each_once(world)
    await assert_fixture_world(world)


def fixture_transfers() -> list:  # type: ignore[type-arg]
    return [to_chain_transfer(decode_transaction(t["boc_b64"]), DESTINATION) for t in TXS]


async def test_the_same_transaction_settled_concurrently_counts_once(world: World) -> None:
    """Even without the advisory lock (two processes racing on the SQL function), each
    transaction is settled by exactly one call; the others return its first outcome."""
    await start_cursor(world.engine, DESTINATION, 0, "0" * 64)
    for t in fixture_transfers():
        outcomes = await asyncio.gather(
            *(record_transfer(world.engine, t, currency="LIQ", ton_rate=RATE) for _ in range(4)))
        assert sorted(o.replayed for o in outcomes) == [False, True, True, True]
        assert len({(o.transfer_id, o.outcome, o.payment_id) for o in outcomes}) == 1
    await assert_each_once(world)
    await assert_fixture_world(world)


async def test_the_cursor_never_passes_a_transaction_not_settled(world: World) -> None:
    transfers = fixture_transfers()
    await start_cursor(world.engine, DESTINATION, 0, "0" * 64)
    assert await get_cursor(world.engine, DESTINATION) == (0, "0" * 64)
    for t in transfers[:3]:
        await record_transfer(world.engine, t, currency="LIQ", ton_rate=RATE)
    assert await get_cursor(world.engine, DESTINATION) == (transfers[2].lt, transfers[2].tx_hash)
    # transfers[3] is not settled (its transaction failed, or is still in flight): settling
    # transfers[4] is fine, but the cursor stays behind the hole...
    await record_transfer(world.engine, transfers[4], currency="LIQ", ton_rate=RATE)
    assert await get_cursor(world.engine, DESTINATION) == (transfers[2].lt, transfers[2].tx_hash)
    # ...so a restart walks back to it and settles transfers[3]; the cursor jumps past both.
    await record_transfer(world.engine, transfers[3], currency="LIQ", ton_rate=RATE)
    assert await get_cursor(world.engine, DESTINATION) == (transfers[4].lt, transfers[4].tx_hash)
    again = await record_transfer(world.engine, transfers[1], currency="LIQ", ton_rate=RATE)
    assert again.replayed and again.outcome == "ignored"
    # Below the cursor and never settled: refused, nothing changed.
    before = await world.account_sums()
    forged = replace(transfers[5], lt=transfers[4].lt - 1, tx_hash="ab" * 32)
    with pytest.raises(BelowCursor):
        await record_transfer(world.engine, forged, currency="LIQ", ton_rate=RATE)
    assert await world.account_sums() == before
    assert await count_transfers(world) == 5


# --- SIGKILL at any point ---------------------------------------------------------------


async def _spawn(world: World, toncenter: Toncenter, delay: float,
                 concurrency: int = 4) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.watchers.run_watcher", "--database-url", world.url,
        "--api-url", toncenter.url, "--delay", str(delay), "--page-size", "3",
        "--concurrency", str(concurrency), cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGKILL)
    await proc.communicate()


async def _wait_for(predicate, seconds: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(seconds / 0.005)):
        if await predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never became true")


async def test_sigkill_at_any_point_loses_nothing_and_counts_nothing_twice(
        world: World, toncenter: Toncenter) -> None:
    rng = random.Random(7)
    kills = 0
    # 1. One settlement at a time, killed at random moments: between transactions, inside
    #    one, while committing.
    while await count_transfers(world) < INDEX["over"] - 2 and kills < 10:
        start = await count_transfers(world)
        proc = await _spawn(world, toncenter, delay=0.01, concurrency=1)
        target = start + rng.randint(1, 2)

        async def reached(target: int = target,
                          proc: asyncio.subprocess.Process = proc) -> bool:
            return await count_transfers(world) >= target or proc.returncode is not None

        await _wait_for(reached)
        await asyncio.sleep(rng.uniform(0, 0.012))
        await _kill(proc)
        kills += 1
        assert await world.invariants() == []
    assert kills >= 3

    # 2. Several settlements in flight, one of them held inside its transaction (the test holds
    #    the `over` invoice's row lock); killed there.
    async with world.engine.connect() as blocker:
        await blocker.exec_driver_sql("BEGIN")
        await blocker.exec_driver_sql(
            "SELECT 1 FROM invoices WHERE public_id = '1C3D5E7F9G0HJ' FOR UPDATE")
        proc = await _spawn(world, toncenter, delay=0.0)

        async def waiting_on_the_lock() -> bool:
            rows = await run_sql(world.engine, """
                SELECT 1 FROM pg_stat_activity
                 WHERE wait_event_type = 'Lock' AND query LIKE '%paybot_ton_receive%'""")
            return bool(rows)

        await _wait_for(waiting_on_the_lock)
        await _kill(proc)
        await blocker.exec_driver_sql("ROLLBACK")
    # The settlement of `over` either completed after its client died, or was undone: never
    # half (transactions of other invoices went on meanwhile).
    over = await run_sql(world.engine, "SELECT outcome FROM ton_transfers WHERE tx_hash = :h",
                         h=HASH_OF_CASE["over"])
    assert over in ([], [{"outcome": "excess"}])
    assert await world.invariants() == []

    # 3. A last run to the end.
    proc = await _spawn(world, toncenter, delay=0.0)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    assert out.decode().rstrip().endswith("idle")
    await assert_each_once(world)
    await assert_fixture_world(world)
