"""Operator commands for money out: `paybot admin payouts …`.

    paybot admin payouts [--status pending|sent|confirmed|failed|…] [--limit N]
    paybot admin payouts approve <id> [--note "…"]   a withdrawal above the threshold: send it
    paybot admin payouts reject <id> --note "…"      do not send it; the money goes back

Listing reads only. A refund of a held transfer is ordered by
`paybot admin resolve <tx-hash> --refund`; the hot wallet's sender (watchers/payout_sender.py,
run by `paybot run`) sends what is queued.
"""

from __future__ import annotations

import argparse
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import payouts
from ledger.money import format_amount
from ledger.payouts import Payout

__all__ = ["COMMANDS", "add_parsers", "reads_only"]

# What `--status` names, as the operator thinks of them; "pending": anything not finished.
GROUPS: Final = {
    "pending": ("pending_approval", "queued", "signed", "sent"),
    "approval": ("pending_approval",),
    "sent": ("signed", "sent"),
    **{s: (s,) for s in payouts.STATUSES},
}


def add_parsers(admin: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = admin.add_parser(
        "payouts", help="refunds and withdrawals sent by the hot wallet: list, approve, reject",
        description="Without a command: the latest payouts with their status, seqno and "
                    "transaction.")
    p.add_argument("--status", choices=sorted(GROUPS), help="only these (pending: not finished)")
    p.add_argument("--limit", type=int, default=50)
    sub = p.add_subparsers(dest="payouts_command")
    a = sub.add_parser("approve", help="send a withdrawal that waits for approval")
    a.add_argument("payout_id", type=int)
    a.add_argument("--note")
    r = sub.add_parser("reject", help="do not send it: the money goes back to the user")
    r.add_argument("payout_id", type=int)
    r.add_argument("--note", required=True, help="why (the user is told)")


def reads_only(args: argparse.Namespace) -> bool:
    return getattr(args, "payouts_command", None) is None


def _line(p: Payout) -> str:
    to = p.destination_given if len(p.destination_given) <= 48 else p.destination
    what = f"refund of transfer {p.transfer_id}" if p.kind == "refund" else f"user {p.user_id}"
    return "\t".join([
        str(p.id), p.created_at.strftime("%Y-%m-%d %H:%M"), p.kind, what,
        f"{format_amount(p.amount, p.asset)} {p.asset}", to, p.status,
        "-" if p.seqno is None else f"seqno {p.seqno}", p.tx_hash or "-",
        "".join(c if c.isprintable() else "?" for c in (p.note or "-"))[:60],
    ])


async def _payouts(engine: AsyncEngine, args: argparse.Namespace) -> int:
    command = getattr(args, "payouts_command", None)
    if command == "approve":
        p = await payouts.approve(engine, args.payout_id, note=args.note)
        print(f"payout {p.id} approved: {p.status}")
        return 0
    if command == "reject":
        p = await payouts.reject(engine, args.payout_id, note=args.note)
        currency = p.debit_currency or p.asset
        print(f"payout {p.id} rejected: {format_amount(p.debit_amount or 0, currency)} "
              f"{currency} back to user {p.user_id}")
        return 0
    statuses = GROUPS[args.status] if args.status else None
    rows = await payouts.list_payouts(engine, statuses=statuses, limit=args.limit)
    if not rows:
        print("no payouts")
        return 0
    print("\t".join(("id", "ordered", "kind", "for", "amount", "to", "status", "message",
                     "transaction", "note")))
    for p in rows:
        print(_line(p))
    return 0


COMMANDS = {"payouts": _payouts}
