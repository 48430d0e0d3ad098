"""Reports benchmark: the dashboard's query at 10,000 and at 1,000,000 payments, and the CSV
export of 1,000,000 payments with its peak memory, in the same run on the same server.

    python -m bench.reports [--database-url URL] [--small 10000] [--large 1000000]
                            [--repeat 30]

Seeds (set-based, generate_series straight in SQL, untimed) two sellers in one database: one
with `small` paid invoices and one with `large`, their payments spread evenly over the last
two years (methods internal, ton and manual in turn), plus the same 100 open invoices each
(half of them overdue: what is open is today's state, not history), all from the same
catalogue of 200 products. The payments go in
through the `payments` insert trigger, as every payment does, so the rollups are the ones the
product keeps. Then:

- the seller's dashboard for the last 12 months (`ledger.reports` dashboard, top_items and
  subscription_summary: what the Mini App's Sales tab and GET /api/v1/reports/dashboard read),
  `repeat` times per seller after a warm-up: median and p95 in ms, and the large seller's
  median over the small one's (target <= 2);
- the CSV export of each seller's whole two years through the real route (aiohttp, streamed,
  read by a client that drops what it reads): seconds, rows, bytes, and the process's peak RSS
  before and after each (flat: the large export adds next to nothing to the small one's peak).

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import asyncpg
from aiohttp import ClientSession, web
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.common import percentile, scratch_database, server
from bot.api import ApiConfig, mount_api
from bot.links import Links
from ledger.api_tokens import issue_token
from ledger.core import Ledger
from ledger.migrate import upgrade
from ledger.postgres import libpq_url, make_engine
from ledger.reports import dashboard, subscription_summary, top_items

HISTORY_DAYS = 730
# What is open is today's state, not history: the same for both sellers.
OPEN_INVOICES = 100
# What the sellers sell: the same 200 products (top items are kept per month and product, so
# their cost follows the catalogue, not the number of sales).
CATALOGUE = 200
LINKS = Links("https://pay.example.test", "paybot_bench")

# Paid invoices i = 1..n issued at evenly spaced instants over the history, each paid a minute
# later; then OPEN_INVOICES open ones (every other one already past its due date).
SEED = """
WITH tx AS (INSERT INTO ledger_transactions (kind, reason) VALUES ('adjustment', 'bench')
            RETURNING id),
     paid AS (
    INSERT INTO invoices (public_id, seller_id, number, title, currency, amount, kind, uses,
                          status, expires_at, created_at, issued_at, paid_at, amount_paid,
                          updated_at)
    SELECT upper(lpad(to_hex($1::bigint * 4294967296 + g), 13, '0')), $1, 'P-' || g,
           'Product ' || g % $4::int, 'LIQ', 100 + g % 900, 'one_time', 1, 'paid',
           at + interval '7 days', at, at, at + interval '1 minute', 100 + g % 900, at
      FROM generate_series(1, $2::int) g,
           LATERAL (SELECT now() - make_interval(secs => ($2 - g + 1)::float8 * $3 / $2)) t(at)
    RETURNING id, amount, paid_at)
INSERT INTO payments (invoice_id, method, currency, amount, ledger_tx_id, created_at)
SELECT paid.id, (ARRAY['internal', 'ton', 'manual'])[paid.id % 3 + 1], 'LIQ', paid.amount,
       tx.id, paid.paid_at
  FROM paid, tx
"""
OPEN = """
INSERT INTO invoices (public_id, seller_id, number, title, currency, amount, kind, status,
                      expires_at, created_at, issued_at, due_at, updated_at)
SELECT upper(lpad(to_hex($1::bigint * 4294967296 + 3000000000 + g), 13, '0')), $1, 'O-' || g,
       'Open ' || g, 'LIQ', 500, 'one_time', 'pending', now() + interval '30 days',
       now() - interval '20 days', now() - interval '20 days',
       now() + CASE WHEN g % 2 = 0 THEN interval '-5 days' ELSE interval '5 days' END,
       now()
  FROM generate_series(1, $2::int) g
