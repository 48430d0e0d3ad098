"""Invoice creation: 10-line invoices (lines, a discount, a tax rate) against one-line ones,
through the batched path the edges use (`Ledger.issue_invoice`, concurrent requests), in the
same run on the same database. Each timed request is built (`new_invoice`: checks and totals)
and written, as the seller API does it. The two kinds take turns in short rounds; medians are
compared (target: 10 lines at ≥ 0.7× the one-line rate). `build_us` is what building one
request costs alone (no database), per kind: the Python share of the difference.

    python -m bench.invoice_creation [--database-url URL] [--seconds 6] [--concurrency 32]

(`python -m bench.documents` runs it too.) Prints one JSON object."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from bench.common import scratch_database, server
from ledger.core import Ledger
from ledger.invoices import NewInvoice, new_invoice
from ledger.migrate import upgrade
from ledger.postgres import make_engine
from ledger.totals import Line, PercentOff, TaxRate
from ledger.users import ensure_user

VAT = TaxRate(name="VAT 20 %", percent=Decimal("20"))


def one_line(seller_id: int) -> NewInvoice:
    return new_invoice(seller_id=seller_id, title="Architecture consulting", amount=12_000)


def ten_lines(seller_id: int) -> NewInvoice:
    lines = [Line(description=f"Consulting, part {i + 1}", quantity=Decimal(f"{1 + i % 3}.5"),
                  unit_price=12_000, tax_rate=VAT.name,
                  discount=PercentOff(Decimal("10")) if i % 4 == 0 else None)
             for i in range(10)]
    return new_invoice(seller_id=seller_id, lines=lines, discount=PercentOff(Decimal("5")),
                       tax_rates=[VAT])


async def _round(ledger: Ledger, build: Callable[[int], NewInvoice], sellers: list[int],
                 concurrency: int, seconds: float) -> float:
    """Invoices per second over `seconds`, `concurrency` requests in flight."""
    count = 0
    deadline = time.perf_counter() + seconds

    async def worker(i: int) -> None:
        nonlocal count
        seller = sellers[i % len(sellers)]
        while time.perf_counter() < deadline:
            await ledger.issue_invoice(build(seller))
            count += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return count / (time.perf_counter() - started)


def _build_us(build: Callable[[int], NewInvoice], count: int = 2000) -> float:
    """Microseconds to build one request (`new_invoice`), in this process, no database."""
    started = time.perf_counter()
    for _ in range(count):
        build(1)
    return round(1e6 * (time.perf_counter() - started) / count, 1)


async def bench(server_url: str, *, seconds: float, concurrency: int, rounds: int = 3,
                sellers: int = 100) -> dict[str, Any]:
    per_round = max(0.5, seconds / (2 * rounds))
    rates: dict[str, list[float]] = {"one_line": [], "ten_lines": []}
    async with scratch_database(server_url, "paybot_bench_creation") as url:
        await upgrade(url)
        engine = make_engine(url, pool_size=max(4, concurrency // 4))
        try:
            ids = [(await ensure_user(engine, 7_000_000 + n)).id for n in range(sellers)]
            ledger = Ledger(engine)
            await _round(ledger, one_line, ids, concurrency, 0.3)  # warm the connections
            for _ in range(rounds):
                for name, build in (("one_line", one_line), ("ten_lines", ten_lines)):
                    rates[name].append(await _round(ledger, build, ids, concurrency, per_round))
        finally:
            await engine.dispose()
    one, ten = (statistics.median(rates[k]) for k in ("one_line", "ten_lines"))
    return {"benchmark": "ledger.Ledger.issue_invoice", "concurrency": concurrency,
            "rounds": rounds, "seconds_per_round": round(per_round, 2),
            "one_line_per_s": round(one), "ten_lines_per_s": round(ten),
            "ratio": round(ten / one, 3), "target_ratio": 0.7,
            # where the difference is: building the request alone (checks, totals, document)
            "build_us": {"one_line": _build_us(one_line), "ten_lines": _build_us(ten_lines)},
            "rounds_per_s": {k: [round(r) for r in v] for k, v in rates.items()}}


def run(database_url: str | None, *, seconds: float, concurrency: int) -> dict[str, Any]:
    with server(database_url) as server_url:
        return asyncio.run(bench(server_url, seconds=seconds, concurrency=concurrency))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--seconds", type=float, default=6.0, help="in all, both kinds")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    print(json.dumps(run(args.database_url, seconds=args.seconds,
                         concurrency=args.concurrency), indent=2))


if __name__ == "__main__":
    main()
