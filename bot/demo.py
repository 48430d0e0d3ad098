"""`paybot demo`: the first five minutes without a Telegram token.

In its own data directory (an embedded PostgreSQL; DATABASE_URL is never touched) it makes a
seller and a buyer with money, issues two invoices — one paid from the buyer's balance, one
waiting for TON — prints their pay pages and the operator commands to try, then serves the web
app (pay pages and the seller API) until Ctrl+C. Running it again shows the same demo: every
step carries its own idempotency key, so nothing is issued or paid twice.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import signal
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.settings import Settings
from ledger.accounts import adjust_balance, balance
from ledger.core import Ledger
from ledger.invoice_reads import get_invoice
from ledger.invoices import issue_invoice, new_invoice
from ledger.migrate import upgrade
from ledger.models import Invoice, User
from ledger.money import display_amount
from ledger.payments import pay_from_balance
from ledger.postgres import embedded_postgres, make_engine
from ledger.users import ensure_user

DEFAULT_DATA_DIR = Path(".data-demo")
# Telegram ids no real account has (real ones are far larger): the demo's people.
SELLER_TG, BUYER_TG = 1_000_001, 1_000_002
# A well-formed TON address, so the waiting invoice shows its QR and wallet links. The demo
# runs no watcher: nothing sent to it would ever be seen here.
DEMO_TON_ADDRESS = "UQCD39VS5jcptHL8vMjEXrzGaRcCVYto7HUn4bpAOg8xqEBI"


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    d = sub.add_parser("demo", help="a seller, a buyer and two invoices to look at, no "
                                    "Telegram token needed (own data dir)")
    d.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                   help=f"where the demo's embedded PostgreSQL lives (default {DEFAULT_DATA_DIR})")
    d.add_argument("--no-serve", action="store_true",
                   help="set up and print, then exit instead of serving the pay pages")


@dataclass(frozen=True, slots=True)
class Demo:
    seller: User
    buyer: User
    paid: Invoice
    waiting: Invoice


async def seed(engine: AsyncEngine, settings: Settings) -> Demo:
    """The demo's people, money and invoices; the same ones again on every run."""
    seller = await ensure_user(engine, SELLER_TG, "demo_seller", "en", "Dana", "Seller")
    buyer = await ensure_user(engine, BUYER_TG, "demo_buyer", "en", "Boris", "Buyer")
    await adjust_balance(engine, buyer.id, 5000, "LIQ", "demo: starting balance",
                         reference="demo:buyer-balance")
    rate = settings.ledger.ton_rate
    paid, _ = await issue_invoice(engine, new_invoice(
        seller_id=seller.id, idempotency_key="demo:coffee", request_hash=b"demo",
        title="Coffee beans", amount=1250, payload={"item_id": "coffee-beans"}, ton_rate=rate))
    await pay_from_balance(engine, paid.public_id, buyer.id, "demo:pay-coffee")
    waiting, _ = await issue_invoice(engine, new_invoice(
        seller_id=seller.id, idempotency_key="demo:tea", request_hash=b"demo",
        title="Tea sampler", amount=700, payload={"item_id": "tea-sampler"}, ton_rate=rate))
    # Read back as they are now (a rerun may find the waiting one expired, say).
    return Demo(seller, buyer, await get_invoice(engine, paid.public_id),
                await get_invoice(engine, waiting.public_id))


async def report(engine: AsyncEngine, demo: Demo, settings: Settings, data_dir: Path) -> str:
    base = settings.web.public_url.rstrip("/")
    local = f"http://{settings.web.host}:{settings.web.port}"
    env = f"env -u DATABASE_URL PAYBOT_DATA_DIR={shlex.quote(str(data_dir))}"
    lines = [
        f"paybot demo: data in {data_dir} (embedded PostgreSQL; DATABASE_URL is not used)",
        "",
    ]
    for role, user in (("Seller", demo.seller), ("Buyer ", demo.buyer)):
        lines.append(f"{role}  @{user.username} (Telegram id {user.telegram_id}), balance "
                     f"{display_amount(await balance(engine, user.id), 'LIQ')}")
    lines += ["", "Invoices (open the links in a browser: what a guest sees):"]
    for inv, state in ((demo.paid, "paid from the buyer's balance"),
                       (demo.waiting, f"waiting for TON, comment {demo.waiting.comment}")):
        ton = f" (≈ {display_amount(inv.ton_amount, 'TON')})" if inv.ton_amount else ""
        amount = display_amount(inv.amount, inv.currency)
        lines.append(f"  {inv.number}  {inv.title}  {amount}{ton}  [{inv.status}] {state}")
        lines.append(f"      {base}/pay/{inv.public_id}")
    lines += [
        "",
        "Try, in another terminal (the same data dir; the server is shared):",
        f"  {env} paybot admin balance {BUYER_TG}",
        f"  {env} paybot admin credit {BUYER_TG} 5.00 --reason \"demo top-up\"",
        f"  {env} paybot admin token {SELLER_TG}        # an API token for the seller",
        f"  curl -H \"Authorization: Bearer <token>\" {local}/api/v1/invoices",
        f"  {env} paybot admin transfers",
        f"  {env} paybot admin check",
        "",
        "With a bot token from @BotFather in TELEGRAM_BOT_TOKEN, `make run` starts the real thing.",
    ]
    return "\n".join(lines)


async def _serve(settings: Settings, engine: AsyncEngine) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    from bot.app import build_web_app  # the web app only when serving: `--no-serve` stays light

    runner = web.AppRunner(build_web_app(settings, Ledger(engine)))
    await runner.setup()
    await web.TCPSite(runner, settings.web.host, settings.web.port).start()
    print(f"\nServing http://{settings.web.host}:{settings.web.port}; Ctrl+C to stop.",
          flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


async def _main(settings: Settings, url: str, data_dir: Path, serve: bool) -> int:
    await upgrade(url)
    engine = make_engine(url, pool_size=4)
    try:
        demo = await seed(engine, settings)
        print(await report(engine, demo, settings, data_dir), flush=True)
        if serve:
            await _serve(settings, engine)
    finally:
        await engine.dispose()
    return 0


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    data_dir = args.data_dir.resolve()
    # The demo is for looking around: no bot, no chain watcher, no real database.
    settings.telegram.bot_token = None
    if not settings.ton.destination_address:
        settings.ton.destination_address = DEMO_TON_ADDRESS
    with embedded_postgres(data_dir) as url, contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_main(settings, url, data_dir, serve=not args.no_serve))
    return 0
