"""Per-update context: the sender as a ledger user and a translator in their language."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject
from aiogram.types import User as TgUser

from bot.telegram.i18n import translator
from bot.telegram.people import People


class UserMiddleware(BaseMiddleware):
    """Every handler gets `user` (ensure_user for the sender: created on first contact, username
    and language refreshed; see People) and `tr`. Updates without a person (channel posts) get
    neither."""

    def __init__(self, people: People) -> None:
        self.people = people

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        sender: TgUser | None = data.get("event_from_user")
        if sender is not None and not sender.is_bot:
            data["tr"] = translator(sender.language_code)
            data["user"] = await self.people.sender(sender)
        return await handler(event, data)
