"""The weekly summary job: each seller who asked for it (/report's toggle, /settings) gets last
week's figures once per ISO week — revenue per currency against the week before, payments,
what is open and overdue now, the month's top item — rendered in their language when sent
(bot/telegram/notifier.py, event `seller.weekly_summary`).

It runs every CHECK_SECONDS and queues the summary of the last full week (Monday to Sunday,
UTC) once that week's send time (JOBS_WEEKLY_SUMMARY_DAY / _HOUR_UTC, default Monday 09:00) has
passed, so a process that was down at that moment still sends it later in the week. Exactly
once per seller and week however many replicas run it, across restarts: each batch is one
statement, under a transaction-scoped advisory lock, that inserts only the events whose
(recipient, week) is not in the outbox yet. The figures are read with ledger/reports.py (the
rollups), not from the payments. Once a process has been through every opted-in seller for a
week it does not look again until the next one (a seller who turns the summary on later that
week gets their first one the week after). The outbox lookups by (week, recipient) read the
partial index outbox_weekly_summaries (migration 0019).

A seller with no payments that week still hears from us ("a quiet week", with what is open):
they asked for a weekly message, and silence cannot be told apart from a bot that stopped
working.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.db import Executor, fetch_all, fetch_one, transaction
from ledger.reports import dashboard, top_items
from ledger.seller_settings import weekly_summary_sellers
from watchers.jobs import JOB_DEFAULTS

log = logging.getLogger(__name__)

EVENT: Final = "seller.weekly_summary"
CHECK_SECONDS: Final = 900.0
BATCH: Final = 200  # sellers per read of the opted-in list and per queueing statement
_LOCK_KEY = int.from_bytes(hashlib.sha256(b"paybot.weekly_summary").digest()[:8], "big",
                           signed=True)

# The events of this batch whose (recipient, week) was not queued before. The advisory lock
# makes replicas queue one after the other; the statement after it sees what the other one
# committed (READ COMMITTED takes a new snapshot per statement).
_QUEUE = """
INSERT INTO outbox (topic, event_type, payload)
SELECT 'telegram', 'seller.weekly_summary', e.payload
  FROM jsonb_array_elements(CAST(:events AS jsonb)) AS e(payload)
 WHERE NOT EXISTS (SELECT 1 FROM outbox o
                    WHERE o.event_type = 'seller.weekly_summary'
                      AND o.payload ->> 'week' = e.payload ->> 'week'
                      AND o.payload ->> 'recipient' = e.payload ->> 'recipient')
RETURNING payload ->> 'recipient' AS recipient
"""

_QUEUED = """
SELECT payload ->> 'recipient' AS recipient FROM outbox
 WHERE event_type = 'seller.weekly_summary' AND payload ->> 'week' = :week
"""


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def week_due(now: datetime, weekday: int = 0, hour: int = 9) -> date | None:
    """The Monday of the week whose summary is due at `now`: last week, once this week's send
    time (weekday 0 = Monday, hour UTC) has passed; None before it."""
    now = now.astimezone(UTC)
    this_week = monday(now.date())
    send_at = datetime.combine(this_week + timedelta(days=weekday), time(hour), UTC)
    return this_week - timedelta(days=7) if now >= send_at else None


def week_key(start: date) -> str:
    year, week, _ = start.isocalendar()
    return f"{year}-W{week:02d}"


def _revenue(board: Any) -> dict[str, tuple[int, int]]:
    """currency -> (net revenue, payments) of a dashboard's period."""
    out: dict[str, tuple[int, int]] = {}
    for m in board.by_month:
        amount, n = out.get(m.currency, (0, 0))
        out[m.currency] = (amount + m.amount, n + m.payments)
    return out


async def summary_payload(db: Executor, seller_id: int, start: date,
                          now: datetime | None = None) -> dict[str, Any]:
    """The summary of the week starting on Monday `start` for the seller, as the event
    carries it (figures frozen when queued: a retried delivery says the same)."""
    end = start + timedelta(days=6)
    now = now or datetime.now(UTC)
    this = await dashboard(db, seller_id, start, end, now=now)
    before = _revenue(await dashboard(db, seller_id, start - timedelta(days=7),
                                      start - timedelta(days=1), now=now))
    revenue = _revenue(this)
    currencies = sorted(set(revenue) | {c for c, (amount, _) in before.items() if amount})
    top = await top_items(db, seller_id, end.replace(day=1), end, limit=1)
    return {
        "recipient": seller_id,
        "week": week_key(start),
        "start": start.isoformat(),
        "end": end.isoformat(),
        "revenue": [{"currency": c, "amount": revenue.get(c, (0, 0))[0],
                     "previous": before.get(c, (0, 0))[0]} for c in currencies],
        "payments": sum(n for _, n in revenue.values()),
        "open": [{"currency": s.currency, "amount": s.amount, "count": s.count}
                 for s in this.open],
        "overdue": [{"currency": s.currency, "amount": s.amount, "count": s.count}
                    for s in this.overdue],
        "top": [{"item": t.item, "currency": t.currency, "amount": t.amount,
                 "month": end.replace(day=1).isoformat()} for t in top],
    }


async def queue_summaries(engine: AsyncEngine, events: list[dict[str, Any]]) -> int:
    """Queue the events not queued before (by recipient and week); how many were queued."""
    if not events:
        return 0
    async with transaction(engine) as conn:
        await fetch_one(conn, "SELECT pg_advisory_xact_lock(:k)", k=_LOCK_KEY)
        rows = await fetch_all(conn, _QUEUE, events=json.dumps(events))
    return len(rows)


@dataclass
class WeeklySummaries:
    """The job; remembers the last week it finished, so later runs that week cost nothing."""

    engine: AsyncEngine
    weekday: int = 0
    hour: int = 9
    done: date | None = None

    async def run(self, now: datetime | None = None) -> int:
        """One run: how many summaries were queued."""
        now = now or datetime.now(UTC)
        start = week_due(now, self.weekday, self.hour)
        if start is None or start == self.done:
            return 0
        key = week_key(start)
        # Those queued already (another replica, a run before a restart) are not read again.
        sent = {r["recipient"] for r in await fetch_all(self.engine, _QUEUED, week=key)}
        queued, after = 0, 0
        while True:
            sellers = await weekly_summary_sellers(self.engine, after=after, limit=BATCH)
            if not sellers:
                break
            after = sellers[-1]
            events = [await summary_payload(self.engine, s, start, now)
                      for s in sellers if str(s) not in sent]
            queued += await queue_summaries(self.engine, events)
            if len(sellers) < BATCH:
                break
        self.done = start
        if queued:
            log.info("queued %d weekly summar%s for %s", queued,
                     "y" if queued == 1 else "ies", key)
        return queued


def schedule_weekly_summaries(scheduler: AsyncIOScheduler, engine: AsyncEngine, *,
                              weekday: int, hour: int,
                              interval_seconds: float = CHECK_SECONDS) -> WeeklySummaries:
    job = WeeklySummaries(engine, weekday, hour)
    scheduler.add_job(job.run, "interval", seconds=interval_seconds, id="weekly_summaries",
                      **JOB_DEFAULTS)
    return job
