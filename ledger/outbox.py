"""The outbox: effects that leave the process, written with the money, delivered after commit.

Delivery is at least once. A worker claims due events with a lease (available_at moves into
the future); if it dies mid-delivery the lease runs out and the event is claimed again.
Callbacks are claimed fairly (claim_callbacks): round-robin over endpoints and sellers,
skipping endpoints whose circuit breaker is open, with a short lease the live worker renews
(renew_leases) for as long as a delivery is in flight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from ledger.coalesce import Coalescer, Pending, Row
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
    endpoint: str | None = None  # callbacks: where it goes (paybot_callback_endpoint)
    endpoint_failures: int = 0  # callbacks: that endpoint's consecutive failures at claim time
    claim: UUID | None = None  # callbacks: the claim the lease belongs to


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


# The oldest `window` due callbacks, each with its endpoint (the event's URL, else the seller's
# default one). Claims go round-robin: the oldest event of every (seller, endpoint) first, then
# the second ..., ties going to the seller with fewer events ahead, so neither one seller's
# backlog nor one endpoint's holds the head of the queue. An endpoint whose breaker is open is
# skipped (and its events are moved out of the way when it opens: defer_endpoint); one that
# has been failing gets a single probe per claim. The window bounds the work per claim however
# long the queue.
_CLAIM_CALLBACKS = """
WITH failing AS MATERIALIZED (  -- few rows: endpoints that failed since their last success
    SELECT endpoint, failures, open_until FROM callback_endpoints WHERE failures > 0
), due AS MATERIALIZED (  -- the endpoint computed once per event
    SELECT o.id, o.payload ->> 'seller_id' AS seller,
           coalesce(paybot_callback_endpoint(coalesce(
               o.payload ->> 'url',
               (SELECT w.url FROM seller_webhooks w
                 WHERE w.user_id = CAST(o.payload ->> 'seller_id' AS bigint)))), '') AS endpoint
      FROM (SELECT id, payload FROM outbox
             WHERE topic = 'callback' AND delivered_at IS NULL AND failed_at IS NULL
               AND available_at <= now()
             ORDER BY id LIMIT :window) o
), ranked AS (
    SELECT d.id, d.endpoint, coalesce(f.failures, 0) AS failures,
           row_number() OVER (PARTITION BY d.seller ORDER BY d.id) AS by_seller,
           row_number() OVER (PARTITION BY d.seller, d.endpoint ORDER BY d.id) AS turn
      FROM due d LEFT JOIN failing f ON f.endpoint = d.endpoint
     WHERE f.open_until IS NULL OR f.open_until <= now()
), pick AS MATERIALIZED (
    SELECT id, endpoint, failures FROM ranked
     WHERE failures < CAST(:threshold AS int) OR turn = 1
     ORDER BY turn, by_seller, id
     LIMIT :limit
), locked AS (
    SELECT o.id FROM outbox o
     WHERE o.id = ANY(ARRAY(SELECT id FROM pick))
       AND o.delivered_at IS NULL AND o.failed_at IS NULL AND o.available_at <= now()
       FOR UPDATE SKIP LOCKED
)
UPDATE outbox o
   SET available_at = now() + make_interval(secs => :lease), attempts = o.attempts + 1,
       claimed_by = :claim
  FROM locked l JOIN pick p ON p.id = l.id
 WHERE o.id = l.id
RETURNING o.id, o.event_id, o.topic, o.event_type, o.payload, o.attempts, o.created_at,
          p.endpoint, p.failures AS endpoint_failures, o.claimed_by AS claim
