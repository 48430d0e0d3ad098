"""Composition helper: the callback delivery job, configured from ApiSettings."""

from __future__ import annotations

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.api.subscriptions import subscription_renderer
from bot.api.views import invoice_renderer
from bot.links import Links, links_from_settings
from bot.settings import Settings
from ledger.core import Ledger
from watchers.callbacks import CallbackSender, schedule_callback_delivery
from watchers.wakeup import Waker


def schedule_callbacks(
    settings: Settings, ledger: Ledger, scheduler: AsyncIOScheduler,
    links: Links | None = None,
) -> tuple[CallbackSender, Waker]:
    """Schedule callback delivery: (the sender, which the caller closes on shutdown; the
    waker that delivers at once)."""
    api = settings.api
    sender = CallbackSender(
        allow_private=api.allow_private_callbacks, timeout=api.callback_timeout_seconds,
        max_response_bytes=api.callback_max_response_bytes, concurrency=api.callback_concurrency,
    )
    waker = schedule_callback_delivery(
        scheduler, ledger, sender, invoice_renderer(links or links_from_settings(settings)),
        seconds=api.callback_poll_seconds, batch=api.callback_batch,
        lease_seconds=api.callback_lease_seconds, subscriptions=subscription_renderer(ledger),
    )
    return sender, waker
