"""Who is talking to the bot, without a database write on every update.

`ensure_user` is an upsert; calling it for each update would turn every button tap into a
committed write. The memo calls it again whenever the sender's Telegram id, username, name or
language differs from what this process last stored, and at least every `ttl` seconds, so the
ledger's users row is as fresh as with a call per update. Sellers' names on invoice cards come
from a short-lived memo of their own (display only; money never depends on it)."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Generic, TypeVar

from aiogram.types import User as TgUser
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.models import User
from ledger.users import ensure_user, get_user

K = TypeVar("K")
V = TypeVar("V")


class _Memo(Generic[K, V]):
    """A small LRU with a time to live."""

    def __init__(self, ttl: float, size: int) -> None:
        self.ttl, self.size = ttl, size
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        hit = self._items.get(key)
        if hit is None or hit[0] < time.monotonic():
            return None
        self._items.move_to_end(key)
        return hit[1]

    def forget(self, key: K) -> None:
        self._items.pop(key, None)

    def put(self, key: K, value: V) -> None:
        self._items[key] = (time.monotonic() + self.ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


class People:
    def __init__(self, engine: AsyncEngine, *, ttl: float = 600.0, seller_ttl: float = 60.0,
                 size: int = 50_000) -> None:
        self.engine = engine
        self._senders: _Memo[tuple[int, str | None, str | None, str | None, str | None],
                             User] = _Memo(ttl, size)
        self._by_id: _Memo[int, User] = _Memo(seller_ttl, size)

    async def sender(self, tg: TgUser) -> User:
        """ensure_user for a Telegram sender (created on first contact, name and language
        kept current)."""
        key = (tg.id, tg.username, tg.language_code, tg.first_name, tg.last_name)
        user = self._senders.get(key)
        if user is None:
            user = await ensure_user(self.engine, tg.id, tg.username, tg.language_code,
                                     tg.first_name, tg.last_name)
            self._senders.put(key, user)
            self._by_id.put(user.id, user)
        return user

    async def by_id(self, user_id: int) -> User:
        """A user for display (e.g. the seller on an invoice card); at most `seller_ttl` old."""
        user = self._by_id.get(user_id)
        if user is None:
            user = await get_user(self.engine, user_id)
            self._by_id.put(user_id, user)
        return user
