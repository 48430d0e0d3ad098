"""Where the seller API server's CPU goes: py-spy samples of the bench.api server process while
one phase runs, split by layer.

    python -m bench.profile_api [--database-url URL] [--phase post|get|naive_post|naive_get]
                                [--seconds 10] [--concurrency 32] [--rate 200]

Starts the same server as bench.api (bench.api.serve, counting the coalescers' batches),
attaches `py-spy record --nonblocking` (pip install py-spy) to it, drives the phase with the
same client, and prints one JSON object: requests/s, server CPU per request, and that CPU split
(a) by layer, each sample charged to the innermost frame of a known library or paybot module
(stdlib helpers count for their caller, except json, logging and asyncio), and (b) by paybot
function, inclusive; and the mean batch of each coalescer. The raw stacks stay in --out for a
closer look (py-spy's "raw" format,
one collapsed stack per line, readable by flamegraph.pl or speedscope).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import itertools
import json
import os
import pstats
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from typing import Any

import aiohttp

from bench.api import cpu_seconds, database_name, drive, invoices_of
from bench.common import scratch_database, server
from bench.naive_api import create_schema
from ledger.api_tokens import issue_token
from ledger.migrate import upgrade
from ledger.postgres import make_engine
from ledger.users import ensure_user

# (start of the frame's file, layer), first match wins. py-spy names a frame
# "function (file:line)", the file relative to its sys.path entry ("aiohttp/web_app.py").
_LAYERS = [
    (r"aiohttp/(web_protocol|http_parser|_http_parser|streams)", "aiohttp: HTTP parse, body"),
    (r"aiohttp/(web_response|http_writer|helpers|payload)", "aiohttp: response"),
    (r"aiohttp/(web_urldispatcher|web_app|web_middlewares)", "aiohttp: routing, middlewares"),
    (r"aiohttp/web_request", "aiohttp: request object"),
    (r"aiohttp/", "aiohttp: other"),
    (r"(yarl|multidict)/", "aiohttp: yarl/multidict"),
    (r"asyncpg/", "asyncpg"),
    (r"sqlalchemy/", "SQLAlchemy"),
    (r"greenlet", "SQLAlchemy"),  # its async bridge
    (r"pydantic", "pydantic"),
    (r"json/", "json"),
    (r"logging/", "logging"),
    (r"traceback\.py", "logging"),  # tracebacks formatted for a log line
    (r"asyncio/", "asyncio event loop"),
]
LIBRARY_LAYERS = [(re.compile(rf"(^|/){pattern}"), layer) for pattern, layer in _LAYERS]
PROJECT = re.compile(r"\((?:.*/)?((?:bot|ledger|watchers|bench)/[\w/]+\.py):\d+\)")
FILE = re.compile(r"\(([^()]*):\d+\)$")


def layer_of(stack: list[str]) -> str:
    """The layer a sample's CPU belongs to, looking from the innermost frame outwards."""
    for frame in reversed(stack):
        m = FILE.search(frame)
        path = m.group(1) if m else frame
        for pattern, layer in LIBRARY_LAYERS:
            if pattern.search(path):
                return layer
        p = PROJECT.search(frame)
        if p:
            return p.group(1)
    return "other: " + (stack[-1] if stack else "?")


def split(raw_path: str) -> tuple[Counter[str], Counter[str], int]:
    by_layer: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    with open(raw_path) as f:
        for line in f:
            stack_text, _, count_text = line.rstrip("\n").rpartition(" ")
            if not stack_text:
                continue
            count = int(count_text)
            stack = stack_text.split(";")
            total += count
            by_layer[layer_of(stack)] += count
            seen = set()
            for frame in stack:
                if PROJECT.search(frame) and "bench/" not in frame:
                    name = re.sub(r":\d+\)$", ")", frame.strip())
                    if name not in seen:  # recursion counts once
                        seen.add(name)
                        inclusive[name] += count
    return by_layer, inclusive, total


def layer_of_file(path: str, function: str) -> str:
    """cProfile's counterpart of layer_of: a function's own time by the file it is in; C
    functions ("~") by name, socket calls apart (system calls: sends wake the reader)."""
    if path == "~":
        if "_socket.socket" in function or "send" in function or "recv" in function:
            return "socket system calls"
        if "select" in function or "poll" in function:
            return "asyncio event loop"
        return f"C: {function}"
    for pattern, layer in LIBRARY_LAYERS:
        if pattern.search(path):
            return layer
    p = re.search(r"/((?:bot|ledger|watchers|bench)/[\w/]+\.py)$", path)
    return p.group(1) if p else "stdlib: " + os.path.basename(path)


