"""Hop counts of two traces, measured by running them (issue 11: "how far is it from a tap to
the ledger and back?"), instead of counted by reading.

    python -m bench.hops [--database-url URL]   (default: DATABASE_URL)

Each trace runs once, for real, in this process, against PostgreSQL (a scratch database):

- `pay_tap`: the Mini App's `POST /pay/<id>/pay` with valid signed init data, from the aiohttp
  handler to the JSON answer (aiohttp's test server and client; one warm-up payment of another
  invoice first, so imports and first-use caches are not counted).
- `ton_transfer`: one incoming transfer `INV-<id>` (the fixture's `plain`, exactly the quote)
  read by `TonWatcher.poll_once()` from the local TON HTTP API stand-in (fetch, decode, match,
  settle), then `Notifier.deliver_due()` sending the seller's notice to the local Bot API
  stand-in. How the notifier is woken (a scheduled poll before the refactor, the outbox's
  NOTIFY after) is not part of the trace: both versions start at the same two calls. The
  warm-up is the same poll + delivery in another scratch database.

While a trace runs, `sys.setprofile` records every call of a function whose code lives in this
repository's `bot/`, `ledger/` or `watchers/` (not libraries, not tests; comprehensions,
lambdas and generated dataclass methods are left out: nobody follows them as a hop), and
asyncpg's execute paths record every statement sent. Per trace it prints: `functions` (distinct
functions of ours = hops), `files`, `packages` (top level, and the Python package each module
is in), `sql_statements` (sent by the client, transaction control and driver introspection
counted apart), `sql_functions` (our SQL functions named in those statements) and
`sql_functions_nested` (every call of our SQL functions inside the server, nested ones
included, from pg_stat_user_functions with track_functions=all on the scratch database, read
before and after the trace once the counts have settled), and
`path`: the ordered `file:function` list (first call order).

Runs on the code before the refactor too (an engine where the edges now take a
`ledger.core.Ledger`): see `_edges()`, the one adapter.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg
from asyncpg.prepared_stmt import PreparedStatement
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.common import scratch_database, server

ROOT = Path(__file__).resolve().parent.parent
OURS = tuple(str(ROOT / pkg) + "/" for pkg in ("bot", "ledger", "watchers"))
TRACKED_CASE = "plain"  # the fixture transfer `INV-7Q4M2X9KTBHWA`, exactly the quoted 1 TON
_CONTROL = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|SET|SHOW|SELECT\s+1\s*$|;)",
                      re.IGNORECASE)
# asyncpg's type introspection (first use of a type on a connection), with jit off around it.
_INTROSPECTION = re.compile(r"pg_catalog\.|\bpg_type\b|\bpg_namespace\b|'jit'", re.IGNORECASE)


# --- recording ---------------------------------------------------------------------------------


@dataclass
class Recording:
    path: list[str] = field(default_factory=list)  # "file:qualname", first call order
    seen: set[str] = field(default_factory=set)
    statements: list[str] = field(default_factory=list)

    def call(self, frame: FrameType) -> None:
        code = frame.f_code
        if not code.co_filename.startswith(OURS) or code.co_name.startswith("<"):
            return
        key = f"{Path(code.co_filename).relative_to(ROOT)}:{code.co_qualname}"
        if key not in self.seen:
            self.seen.add(key)
            self.path.append(key)


_active: Recording | None = None


def _profile(frame: FrameType, event: str, arg: object) -> None:
    # 'call' also fires when a coroutine resumes; the set keeps each function once.
    if event == "call" and _active is not None:
        _active.call(frame)


def _note_sql(query: object) -> None:
    if _active is not None and isinstance(query, str):
        _active.statements.append(query)


def _patch_asyncpg() -> None:
    """Every statement the driver sends: SQLAlchemy runs prepared statements (cached per
    connection, so `prepare` alone would miss the warm ones), the ledger's batchers call the
    connection directly, and transaction control goes as a simple query."""
    conn_cls: Any = asyncpg.connection.Connection
    stmt_cls: Any = PreparedStatement
    do_execute, execute = conn_cls._do_execute, conn_cls.execute
    stmt_execute = stmt_cls._PreparedStatement__do_execute

    async def _do_execute(self: Any, query: str, *args: Any, **kw: Any) -> Any:
        _note_sql(query)
        return await do_execute(self, query, *args, **kw)

    async def _execute(self: Any, query: str, *args: Any, **kw: Any) -> Any:
        if not args:  # with arguments it goes through _do_execute
            _note_sql(query)
        return await execute(self, query, *args, **kw)

    async def _stmt_execute(self: Any, executor: Any) -> Any:
        _note_sql(self._query)
        return await stmt_execute(self, executor)

    conn_cls._do_execute, conn_cls.execute = _do_execute, _execute
    stmt_cls._PreparedStatement__do_execute = _stmt_execute


@contextmanager
def recording() -> Iterator[Recording]:
    global _active
    rec = Recording()
    _active = rec
    sys.setprofile(_profile)
    try:
        yield rec
    finally:
        sys.setprofile(None)
        _active = None


# --- SQL functions -----------------------------------------------------------------------------


async def our_sql_functions(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("""
            SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = 'public' AND NOT EXISTS (
                   SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')""")
    finally:
        await conn.close()
    return {str(r["proname"]) for r in rows}


async def track_functions(url: str) -> None:
    """Count every plpgsql/SQL function call in this scratch database, nested ones too."""
    conn = await asyncpg.connect(url)
    try:
        name = await conn.fetchval("SELECT current_database()")
        await conn.execute(f'ALTER DATABASE "{name}" SET track_functions = \'all\'')
    finally:
        await conn.close()


async def function_calls(url: str, quiet: float = 11.0) -> dict[str, int]:
    """pg_stat_user_functions once every backend has published its counts. An idle backend
    publishes within PostgreSQL's idle interval (10 s), so read until the counts have stayed
    the same for longer than that (a benchmark may wait; it is about a minute per run)."""
    conn = await asyncpg.connect(url)
    try:
        last: dict[str, int] | None = None
        since = time.monotonic()
        deadline = since + 60
        while True:
            await conn.execute("SELECT pg_stat_clear_snapshot()")
            rows = await conn.fetch("SELECT funcname, calls FROM pg_stat_user_functions")
            now = {str(r["funcname"]): int(r["calls"]) for r in rows}
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since > quiet or time.monotonic() > deadline:
                return now
            await asyncio.sleep(1.0)
    finally:
        await conn.close()


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in sorted(after.items()) if v - before.get(k, 0)}


