"""`paybot` command line: run the service, migrate, and operator tools."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime

from bot import demo, payouts_admin, rails_admin
from bot.api import admin as api_admin
from bot.database import database, schema
from bot.settings import Settings
from ledger.accounts import adjust_balance, balance
from ledger.core import Ledger
from ledger.errors import LedgerError
from ledger.invariants import check_invariants
from ledger.migrate import upgrade
from ledger.models import Invoice
from ledger.money import DECIMALS, format_amount, parse_amount
from ledger.postgres import make_engine
from ledger.users import find_user_by_telegram
from watchers import ton_admin

Command = Callable[[argparse.Namespace, str], Awaitable[int]]

# Commands that only read never migrate (an operator looking must not change the schema under
# a running paybot): on a database not at this code's head they say so and exit 3. The others
# migrate first when the database is behind (and only then: a current one costs one query).
READ_ONLY = frozenset({"balance", "check", "callbacks", "transfers"})
SCHEMA_MISMATCH = 3


def reads_only(args: argparse.Namespace) -> bool:
    command = getattr(args, "admin_command", None)
    return command in READ_ONLY or (command == "token" and bool(args.list)) or (
        command == "rails" and rails_admin.reads_only(args)) or (
        command == "payouts" and payouts_admin.reads_only(args))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="paybot", description="Sell and get paid inside Telegram.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="migrate, then serve the bot, web app and watchers")
    sub.add_parser("migrate", help="apply database migrations")
    demo.add_parser(sub)
    admin = sub.add_parser(
        "admin", help="operator tools",
        description="Read-only commands (balance, check, callbacks, transfers, token --list) "
                    "never migrate: on a database not at this paybot's schema they say so and "
                    f"exit {SCHEMA_MISMATCH}. The others first migrate a database that is behind.",
    ).add_subparsers(dest="admin_command", required=True)
    for name, what in (("credit", "add money to"), ("debit", "take money from")):
        c = admin.add_parser(name, help=f"{what} a user's balance, with a reason")
        c.add_argument("telegram_id", type=int)
        c.add_argument("amount", help="decimal amount, e.g. 12.50")
        c.add_argument("--reason", required=True)
        c.add_argument("--currency", default="LIQ", choices=sorted(DECIMALS))
        c.add_argument("--reference", help="idempotency key: the same one again changes nothing")
    b = admin.add_parser("balance", help="show a user's balances")
    b.add_argument("telegram_id", type=int)
    admin.add_parser("check", help="verify every ledger invariant; non-zero exit on violation")
    _add_document_parsers(admin)  # payment record/reverse, invoice void/uncollectible
    api_admin.add_parsers(admin)  # token, callbacks, redeliver
    ton_admin.add_parsers(admin)  # transfers, resolve
    rails_admin.add_parsers(admin)  # rails: card and Stars payments, refunds
    payouts_admin.add_parsers(admin)  # payouts: refunds and withdrawals, approve, reject
    return p


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date like 2026-11-27") from None


def _add_document_parsers(admin: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    payment = admin.add_parser(
        "payment", help="record or reverse a manual payment (money received outside paybot)",
    ).add_subparsers(dest="payment_command", required=True)
    r = payment.add_parser("record", help="record money received for an invoice (as operator)")
    r.add_argument("invoice", help="the invoice id, as in its /pay/<id> link")
    r.add_argument("--amount", required=True, help="in the invoice's currency, e.g. 12.50")
    r.add_argument("--reference", required=True,
                   help="the bank's or receipt's reference: the same one again records nothing")
    r.add_argument("--date", type=_day, help="the day it was received (default: today, UTC)")
    r.add_argument("--note")
    v = payment.add_parser("reverse", help="undo a manual payment by a compensating entry")
    v.add_argument("payment_id", type=int)
    v.add_argument("--reason", required=True)
    invoice = admin.add_parser("invoice", help="void an invoice or write it off").add_subparsers(
        dest="invoice_command", required=True)
    for name, what in (("void", "void an invoice nothing was paid on"),
                       ("uncollectible", "write off what is still due on an invoice")):
        c = invoice.add_parser(name, help=what)
        c.add_argument("invoice", help="the invoice id, as in its /pay/<id> link")
        c.add_argument("--reason")
    sub = admin.add_parser(
        "subscription", help="extend or cancel a subscription (as operator)",
    ).add_subparsers(dest="subscription_command", required=True)
    e = sub.add_parser("extend", help="give N more months, free, with a reason")
    e.add_argument("subscription", help="the subscription id")
    e.add_argument("--months", type=int, required=True)
    e.add_argument("--reason", required=True)
    x = sub.add_parser("cancel", help="cancel now, or at the end of the paid period")
    x.add_argument("subscription", help="the subscription id")
    x.add_argument("--at-period-end", action="store_true")
    x.add_argument("--reason")


async def _with_engine(url: str, fn: Callable[..., Awaitable[int]],
                       args: argparse.Namespace) -> int:
    engine = make_engine(url, pool_size=2)
    try:
        state = await schema(engine)
        if not state.current:
            if reads_only(args) or state.newer:
                print(f"error: {state.problem()}", file=sys.stderr)
                return SCHEMA_MISMATCH
            await upgrade(url)
        return await fn(engine, args)
    finally:
        await engine.dispose()


async def _adjust(engine, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    user = await find_user_by_telegram(engine, args.telegram_id)
    if user is None:
        print(f"no user with Telegram id {args.telegram_id} (they must /start the bot first)",
              file=sys.stderr)
        return 1
    amount = parse_amount(args.amount, args.currency)
    signed = amount if args.admin_command == "credit" else -amount
    moved = await adjust_balance(engine, user.id, signed, args.currency, args.reason,
                                 args.reference)
    now = await balance(engine, user.id, args.currency)
    note = " (already applied earlier; nothing changed)" if moved.replayed else ""
    print(f"ledger transaction {moved.ledger_tx_id}{note}; balance now "
          f"{format_amount(now, args.currency)} {args.currency}")
    return 0


async def _balance(engine, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    user = await find_user_by_telegram(engine, args.telegram_id)
    if user is None:
        print(f"no user with Telegram id {args.telegram_id}", file=sys.stderr)
        return 1
    for currency in sorted(DECIMALS):
        amount = await balance(engine, user.id, currency)
        print(f"{currency}\t{format_amount(amount, currency)}")
    return 0


async def _check(engine, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    violations = await check_invariants(engine)
    for v in violations:
        print(f"VIOLATION {v}")
    print("ledger OK" if not violations else f"{len(violations)} violation(s)")
    return 1 if violations else 0


def _due(invoice: Invoice) -> str:
    if invoice.status != "pending":
        return f"invoice {invoice.public_id} {invoice.status}"
    return (f"{format_amount(invoice.amount_due, invoice.currency)} {invoice.currency} "
            f"still due on {invoice.public_id}")


async def _payment(engine, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    """The operator records or reverses a manual payment: one Ledger call, one line out."""
    ledger = Ledger(engine)
    if args.payment_command == "record":
        invoice = (await ledger.invoice(args.invoice)).invoice
        amount = parse_amount(args.amount, invoice.currency)
        recorded = await ledger.record_manual_payment(
            invoice.public_id, seller_id=None, amount=amount,
            received_on=args.date or datetime.now(UTC).date(), reference=args.reference,
            note=args.note)
        note = " (recorded earlier; nothing changed)" if recorded.replayed else ""
        print(f"payment {recorded.payment_id}: {format_amount(amount, invoice.currency)} "
              f"{invoice.currency} "
              f"ref {args.reference}{note}; {_due(recorded.invoice)}")
        return 0
    invoice = await ledger.reverse_manual_payment(args.payment_id, seller_id=None,
                                                  reason=args.reason)
    print(f"payment {args.payment_id} reversed; {_due(invoice)}")
    return 0


async def _invoice(engine, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    """The operator (seller_id None) voids an invoice or writes it off."""
    ledger = Ledger(engine)
    if args.invoice_command == "void":
        invoice = await ledger.void_invoice(None, args.invoice, args.reason)
    else:
        invoice = await ledger.mark_uncollectible(None, args.invoice, args.reason)
    print(f"invoice {invoice.public_id} {invoice.status}")
    return 0


async def _subscription(engine, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    """The operator (seller_id None) extends or cancels a subscription: one Ledger call."""
    ledger = Ledger(engine)
    if args.subscription_command == "extend":
        sub = await ledger.extend_subscription(args.subscription, seller_id=None,
                                               months=args.months, reason=args.reason)
    else:
        sub = await ledger.cancel_subscription(args.subscription, actor_id=None,
                                               at_period_end=args.at_period_end,
                                               reason=args.reason)
    until = sub.ended_at or sub.current_period_end
    print(f"subscription {sub.public_id} {sub.status}"
          f"{' (cancels at period end)' if sub.cancel_at_period_end else ''}; "
          f"until {until.date().isoformat()}")
    return 0


async def _noop(engine, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    print("migrations applied")
    return 0


def _bot(settings: Settings):  # type: ignore[no-untyped-def]
    # aiogram takes seconds to import: only the commands that call Telegram pay for it.
    from bot.telegram.runtime import create_bot

    return create_bot(settings)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.command == "run" else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("apscheduler", "pgserver", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    settings = Settings()
    if args.command == "run":
        # The bot, web app and watchers (aiogram alone takes seconds to import): only `run`
        # needs them, so `paybot admin …` answers in about a second.
        from bot.app import run

        run(settings)
        return 0
    if args.command == "demo":
        return demo.run_demo(args, settings)
    # What operator commands need of the settings, handed over here (the composition root).
    args.ledger_currency, args.ton_rate = settings.ledger.currency, settings.ledger.ton_rate
    args.make_bot = lambda: _bot(settings)  # only a command that calls Telegram builds it
    handler = {"migrate": _noop, "credit": _adjust, "debit": _adjust, "balance": _balance,
               "check": _check, "payment": _payment, "invoice": _invoice,
               "subscription": _subscription,
               **api_admin.COMMANDS, **ton_admin.COMMANDS, **rails_admin.COMMANDS,
               **payouts_admin.COMMANDS,
               }[getattr(args, "admin_command", None) or args.command]
    with database(settings.database) as url:
        try:
            return asyncio.run(_with_engine(url, handler, args))
        except LedgerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
