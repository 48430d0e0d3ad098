"""Conversations that survive restarts, and two `paybot run` replicas sharing one bot.

(a) A seller starts /invoice, the process is rebuilt (a new dispatcher with a new storage
    object on the same database), and the seller finishes: the invoice has the first title.
(b) Two `paybot run` processes in webhook mode on one database, behind a round-robin (each
    update goes to the next replica): one conversation spans both, a double tap landing on
    both creates one invoice, every notice is sent exactly once, and one TON watcher is active
    while the other stands by (and takes over when the active one is killed).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import socket
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.telegram import create_dispatcher
from ledger.accounts import adjust_balance
from ledger.core import Ledger
from ledger.invoices import list_invoices
from ledger.users import ensure_user
from tests.bot.botapi import BotApiStandIn, ChatMessage
from tests.bot.client import TgClient
from tests.conftest import run_sql
from tests.watchers.conftest import EXPECTED, Toncenter, World, make_world
from tests.watchers.standins import DESTINATION, TXS, Chain, toncenter_app

WAIT = 60.0  # upper bound for the replicas to react; not a timing assertion
SECRET = "replica-webhook-secret"
HOOK_PATH = "/tg/hook"
# How seller notices, receipts and credit notices begin (English).
NOTICE = ("💰 <b>Paid:", "🧾 <b>Receipt:", "💳 <b>Balance credited:")
_update_ids = itertools.count(7_000_000)


async def eventually(check: Callable[[], Any], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.05)


# --- (a) a restart in the middle of /invoice ---------------------------------------------------

async def test_a_conversation_survives_a_restart(engine, settings, bot, bot_api,
                                                 make_user) -> None:
    seller = await make_user()
    before = TgClient(bot_api, create_dispatcher(Ledger(engine), settings), bot, seller)
    [ask_title] = await before.send("/invoice")
    assert "Send the title" in ask_title.plain
    [ask_amount] = await before.send("Coffee beans")
    assert "How much" in ask_amount.plain

    # The process restarts: a new dispatcher, a new storage object, nothing kept in memory.
    after = TgClient(bot_api, create_dispatcher(Ledger(engine), settings), bot, seller)
    [ask_kind] = await after.send("12.50")
    assert "Who can pay it?" in ask_kind.plain
    [ask_expiry] = (await after.tap(ask_kind, "One buyer")).sent
    [ask_item] = (await after.tap(ask_expiry, "24 h")).sent
    tap = await after.tap(ask_item, "Skip")
    assert not tap.alert, tap.answer_text  # not "outdated": the form was still there
    [invoice] = await list_invoices(engine, seller.id)
    assert (invoice.title, invoice.amount, invoice.kind) == ("Coffee beans", 1250, "one_time")


# --- (b) two replicas ------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Replica:
    name: str
    port: int
    proc: asyncio.subprocess.Process
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def handled(self) -> set[int]:
        return {int(n) for n in re.findall(r"Update id=(\d+) is (?:not )?handled", self.log)}


async def _start(name: str, env: dict[str, str], tmp_path: Path) -> Replica:
    port = _free_port()
    log_path = tmp_path / f"{name}.log"
    with log_path.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "run",
            env=env | {"WEB_PORT": str(port), "PAYBOT_DATA_DIR": str(tmp_path / name)},
            stdout=out, stderr=asyncio.subprocess.STDOUT,
        )
    replica = Replica(name, port, proc, log_path)

    async def healthy() -> bool:
        assert proc.returncode is None, replica.log
        try:
            async with aiohttp.ClientSession() as http, http.get(
                    f"http://127.0.0.1:{port}/healthz") as r:
                return r.status == 200
        except aiohttp.ClientConnectionError:
            return False

    await eventually(healthy, f"{name} serves")
    return replica


async def _stop(replica: Replica) -> None:
    if replica.proc.returncode is None:
        replica.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(replica.proc.wait(), 60)
        except TimeoutError:
            replica.proc.kill()
            await replica.proc.wait()


@pytest.fixture
async def world(scratch_database: Any) -> AsyncIterator[World]:
    """A database of its own (the replicas' notifiers deliver every notice in it), with the TON
    fixture's invoices and users (as in tests/watchers)."""
    w = await make_world(await scratch_database())
    yield w
    await w.engine.dispose()


@pytest.fixture
async def toncenter() -> AsyncIterator[Toncenter]:
    chain = Chain()
    runner = web.AppRunner(toncenter_app(chain))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield Toncenter(f"http://127.0.0.1:{runner.addresses[0][1]}/api/v2", chain)
    chain.released.set()
    await runner.cleanup()


@pytest.fixture
async def replicas(world: World, toncenter: Toncenter, bot_api: BotApiStandIn,
                   tmp_path: Path) -> AsyncIterator[list[Replica]]:
    inherited = ("TELEGRAM_", "TON_", "WEB_", "JOBS_", "LEDGER_", "API_", "PAYBOT_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(inherited)} | {
        "DATABASE_URL": world.url,
        "WEB_HOST": "127.0.0.1", "WEB_PUBLIC_URL": "https://pay.example.com",
        "TELEGRAM_BOT_TOKEN": bot_api.token, "TELEGRAM_API_URL": bot_api.url,
        "TELEGRAM_BOT_USERNAME": "paybot_test_bot", "LEDGER_INVOICE_CACHE_SECONDS": "0",
        "TELEGRAM_WEBHOOK_URL": f"https://bot.example.com{HOOK_PATH}",
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
        "TON_DESTINATION_ADDRESS": DESTINATION, "TON_SOURCE": "http",
        "TON_API_URL": toncenter.url, "TON_POLL_SECONDS": "0.2",
        "JOBS_NOTIFY_SECONDS": "0.2", "LEDGER_CURRENCY": "LIQ", "LEDGER_TON_RATE": "5",
    }
    started: list[Replica] = []
    try:
        for name in ("a", "b"):
            started.append(await _start(name, env, tmp_path))
        yield started
    finally:
        for replica in started:
            await _stop(replica)


class RoundRobin:
    """The load balancer in front of the replicas: each update goes to the next one."""

    def __init__(self, replicas: list[Replica], http: aiohttp.ClientSession) -> None:
        self.replicas, self.http = replicas, http
        self._next = itertools.cycle(replicas)
        self.sent: dict[int, str] = {}  # update id -> replica name

    async def post(self, update: dict[str, Any], to: Replica | None = None) -> int:
        replica = to or next(self._next)
        update_id = next(_update_ids)
        async with self.http.post(
                f"http://127.0.0.1:{replica.port}{HOOK_PATH}", json={"update_id": update_id,
                                                                      **update},
                headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}) as r:
            assert r.status == 200, await r.text()
        self.sent[update_id] = replica.name
        return update_id


