"""The outbox: effects that leave the process, written with the money, delivered after commit.

Delivery is at least once. A worker claims due events with a lease (available_at moves into
the future); if it dies mid-delivery the lease runs out and the event is claimed again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from ledger.db import Executor, fetch_all, fetch_one


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    id: int
    event_id: UUID
    topic: str
    event_type: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime


async def claim_due(
    db: Executor, topic: str, *, limit: int = 50, lease_seconds: float = 60.0
) -> list[OutboxEvent]:
    rows = await fetch_all(
        db,
        """
        UPDATE outbox o
           SET available_at = now() + make_interval(secs => :lease), attempts = o.attempts + 1
         WHERE o.id IN (SELECT id FROM outbox
                         WHERE topic = :topic AND delivered_at IS NULL AND failed_at IS NULL
                           AND available_at <= now()
                         ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED)
        RETURNING o.id, o.event_id, o.topic, o.event_type, o.payload, o.attempts, o.created_at
        """,
        topic=topic, limit=limit, lease=lease_seconds,
    )
    return [OutboxEvent(**dict(r)) for r in sorted(rows, key=lambda r: r["id"])]


async def mark_delivered(db: Executor, event_id: int) -> None:
    await fetch_one(
        db, "UPDATE outbox SET delivered_at = now(), last_error = NULL WHERE id = :id "
            "RETURNING id", id=event_id,
    )


async def mark_retry(db: Executor, event_id: int, error: str, delay_seconds: float) -> None:
    await fetch_one(
        db,
        "UPDATE outbox SET available_at = now() + make_interval(secs => :delay), "
        "last_error = :error WHERE id = :id RETURNING id",
        id=event_id, error=error[:2000], delay=delay_seconds,
    )


async def mark_failed(db: Executor, event_id: int, error: str) -> None:
    await fetch_one(
        db, "UPDATE outbox SET failed_at = now(), last_error = :error WHERE id = :id RETURNING id",
        id=event_id, error=error[:2000],
    )


async def redeliver(db: Executor, event_id: int) -> bool:
    """Put a failed event back in the queue (operator or seller asked for it), with a fresh
    retry schedule."""
    row = await fetch_one(
        db,
        "UPDATE outbox SET failed_at = NULL, available_at = now(), attempts = 0 "
        "WHERE id = :id AND delivered_at IS NULL RETURNING id",
        id=event_id,
    )
    return row is not None
