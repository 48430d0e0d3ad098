"""Renewal benchmark: subscriptions falling due at once, renewed by the job, against
`bench.ledger`'s balance payments per second on the same server in the same run.

    python -m bench.subscriptions [--database-url URL] [--count 100000] [--workers 1]
                                  [--payment-seconds 6]

Seeds (in bulk, untimed) two cohorts on one plan each: count/10 and count subscribers, each
with money on the balance and an active monthly subscription whose period has just ended.
Then the renewal job — `Ledger.renew_due`, the use case `watchers/subscriptions.py` runs, in its
statements of `BATCH` — renews each cohort in a process of its own, so the process's peak
memory is the job's alone (`resource.getrusage`'s peak RSS and tracemalloc's peak of Python
allocations during the job: both must stay flat as the count grows, the job never holding the
whole set). Every renewal opens the period's invoice and pays it from the
balance through `process_invoice_payments`, as a tap on Pay would. Then `bench.ledger` measures
payments per second (32 clients by default) on the same server. Prints one JSON object: both
rates, their ratio (target >= 0.8) and the job's memory at count/10 and count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta

import asyncpg

from bench import ledger as ledger_bench
from bench.common import scratch_database, server
from ledger.core import Ledger
from ledger.ids import new_invoice_id
from ledger.invariants import check_invariants
from ledger.migrate import upgrade
from ledger.plans import create_plan
from ledger.postgres import libpq_url, make_engine
from ledger.subscriptions import BATCH, add_months

PRICE = 100  # 1.00 Liquid $ a month
FUNDING_CHUNK = 10_000  # subscribers funded per statement


async def seed_cohort(url: str, count: int, due_at: datetime, first_telegram_id: int) -> str:
    """`count` funded subscribers of one new plan, every subscription active in period 0 that
    ends at `due_at`. Returns the plan's public id."""
    engine = make_engine(url, pool_size=1)
    try:
        conn = await asyncpg.connect(libpq_url(url))
        try:
            seller_id = await conn.fetchval(
                "INSERT INTO users (telegram_id, deposit_code) VALUES ($1, $2) RETURNING id",
                first_telegram_id, new_invoice_id()[:10])
            plan = await create_plan(engine, seller_id=seller_id, name=f"Bench {count}",
                                     prices={1: PRICE})
            ids = [r["id"] for r in await conn.fetch(
                "INSERT INTO users (telegram_id, deposit_code) "
                "SELECT $1::bigint + g, $2 || lpad(g::text, 7, '0') FROM generate_series(1, $3) g "
                "RETURNING id", first_telegram_id, new_invoice_id()[:3], count)]
            # Funding goes through the ledger like any operator credit (balances = entries).
            for i in range(0, count, FUNDING_CHUNK):
                await conn.execute(
                    "SELECT paybot_move('adjustment', u, 'adjustments', 'LIQ', $2, 'bench', "
                    "NULL) FROM unnest($1::bigint[]) u", ids[i:i + FUNDING_CHUNK], PRICE * 2)
            anchor = add_months(due_at, -1)
            start, end = anchor, add_months(anchor, 1)
            assert end == due_at
            await conn.copy_records_to_table(
                "subscriptions",
                records=[(new_invoice_id(), plan.id, seller_id, user, 1, PRICE, "LIQ", "active",
                          anchor, 0, 0, start, end) for user in ids],
                columns=["public_id", "plan_id", "seller_id", "subscriber_id", "months",
                         "amount", "currency", "status", "anchor_at", "anchor_index",
                         "period_index", "current_period_start", "current_period_end"])
            # Period 0 as the first payment left it (its invoice is not the benchmark's).
            await conn.execute(
                "INSERT INTO subscription_periods (subscription_id, period_index, starts_at, "
                "ends_at, status, paid_at) SELECT id, 0, current_period_start, "
                "current_period_end, 'paid', current_period_start FROM subscriptions "
                "WHERE plan_id = $1", plan.id)
            await conn.execute("ANALYZE")
        finally:
            await conn.close()
    finally:
        await engine.dispose()
    return plan.public_id


def peak_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux


async def job(url: str, now: datetime, workers: int) -> dict[str, object]:
    """The renewal job in this process, as production runs it; `workers` replicas at once."""
    engine = make_engine(url, pool_size=workers + 1)
    ledger = Ledger(engine)
    try:
        async with engine.connect():  # the pool warm before the clock starts
            pass
        before = peak_rss_kb()
        tracemalloc.start()  # Python's own allocations during the job, to the byte
        t0 = time.perf_counter()
        reports = await asyncio.gather(*(ledger.renew_due(now) for _ in range(workers)))
        seconds = time.perf_counter() - t0
        traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        peak = peak_rss_kb()
    finally:
        await engine.dispose()
    renewed = sum(r.renewed for r in reports)
    return {"renewed": renewed, "past_due": sum(r.past_due for r in reports),
            "retried": sum(r.retried for r in reports), "seconds": round(seconds, 2),
            "renewals_per_s": int(renewed / seconds) if seconds else 0,
            "rss_before_kb": before, "rss_peak_kb": peak, "rss_growth_kb": peak - before,
            "tracemalloc_peak_kb": traced_peak // 1024}


def job_in_child(url: str, now: datetime, workers: int) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.subscriptions", "--job", url, "--now", now.isoformat(),
         "--workers", str(workers)], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


