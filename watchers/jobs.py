"""Scheduled ledger housekeeping (expire due invoices, fold pending credits into balances), and
the scheduler every job of `paybot run` runs on, with a shutdown that lets work in flight end."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.accounts import apply_pending_credits
from ledger.invoices import expire_due_invoices

log = logging.getLogger(__name__)

# For every job: a run that is late (busy loop, slow database) still happens, once, instead of
# a "missed" warning; a slow run is never stacked on by the next tick.
JOB_DEFAULTS: dict[str, Any] = {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}


class DrainingExecutor(AsyncIOExecutor):
    """APScheduler's asyncio executor, which can wait for the job runs in flight.

    Its own shutdown cancels them: a CancelledError inside a money transaction ends as an ERROR
    traceback in the scheduler, and whatever the run committed last goes unlogged."""

    async def drain(self, seconds: float) -> int:
        """Wait up to `seconds` for the runs in flight; how many are still running."""
        running = [f for f in self._pending_futures if not f.done()]
        if not running:
            return 0
        _, pending = await asyncio.wait(running, timeout=seconds)
        return len(pending)


class Scheduler(AsyncIOScheduler):
    """The scheduler of `paybot run`: JOB_DEFAULTS, and `stop()` instead of shutdown()."""

    def __init__(self, **options: Any) -> None:
        self._draining = DrainingExecutor()
        options.setdefault("job_defaults", JOB_DEFAULTS)
        super().__init__(executors={"default": self._draining}, **options)

    def pause_runs(self) -> None:
        """No new job runs from now on; the ones in flight go on."""
        if self.running:
            self.pause()

    async def stop(self, wait_seconds: float = 10.0) -> None:
        """Start no new run, let the runs in flight finish (up to `wait_seconds`), shut down.
        Only what is still running after that is cancelled (and logged as such)."""
        if not self.running:
            return
        self.pause_runs()
        left = await self._draining.drain(wait_seconds)
        if left:
            log.warning("%d scheduled job run(s) still busy after %.0fs; cancelling them",
                        left, wait_seconds)
        self.shutdown(wait=False)


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
    common = dict(trigger="interval", args=[engine], **JOB_DEFAULTS)
    scheduler.add_job(expire_invoices_job, seconds=expire_seconds, id="expire_invoices", **common)
    scheduler.add_job(apply_credits_job, seconds=apply_credits_seconds, id="apply_credits",
                      **common)
