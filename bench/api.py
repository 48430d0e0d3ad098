"""Seller API benchmark: requests per second against two references, and callbacks.

    python -m bench.api [--database-url URL] [--seconds 5] [--rounds 6] [--concurrency 32]
                        [--sellers 16] [--callbacks 2000]

A server process runs the seller API (bot.api over the real ledger on PostgreSQL, production
defaults) and, on the same aiohttp app and port, two references: a hello-world route (no work
at all) and the invoice API a shop would otherwise write (bench/naive_api.py: one asyncpg
`INSERT … RETURNING` per POST, one `SELECT` by key per GET, each committed on its own, in its
own table on the same database, same request and response JSON). This process drives each for
`seconds` with `concurrency` keep-alive connections: GET /hello, POST /api/v1/invoices for one
seller (each with its own Idempotency-Key), POST /naive/invoices (the same requests), the
paybot POST spread over `sellers` shops, GET /api/v1/invoices/{id} and GET /naive/invoices/{id},
in `rounds` alternating rounds, each starting one phase later than the one before. Ratios
compare like with like: same server process, same client, same round; the medians over the
rounds are reported, with the CPU per request of server, client and PostgreSQL per phase
(PostgreSQL: the benchmark database's backends and the server's own processes, not other
databases on a shared server) and *_vs_naive_by_cpu, the ratio of those CPU totals. Before
the rounds, one POST and GET to each must answer the same status and JSON fields.
ledger_create_invoice_per_s is Ledger.issue_invoice called directly for one seller:
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
import urllib.parse
from datetime import timedelta
from decimal import Decimal
from typing import Any

import aiohttp
from aiohttp import web

from bench.common import percentile, scratch_database, server
from bench.naive_api import NaiveInvoices, create_pool, create_schema, mount
from bot.api import ApiConfig, mount_api
from bot.api.views import invoice_renderer
from bot.links import Links
from bot.settings import ApiSettings
from ledger.accounts import adjust_balance
from ledger.api_tokens import issue_token
from ledger.core import Ledger
from ledger.db import fetch_all
from ledger.invoices import create_invoice, new_invoice
from ledger.migrate import upgrade
from ledger.payments import pay_from_balance
from ledger.postgres import make_engine
from ledger.users import ensure_user
from watchers.callbacks import CallbackSender, deliver_all_due

LINKS = Links("https://pay.example.test", "paybot_bench")
RENDER = invoice_renderer(LINKS)  # callback bodies, as the composition root hands them in
TON_RATE = Decimal("5.00")
TTL = timedelta(days=7)
# post_ratio/get_ratio: of the hello-world; *_vs_naive: of the naive reference (issue 11)
TARGETS = {"post_ratio": 0.4, "get_ratio": 0.6, "post_vs_naive": 1.5, "get_vs_naive": 2.0}


# --- the server process -----------------------------------------------------------------------

async def hello(request: web.Request) -> web.Response:
    return web.Response(text="Hello, world")


async def serve(database_url: str, naive_seller: int) -> None:
    engine = make_engine(database_url, pool_size=20)
    pool = await create_pool(database_url, 20)  # as many connections as paybot's engine keeps
    app = web.Application()
    app.router.add_get("/hello", hello)
    mount(app, NaiveInvoices(pool, naive_seller, LINKS.public_url, LINKS.bot_username,
                             TON_RATE, TTL))
    defaults = ApiSettings()  # the production defaults (token cache included)
    mount_api(app, Ledger(engine), ApiConfig(LINKS, TON_RATE, TTL, True,
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
        await pool.close()
        await engine.dispose()


# --- the client process -----------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# PostgreSQL's own processes, shared by every database of a server (WAL flushes among them)
PG_AUXILIARY = ("walwriter", "checkpointer", "background writer", "autovacuum launcher",
                "logical replication launcher", "walsummarizer", "archiver", "startup")


def _postgres_processes() -> list[tuple[int, int, str]]:
    """(pid, parent pid, process title) of every PostgreSQL process on this machine."""
    found = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != "postgres":
                    continue
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rpartition(")")[2].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                title = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, ValueError):
            continue  # ended meanwhile
        found.append((int(pid), ppid, title))
    return found


def postgres_cpu_seconds(database: str | None = None) -> float | None:
    """CPU time used so far by PostgreSQL processes; None where /proc cannot tell. Given a
    database, only its server's: the backends (and autovacuum workers) of that database and
    the server's auxiliary processes, so that other databases on a shared server (other
    people's test runs) are not counted. Without one, every PostgreSQL process here."""
    try:
        processes = _postgres_processes()
    except OSError:
        return None
    if database is not None:
        ours = [(pid, ppid) for pid, ppid, title in processes if database in title.split()]
        parents = {ppid for _, ppid in ours}
        processes = [(pid, ppid, title) for pid, ppid, title in processes
                     if ppid in parents and (database in title.split()
                                             or title.removeprefix("postgres: ") in PG_AUXILIARY)]
    total = 0.0
    for pid, _, _ in processes:
        try:
            total += cpu_seconds(pid)
        except OSError:
            continue  # ended meanwhile
    return total


