"""A person in Telegram, for tests: sends messages and taps buttons through the dispatcher,
and reads back what the bot showed them from the Bot API stand-in."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.types import Update

from ledger.models import User
from tests.bot.botapi import BOT_USER, ApiCall, BotApiStandIn, ChatMessage

_update_ids = itertools.count(1_000_000)


@dataclass
class Tap:
    """What a button tap did: the callback answer and the bot's visible reactions."""

    answered: bool
    alert: bool
    answer_text: str | None
    sent: list[ChatMessage]
    edited: list[ChatMessage]
    calls: list[ApiCall] = field(repr=False)


class TgClient:
    def __init__(self, api: BotApiStandIn, dp: Dispatcher, bot: Bot, user: User, *,
                 language: str | None = "en", username: str | None = None,
                 first_name: str = "Test") -> None:
        self.api, self.dp, self.bot = api, dp, bot
        self.user = user  # the ledger's record of this person
        self.id = user.telegram_id
        self.language = language
        self.username = username
        self.first_name = first_name

    def _from(self) -> dict[str, Any]:
        user: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.language:
            user["language_code"] = self.language
        if self.username:
            user["username"] = self.username
        return user

    def _chat(self) -> dict[str, Any]:
        return {"id": self.id, "type": "private", "first_name": self.first_name}

    def message_update(self, text: str) -> dict[str, Any]:
        msg = self.api.user_message(self.id, text)
        now = int(datetime.now(UTC).timestamp())
        return {"message": {"message_id": msg.message_id, "date": now, "chat": self._chat(),
                            "from": self._from(), "text": text}}

    def callback_update(self, message: ChatMessage, data: str) -> dict[str, Any]:
        shown = message.to_api()
        shown["from"] = BOT_USER
        return {"callback_query": {"id": str(next(_update_ids)), "from": self._from(),
                                   "chat_instance": f"ci{self.id}", "data": data,
                                   "message": shown}}

    async def _feed(self, update: dict[str, Any]) -> None:
        update = {"update_id": next(_update_ids), **update}
        await self.dp.feed_update(self.bot, Update.model_validate(update,
                                                                  context={"bot": self.bot}))

    async def send(self, text: str) -> list[ChatMessage]:
        """Send `text`; returns the messages the bot sent to this chat in reaction."""
        before = self._bot_message_ids()
        await self._feed(self.message_update(text))
        return [m for m in self.api.messages(self.id) if m.message_id not in before]

    async def tap(self, message: ChatMessage, label: str) -> Tap:
        button = message.button(label)
        if "callback_data" not in button:
            raise AssertionError(f"{label!r} is a link button: {button}")
        return await self.press(message, button["callback_data"])

    async def press(self, message: ChatMessage, data: str) -> Tap:
        """A callback with raw data from `message` (as a tap, or as an old/forged one)."""
        before_ids = self._bot_message_ids()
        before_edits = {m.message_id: m.edits for m in self.api.messages(self.id)}
        since = len(self.api.calls)
        update = self.callback_update(message, data)
        await self._feed(update)
        calls = self.api.calls[since:]
        answers = [c for c in calls if c.method == "answercallbackquery"
                   and c.params.get("callback_query_id") == update["callback_query"]["id"]]
        answer = answers[0].params if answers else {}
        return Tap(
            answered=bool(answers), alert=answer.get("show_alert") == "true",
            answer_text=answer.get("text"),
            sent=[m for m in self.api.messages(self.id) if m.message_id not in before_ids],
            edited=[m for m in self.api.messages(self.id)
                    if m.edits > before_edits.get(m.message_id, m.edits)],
            calls=calls,
        )

    def _bot_message_ids(self) -> set[int]:
        return {m.message_id for m in self.api.messages(self.id)}

    @property
    def last(self) -> ChatMessage:
        return self.api.messages(self.id)[-1]