def summarize(rec: Recording, sql_names: set[str], nested: dict[str, int]) -> dict[str, Any]:
    files = sorted({p.split(":")[0] for p in rec.path})
    named = re.compile(r"\b(" + "|".join(sorted(sql_names, key=len, reverse=True)) + r")\s*\(")
    called: dict[str, int] = {}
    ours = control = introspection = 0
    for statement in rec.statements:
        if _INTROSPECTION.search(statement):
            introspection += 1
        elif _CONTROL.match(statement):
            control += 1
        else:
            ours += 1
        for name in set(named.findall(statement)):
            called[name] = called.get(name, 0) + 1
    return {
        "functions": len(rec.path),
        "files": len(files),
        "packages": sorted({f.split("/")[0] for f in files}),
        "python_packages": sorted({f.rsplit("/", 1)[0].replace("/", ".") for f in files}),
        "sql_statements": {"total": len(rec.statements), "queries": ours,
                           "control_and_ping": control, "driver_introspection": introspection},
        "sql_functions": dict(sorted(called.items())),
        "sql_function_calls": sum(called.values()),
        "sql_functions_nested": nested,
        "sql_function_calls_nested": sum(nested.values()),
        "file_list": files,
        "path": rec.path,
        "statements": [" ".join(s.split())[:160] for s in rec.statements],
    }


# --- the one adapter: before the refactor the edges took the engine ----------------------------


@dataclass
class Edges:
    version: str
    make_app: Callable[[AsyncEngine, Any], Any]
    notifier: Callable[[AsyncEngine, Any], Any]


def _edges() -> Edges:
    from bot.telegram.notifier import Notifier
    from tests.web.conftest import make_app

    try:
        from ledger.core import Ledger
    except ImportError:  # e81dba2: setup_pay_pages(app, engine, …), Notifier(engine, bot)
        return Edges("engine", make_app, Notifier)
    # tests.web.conftest.make_app builds the Ledger itself, as bot/app.py does.
    return Edges("ledger.core.Ledger", make_app, lambda engine, bot: Notifier(Ledger(engine), bot))


# --- trace A: a tap on Pay ---------------------------------------------------------------------


