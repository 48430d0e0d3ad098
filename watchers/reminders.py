"""The reminders job: every few minutes, queue the payment reminders that are due and, once the
UTC day has reached the digest hour, each seller's overdue digest for that day. Running it
again — on another replica, after a restart, after downtime — queues nothing twice (the
ledger records what was sent: ledger/reminders.py)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.reminders import queue_due_reminders, queue_overdue_digests
from watchers.jobs import JOB_DEFAULTS

log = logging.getLogger(__name__)


async def reminders_job(engine: AsyncEngine, digest_hour: int,
                        now: datetime | None = None) -> tuple[int, int]:
    """One run: (reminders queued, digests queued)."""
    now = now or datetime.now(UTC)
    reminders = await queue_due_reminders(engine, now)
    digests = 0
    if now.astimezone(UTC).hour >= digest_hour:
        digests = await queue_overdue_digests(engine, now.astimezone(UTC).date(), now)
    if reminders or digests:
        log.info("queued %d payment reminder(s), %d overdue digest(s)", reminders, digests)
    return reminders, digests


def schedule_reminders(scheduler: AsyncIOScheduler, engine: AsyncEngine, *,
                       interval_seconds: float, digest_hour: int) -> None:
    scheduler.add_job(reminders_job, "interval", seconds=interval_seconds,
                      args=[engine, digest_hour], id="reminders", **JOB_DEFAULTS)
