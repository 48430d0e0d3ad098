"""Signed callbacks as a seller (or the operator) sees them: the history and a redelivery.
Delivery itself is watchers/callbacks.py."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from ledger.db import Executor, fetch_all, fetch_one


@dataclass(frozen=True, slots=True)
class CallbackRecord:
    id: int
    event_id: UUID
    event_type: str
    seller_id: int
    invoice: str
    url: str | None  # None: the seller's default webhook URL at delivery time
    status: str  # pending | delivered | failed
    attempts: int
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    failed_at: datetime | None

_CALLBACK_COLUMNS = """
    id, event_id, event_type, (payload ->> 'seller_id')::bigint AS seller_id,
    payload ->> 'invoice' AS invoice, payload ->> 'url' AS url, attempts, last_error, created_at,
    available_at, delivered_at, failed_at
"""


# What a failed attempt may tell the seller: "connection failed", "timed out", "HTTP <code>",
# why a URL is refused, or why there is nothing to send; never ports, addresses or OS errors
# (those made last_error a port scanner). Errors stored before that rule are shown this way.

_ERROR_PREFIX = re.compile(r"(attempt \d+: |gave up after \d+ attempts: )?(.*)", re.S)

_HTTP_STATUS = re.compile(r"HTTP (\d{3})\b")

_KEPT = ("blocked: ", "no callback URL", "the event names")

def public_error(error: str | None) -> str | None:
    if error is None:
        return None
    prefix, rest = _ERROR_PREFIX.fullmatch(error).groups()  # type: ignore[union-attr]
    if status := _HTTP_STATUS.match(rest):
        rest = f"HTTP {status[1]}"
    elif rest.startswith("timed out"):
        rest = "timed out"
    elif not rest.startswith(_KEPT):
        rest = "connection failed"
    return (prefix or "") + rest

def _callback(row: Any) -> CallbackRecord:
    status = "delivered" if row["delivered_at"] else "failed" if row["failed_at"] else "pending"
    return CallbackRecord(
        id=row["id"], event_id=row["event_id"], event_type=row["event_type"],
        seller_id=row["seller_id"], invoice=row["invoice"], url=row["url"], status=status,
        attempts=row["attempts"], last_error=public_error(row["last_error"]),
        created_at=row["created_at"],
        next_attempt_at=row["available_at"] if status == "pending" else None,
        delivered_at=row["delivered_at"], failed_at=row["failed_at"],
    )

async def list_callbacks(
    db: Executor, *, seller_id: int | None, status: str | None = None, limit: int = 20,
    before_id: int | None = None,
) -> tuple[list[CallbackRecord], int | None]:
    """Callback events, newest first: one seller's, or everyone's (seller_id=None, for the
    operator). status: pending | delivered | failed."""
    rows = await fetch_all(
        db,
        f"""
        SELECT {_CALLBACK_COLUMNS} FROM outbox
         WHERE topic = 'callback'
           AND (CAST(:seller AS text) IS NULL OR payload ->> 'seller_id' = :seller)
           AND (CAST(:before AS bigint) IS NULL OR id < :before)
           AND CASE CAST(:status AS text)
                 WHEN 'delivered' THEN delivered_at IS NOT NULL
                 WHEN 'failed' THEN failed_at IS NOT NULL
                 WHEN 'pending' THEN delivered_at IS NULL AND failed_at IS NULL
                 ELSE true END
         ORDER BY id DESC LIMIT :limit
        """,
        seller=None if seller_id is None else str(seller_id), status=status,
        before=before_id, limit=limit + 1,
    )
    page = [_callback(r) for r in rows[:limit]]
    return page, (page[-1].id if len(rows) > limit else None)

async def redeliver_callback(
    db: Executor, event_id: UUID, *, seller_id: int | None
) -> CallbackRecord | None:
    """Queue a callback again now, with a fresh retry schedule (failed, delivered or pending
    alike). None when there is no such event (for this seller)."""
    row = await fetch_one(
        db,
        f"""
        UPDATE outbox SET delivered_at = NULL, failed_at = NULL, attempts = 0,
                          available_at = now()
         WHERE event_id = :event AND topic = 'callback'
           AND (CAST(:seller AS text) IS NULL OR payload ->> 'seller_id' = :seller)
        RETURNING {_CALLBACK_COLUMNS}
        """,
        event=event_id, seller=None if seller_id is None else str(seller_id),
    )
    return _callback(row) if row else None