def cprofile_split(path: str, stats: dict[str, Any], top: int) -> dict[str, Any]:
    """Own CPU time per request by layer and the top functions, scaled from the profiled
    run's own time to the measured server CPU per request (the profiler's overhead is
    spread over all functions alike)."""
    raw = pstats.Stats(path).stats  # type: ignore[attr-defined]
    by_layer: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    for (file, line, func), (_cc, _nc, own, _cum, _callers) in raw.items():
        by_layer[layer_of_file(file, func)] += own
        where = file if file == "~" else re.sub(r".*/(site-packages|python3\.\d+)/", "", file)
        functions[f"{func} ({where}:{line})"] += own
    total = sum(by_layer.values())
    per_request = stats["server_cpu_us"] or 0.0

    def us(seconds: float) -> float:
        return round(per_request * seconds / total, 1) if total else 0.0

    return {"profiled_cpu_s": round(total, 2),
            "server_us_by_layer": {k: us(v) for k, v in by_layer.most_common()},
            "server_us_own_top": {k: us(v) for k, v in functions.most_common(top)},
            "stats_file": path}


async def run(args: argparse.Namespace, server_url: str) -> dict[str, Any]:
    async with scratch_database(server_url, "paybot_profile_api") as url:
        await upgrade(url)
        engine = make_engine(url, pool_size=2)
        try:
            seller = await ensure_user(engine, 9_000_000_001, "bench-seller")
            token = (await issue_token(engine, seller.id))[0]
        finally:
            await engine.dispose()
        await create_schema(url)
        extra = ["--cprofile-out", args.out] if args.profiler == "cprofile" else []
        if args.lanes is not None:
            extra += ["--lanes", str(args.lanes)]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.profile_api", "--serve", url, str(seller.id), *extra,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        try:
            assert proc.stdout is not None and proc.stdin is not None
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().split()
            if not line or line[0] != "READY":
                raise RuntimeError("the benchmark server did not start")
            base = f"http://127.0.0.1:{line[1]}"
            result = await profile(args, url, seller.id, token, base, proc)
            proc.stdin.close()
            out = (await asyncio.wait_for(proc.stdout.read(), 30)).decode().split(maxsplit=1)
            if out and out[0] == "BATCHES":
                result["batches"] = json.loads(out[1])
            return result
        finally:
            if proc.stdin is not None and not proc.stdin.is_closing():
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()


def serve_counting_batches(url: str, naive_seller: int, cprofile_out: str | None,
                           lanes: int | None) -> None:
    """bench.api's server, counting the coalescers' database calls by kind and batch size
    (requests per call: how much batching the load made), printed when it stops. With
    `cprofile_out`, SIGUSR1 starts cProfile on the thread's CPU clock and SIGUSR2 stops it,
    writes the stats there and prints DUMPED. `lanes`: an experiment, the invoice coalescers'
    batches in flight at once (production code unchanged; None keeps its setting)."""
    from bench.api import serve
    from ledger import coalesce, invoice_batches

    if lanes is not None:
        invoice_batches.InvoiceCreator.max_in_flight = lanes
        invoice_batches.InvoiceReader.max_in_flight = lanes

    if cprofile_out is not None:
        profiler = cProfile.Profile(time.thread_time)

        def start(*_: Any) -> None:
            profiler.enable()

        def stop(*_: Any) -> None:
            profiler.disable()
            profiler.dump_stats(cprofile_out)
            print("DUMPED", flush=True)

        signal.signal(signal.SIGUSR1, start)
        signal.signal(signal.SIGUSR2, stop)

    sizes: Counter[tuple[str, int]] = Counter()
    original = coalesce.Coalescer._call

    async def counted(self: Any, conn: Any, batch: list[Any]) -> Any:
        sizes[(type(self).__name__, len(batch))] += 1
        return await original(self, conn, batch)

    coalesce.Coalescer._call = counted  # type: ignore[method-assign]
    asyncio.run(serve(url, naive_seller))
    summary: dict[str, dict[str, float]] = {}
    for kind in sorted({k for k, _ in sizes}):
        calls = sum(n for (k, _), n in sizes.items() if k == kind)
        requests = sum(size * n for (k, size), n in sizes.items() if k == kind)
        summary[kind] = {"calls": calls, "requests": requests,
                         "mean_batch": round(requests / calls, 2)}
    print("BATCHES", json.dumps(summary), flush=True)


