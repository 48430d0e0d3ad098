"""Operator commands for the seller API: `paybot admin token|callbacks|redeliver`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.api_tokens import issue_token, list_tokens, revoke_token
from ledger.callbacks import list_callbacks, redeliver_callback
from ledger.users import find_user_by_telegram


def add_parsers(admin: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    t = admin.add_parser("token", help="issue a seller API token (shown once); --list, --revoke")
    t.add_argument("telegram_id", type=int)
    mode = t.add_mutually_exclusive_group()
    mode.add_argument("--list", action="store_true", help="list the seller's tokens")
    mode.add_argument("--revoke", type=int, metavar="TOKEN_ID", help="revoke one token")
    c = admin.add_parser("callbacks", help="callback events, newest first (failed ones too)")
    c.add_argument("--status", choices=("pending", "delivered", "failed"))
    c.add_argument("--telegram-id", type=int, help="only this seller's")
    c.add_argument("--limit", type=int, default=20)
    r = admin.add_parser("redeliver", help="send a callback event again, with fresh retries")
    r.add_argument("event_id", help="the event id (uuid) from `paybot admin callbacks`")


async def _seller_id(engine: AsyncEngine, telegram_id: int) -> int | None:
    user = await find_user_by_telegram(engine, telegram_id)
    if user is None:
        print(f"no user with Telegram id {telegram_id} (they must /start the bot first)",
              file=sys.stderr)
        return None
    return user.id


async def _token(engine: AsyncEngine, args: argparse.Namespace) -> int:
    seller = await _seller_id(engine, args.telegram_id)
    if seller is None:
        return 1
    if args.list:
        for t in await list_tokens(engine, seller):
            state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "active"
            used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
            print(f"{t.id}\t{t.hint}…\t{state}\tcreated {t.created_at:%Y-%m-%d}\tused {used}")
        return 0
    if args.revoke is not None:
        if await revoke_token(engine, seller, args.revoke):
            print(f"token {args.revoke} revoked")
            return 0
        print(f"no active token {args.revoke} for this seller", file=sys.stderr)
        return 1
    token, token_id = await issue_token(engine, seller)
    print(f"token {token_id} issued; it is shown only now, keep it secret:\n{token}")
    return 0


async def _callbacks(engine: AsyncEngine, args: argparse.Namespace) -> int:
    seller = None
    if args.telegram_id is not None:
        seller = await _seller_id(engine, args.telegram_id)
        if seller is None:
            return 1
    page, _ = await list_callbacks(engine, seller_id=seller, status=args.status,
                                   limit=max(1, min(args.limit, 1000)))
    for c in page:
        print(f"{c.event_id}\t{c.event_type}\t{c.invoice}\t{c.status}\tattempts {c.attempts}"
              f"\t{c.url or '(default webhook URL)'}\t{c.last_error or ''}")
    return 0


async def _redeliver(engine: AsyncEngine, args: argparse.Namespace) -> int:
    try:
        event_id = UUID(args.event_id)
    except ValueError:
        print(f"not an event id: {args.event_id!r}", file=sys.stderr)
        return 1
    record = await redeliver_callback(engine, event_id, seller_id=None)
    if record is None:
        print(f"no callback event {event_id}", file=sys.stderr)
        return 1
    print(f"callback {event_id} queued for delivery again")
    return 0


COMMANDS: dict[str, Callable[[AsyncEngine, argparse.Namespace], Awaitable[int]]] = {
    "token": _token, "callbacks": _callbacks, "redeliver": _redeliver,
}