async def drive(
    session: aiohttp.ClientSession, concurrency: int, seconds: float, request: Any,
    server_pid: int | None = None, database: str | None = None,
) -> dict[str, Any]:
    """Run `request(session, n)` from `concurrency` workers for `seconds` (after a short
    warm-up); returns the rate, latency percentiles, the count of non-2xx answers and, given
    the server's pid, the CPU time per request of the server, of this client and of
    PostgreSQL (all three share the machine's cores; `database` limits PostgreSQL's to that
    database's processes, see postgres_cpu_seconds)."""
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
    client0, pg0 = time.process_time(), postgres_cpu_seconds(database)
    start = time.perf_counter()
    await asyncio.gather(*(worker(start + seconds, True) for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    cpu = cpu_seconds(server_pid) - cpu0 if server_pid else None
    client = time.process_time() - client0
    pg1 = postgres_cpu_seconds(database)
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


async def invoices_of(url: str, seller_id: int, table: str = "invoices") -> list[str]:
    engine = make_engine(url, pool_size=1)
    try:
        rows = await fetch_all(engine, f"SELECT public_id FROM {table} WHERE seller_id = :s",
                               s=seller_id)
    finally:
        await engine.dispose()
    return [r["public_id"] for r in rows]


async def http_phases(url: str, seller_id: int, api_port: int, server_pid: int,
                      tokens: list[str], args: argparse.Namespace) -> dict[str, Any]:
    base = f"http://127.0.0.1:{api_port}"
    auth = {"Authorization": f"Bearer {tokens[0]}"}
    created: list[str] = []
    created_naive: list[str] = []

    async def get_hello(session: aiohttp.ClientSession, n: int) -> int:
        async with session.get(f"{base}/hello") as resp:
            await resp.read()
            return resp.status

    keys = itertools.count()  # unique Idempotency-Keys across rounds

    async def post_to(session: aiohttp.ClientSession, path: str) -> int:
        n = next(keys)
        body = {"title": f"Bench item {n}", "amount": "1.00", "item_id": "bench"}
        headers = {**auth, "Idempotency-Key": f"bench-{n}"}
        async with session.post(f"{base}{path}", json=body, headers=headers) as resp:
            await resp.read()
            return resp.status

    async def post_invoice(session: aiohttp.ClientSession, n: int) -> int:
        return await post_to(session, "/api/v1/invoices")

    async def post_naive(session: aiohttp.ClientSession, n: int) -> int:
        # the same request as paybot's (headers too, though the reference ignores them)
        return await post_to(session, "/naive/invoices")

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

    async def get_naive(session: aiohttp.ClientSession, n: int) -> int:
        invoice = created_naive[n % len(created_naive)]
        async with session.get(f"{base}/naive/invoices/{invoice}", headers=auth) as resp:
            await resp.read()
            return resp.status

    # each reference phase next to its paybot phase, so that both see the same machine
    phases = {"hello": get_hello, "post": post_invoice, "naive_post": post_naive,
              "post_many": post_invoice_many, "get": get_invoice, "naive_get": get_naive}
    rounds: list[dict[str, dict[str, Any]]] = []
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await same_shapes(session, base, auth)
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
                elif name == "naive_get":
                    created_naive[:] = await invoices_of(url, seller_id, "naive_invoices")
                measured[name] = await drive(session, args.concurrency, args.seconds, fn,
                                             server_pid, database_name(url))
            rounds.append(measured)
    return {"rounds": rounds, "invoices_created": len(created),
            "naive_invoices_created": len(created_naive)}


async def same_shapes(session: aiohttp.ClientSession, base: str, auth: dict[str, str]) -> None:
    """The reference must answer what paybot answers: the same status and the same JSON
    fields, with values of the same types, for the same POST and its GET."""
    shapes = []
    for prefix in ("/api/v1", "/naive"):
        body = {"title": "Shape check", "amount": "1.00", "item_id": "bench"}
        async with session.post(f"{base}{prefix}/invoices", json=body,
                                headers={**auth, "Idempotency-Key": f"shape{prefix}"}) as resp:
            created = (resp.status, await resp.json())
        async with session.get(f"{base}{prefix}/invoices/{created[1]['id']}",
                               headers=auth) as resp:
            read = (resp.status, await resp.json())
        shapes.append([(status, {k: type(v).__name__ for k, v in doc.items()})
                       for status, doc in (created, read)])
    if shapes[0] != shapes[1]:
        raise RuntimeError(f"the naive reference answers differently: {shapes}")


def database_name(url: str) -> str:
    return urllib.parse.urlsplit(url).path.lstrip("/")


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


async def ledger_phase(url: str, seller_id: int, args: argparse.Namespace) -> float:
    """Ledger.issue_invoice called directly (no HTTP) for one seller: the floor under POST."""
    engine = make_engine(url, pool_size=args.concurrency)
    ledger = Ledger(engine)
    try:
        async def one(session: None, n: int) -> int:
            await ledger.issue_invoice(new_invoice(
                seller_id=seller_id, title=f"Direct {n}", amount=100,
                payload={"item_id": "bench"}, ton_rate=TON_RATE))
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
                stats = await deliver_all_due(Ledger(engine), sender, RENDER, batch=100)
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
        await create_schema(url)  # the naive reference's own table
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.api", "--serve", url, "--naive-seller", str(seller.id),
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

    def ratio(phase: str, reference: str = "hello") -> float:
        return round(median([r[phase]["rps"] / r[reference]["rps"] for r in rounds]), 3)

    def by_cpu(phase: str, reference: str) -> float | None:
        """How many times less CPU (server + client + PostgreSQL) a request of `phase` took
        than one of `reference`: the ratio a machine of our own would show, steadier than
        requests/s when other work shares the cores."""
        def total(r: dict[str, Any], p: str) -> float | None:
            parts = [r[p][k] for k in ("server_cpu_us", "client_cpu_us", "postgres_cpu_us")]
            return None if None in parts else sum(parts)

        values = [total(r, reference) / total(r, phase) for r in rounds  # type: ignore[operator]
                  if total(r, phase) and total(r, reference) is not None]
        return round(median(values), 3) if values else None

    phases = ("hello", "post", "naive_post", "post_many", "get", "naive_get")
    ratios = {"post_ratio": ratio("post"), "get_ratio": ratio("get"),
              "post_vs_naive": ratio("post", "naive_post"),
              "get_vs_naive": ratio("get", "naive_get")}
    result: dict[str, Any] = {
        "benchmark": "api",
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "sellers": args.sellers,
        # medians over the rounds; each ratio is the median of the per-round ratios
        "hello_world_rps": mid("hello", "rps"),
        "post_invoices_rps": mid("post", "rps"),
        "naive_post_rps": mid("naive_post", "rps"),
        "post_ratio": ratios["post_ratio"],
        "post_vs_naive": ratios["post_vs_naive"],
        "post_invoices_rps_many_sellers": mid("post_many", "rps"),
        "post_many_ratio": ratio("post_many"),
        "ledger_create_invoice_per_s": ledger_rps,
        "get_invoice_rps": mid("get", "rps"),
        "naive_get_rps": mid("naive_get", "rps"),
        "get_ratio": ratios["get_ratio"],
        "get_vs_naive": ratios["get_vs_naive"],
        "targets": TARGETS,
        "targets_met": {k: ratios[k] >= t for k, t in TARGETS.items()},
        "post_vs_naive_by_cpu": by_cpu("post", "naive_post"),
        "get_vs_naive_by_cpu": by_cpu("get", "naive_get"),
        "per_round_vs_naive": [
            {"post": round(r["post"]["rps"] / r["naive_post"]["rps"], 3),
             "get": round(r["get"]["rps"] / r["naive_get"]["rps"], 3)} for r in rounds],
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
    p.add_argument("--rounds", type=int, default=6,
                   help="alternating rounds of the phases (6: each phase first once)")
    p.add_argument("--callbacks", type=int, default=2000)
    p.add_argument("--sellers", type=int, default=16, help="shops in the many-sellers POST run")
    p.add_argument("--serve", metavar="DATABASE_URL", help=argparse.SUPPRESS)
    p.add_argument("--naive-seller", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        asyncio.run(serve(args.serve, args.naive_seller))
        return 0
    with server(args.database_url) as server_url:
        result = asyncio.run(bench(args, server_url))
    print(json.dumps(result))
    ok = result["http_errors"] == 0 and result["delivered"] == result["callbacks"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
