"""Composition helper: the callback delivery job, configured from ApiSettings."""

from __future__ import annotations

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.links import links_from_settings
from bot.settings import Settings
from ledger.sellers import Links
from watchers.callbacks import CallbackSender, schedule_callback_delivery


def schedule_callbacks(
    settings: Settings, engine: AsyncEngine, scheduler: AsyncIOScheduler,
    links: Links | None = None,
) -> CallbackSender:
    """Schedule callback delivery; the caller closes the returned sender on shutdown."""
    api = settings.api
    sender = CallbackSender(
        allow_private=api.allow_private_callbacks, timeout=api.callback_timeout_seconds,
        max_response_bytes=api.callback_max_response_bytes, concurrency=api.callback_concurrency,
    )
    schedule_callback_delivery(
        scheduler, engine, sender, links or links_from_settings(settings),
        seconds=api.callback_poll_seconds, batch=api.callback_batch,
        lease_seconds=api.callback_lease_seconds,
    )
    return sender
