"""Scheduled ledger housekeeping: expire due invoices, fold pending credits into balances."""

from __future__ import annotations

import logging

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.accounts import apply_pending_credits
from ledger.invoices import expire_due_invoices

log = logging.getLogger(__name__)


async def expire_invoices_job(engine: AsyncEngine) -> None:
    expired = await expire_due_invoices(engine)
    if expired:
        log.info("expired %d invoices", len(expired))


async def apply_credits_job(engine: AsyncEngine) -> None:
    await apply_pending_credits(engine)


def schedule_ledger_jobs(
    scheduler: AsyncIOScheduler, engine: AsyncEngine, *, expire_seconds: float,
    apply_credits_seconds: float,
) -> None:
    # coalesce + max_instances=1: a slow run is never stacked on by the next tick.
    common = dict(trigger="interval", coalesce=True, max_instances=1, args=[engine])
    scheduler.add_job(expire_invoices_job, seconds=expire_seconds, id="expire_invoices", **common)
    scheduler.add_job(apply_credits_job, seconds=apply_credits_seconds, id="apply_credits",
                      **common)