def _bot_said(api: BotApiStandIn, chat: int, test: Callable[[ChatMessage], bool],
              after: int = 0) -> ChatMessage | None:
    found = [m for m in api.messages(chat) if m.message_id > after and test(m)]
    return found[-1] if found else None


async def _wait_said(api: BotApiStandIn, chat: int, test: Callable[[ChatMessage], bool],
                     what: str, after: int = 0) -> ChatMessage:
    await eventually(lambda: _bot_said(api, chat, test, after) is not None, what)
    found = _bot_said(api, chat, test, after)
    assert found is not None
    return found


def _last_id(api: BotApiStandIn, chat: int) -> int:
    return max((m.message_id for m in api.chats.get(chat, {}).values()), default=0)


async def test_two_replicas_share_one_conversation_and_one_watcher(
        replicas: list[Replica], world: World, bot_api: BotApiStandIn) -> None:
    a, b = replicas
    seller_user = await ensure_user(world.engine, 5_550_001)
    buyer_user = await ensure_user(world.engine, 5_550_002)
    await adjust_balance(world.engine, buyer_user.id, 5000, "LIQ", reason="test funding")
    seller = TgClient(bot_api, None, None, seller_user)  # type: ignore[arg-type]
    buyer = TgClient(bot_api, None, None, buyer_user)  # type: ignore[arg-type]
    sid, bid = seller.id, buyer.id

    async with aiohttp.ClientSession() as http:
        lb = RoundRobin(replicas, http)

        async def say(person: TgClient, text: str, expect: str) -> ChatMessage:
            mark = _last_id(bot_api, person.id)
            await lb.post(person.message_update(text))
            return await _wait_said(bot_api, person.id, lambda m: expect in m.plain,
                                    f"reply to {text!r}", mark)

        async def tap(person: TgClient, msg: ChatMessage, label: str,
                      expect: Callable[[ChatMessage], bool], what: str) -> ChatMessage:
            await lb.post(person.callback_update(msg, msg.button(label)["callback_data"]))
            # a new message, or this one edited (each `expect` matches only the reaction)
            return await _wait_said(bot_api, person.id, expect, what)

        await say(seller, "/invoice", "Send the title")  # a
        await say(seller, "Coffee beans", "How much")  # b
        ask_kind = await say(seller, "12.50", "Who can pay it?")  # a
        ask_expiry = await tap(seller, ask_kind, "One buyer",
                               lambda m: "24 h" in m.button_texts, "expiry asked")  # b
        ask_item = await tap(seller, ask_expiry, "24 h",
                             lambda m: "Item id" in m.plain, "item asked")  # a

        # "Skip" tapped twice, the taps landing on both replicas at once: one invoice.
        data = ask_item.button("Skip")["callback_data"]
        mark = _last_id(bot_api, sid)
        taps = [seller.callback_update(ask_item, data) for _ in replicas]
        await asyncio.gather(*(lb.post(t, to=r) for t, r in zip(taps, replicas, strict=True)))
        tap_ids = {t["callback_query"]["id"] for t in taps}
        await eventually(lambda: tap_ids <= {c.params.get("callback_query_id") for c in
                                             bot_api.calls_of("answerCallbackQuery")},
                         "both taps answered")
        created = await _wait_said(bot_api, sid, lambda m: m.photo is not None,
                                   "invoice created", mark)
        [invoice] = await list_invoices(world.engine, seller_user.id)
        assert (invoice.title, invoice.amount, invoice.kind) == ("Coffee beans", 1250,
                                                                  "one_time")
        assert invoice.number in (created.caption or "")
        assert [m for m in bot_api.messages(sid) if m.photo is not None] == [created]

        # The buyer pays in the bot, each step on the next replica.
        card = await say(buyer, f"/start pay_{invoice.public_id}", "waiting for payment")
        confirm = await tap(buyer, card, "from balance",
                            lambda m: any("Confirm payment" in t for t in m.button_texts),
                            "confirmation")
        await tap(buyer, confirm, "Confirm payment",
                  lambda m: m.plain.startswith("✅ Paid"), "paid")

    # Every update was handled by the replica it was sent to, and both got some.
    assert {a.name, b.name} == set(lb.sent.values())
    await eventually(lambda: set(lb.sent) <= a.handled() | b.handled(), "updates handled")
    assert a.handled() & b.handled() == set()
    for update_id, name in lb.sent.items():
        assert update_id in {"a": a, "b": b}[name].handled()

    # The TON watcher: the chain settled exactly once, by one replica; the other stands by.
    async def chain_settled() -> bool:
        return await world.outcomes() == EXPECTED

    await eventually(chain_settled, "the fixture chain settled")
    rows = await run_sql(world.engine, "SELECT count(*) AS n FROM ton_transfers")
    assert rows == [{"n": len(TXS)}]
    await eventually(lambda: all("TON watcher" in r.log for r in replicas), "both watchers")
    active = [r for r in replicas if "TON watcher active on" in r.log]
    assert len(active) == 1, [r.log for r in replicas]
    [standby] = [r for r in replicas if r is not active[0]]
    assert "another TON watcher is active" in standby.log

    # Notices: every one delivered, each sent exactly once.
    async def all_delivered() -> bool:
        rows = await run_sql(world.engine, "SELECT count(*) AS n FROM outbox WHERE topic = "
                             "'telegram' AND delivered_at IS NULL AND failed_at IS NULL")
        return rows == [{"n": 0}]

    await eventually(all_delivered, "notices delivered")
    events = await run_sql(world.engine, """
        SELECT u.telegram_id FROM outbox o
          JOIN users u ON u.id = CAST(o.payload ->> 'recipient' AS bigint)
         WHERE o.topic = 'telegram' AND o.delivered_at IS NOT NULL""")
    expected = Counter(int(e["telegram_id"]) for e in events)  # type: ignore[call-overload]
    assert expected[sid] == 1 and expected[bid] == 1  # the seller's notice, the receipt
    assert expected[world.seller.telegram_id] >= 1  # TON payments told to the fixture seller
    sent = Counter(int(c.params["chat_id"]) for c in bot_api.calls_of("sendMessage")
                   if str(c.params.get("text", "")).startswith(NOTICE))
    assert sent == expected

    # The active watcher's replica dies: the other takes over.
    active[0].proc.kill()
    await active[0].proc.wait()
    await eventually(lambda: "TON watcher active on" in standby.log, "the standby takes over")

    for replica in replicas:
        assert "Traceback" not in replica.log, replica.log