async def trace_pay_tap(server_url: str, edges: Edges) -> dict[str, Any]:
    from datetime import timedelta
    from decimal import Decimal

    from aiohttp.test_utils import TestClient, TestServer

    from ledger.accounts import adjust_balance
    from ledger.invoices import create_invoice
    from ledger.migrate import upgrade
    from ledger.postgres import make_engine
    from ledger.users import ensure_user
    from tests.web.conftest import make_settings, sign_init_data, tma

    async with scratch_database(server_url, "paybot_bench_hops") as url:
        await upgrade(url)
        await track_functions(url)
        sql_names = await our_sql_functions(url)
        engine = make_engine(url)
        seller = await ensure_user(engine, 2001, "coffee_shop")
        buyer = await ensure_user(engine, 2002, "buyer")
        await adjust_balance(engine, buyer.id, 10_000, "LIQ", reason="bench funding")
        warm, traced = [await create_invoice(engine, seller_id=seller.id, title="Coffee beans",
                                             amount=1250, ton_rate=Decimal("5.00"),
                                             expires_in=timedelta(days=1)) for _ in range(2)]
        # The page cache as deployed (LEDGER_INVOICE_CACHE_SECONDS=1).
        client = TestClient(TestServer(edges.make_app(engine, make_settings(
            page_cache_seconds=1.0))))
        await client.start_server()
        user = {"id": buyer.telegram_id, "first_name": "Test", "username": buyer.username,
                "language_code": "en"}

        async def tap(invoice: Any, key: str) -> tuple[int, Any]:
            resp = await client.post(f"/pay/{invoice.public_id}/pay",
                                     json={"idempotency_key": key},
                                     headers=tma(sign_init_data(user)))
            return resp.status, await resp.json()

        try:
            status, body = await tap(warm, "warm-up")
            assert status == 200, body
            before = await function_calls(url)
            with recording() as rec:
                status, body = await tap(traced, "traced")
            assert status == 200, body
            nested = _delta(before, await function_calls(url))
        finally:
            await client.close()
            await engine.dispose()
    return {"answer": {"status": status, "invoice_status": body["invoice"]["status"]},
            **summarize(rec, sql_names, nested)}


# --- trace B: a TON transfer reaches the seller's notice ---------------------------------------


async def trace_ton_transfer(server_url: str, edges: Edges) -> dict[str, Any]:
    from aiogram import Bot
    from aiogram.client.default import DefaultBotProperties
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer
    from aiogram.enums import ParseMode
    from aiohttp import web

    from tests.bot.botapi import BotApiStandIn
    from tests.watchers.conftest import RATE, make_world
    from tests.watchers.standins import DESTINATION, TXS, Chain, toncenter_app
    from watchers.ton_sources import HttpApiSource
    from watchers.ton_watcher import TonWatcher

    index = next(i for i, t in enumerate(TXS) if t["case"] == TRACKED_CASE)
    bot_api = BotApiStandIn()
    await bot_api.start()
    bot = Bot(bot_api.token, session=AiohttpSession(api=TelegramAPIServer.from_base(bot_api.url)),
              default=DefaultBotProperties(parse_mode=ParseMode.HTML,
                                           link_preview_is_disabled=True))

    async def one_world(traced: bool) -> dict[str, Any]:
        async with scratch_database(server_url, "paybot_bench_hops") as url:
            chain = Chain(visible=index)  # everything before the tracked transfer
            runner = web.AppRunner(toncenter_app(chain), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            world = await make_world(url)
            await track_functions(url)
            sql_names = await our_sql_functions(url)
            watcher = TonWatcher(world.engine, HttpApiSource(f"http://127.0.0.1:{port}/api/v2"),
                                 DESTINATION, currency="LIQ", ton_rate=RATE)
            notifier = edges.notifier(world.engine, bot)
            try:
                await watcher.poll_once()  # the fixture's prefund and deploy: nothing to pay
                await notifier.deliver_due()
                chain.visible = index + 1
                sent_before = len(bot_api.calls_of("sendMessage"))
                before = await function_calls(url) if traced else {}
                with recording() as rec:
                    settled = await watcher.poll_once()
                    report = await notifier.deliver_due()
                nested = _delta(before, await function_calls(url)) if traced else {}
                sent = bot_api.calls_of("sendMessage")[sent_before:]
                assert settled == 1 and report.delivered >= 1, (settled, report)
                outcome = (await world.outcomes())[TRACKED_CASE]
            finally:
                await watcher.close()
                await world.engine.dispose()
                await runner.cleanup()
        return {"answer": {"settled": settled, "outcome": outcome,
                           "notices_sent": [{"chat_id": c.params.get("chat_id"),
                                             "text": c.params.get("text")} for c in sent]},
                **summarize(rec, sql_names, nested)}

    try:
        await one_world(traced=False)  # warm-up: the same transfer in another database
        return await one_world(traced=True)
    finally:
        await bot.session.close()
        await bot_api.close()


# --- main --------------------------------------------------------------------------------------


async def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench.hops")
    p.add_argument("--database-url", default=os.environ.get("DATABASE_URL"),
                   help="a PostgreSQL server (default: DATABASE_URL, else an embedded one)")
    args = p.parse_args(argv)
    _patch_asyncpg()
    edges = _edges()
    with server(args.database_url) as server_url:
        pay = await trace_pay_tap(server_url, edges)
        ton = await trace_ton_transfer(server_url, edges)
    return {"code": str(ROOT), "edges_take": edges.version,
            "traces": {"pay_tap": pay, "ton_transfer": ton}}


def run() -> None:
    result = asyncio.run(main())
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    run()