async def verify(url: str, count: int) -> dict[str, object]:
    """Each subscription renewed exactly once: one paid period 1 each, one payment each."""
    conn = await asyncpg.connect(libpq_url(url))
    try:
        row = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE sp.status = 'paid') AS paid, "
            "       count(*) AS periods, "
            "       count(*) FILTER (WHERE n.c <> 1) AS not_once "
            "  FROM subscription_periods sp "
            "  LEFT JOIN LATERAL (SELECT count(*) AS c FROM payments p "
            "                      WHERE p.invoice_id = sp.invoice_id) n ON true "
            " WHERE sp.period_index = 1")
    finally:
        await conn.close()
    engine = make_engine(url, pool_size=1)
    try:
        violations = await check_invariants(engine)
    finally:
        await engine.dispose()
    return {"periods_renewed": row["paid"], "expected": count, "charged_not_once":
            row["not_once"], "invariants_ok": not violations, "violations": violations[:5]}


async def bench(args: argparse.Namespace, server_url: str) -> dict[str, object]:
    small, large = max(1, args.count // 10), args.count
    now = datetime.now(UTC).replace(microsecond=0)
    due_small, due_large = now - timedelta(hours=2), now - timedelta(hours=1)
    async with scratch_database(server_url, "paybot_bench_subs") as url:
        await upgrade(url)
        t0 = time.perf_counter()
        await seed_cohort(url, small, due_small, 8_000_000_000)
        await seed_cohort(url, large, due_large, 8_100_000_000)
        seeding = time.perf_counter() - t0
        # count/10 first (only its cohort is due then), then count.
        first = await asyncio.to_thread(job_in_child, url, due_small + timedelta(minutes=1),
                                        args.workers)
        second = await asyncio.to_thread(job_in_child, url, datetime.now(UTC), args.workers)
        checked = await verify(url, small + large)
    payments = await ledger_bench.bench(argparse.Namespace(
        concurrency=args.concurrency, seconds=args.payment_seconds, sellers=1000,
        rounds=args.payment_rounds), server_url)
    rate = int(second["renewals_per_s"])  # type: ignore[call-overload]
    pay_rate = int(payments["payments_per_s"])  # type: ignore[call-overload]
    growth_small = int(first["rss_growth_kb"])  # type: ignore[call-overload]
    growth_large = int(second["rss_growth_kb"])  # type: ignore[call-overload]
    return {
        "benchmark": "ledger.Ledger.renew_due",
        "count": large,
        "workers": args.workers,
        "batch": BATCH,
        "seeding_s": round(seeding, 1),
        "renewals_per_s": rate,
        "renewals_per_s_at_count_10th": first["renewals_per_s"],
        "payments_per_s": pay_rate,
        "payments_concurrency": args.concurrency,
        "ratio": round(rate / pay_rate, 3) if pay_rate else None,
        "target_ratio": 0.8,
        "job_peak_rss_kb": {"count_10th": first["rss_peak_kb"], "count": second["rss_peak_kb"]},
        "job_rss_growth_kb": {"count_10th": growth_small, "count": growth_large},
        "job_tracemalloc_peak_kb": {"count_10th": first["tracemalloc_peak_kb"],
                                    "count": second["tracemalloc_peak_kb"]},
        "jobs": {"count_10th": first, "count": second},
        "payments": {k: payments[k] for k in ("payments_per_s", "p50_ms", "p99_ms",
                                              "pgbench_tpcb_tps", "invariants_ok")},
        **checked,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    p.add_argument("--count", type=int, default=100_000)
    p.add_argument("--workers", type=int, default=1, help="renewal job replicas at once")
    p.add_argument("--concurrency", type=int, default=32, help="bench.ledger's clients")
    p.add_argument("--payment-seconds", type=int, default=6)
    p.add_argument("--payment-rounds", type=int, default=2)
    p.add_argument("--job", metavar="URL", help=argparse.SUPPRESS)  # the child process
    p.add_argument("--now", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.job:
        print(json.dumps(asyncio.run(job(args.job, datetime.fromisoformat(args.now),
                                         args.workers))))
        return 0
    with server(args.database_url) as server_url:
        result = asyncio.run(bench(args, server_url))
    print(json.dumps(result))
    ok = result["invariants_ok"] and result["charged_not_once"] == 0 \
        and result["periods_renewed"] == result["expected"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
