"""The subscriptions job: every JOBS_RENEW_SECONDS, renew the subscriptions whose period has
ended (each period charged once from the balance, however many replicas run this, and again
after a crash or downtime: ledger/subscriptions.py) and queue the reminders that are due (three
days before a renewal, with the next period's invoice so it can be paid by TON ahead; once in
a past-due subscription's grace period)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from ledger.core import Ledger
from ledger.subscriptions import RenewalReport, queue_subscription_reminders
from watchers.jobs import JOB_DEFAULTS

log = logging.getLogger(__name__)


async def subscriptions_job(ledger: Ledger, ton_rate: Decimal,
                            now: datetime | None = None) -> tuple[RenewalReport, int]:
    """One run: (what the renewals did, reminders queued)."""
    now = now or datetime.now(UTC)
    report = await ledger.renew_due(now, ton_rate=ton_rate)
    reminders = await queue_subscription_reminders(ledger.engine, now, ton_rate=ton_rate,
                                                   grace=ledger.subscription_grace)
    if report.total or reminders:
        log.info("subscriptions: %d renewed, %d past due, %d cancelled, %d expired; "
                 "%d reminder(s)", report.renewed, report.past_due, report.cancelled,
                 report.expired, reminders)
    return report, reminders


def schedule_subscriptions(scheduler: AsyncIOScheduler, ledger: Ledger, *,
                           interval_seconds: float, ton_rate: Decimal) -> None:
    scheduler.add_job(subscriptions_job, "interval", seconds=interval_seconds,
                      args=[ledger, ton_rate], id="subscriptions", **JOB_DEFAULTS)
