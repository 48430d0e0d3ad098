"""Bot benchmark: `/start pay_<id>` updates per second through the paybot dispatcher with the
real database, against aiogram's trivial echo handler in the same run; plus, when the web half
is there (bench/web.py), the pay page against hello world and QR render times.

    python -m bench.bot [--database-url URL] [--seconds 1.5] [--rounds 3] [--no-web]

Prints one JSON object. Two transports, both without network:
- `bot_api_process`: the replies go to a minimal Bot API server in another process over local
  HTTP, as they would to Telegram or a self-hosted Bot API server (the headline ratio);
- `in_process`: the replies are answered inside the process by a session that still serialises
  each request and validates each response, so only dispatcher + handler + database remain.
Each update is fed with `Dispatcher.feed_update` by `concurrency` closed-loop workers, one
Telegram user each (as polling runs handlers as tasks). `rounds` rounds of back-to-back runs;
rates and ratios are medians over the rounds.
All workers open the same invoice (a link posted in a channel): `start_pay` runs as deployed,
with the cached invoice read (LEDGER_INVOICE_CACHE_SECONDS=1); `start_pay_uncached` reads
the invoice from PostgreSQL for every update. `help` is the same dispatcher without any
database work.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import socket
import statistics
import sys
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.base import BaseSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.methods import GetMe, SendMessage, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import InputFile, Message, Update
from aiohttp import web
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.common import scratch_database, server
from bot.settings import LedgerSettings, Settings, TelegramSettings, TonSettings, WebSettings
from bot.telegram import create_dispatcher
from ledger.core import Ledger
from ledger.invoices import create_invoice
from ledger.migrate import upgrade
from ledger.postgres import make_engine
from ledger.users import ensure_user

TARGET_RATIO = 0.5
TOKEN = "123456:bench-token-for-a-local-bot-api"
BOT_USER = {"id": 123456, "is_bot": True, "first_name": "paybot", "username": "paybot_bench"}
ADDRESS = "0:175ff594b2dfe1477c71b79d12547040db4fe810cf9ca7e54ed53972a88ace42"
FIRST_BUYER = 8_100_000_000


# --- a Bot API that answers without a network ---------------------------------------------------

def _reply(method: str, params: dict[str, Any], message_ids: itertools.count) -> Any:
    if method.lower() == "getme":
        return BOT_USER
    if method.lower() == "sendmessage":
        return {"message_id": next(message_ids), "date": int(time.time()), "text": params["text"],
                "chat": {"id": int(params["chat_id"]), "type": "private"}, "from": BOT_USER}
    return True


def run_bot_api(port: int) -> None:
    """The Bot API process: `POST /bot<token>/<method>` as Telegram answers it."""
    ids = itertools.count(1)

    async def handle(request: web.Request) -> web.Response:
        params = dict(await request.post())
        return web.json_response({"ok": True, "result": _reply(request.match_info["method"],
                                                                 params, ids)})

    app = web.Application()
    app.router.add_post("/bot{token}/{method}", handle)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


class InProcessSession(BaseSession):
    """Answers in process, but pays what a real session pays per call: the request is
    serialised as for sending, the answer parsed and validated from JSON."""

    def __init__(self) -> None:
        super().__init__()
        self.ids = itertools.count(1)
        self.sent: deque[str] = deque(maxlen=64)  # the latest replies, to check them

    async def close(self) -> None:
        return None

    async def make_request(
        self, bot: Bot, method: TelegramMethod[TelegramType],
        timeout: int | None = None,  # noqa: ASYNC109 - the BaseSession signature
    ) -> TelegramType:
        files: dict[str, InputFile] = {}
        params = {key: self.prepare_value(value, bot=bot, files=files)
                  for key, value in method.model_dump(warnings=False).items()}
        if isinstance(method, SendMessage):
            self.sent.append(str(params["text"]))
        result = _reply(method.__api_method__, params, self.ids)
        response = self.check_response(bot, method, 200, self.json_dumps(
            {"ok": True, "result": result}))
        return response.result  # type: ignore[return-value]

    async def stream_content(self, *args: Any, **kwargs: Any) -> AsyncGenerator[bytes, None]:
        raise NotImplementedError
        yield b""  # pragma: no cover


# --- the two dispatchers ------------------------------------------------------------------------

def echo_dispatcher() -> Dispatcher:
    """aiogram's echo bot (examples/echo_bot.py): copy the message back."""
    router = Router(name="echo")

    @router.message(F.text)
    async def echo(message: Message) -> None:
        await message.send_copy(chat_id=message.chat.id)

    dp = Dispatcher()
    dp.include_router(router)
    return dp


