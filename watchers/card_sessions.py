"""The card sessions job: browser card checkouts (Stripe, YooKassa) whose webhook has not come
are read back from the provider by id and settled when paid (the seed's "Model 2").

Every JOBS_CARD_SESSIONS_SECONDS it takes the ledger's open web quotes (a checkout made, no
payment recorded, at least a minute old so the webhook had its chance) and hands each to
`verify`, which the composition root takes from the web edge (bot/web/cards: it knows the
providers; the watchers do not import the bot). Settling is exactly once by the checkout's id,
so a webhook arriving at the same moment changes nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from ledger.core import Ledger
from ledger.rails import RailQuote
from watchers.jobs import JOB_DEFAULTS

log = logging.getLogger(__name__)

WEBHOOK_GRACE_SECONDS = 60  # a younger checkout is left to its webhook
Verify = Callable[[RailQuote], Awaitable[Any]]


async def card_sessions_job(ledger: Ledger, verify: Verify,
                            older_than_seconds: int = WEBHOOK_GRACE_SECONDS) -> int:
    """One run: how many checkouts were settled now."""
    settled = 0
    for quote in await ledger.open_web_quotes(older_than_seconds):
        try:
            result = await verify(quote)
        except Exception as exc:  # one provider's outage never stops the others' checks
            log.warning("card session %s (%s) not verified: %s: %s", quote.provider_ref,
                        quote.rail, type(exc).__name__, exc)
            continue
        if result is not None and not getattr(result, "replayed", False):
            settled += 1
            log.info("card session %s settled by the job (%s)", quote.provider_ref,
                     getattr(result, "outcome", "?"))
    return settled


def schedule_card_sessions(scheduler: AsyncIOScheduler, ledger: Ledger, verify: Verify, *,
                           interval_seconds: float) -> None:
    scheduler.add_job(card_sessions_job, "interval", seconds=interval_seconds,
                      args=[ledger, verify], id="card_sessions", **JOB_DEFAULTS)