"""

async def seed(url: str, telegram_id: int, count: int) -> int:
    conn = await asyncpg.connect(libpq_url(url))
    try:
        seller = await conn.fetchval(
            "INSERT INTO users (telegram_id, deposit_code) VALUES ($1, $2) RETURNING id",
            telegram_id, f"BENCH{telegram_id % 100000:05d}")
        await conn.execute(SEED, seller, count, float(HISTORY_DAYS * 86400), CATALOGUE)
        await conn.execute(OPEN, seller, OPEN_INVOICES)
        return int(seller)
    finally:
        await conn.close()


async def seller_view(engine: AsyncEngine, seller: int, start: date, end: date) -> None:
    """What the seller's dashboard (the Mini App's and the API's) reads."""
    await dashboard(engine, seller, start, end)
    await top_items(engine, seller, start, end)
    await subscription_summary(engine, seller)


async def time_dashboard(ledger: Ledger, seller: int, repeat: int) -> dict[str, float]:
    end = datetime.now(UTC).date()
    start = (end.replace(day=1) - timedelta(days=334)).replace(day=1)
    await seller_view(ledger.engine, seller, start, end)  # warm-up: plans, caches
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        await seller_view(ledger.engine, seller, start, end)
        times.append((time.perf_counter() - began) * 1000)
    times.sort()
    return {"median_ms": round(statistics.median(times), 3),
            "p95_ms": round(percentile(times, 0.95), 3)}


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


async def export_csv(base: str, token: str) -> dict[str, float]:
    today = datetime.now(UTC).date()
    params = {"from": (today - timedelta(days=HISTORY_DAYS + 1)).isoformat(),
              "to": today.isoformat()}
    before = peak_rss_mb()
    began = time.perf_counter()
    size = lines = 0
    async with ClientSession() as http:
        async with http.get(f"{base}/api/v1/exports/payments.csv", params=params,
                            headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 200, await r.text()
            async for chunk in r.content.iter_chunked(64 * 1024):
                size += len(chunk)
                lines += chunk.count(b"\n")
    return {"seconds": round(time.perf_counter() - began, 2), "rows": lines - 1,
            "mb": round(size / 2**20, 1), "peak_rss_before_mb": before,
            "peak_rss_after_mb": peak_rss_mb()}


async def run(url: str, small: int, large: int, repeat: int) -> dict[str, object]:
    await upgrade(url)
    began = time.perf_counter()
    small_seller = await seed(url, 9_100_000_001, small)
    large_seller = await seed(url, 9_100_000_002, large)
    conn = await asyncpg.connect(libpq_url(url))
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    seeded = round(time.perf_counter() - began, 1)

    engine = make_engine(url, pool_size=4)
    ledger = Ledger(engine)
    app = web.Application()
    mount_api(app, ledger, ApiConfig(LINKS, Decimal("5.00"), timedelta(days=7), True, 300))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{port}"
    try:
        small_dash = await time_dashboard(ledger, small_seller, repeat)
        large_dash = await time_dashboard(ledger, large_seller, repeat)
        small_csv = await export_csv(base, (await issue_token(engine, small_seller))[0])
        large_csv = await export_csv(base, (await issue_token(engine, large_seller))[0])
    finally:
        await runner.cleanup()
        await engine.dispose()
    return {
        "seed_seconds": seeded,
        "dashboard": {str(small): small_dash, str(large): large_dash,
                      "ratio": round(large_dash["median_ms"] / small_dash["median_ms"], 2),
                      "target_ratio": 2.0},
        "csv_export": {str(small): small_csv, str(large): large_csv,
                       "peak_rss_growth_mb": round(large_csv["peak_rss_after_mb"]
                                                   - small_csv["peak_rss_after_mb"], 1)},
    }


async def main_async(args: argparse.Namespace) -> None:
    with server(args.database_url) as server_url:
        async with scratch_database(server_url, "paybot_bench_reports") as url:
            result = await run(url, args.small, args.large, args.repeat)
    print(json.dumps(result, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url")
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
