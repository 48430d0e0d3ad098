"""Payment reminders (buyers) and the overdue digest (sellers), queued in the outbox exactly
once per (invoice, kind) and per (seller, day) by the SQL of ledger/sql/reminders.sql; the
job that calls these is watchers/reminders.py, delivery is the Telegram notifier's."""

from __future__ import annotations

from datetime import UTC, date, datetime

from ledger.db import Executor, fetch_one

# Reminders queued per statement: a backlog (after downtime) is worked off in several short
# transactions rather than one long one.
BATCH = 500


async def queue_due_reminders(db: Executor, now: datetime | None = None,
                              batch: int = BATCH) -> int:
    """Queue every reminder due at `now` (default: the present); how many were queued.
    Each statement is its own transaction; the loop ends when one queues less than a batch."""
    now = now or datetime.now(UTC)
    total = 0
    while True:
        row = await fetch_one(db, "SELECT paybot_queue_reminders(:now, :limit) AS n",
                              now=now, limit=batch)
        queued = int(row["n"]) if row else 0
        total += queued
        if queued < batch:
            return total


async def queue_overdue_digests(db: Executor, day: date, now: datetime | None = None) -> int:
    """Queue `day`'s overdue digest for each seller who has something overdue at `now` and has
    not had that day's digest yet; how many were queued."""
    row = await fetch_one(db, "SELECT paybot_queue_overdue_digests(:day, :now) AS n",
                          day=day, now=now or datetime.now(UTC))
    return int(row["n"]) if row else 0
