"""Operator commands for chain transfers: `paybot admin transfers|resolve`.

    paybot admin transfers [--unmatched] [--limit N] [--invoice ID]
    paybot admin resolve <tx-hash> --apply <invoice> | --credit <telegram_id> | --refund-note "..."
    paybot admin resolve <tx-hash> --refund     # a payout order: the hot wallet sends it back
"""

from __future__ import annotations

import argparse
import sys

from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.money import format_amount
from ledger.payouts import refund_held_transfer
from ledger.transfer_admin import (
    TransferRecord,
    list_transfers,
    resolve_transfer,
    transfers_for_invoice,
)
from ledger.users import find_user_by_telegram

__all__ = ["COMMANDS", "add_parsers"]


def add_parsers(admin: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    t = admin.add_parser("transfers", help="incoming TON transfers with their outcome")
    t.add_argument("--unmatched", action="store_true",
                   help="only those with money held in suspense (need an operator)")
    t.add_argument("--limit", type=int, default=50)
    t.add_argument("--invoice", metavar="ID",
                   help="what arrived on chain for this invoice: received, held, claims")
    r = admin.add_parser("resolve", help="settle a held TON transfer by hand, once")
    r.add_argument("tx_hash", help="transaction hash (hex, or base64 as explorers show it)")
    how = r.add_mutually_exclusive_group(required=True)
    how.add_argument("--apply", metavar="INVOICE", help="pay this invoice with the held TON")
    how.add_argument("--credit", metavar="TELEGRAM_ID", type=int,
                     help="credit the held TON to this user's balance at the configured rate")
    how.add_argument("--refund-note", metavar="TEXT",
                     help="record that the TON was sent back (e.g. the refund's tx hash)")
    how.add_argument("--refund", action="store_true",
                     help="send the held money back to its sender through the hot wallet "
                          "(a payout order; paybot admin payouts shows it)")
    r.add_argument("--note", help="why (kept with the release)")


def _printable(text: str | None, width: int = 60) -> str:
    # Comments are chosen by whoever sent the TON: no terminal control characters.
    if not text:
        return ""
    clean = "".join(c if c.isprintable() else "?" for c in text)
    return clean if len(clean) <= width else clean[: width - 1] + "…"


def _line(t: TransferRecord) -> str:
    target = f"INV-{t.invoice}" if t.invoice else f"user {t.user_id}" if t.user_id else "-"
    held = f"held {format_amount(t.open_hold_nano, 'TON')} TON ({t.open_hold_reason})" \
        if t.open_hold_nano else ""
    credited = f"credited {format_amount(t.credited, t.credited_currency)} " \
               f"{t.credited_currency}" if t.credited and t.credited_currency else ""
    return "\t".join([
        f"{t.utime:%Y-%m-%d %H:%M:%S}", t.tx_hash, f"{format_amount(t.value_nano, 'TON')} TON",
        t.outcome, target, held or credited or "-", t.note or "",
        repr(_printable(t.comment)) if t.comment else f"({t.body_kind})",
    ])


async def _invoice_transfers(engine: AsyncEngine, public_id: str) -> int:
    seen = await transfers_for_invoice(engine, public_id.upper().removeprefix("INV-"))
    quote = f"{format_amount(seen.ton_quote, 'TON')} TON" if seen.ton_quote else "no TON price"
    print(f"INV-{seen.invoice}\t{seen.status}\t{seen.kind}\tquote {quote}\treceived "
          f"{format_amount(seen.ton_received, 'TON')} TON\twaiting for the rest "
          f"{format_amount(seen.partial_nano, 'TON')} TON\texcess held "
          f"{format_amount(seen.excess_held_nano, 'TON')} TON")
    for t in seen.transfers:
        print(_line(t))
    for c in seen.claims:
        print(f"claim of payment {c.payment_id}: {'claimed' if c.claimed else 'open'}"
              + ("" if c.claimed else f" (t.me/<bot>?start=claim_{c.token})"))
    return 0


async def _transfers(engine: AsyncEngine, args: argparse.Namespace) -> int:
    if args.invoice:
        return await _invoice_transfers(engine, args.invoice)
    if not 1 <= args.limit <= 1000:
        print("--limit must be between 1 and 1000", file=sys.stderr)
        return 1
    rows = await list_transfers(engine, unmatched=args.unmatched, limit=args.limit)
    for t in rows:
        print(_line(t))
    what = "held transfers" if args.unmatched else "incoming transfers"
    print(f"{len(rows)} {what}" if rows else f"no {what}", file=sys.stderr)
    return 0


async def _resolve(engine: AsyncEngine, args: argparse.Namespace) -> int:
    # The ledger's currency and TON rate come from the settings, read by the CLI (the
    # composition root) and handed over on `args`: this module reads no environment.
    currency, ton_rate = args.ledger_currency, args.ton_rate
    if args.refund:
        p = await refund_held_transfer(engine, args.tx_hash, note=args.note)
        print(f"payout {p.id}: {format_amount(p.amount, p.asset)} {p.asset} back to "
              f"{p.destination}, {p.status}")
        return 0
    user_id = None
    if args.credit is not None:
        user = await find_user_by_telegram(engine, args.credit)
        if user is None:
            print(f"no user with Telegram id {args.credit} (they must /start the bot first)",
                  file=sys.stderr)
            return 1
        user_id = user.id
    done = await resolve_transfer(
        engine, args.tx_hash, apply_invoice=args.apply, credit_user_id=user_id,
        refund_note=args.refund_note, note=args.note, currency=currency, ton_rate=ton_rate,
    )
    amount = f"{format_amount(done.amount_nano, 'TON')} TON"
    if done.action == "apply":
        print(f"{amount} applied to INV-{args.apply.upper().removeprefix('INV-')}: "
              f"{done.outcome}, invoice {done.invoice_status}, payment {done.payment_id}")
        if done.held_nano:
            print(f"excess {format_amount(done.held_nano, 'TON')} TON stays held "
                  f"(claim token {done.claim_token})")
    elif done.action == "credit":
        assert done.credited is not None
        print(f"{amount} credited to Telegram user {args.credit}: "
              f"{format_amount(done.credited, currency)} {currency}")
    else:
        print(f"{amount} recorded as refunded: {args.refund_note}")
    return 0


COMMANDS = {"transfers": _transfers, "resolve": _resolve}
