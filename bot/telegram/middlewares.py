"""Per-update context: the sender as a ledger user and a translator in their language; and a
per-user rate limit on the updates that write to the ledger (paying, confirming, card and
Stars offers, /invoice)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, Update
from aiogram.types import User as TgUser

from bot.ratelimit import Rate, RateLimiter
from bot.telegram.i18n import translator
from bot.telegram.people import People

MAX_TELEGRAM_ID = 2**63 - 1  # our bigint column; no real Telegram id comes near it

# One sentence back when limited (the i18n tables are the handlers'; this answers before them).
SLOW_DOWN = {"en": "Too many requests: wait a few seconds and try again.",
             "ru": "Слишком много запросов: подождите несколько секунд и попробуйте снова."}


def _limited_kind(update: Update) -> str | None:
    """'callback' or 'message' for the updates the limit covers, None for the rest."""
    query = update.callback_query
    if query is not None:
        data = query.data or ""
        # each card/Stars tap locks a quote (a row) and sends an invoice
        return "callback" if data.startswith(("pay:ask:", "pay:confirm:", "rail:", "tup:")) \
            else None
    message = update.message
    if message is not None and message.text:
        command = message.text.split(maxsplit=1)[0].split("@", 1)[0]
        return "message" if command == "/invoice" else None
    return None


class UserMiddleware(BaseMiddleware):
    """Every handler gets `user` (ensure_user for the sender: created on first contact, username,
    name and language refreshed; see People) and `tr`. Updates without a person (channel posts) get
    neither; a sender whose id cannot be a Telegram id is ignored. With `rate`, paying,
    confirming and /invoice are limited per user (TELEGRAM_RATE_PER_USER)."""

    def __init__(self, people: People, rate: Rate | None = None) -> None:
        self.people = people
        self.limiter = RateLimiter(rate) if rate is not None else None

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        sender: TgUser | None = data.get("event_from_user")
        if sender is not None and not sender.is_bot:
            if not 0 < sender.id <= MAX_TELEGRAM_ID:
                return None  # would overflow the database's bigint: nobody to serve
            if self.limiter is not None and isinstance(event, Update):
                kind = _limited_kind(event)
                if kind is not None and self.limiter.hit(sender.id):
                    return await _slow_down(event, kind, sender.language_code)
            data["tr"] = translator(sender.language_code)
            data["user"] = await self.people.sender(sender)
        return await handler(event, data)


async def _slow_down(update: Update, kind: str, language: str | None) -> None:
    text = SLOW_DOWN.get((language or "en")[:2], SLOW_DOWN["en"])
    if kind == "callback" and update.callback_query is not None:
        await update.callback_query.answer(text, show_alert=True)
    elif update.message is not None:
        await update.message.answer(text)
