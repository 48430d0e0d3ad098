"""Operator commands for card and Stars payments: `paybot admin rails …`.

    paybot admin rails [--held] [--rail stars|card:<provider>] [--limit N]
    paybot admin rails stars                      Stars received, refunded, held
    paybot admin rails refund <id> --reason "…"   a Stars payment, refunded through Telegram
    paybot admin rails record-refund <id> --reason "…"
                                                  a card payment already refunded in the
                                                  provider's dashboard, booked in the ledger

Listing reads only; a refund calls Telegram with the bot of TELEGRAM_BOT_TOKEN (handed in by
the CLI, the composition root, as `args.make_bot`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.core import Ledger
from ledger.errors import RefundNotSupported
from ledger.rails import RailPayment, RailRefund, format_provider_amount

if TYPE_CHECKING:
    from aiogram import Bot

__all__ = ["COMMANDS", "READ_ONLY", "add_parsers"]

READ_ONLY = frozenset({None, "stars"})  # rails_command values that only read
PENDING = 4  # exit code of a refund Telegram did not answer (the job retries it)
SHOWN = ("id", "received", "rail", "channel", "reference", "provider ref", "amount", "outcome",
         "hold", "invoice", "refund")


def add_parsers(admin: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    rails = admin.add_parser(
        "rails", help="card and Telegram Stars payments: list, Stars totals, refunds",
        description="Without a command: the latest card and Stars payments with their outcome "
                    "and refund. A card's telegram_payment_charge_id (reference) and "
                    "provider_payment_charge_id (provider ref) match it in the provider's "
                    "dashboard.")
    rails.add_argument("--held", action="store_true",
                       help="only payments held for a refund (nobody refunded them yet)")
    rails.add_argument("--rail", help="only this rail: stars, card:stripe, ...")
    rails.add_argument("--limit", type=int, default=50)
    sub = rails.add_subparsers(dest="rails_command")
    sub.add_parser("stars", help="Stars received, refunded and held, in total")
    r = sub.add_parser("refund", help="refund a Stars payment through Telegram (as operator)")
    r.add_argument("rail_payment_id", type=int)
    r.add_argument("--reason", required=True)
    c = sub.add_parser("record-refund",
                       help="book a refund made outside paybot (a card, in the provider's "
                            "dashboard)")
    c.add_argument("rail_payment_id", type=int)
    c.add_argument("--reason", required=True)


def reads_only(args: argparse.Namespace) -> bool:
    return getattr(args, "rails_command", None) in READ_ONLY


def _printable(text: str | None, width: int = 48) -> str:
    # References come from providers and payers: no terminal control characters.
    if not text:
        return "-"
    clean = "".join(c if c.isprintable() else "?" for c in text)
    return clean if len(clean) <= width else clean[: width - 1] + "…"


def _refund(refund: RailRefund | None) -> str:
    if refund is None:
        return "-"
    text = f"refund {refund.id} {refund.status}"
    return f"{text} ({_printable(refund.error, 60)})" if refund.error else text


def _line(p: RailPayment) -> str:
    return "\t".join([
        str(p.id), f"{p.received_at:%Y-%m-%d %H:%M:%S}", p.rail, p.channel,
        _printable(p.reference), _printable(p.provider_reference),
        f"{format_provider_amount(p.amount, p.currency)} {p.currency}", p.outcome,
        p.hold_reason or "-", f"INV-{p.invoice_public_id}" if p.invoice_public_id else "-",
        _refund(p.refund),
    ])


async def _list(ledger: Ledger, args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 1000:
        print("--limit must be between 1 and 1000", file=sys.stderr)
        return 1
    rows = await ledger.rail_payments(held_only=args.held, rail=args.rail, limit=args.limit)
    if rows:
        print("\t".join(SHOWN))
    for p in rows:
        print(_line(p))
    what = "held card/Stars payments" if args.held else "card/Stars payments"
    print(f"{len(rows)} {what}" if rows else f"no {what}", file=sys.stderr)
    return 0


async def _stars(ledger: Ledger) -> int:
    totals: dict[str, Any] = await ledger.stars_received()
    for key, value in totals.items():
        print(f"{key}\t{value}")
    return 0


def _said(refund: RailRefund) -> str:
    amount = f"{format_provider_amount(refund.amount, refund.currency)} {refund.currency}"
    if refund.status == "done":
        return f"refund {refund.id}: {amount} refunded (payment {refund.rail_payment_id})"
    if refund.status == "failed":
        return f"refund {refund.id}: Telegram refused it: {refund.error}; nothing was refunded"
    return (f"refund {refund.id}: {amount} reserved, Telegram did not answer; the Stars "
            "reconciliation job asks again")


async def _refund_stars(ledger: Ledger, args: argparse.Namespace) -> int:
    # aiogram is imported only here: listing answers without it.
    from bot.telegram.star_refunds import refund_stars

    make_bot: Callable[[], Bot] = args.make_bot
    try:
        bot = make_bot()
    except ValueError as exc:  # no TELEGRAM_BOT_TOKEN
        print(f"error: {exc}: a Stars refund is made through the bot", file=sys.stderr)
        return 1
    try:
        refund = await refund_stars(ledger, bot, args.rail_payment_id, seller_id=None,
                                    actor_id=None, reason=args.reason)
    except RefundNotSupported:
        print(f"error: payment {args.rail_payment_id} is not a Stars payment: refund it in the "
              "provider's dashboard, then record it with `paybot admin rails record-refund "
              f"{args.rail_payment_id} --reason ...`", file=sys.stderr)
        return 2
    finally:
        await bot.session.close()
    print(_said(refund))
    return {"done": 0, "pending": PENDING}.get(refund.status, 1)


async def _rails(engine: AsyncEngine, args: argparse.Namespace) -> int:
    ledger = Ledger(engine)
    command = args.rails_command
    if command is None:
        return await _list(ledger, args)
    if command == "stars":
        return await _stars(ledger)
    if command == "refund":
        return await _refund_stars(ledger, args)
    refund = await ledger.record_rail_refund(args.rail_payment_id, actor_id=None,
                                             reason=args.reason)
    print(_said(refund))
    return 0


COMMANDS = {"rails": _rails}
