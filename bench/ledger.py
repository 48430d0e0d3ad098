"""Ledger benchmark: full internal payments per second against pgbench TPC-B on the same server.

    python -m bench.ledger [--database-url URL] [--concurrency 32] [--seconds 15] [--sellers N]

Every timed payment is `Ledger.pay_from_balance` (ledger/core.py), the use case the bot and
the Mini App call (concurrent payments batched as in production): invoice
marked, buyer debited, seller credited, payment recorded, item granted, notifications queued.
Prints one JSON object. The reference is pgbench's built-in TPC-B-like script run on the same
server in the same run with the same number of clients (scale = clients, so pgbench's own
branch rows are not its bottleneck). The two take turns in --rounds short rounds that share
--seconds each; the medians are compared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import asyncpg

from bench.common import percentile, scratch_database, server
from ledger.accounts import apply_pending_credits
from ledger.core import Ledger
from ledger.ids import new_invoice_id
from ledger.invariants import check_invariants
from ledger.migrate import upgrade
from ledger.postgres import libpq_url, make_engine, pg_bin_dir

PRICE = 100  # 1.00 Liquid $


def run_pgbench(url: str, clients: int, seconds: int, initialize: bool = True) -> float:
    """TPC-B-like TPS of pgbench with `clients` clients; seconds=0 only initializes."""
    bin_dir = pg_bin_dir()
    pgbench = str(bin_dir / "pgbench") if bin_dir else "pgbench"
    if initialize:
        subprocess.run([pgbench, "-i", "-q", "-s", str(clients), url], check=True,
                       capture_output=True)
    if not seconds:
        return 0.0
    jobs = str(min(clients, os.cpu_count() or 2))
    out = subprocess.run([pgbench, "-n", "-b", "tpcb-like", "-c", str(clients), "-j", jobs,
                          "-T", str(seconds), url], check=True, capture_output=True,
                         text=True).stdout
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    if not match:
        raise RuntimeError(f"could not read pgbench output:\n{out}")
    return float(match.group(1))


async def seed(url: str, sellers: int, buyers: int, invoices: int) -> tuple[list[int], list[str]]:
    """Users, funded buyers and pending invoices, written in bulk (setup is not timed)."""
    conn = await asyncpg.connect(libpq_url(url))
    try:
        async with conn.transaction():
            ids = await conn.fetch(
                "INSERT INTO users (telegram_id, deposit_code) "
                "SELECT 7000000000 + g, lpad(g::text, 10, '0') FROM generate_series(1, $1) g "
                "RETURNING id", sellers + buyers,
            )
            user_ids = [r["id"] for r in ids]
            seller_ids, buyer_ids = user_ids[:sellers], user_ids[sellers:]
            expires = datetime.now(UTC) + timedelta(days=1)
            rows = [
                (new_invoice_id(), seller_ids[i % sellers], f"INV-BENCH-{i:07d}", "Bench item",
                 "LIQ", PRICE, "one_time", '{"item_id": "bench-item"}', expires)
                for i in range(invoices)
            ]
            await conn.copy_records_to_table(
                "invoices", records=rows,
                columns=["public_id", "seller_id", "number", "title", "currency", "amount",
                         "kind", "payload", "expires_at"],
            )
        for buyer in buyer_ids:  # funding goes through the ledger like any operator credit
            await conn.execute(
                "SELECT paybot_move('adjustment', $1, 'adjustments', 'LIQ', $2, 'bench', NULL)",
                buyer, PRICE * invoices,
            )
        await conn.execute("ANALYZE")
        public_ids = [r[0] for r in rows]
    finally:
        await conn.close()
    return buyer_ids, public_ids


async def pay_for(url: str, concurrency: int, seconds: float, buyer_ids: list[int],
                  invoices: list[str]) -> tuple[int, list[float]]:
    engine = make_engine(url, pool_size=concurrency)
    ledger = Ledger(engine)  # one per process, as the composition root builds it
    queue = iter(invoices)
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker(buyer: int) -> None:
        while time.perf_counter() < deadline:
            invoice = next(queue)
            t0 = time.perf_counter()
            await ledger.pay_from_balance(invoice, buyer, f"bench-{invoice}")
            latencies.append((time.perf_counter() - t0) * 1000)

    try:
        # warm the pool and statement caches, then time from a common start
        await asyncio.gather(*(engine.connect().__aenter__() for _ in range(0)))
        start = time.perf_counter()
        deadline = start + seconds
        await asyncio.gather(*(worker(b) for b in buyer_ids))
        elapsed = time.perf_counter() - start
    finally:
        await engine.dispose()
    return int(len(latencies) / elapsed), sorted(latencies)


async def bench(args: argparse.Namespace, server_url: str) -> dict[str, object]:
    """pgbench and paybot take turns in short rounds on the same server, so a change in the
    machine's load (other processes, disk) weighs on both alike; medians are reported."""
    rounds = max(1, args.rounds)
    slice_s = max(1, args.seconds // rounds)
    capacity = int(args.seconds * 12_000) + 10_000  # more invoices than we could ever pay
    tps_runs: list[float] = []
    pay_runs: list[int] = []
    latencies: list[float] = []
    async with scratch_database(server_url, "paybot_bench_pgbench") as pgbench_url, \
            scratch_database(server_url, "paybot_bench_ledger") as url:
        await upgrade(url)
        buyers, invoices = await seed(url, args.sellers, args.concurrency, capacity)
        await asyncio.to_thread(run_pgbench, pgbench_url, args.concurrency, 0)  # init only
        for _ in range(rounds):
            tps_runs.append(await asyncio.to_thread(
                run_pgbench, pgbench_url, args.concurrency, slice_s, False))
            rate, lat = await pay_for(url, args.concurrency, slice_s, buyers, invoices)
            invoices = invoices[len(lat):]
            pay_runs.append(rate)
            latencies.extend(lat)
        latencies.sort()
        engine = make_engine(url, pool_size=2)
        try:
            while await apply_pending_credits(engine):  # fold the hot seller's credits in
                pass
            violations = await check_invariants(engine)
        finally:
            await engine.dispose()
    tps = statistics.median(tps_runs)
    rate = int(statistics.median(pay_runs))
    return {
        "benchmark": "ledger.Ledger.pay_from_balance",
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "rounds": rounds,
        "sellers": args.sellers,
        "payments": len(latencies),
        "payments_per_s": rate,
        "p50_ms": round(percentile(latencies, 0.50), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "pgbench_tpcb_tps": round(tps, 1),
        "ratio": round(rate / tps, 3) if tps else None,
        "rounds_payments_per_s": pay_runs,
        "rounds_pgbench_tps": [round(t, 1) for t in tps_runs],
        "invariants_ok": not violations,
        "violations": violations[:5],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--seconds", type=int, default=15)
    p.add_argument("--sellers", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3, help="alternating pgbench/paybot rounds")
    args = p.parse_args(argv)
    with server(args.database_url) as server_url:
        result = asyncio.run(bench(args, server_url))
    print(json.dumps(result))
    return 0 if result["invariants_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
