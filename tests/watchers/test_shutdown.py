"""`paybot run` stopped by SIGTERM during a burst of transfers: the settlement in flight
finishes and is logged, no new one starts, the process exits 0 with no traceback. While a poll
retries, the scheduler does not warn at every tick."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from tests.conftest import run_sql
from tests.watchers.conftest import Toncenter, World
from tests.watchers.standins import DATA
from tests.watchers.test_serve import free_port

ROOT = Path(__file__).resolve().parents[2]
HELD = "9F2G7H4JKM0NQ"  # `long_comment` pays it: its settlement waits on the test's row lock


async def test_sigterm_during_a_burst_finishes_the_settlement_in_flight(
        world: World, toncenter: Toncenter) -> None:
    # The first page requests fail: the poll retries with backoff (seconds) while the
    # scheduler ticks every 0.2 s.
    toncenter.chain.fail_next("500", "500", "500")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "TON_"))}
    env |= {"DATABASE_URL": world.url, "WEB_HOST": "127.0.0.1", "WEB_PORT": str(free_port()),
            "TON_DESTINATION_ADDRESS": DATA["destination"]["bounceable"], "TON_SOURCE": "http",
            "TON_API_URL": toncenter.url, "TON_POLL_SECONDS": "0.2",
            "PYTHONPATH": str(ROOT)}
    lines: list[str] = []
    stopping = asyncio.Event()

    async with world.engine.connect() as blocker:
        await blocker.exec_driver_sql("BEGIN")
        await blocker.exec_driver_sql(
            f"SELECT 1 FROM invoices WHERE public_id = '{HELD}' FOR UPDATE")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "run", cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)

        async def read() -> None:
            assert proc.stdout is not None
            async for raw in proc.stdout:
                lines.append(raw.decode(errors="replace"))
                if "stopping" in lines[-1]:
                    stopping.set()

        reader = asyncio.create_task(read())
        try:
            async with asyncio.timeout(90):
                # The burst is being settled; one settlement is inside its transaction.
                while not await run_sql(world.engine, """
                        SELECT 1 FROM pg_stat_activity
                         WHERE datname = current_database() AND wait_event_type = 'Lock'
                           AND query LIKE '%paybot_ton_receive%'"""):
                    assert proc.returncode is None, "".join(lines)
                    await asyncio.sleep(0.02)
                proc.send_signal(signal.SIGTERM)
                # Shutdown has begun (or the process is gone) while the settlement is held.
                waiter = asyncio.ensure_future(stopping.wait())
                await asyncio.wait([waiter, reader], return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                await blocker.exec_driver_sql("ROLLBACK")
                await reader
                await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            reader.cancel()
    log = "".join(lines)
    assert proc.returncode == 0, log
    assert "Traceback" not in log and " ERROR " not in log, log
    assert "maximum number of running instances" not in log, log
    assert "paybot stopped" in log
    # The held settlement was let finish; every committed transfer is in the log.
    rows = await run_sql(world.engine, "SELECT tx_hash, invoice_id FROM ton_transfers")
    held = await run_sql(world.engine, "SELECT id FROM invoices WHERE public_id = :p", p=HELD)
    assert held[0]["id"] in {r["invoice_id"] for r in rows}
    assert [r["tx_hash"] for r in rows if f"TON {str(r['tx_hash'])[:16]} " not in log] == []
    assert await world.invariants() == []
