"""Seller API benchmark: requests per second against an aiohttp hello-world, and callbacks.

    python -m bench.api [--database-url URL] [--seconds 5] [--rounds 4] [--concurrency 32]
                        [--sellers 16] [--callbacks 2000]

A server process runs the seller API (bot.api over the real ledger on PostgreSQL, production
defaults) and, on the same aiohttp app, a hello-world route; this process drives each for
`seconds` with `concurrency` keep-alive connections: GET /hello, POST /api/v1/invoices for one
seller (each with its own Idempotency-Key), the same spread over `sellers` shops, and
GET /api/v1/invoices/{id}, in `rounds` alternating rounds, each starting one phase later than
the one before. Ratios compare like with like: same server process, same client, same round;
the medians over the rounds are reported.
ledger_create_invoice_per_s is ledger.invoices.create_invoice called directly for one seller:
one seller's invoices are numbered in order (a counter row), so that is the ceiling of
single-seller POST. Finally `callbacks` paid invoices with a callback_url are delivered by the
callback worker (watchers/callbacks.py) to a receiver in the server process; callbacks_per_s
counts signed POSTs answered 200 and marked delivered. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

import aiohttp
from aiohttp import web

from bench.common import percentile, scratch_database, server
from bot.api import ApiConfig, mount_api
from bot.settings import ApiSettings
from ledger.accounts import adjust_balance
from ledger.db import fetch_all
from ledger.invoices import create_invoice
from ledger.migrate import upgrade
from ledger.payments import pay_from_balance
from ledger.postgres import make_engine
from ledger.sellers import Links, issue_token
from ledger.users import ensure_user
from watchers.callbacks import CallbackSender, deliver_all_due

LINKS = Links("https://pay.example.test", "paybot_bench")
TARGETS = {"post_ratio": 0.4, "get_ratio": 0.6}


# --- the server process -----------------------------------------------------------------------

async def hello(request: web.Request) -> web.Response:
    return web.Response(text="Hello, world")


async def serve(database_url: str) -> None:
    engine = make_engine(database_url, pool_size=20)
    app = web.Application()
    app.router.add_get("/hello", hello)
    defaults = ApiSettings()  # the production defaults (token cache included)
    mount_api(app, engine, ApiConfig(LINKS, Decimal("5.00"), timedelta(days=7), True,
                                     defaults.replay_window_seconds,
                                     defaults.token_cache_seconds))
    received = 0

    async def receive(request: web.Request) -> web.Response:
        nonlocal received
        await request.read()
        received += 1
        return web.Response(text="ok")

    receiver = web.Application()
    receiver.router.add_post("/callback", receive)
    runners = [web.AppRunner(app, access_log=None), web.AppRunner(receiver, access_log=None)]
    ports = []
    for runner in runners:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ports.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    print("READY", *ports, flush=True)
    try:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until closed
    finally:
        for runner in runners:
            await runner.cleanup()
        await engine.dispose()


# --- the client process -----------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float | None:
    """CPU time used so far by this machine's PostgreSQL processes (the embedded server's
    backends among them); None where /proc cannot tell."""
    total = 0.0
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != "postgres":
                    continue
            total += cpu_seconds(int(pid))
        except OSError:
            continue  # ended meanwhile
    return total


async def drive(
    session: aiohttp.ClientSession, concurrency: int, seconds: float, request: Any,
    server_pid: int | None = None,
) -> dict[str, Any]:
    """Run `request(session, n)` from `concurrency` workers for `seconds` (after a short
    warm-up); returns the rate, latency percentiles, the count of non-2xx answers and, given
    the server's pid, the CPU time per request of the server, of this client and of
    PostgreSQL (all three share the machine's cores)."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(10**9))

    async def worker(deadline: float, record: bool) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            status = await request(session, next(counter))
            if record:
                latencies.append((time.perf_counter() - t0) * 1000)
                errors += not 200 <= status < 300

    warm = time.perf_counter() + min(1.0, seconds / 5)
    await asyncio.gather(*(worker(warm, False) for _ in range(concurrency)))
    cpu0 = cpu_seconds(server_pid) if server_pid else 0.0
    client0, pg0 = time.process_time(), postgres_cpu_seconds()
    start = time.perf_counter()
    await asyncio.gather(*(worker(start + seconds, True) for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    cpu = cpu_seconds(server_pid) - cpu0 if server_pid else None
    client = time.process_time() - client0
    pg1 = postgres_cpu_seconds()
    pg = pg1 - pg0 if pg0 is not None and pg1 is not None else None
    n = len(latencies) or 1

    def per_request(seconds: float | None) -> float | None:
        return None if seconds is None else round(seconds / n * 1e6, 1)

    latencies.sort()
    return {"rps": round(len(latencies) / elapsed, 1),
            "p50_ms": round(percentile(latencies, 0.5), 2),
            "p99_ms": round(percentile(latencies, 0.99), 2), "errors": errors,
            "server_cpu_us": per_request(cpu), "client_cpu_us": per_request(client),
            "postgres_cpu_us": per_request(pg)}


async def invoices_of(url: str, seller_id: int) -> list[str]:
    engine = make_engine(url, pool_size=1)
    try:
        rows = await fetch_all(engine, "SELECT public_id FROM invoices WHERE seller_id = :s",
                               s=seller_id)
    finally:
        await engine.dispose()
    return [r["public_id"] for r in rows]


async def http_phases(url: str, seller_id: int, api_port: int, server_pid: int,
                      tokens: list[str], args: argparse.Namespace) -> dict[str, Any]:
    base = f"http://127.0.0.1:{api_port}"
    auth = {"Authorization": f"Bearer {tokens[0]}"}
    created: list[str] = []

    async def get_hello(session: aiohttp.ClientSession, n: int) -> int:
        async with session.get(f"{base}/hello") as resp:
            await resp.read()
            return resp.status

    keys = itertools.count()  # unique Idempotency-Keys across rounds

    async def post_invoice(session: aiohttp.ClientSession, n: int) -> int:
        n = next(keys)
        body = {"title": f"Bench item {n}", "amount": "1.00", "item_id": "bench"}
        headers = {**auth, "Idempotency-Key": f"bench-{n}"}
        async with session.post(f"{base}/api/v1/invoices", json=body, headers=headers) as resp:
            await resp.read()
            return resp.status

    async def post_invoice_many(session: aiohttp.ClientSession, n: int) -> int:
        n = next(keys)
        body = {"title": f"Bench item {n}", "amount": "1.00", "item_id": "bench"}
        headers = {"Authorization": f"Bearer {tokens[n % len(tokens)]}",
                   "Idempotency-Key": f"bench-many-{n}"}
        async with session.post(f"{base}/api/v1/invoices", json=body, headers=headers) as resp:
            await resp.read()
            return resp.status

    async def get_invoice(session: aiohttp.ClientSession, n: int) -> int:
        invoice = created[n % len(created)]
        async with session.get(f"{base}/api/v1/invoices/{invoice}", headers=auth) as resp:
            await resp.read()
            return resp.status

    phases = {"hello": get_hello, "post": post_invoice, "post_many": post_invoice_many,
              "get": get_invoice}
    rounds: list[dict[str, dict[str, Any]]] = []
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        order = list(phases)
        for r in range(args.rounds):
            # Alternate, so that drift in the machine hits all phases alike, and rotate the
            # order, so that no phase always follows the same one (PostgreSQL still flushing
            # and vacuuming after the POST phases slows whatever runs next).
            measured: dict[str, dict[str, Any]] = {}
            for name in order[r % len(order):] + order[:r % len(order)]:
                fn = phases[name]
                if name == "get":  # the single seller's invoices so far (not timed)
                    created[:] = await invoices_of(url, seller_id)
                measured[name] = await drive(session, args.concurrency, args.seconds, fn,
                                             server_pid)
            rounds.append(measured)
    return {"rounds": rounds, "invoices_created": len(created)}


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


async def ledger_phase(url: str, seller_id: int, args: argparse.Namespace) -> float:
    """create_invoice called directly (no HTTP) for one seller: the floor under POST."""
    engine = make_engine(url, pool_size=args.concurrency)
    try:
        async def one(session: None, n: int) -> int:
            await create_invoice(engine, seller_id=seller_id, title=f"Direct {n}", amount=100,
                                 payload={"item_id": "bench"}, ton_rate=Decimal("5.00"))
            return 200

        stats = await drive(None, args.concurrency, args.seconds, one)  # type: ignore[arg-type]
    finally:
        await engine.dispose()
    return float(stats["rps"])


async def callback_phase(url: str, receiver_port: int, seller_id: int,
                         args: argparse.Namespace) -> dict[str, Any]:
    """Queue `args.callbacks` paid-invoice callbacks (not timed), then time their delivery."""
    engine = make_engine(url, pool_size=20)
    target = f"http://127.0.0.1:{receiver_port}/callback"
    try:
        buyer = await ensure_user(engine, 9_000_000_002, "bench-buyer")
        await adjust_balance(engine, buyer.id, 100 * args.callbacks, "LIQ", reason="bench")
        pending = iter(range(args.callbacks))

        async def pay_some() -> None:
            for n in pending:
                inv = await create_invoice(engine, seller_id=seller_id, title="Callback bench",
                                           amount=100, payload={"callback_url": target})
                await pay_from_balance(engine, inv.public_id, buyer.id, f"cb-{n}")

        await asyncio.gather(*(pay_some() for _ in range(16)))
        sender = CallbackSender(allow_private=True, timeout=10.0, concurrency=50)
        delivered = failed = 0
        start = time.perf_counter()
        try:
            while delivered + failed < args.callbacks:
                stats = await deliver_all_due(engine, sender, LINKS, batch=100)
                delivered += stats.delivered
                failed += stats.failed + stats.retried
                if stats.claimed == 0:
                    break
        finally:
            elapsed = time.perf_counter() - start
            await sender.close()
    finally:
        await engine.dispose()
    return {"callbacks": args.callbacks, "delivered": delivered, "not_delivered": failed,
            "callbacks_per_s": round(delivered / elapsed, 1) if elapsed else None}


async def bench(args: argparse.Namespace, server_url: str) -> dict[str, Any]:
    async with scratch_database(server_url, "paybot_bench_api") as url:
        await upgrade(url)
        engine = make_engine(url, pool_size=2)
        try:
            seller = await ensure_user(engine, 9_000_000_001, "bench-seller")
            tokens = [(await issue_token(engine, seller.id))[0]]
            for n in range(1, args.sellers):  # more shops, for the many-sellers figure
                other = await ensure_user(engine, 9_000_000_100 + n, f"bench-seller-{n}")
                tokens.append((await issue_token(engine, other.id))[0])
        finally:
            await engine.dispose()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.api", "--serve", url,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None and proc.stdin is not None
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().split()
            if not line or line[0] != "READY":
                raise RuntimeError("the benchmark server did not start")
            api_port, receiver_port = int(line[1]), int(line[2])
            http = await http_phases(url, seller.id, api_port, proc.pid, tokens, args)
            ledger_rps = await ledger_phase(url, seller.id, args)
            callbacks = await callback_phase(url, receiver_port, seller.id, args)
        finally:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
    rounds = http["rounds"]

    def mid(phase: str, key: str) -> float | None:
        values = [r[phase][key] for r in rounds if r[phase][key] is not None]
        return round(median(values), 1) if values else None

    def ratio(phase: str) -> float:
        return round(median([r[phase]["rps"] / r["hello"]["rps"] for r in rounds]), 3)

    phases = ("hello", "post", "post_many", "get")
    result: dict[str, Any] = {
        "benchmark": "api",
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "sellers": args.sellers,
        # medians over the rounds; each ratio is the median of the per-round ratios
        "hello_world_rps": mid("hello", "rps"),
        "post_invoices_rps": mid("post", "rps"),
        "post_ratio": ratio("post"),
        "post_invoices_rps_many_sellers": mid("post_many", "rps"),
        "post_many_ratio": ratio("post_many"),
        "ledger_create_invoice_per_s": ledger_rps,
        "get_invoice_rps": mid("get", "rps"),
        "get_ratio": ratio("get"),
        "targets": TARGETS,
        "per_round": [{p: r[p]["rps"] for p in phases} for r in rounds],
        "latency_ms": {p: {"p50": mid(p, "p50_ms"), "p99": mid(p, "p99_ms")} for p in phases},
        # CPU time per request, in microseconds, of the server process, of this client process
        # and of PostgreSQL: where a phase's time goes on the shared cores
        "cpu_us_per_request": {p: {"server": mid(p, "server_cpu_us"),
                                   "client": mid(p, "client_cpu_us"),
                                   "postgres": mid(p, "postgres_cpu_us")} for p in phases},
        "http_errors": sum(r[p]["errors"] for r in rounds for p in phases),
        **callbacks,
        "cpus": os.cpu_count(),
        "note": "server, client and PostgreSQL share this machine's CPUs",
    }
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--rounds", type=int, default=4,
                   help="alternating rounds of the phases (4: each phase first once)")
    p.add_argument("--callbacks", type=int, default=2000)
    p.add_argument("--sellers", type=int, default=16, help="shops in the many-sellers POST run")
    p.add_argument("--serve", metavar="DATABASE_URL", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        asyncio.run(serve(args.serve))
        return 0
    with server(args.database_url) as server_url:
        result = asyncio.run(bench(args, server_url))
    print(json.dumps(result))
    ok = result["http_errors"] == 0 and result["delivered"] == result["callbacks"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