def bench_settings(api_url: str | None) -> Settings:
    settings = Settings()
    settings.telegram = TelegramSettings(bot_token=SecretStr(TOKEN), api_url=api_url,
                                         bot_username="paybot_bench")
    settings.web = WebSettings(public_url="https://pay.example.com")
    settings.ledger = LedgerSettings(currency="LIQ", ton_rate=Decimal("5.00"))
    settings.ton = TonSettings(destination_address=ADDRESS)
    return settings


def make_bot(session: BaseSession) -> Bot:
    return Bot(TOKEN, session=session, default=DefaultBotProperties(parse_mode=ParseMode.HTML))


def updates_for(bot: Bot, text: str, workers: int) -> list[Update]:
    """One update per worker (a user each), bound to the bot so feed_update takes it as is."""
    return [
        Update.model_validate({"update_id": n + 1, "message": {
            "message_id": n + 1, "date": int(time.time()), "text": text,
            "chat": {"id": FIRST_BUYER + n, "type": "private", "first_name": "Buyer"},
            "from": {"id": FIRST_BUYER + n, "is_bot": False, "first_name": "Buyer",
                     "language_code": "en"}}}, context={"bot": bot})
        for n in range(workers)
    ]


async def closed_loop(dp: Dispatcher, bot: Bot, updates: list[Update], seconds: float) -> float:
    """Updates per second with one worker per update (user), each feeding its next update as
    soon as the last one is handled."""
    handled = 0
    deadline = time.perf_counter() + seconds

    async def worker(update: Update) -> None:
        nonlocal handled
        while time.perf_counter() < deadline:
            await dp.feed_update(bot, update)
            handled += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(u) for u in updates))
    return handled / (time.perf_counter() - started)


async def compare(
    engine: AsyncEngine, make: Callable[[], Bot], settings: Settings, texts: dict[str, str], *,
    seconds: float, concurrency: int, rounds: int,
) -> dict[str, Any]:
    """Echo against our dispatcher for each of `texts` (name -> message text). A name ending
    in `_uncached` runs with the invoice-card snapshot off (every card reads the database)."""
    bots = [make() for _ in range(2)]
    echo = echo_dispatcher()
    ours = create_dispatcher(Ledger(engine, invoice_cache_seconds=1.0), settings)
    ledgers = {False: ours["ledger"], True: Ledger(engine, invoice_cache_seconds=0)}
    targets = {"echo": (echo, bots[0], updates_for(bots[0], "hello", concurrency))}
    targets |= {name: (ours, bots[1], updates_for(bots[1], text, concurrency))
                for name, text in texts.items()}

    async def run(name: str, dp: Dispatcher, bot: Bot, updates: list[Update],
                  span: float) -> float:
        if dp is ours:
            dp["ledger"] = ledgers[name.endswith("_uncached")]
        return await closed_loop(dp, bot, updates, span)

    try:
        for name, target in targets.items():  # warm up: users exist, pools are full
            await run(name, *target, min(0.5, seconds))
        runs: dict[str, list[float]] = {name: [] for name in targets}
        for _ in range(rounds):
            for name, target in targets.items():
                runs[name].append(await run(name, *target, seconds))
    finally:
        for bot in bots:
            await bot.session.close()
    out: dict[str, Any] = {f"{name}_updates_per_s": round(statistics.median(rates), 1)
                           for name, rates in runs.items()}
    for name in texts:
        if name.startswith("start_pay"):
            # Each round's runs are back to back: the median of per-round ratios is the least
            # disturbed by other load on the machine.
            ratio = statistics.median(ours / echo for ours, echo in zip(runs[name], runs["echo"],
                                                                          strict=True))
            out[f"ratio{name.removeprefix('start_pay')}"] = round(ratio, 3)
    out["meets_target"] = out["ratio"] >= TARGET_RATIO
    return out