"""


async def claim_callbacks(
    db: Executor, *, limit: int = 100, lease_seconds: float = 10.0, breaker_threshold: int = 3,
    window: int | None = None,
) -> list[OutboxEvent]:
    """Claim up to `limit` due callback events fairly among the oldest `window` (default
    20 * limit; see _CLAIM_CALLBACKS), under one new claim whose lease is `lease_seconds`
    (renew it with renew_leases while delivering)."""
    rows = await fetch_all(db, _CLAIM_CALLBACKS, limit=limit, lease=lease_seconds,
                           claim=uuid4(), threshold=breaker_threshold,
                           window=window or 20 * limit)
    return [OutboxEvent(**dict(r)) for r in sorted(rows, key=lambda r: r["id"])]


async def renew_leases(
    db: Executor, claim: UUID, event_ids: Sequence[int], lease_seconds: float
) -> int:
    """Extend the lease of the claim's events still in flight; an event already marked (or
    claimed by someone else since) is left alone. Returns how many were renewed."""
    rows = await fetch_all(
        db,
        "UPDATE outbox SET available_at = now() + make_interval(secs => :lease) "
        "WHERE id = ANY(CAST(:ids AS bigint[])) AND claimed_by = :claim "
        "AND delivered_at IS NULL AND failed_at IS NULL RETURNING id",
        ids=list(event_ids), claim=claim, lease=lease_seconds,
    )
    return len(rows)


async def defer(db: Executor, claim: UUID, event_ids: Sequence[int], until: datetime) -> None:
    """Give claimed events back untried (their endpoint is backing off): due again at `until`,
    the attempt not counted."""
    await fetch_all(
        db,
        "UPDATE outbox SET available_at = :until, attempts = greatest(attempts - 1, 0), "
        "claimed_by = NULL WHERE id = ANY(CAST(:ids AS bigint[])) AND claimed_by = :claim "
        "AND delivered_at IS NULL AND failed_at IS NULL RETURNING id",
        ids=list(event_ids), claim=claim, until=until,
    )


async def defer_endpoint(db: Executor, endpoint: str, until: datetime) -> int:
    """Move every unclaimed due callback of the endpoint to `until` (its breaker just opened),
    so that claims do not wade through them meanwhile. Attempts are not counted."""
    rows = await fetch_all(
        db,
        """
        UPDATE outbox o SET available_at = :until
         WHERE o.topic = 'callback' AND o.delivered_at IS NULL AND o.failed_at IS NULL
           AND o.available_at <= now() AND o.available_at < :until
           AND paybot_callback_endpoint(coalesce(
                   o.payload ->> 'url',
                   (SELECT w.url FROM seller_webhooks w
                     WHERE w.user_id = CAST(o.payload ->> 'seller_id' AS bigint)))) = :endpoint
        RETURNING o.id
        """,
        endpoint=endpoint, until=until,
    )
    return len(rows)


async def endpoint_failed(
    db: Executor, endpoint: str, *, threshold: int, base_seconds: float, max_seconds: float,
) -> datetime | None:
    """Count a failed attempt against the endpoint's breaker; after `threshold` in a row it
    opens for base_seconds, doubling with each further failure up to max_seconds. Failures
    while it is open (requests already in flight) do not count again. Returns when claims may
    take the endpoint again, None while it is still closed."""
    row = await fetch_one(
        db,
        """
        INSERT INTO callback_endpoints AS e (endpoint, failures, open_until)
        VALUES (:endpoint, 1, CASE WHEN CAST(:threshold AS int) <= 1
                                   THEN now() + make_interval(secs => CAST(:base AS float8))
                                   ELSE '-infinity' END)
        ON CONFLICT (endpoint) DO UPDATE
           SET failures = CASE WHEN e.open_until > now() THEN e.failures ELSE e.failures + 1 END,
               open_until = CASE
                   WHEN e.open_until > now() THEN e.open_until
                   WHEN e.failures + 1 >= CAST(:threshold AS int)
                   THEN now() + make_interval(secs => least(
                        CAST(:max AS float8), CAST(:base AS float8)
                        * power(2, least(e.failures + 1 - CAST(:threshold AS int), 30))))
                   ELSE e.open_until END,
               updated_at = now()
        RETURNING open_until, open_until > now() AS open
        """,
        endpoint=endpoint, threshold=threshold, base=base_seconds, max=max_seconds,
    )
    return row["open_until"] if row is not None and row["open"] else None


async def endpoint_recovered(db: Executor, endpoint: str) -> None:
    """A delivery to the endpoint succeeded: close its breaker."""
    await fetch_one(
        db,
        "UPDATE callback_endpoints SET failures = 0, open_until = '-infinity', "
        "updated_at = now() WHERE endpoint = :endpoint AND failures > 0 RETURNING endpoint",
        endpoint=endpoint,
    )


_MARK_DELIVERED = ("UPDATE outbox SET delivered_at = now(), last_error = NULL, claimed_by = NULL "
                   "WHERE id = ANY(CAST($1 AS bigint[])) RETURNING id")


class DeliveredMarks(Coalescer[None]):
    """Deliveries finishing together are marked in one statement (a delivery loop marks each
    event as soon as it is done; under load that is many at once)."""

    max_batch = 500

    def _statement(self, batch: list[Pending[None]]) -> tuple[str, list[Any]]:
        return _MARK_DELIVERED, [sorted({req.args for req in batch})]

    def _settle(self, batch: list[Pending[None]], rows: Sequence[Row]) -> list[Pending[None]]:
        for req in batch:
            req.future.set_result(None)
        return []


async def mark_delivered(db: Executor, event_id: int) -> None:
    """One event delivered (inside a caller's transaction); delivery loops call
    `Ledger.mark_delivered`, where marks finishing together share one statement."""
    await fetch_one(db, "UPDATE outbox SET delivered_at = now(), last_error = NULL, "
                        "claimed_by = NULL WHERE id = :id RETURNING id", id=event_id)


async def mark_retry(db: Executor, event_id: int, error: str, delay_seconds: float) -> None:
    await fetch_one(
        db,
        "UPDATE outbox SET available_at = now() + make_interval(secs => :delay), "
        "last_error = :error, claimed_by = NULL WHERE id = :id RETURNING id",
        id=event_id, error=error[:2000], delay=delay_seconds,
    )


async def mark_failed(db: Executor, event_id: int, error: str) -> None:
    await fetch_one(
        db, "UPDATE outbox SET failed_at = now(), last_error = :error, claimed_by = NULL "
            "WHERE id = :id RETURNING id",
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