async def profile(args: argparse.Namespace, url: str, seller_id: int, token: str, base: str,
                  proc: asyncio.subprocess.Process) -> dict[str, Any]:
    pid = proc.pid
    auth = {"Authorization": f"Bearer {token}"}
    keys = itertools.count()
    path = "/naive/invoices" if args.phase.startswith("naive") else "/api/v1/invoices"
    ids: list[str] = []

    async def post(session: aiohttp.ClientSession, n: int) -> int:
        k = next(keys)
        body = {"title": f"Bench item {k}", "amount": "1.00", "item_id": "bench"}
        async with session.post(f"{base}{path}", json=body,
                                headers={**auth, "Idempotency-Key": f"p-{k}"}) as resp:
            await resp.read()
            return resp.status

    async def get(session: aiohttp.ClientSession, n: int) -> int:
        async with session.get(f"{base}{path}/{ids[n % len(ids)]}", headers=auth) as resp:
            await resp.read()
            return resp.status

    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        if args.phase.endswith("get"):  # invoices to read, made through the same API
            await drive(session, args.concurrency, 2.0, post)
            table = "naive_invoices" if args.phase.startswith("naive") else "invoices"
            ids[:] = await invoices_of(url, seller_id, table)
            fn = get
        else:
            fn = post
        if args.profiler == "cprofile":
            os.kill(pid, signal.SIGUSR1)
        elif args.profiler == "py-spy":
            spy = await asyncio.create_subprocess_exec(
                args.py_spy, "record", "--nonblocking", "--pid", str(pid), "--rate",
                str(args.rate), "--format", "raw", "--output", args.out,
                "--duration", str(int(args.seconds) + 2),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        cpu0 = cpu_seconds(pid)
        # drive() warms up for a second first; the profiler sees that too, which only adds
        # requests of the same kind
        stats = await drive(session, args.concurrency, args.seconds, fn, pid,
                            database_name(url))
        cpu = cpu_seconds(pid) - cpu0
        if args.profiler == "cprofile":
            os.kill(pid, signal.SIGUSR2)
            assert proc.stdout is not None
            await asyncio.wait_for(proc.stdout.readline(), 60)  # DUMPED
        elif args.profiler == "py-spy":
            await spy.wait()
    common = {
        "benchmark": "profile_api", "profiler": args.profiler, "phase": args.phase,
        "concurrency": args.concurrency, "seconds": args.seconds, "rps": stats["rps"],
        "errors": stats["errors"],
        "cpu_us_per_request": {"server": stats["server_cpu_us"], "client": stats["client_cpu_us"],
                               "postgres": stats["postgres_cpu_us"]},
        "server_cpu_s_incl_warmup": round(cpu, 2),
    }
    if args.profiler == "cprofile":
        return {**common, **cprofile_split(args.out, stats, args.top)}
    if args.profiler == "none":
        return {**common, "lanes": args.lanes, "latency_ms": {"p50": stats["p50_ms"],
                                                             "p99": stats["p99_ms"]}}
    by_layer, inclusive, total = split(args.out)
    per_request = stats["server_cpu_us"] or 0.0

    def us(count: int) -> float:  # a share of the samples, as µs of server CPU per request
        return round(per_request * count / total, 1) if total else 0.0

    return {**common,

        "samples": total,
        "server_us_by_layer": {k: us(v) for k, v in by_layer.most_common()},
        "server_us_inclusive_top": {k: us(v) for k, v in inclusive.most_common(args.top)},
        "raw_stacks": args.out,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    p.add_argument("--phase", choices=("post", "get", "naive_post", "naive_get"), default="post")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--top", type=int, default=40, help="paybot functions listed")
    p.add_argument("--out", default=None, help="raw stacks file (default: a temp file)")
    p.add_argument("--lanes", type=int, help="experiment: batches in flight for invoice issue"
                   " and reads (default: paybot's setting)")
    p.add_argument("--profiler", choices=("py-spy", "cprofile", "none"), default="py-spy",
                   help="py-spy: wall-clock samples while the server runs or waits for a core"
                        " (little overhead);\ncprofile: CPU time per function, C calls such as"
                        " socket sends included\n(adds overhead to every Python call);"
                        " none: only the figures")
    p.add_argument("--serve", nargs=2, metavar=("DATABASE_URL", "SELLER"), help=argparse.SUPPRESS)
    p.add_argument("--cprofile-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        serve_counting_batches(args.serve[0], int(args.serve[1]), args.cprofile_out,
                               args.lanes)
        return 0
    args.py_spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable),
                                                         "py-spy")
    if args.out is None:
        args.out = os.path.join(tempfile.gettempdir(), f"profile_api_{args.phase}.txt")
    with server(args.database_url) as server_url:
        result = asyncio.run(run(args, server_url))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