async def measure_bot(
    engine: AsyncEngine, *, seconds: float = 1.5, concurrency: int = 32, rounds: int = 3
) -> dict[str, Any]:
    seller = await ensure_user(engine, FIRST_BUYER - 1, "bench_seller")
    invoice = await create_invoice(engine, seller_id=seller.id, title="Benchmark coffee",
                                   amount=1250, ton_rate=Decimal("5.00"),
                                   expires_in=timedelta(days=1))
    pay_text = f"/start pay_{invoice.public_id}"
    result: dict[str, Any] = {"update": pay_text.split("_")[0] + "_<id>",
                              "target_ratio": TARGET_RATIO, "concurrency": concurrency,
                              "seconds_per_run": seconds, "rounds": rounds}

    sessions: list[InProcessSession] = []

    def in_process() -> Bot:
        sessions.append(InProcessSession())
        return make_bot(sessions[-1])

    # /help runs the same dispatcher without touching the database: the framework's share.
    result["in_process"] = await compare(
        engine, in_process, bench_settings(None),
        {"help": "/help", "start_pay": pay_text, "start_pay_uncached": pay_text},
        seconds=seconds,
        concurrency=concurrency, rounds=rounds)
    # The handler really answered with the invoice card (not an error message).
    if not any("Benchmark coffee" in text for s in sessions for text in s.sent):
        raise RuntimeError(f"unexpected replies: {[list(s.sent)[-2:] for s in sessions]}")

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    api = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.bot",
                                               "--bot-api-port", str(port))
    try:
        base = f"http://127.0.0.1:{port}"
        await _wait_for(base)

        def over_http() -> Bot:
            return make_bot(AiohttpSession(api=TelegramAPIServer.from_base(base)))

        result["bot_api_process"] = await compare(
            engine, over_http, bench_settings(base),
            {"start_pay": pay_text, "start_pay_uncached": pay_text}, seconds=seconds,
            concurrency=concurrency, rounds=rounds)
    finally:
        api.terminate()
        await api.wait()
    result["ratio"] = result["bot_api_process"]["ratio"]
    result["ratio_uncached"] = result["bot_api_process"]["ratio_uncached"]
    result["meets_target"] = result["ratio"] >= TARGET_RATIO
    return result


async def _wait_for(base: str) -> None:
    bot = make_bot(AiohttpSession(api=TelegramAPIServer.from_base(base)))
    try:
        for _ in range(200):
            try:
                await bot(GetMe())
                return
            except Exception:
                await asyncio.sleep(0.05)
        raise RuntimeError("the Bot API process did not start")
    finally:
        await bot.session.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    with server(args.database_url) as server_url:
        async with scratch_database(server_url, "paybot_bench_bot") as url:
            await upgrade(url)
            engine = make_engine(url, pool_size=max(4, args.concurrency // 2))
            try:
                out: dict[str, Any] = {"bot": await measure_bot(
                    engine, seconds=args.seconds, concurrency=args.concurrency,
                    rounds=args.rounds)}
                if not args.no_web:
                    out["web"] = await _web(engine, args.web_seconds)
            finally:
                await engine.dispose()
    out["total_seconds"] = round(time.perf_counter() - started, 1)
    return out


async def _web(engine: AsyncEngine, seconds: float) -> dict[str, Any]:
    try:
        from bench.web import measure_pay_page
    except ImportError:  # the web half is not there (yet)
        return {"skipped": "bench/web.py not found"}
    return await measure_pay_page(engine, seconds=seconds)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.bot", description=__doc__.split("\n")[0])
    p.add_argument("--database-url", help="a PostgreSQL server (default: embedded)")
    p.add_argument("--seconds", type=float, default=1.5, help="per timed run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--web-seconds", type=float, default=1.5)
    p.add_argument("--no-web", action="store_true", help="skip the pay page benchmark")
    p.add_argument("--bot-api-port", type=int, help=argparse.SUPPRESS)  # the Bot API process
    args = p.parse_args()
    if args.bot_api_port:
        run_bot_api(args.bot_api_port)
        return
    import logging

    logging.disable(logging.INFO)  # aiogram logs every update at INFO
    print(json.dumps(asyncio.run(run(args)), indent=2))


if __name__ == "__main__":
    main()
