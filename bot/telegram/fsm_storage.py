"""Conversations in paybot's PostgreSQL: aiogram's FSM storage and event isolation.

`PostgresStorage` keeps each storage key's state and data (jsonb) in `bot_fsm_states`
(migrations/versions/0010_fsm_storage.py), so a restart in the middle of /invoice continues
where the seller was, and replicas behind a round-robin share one conversation. Every call is
one statement (an upsert), so `update_data` merges atomically even when two replicas write at
once. Nothing is deleted: clearing sets the state to NULL and the data to {}.

`PostgresEventIsolation` handles one update at a time per key across every replica, with a
session advisory lock: a double tap on "Skip" landing on two replicas creates one invoice, as
it does in one process.

(aiogram-sqlalchemy-storage on PyPI was considered: it checks then inserts in separate
statements (two replicas race), stores data as text and deletes rows; it does not fit.)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import defaultdict
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from aiogram.exceptions import DataNotDictLikeError
from aiogram.fsm.state import State
from aiogram.fsm.storage.base import (
    BaseEventIsolation,
    BaseStorage,
    DefaultKeyBuilder,
    KeyBuilder,
    StateType,
    StorageKey,
)
from sqlalchemy import QueuePool, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

# Every part of the key, so two bots (or business connections) on one database never mix.
KEY_BUILDER = DefaultKeyBuilder(prefix="fsm", with_bot_id=True,
                                with_business_connection_id=True, with_destiny=True)

# Sent to asyncpg as they are (bypassing SQLAlchemy's statement layer halves the cost of the
# state read aiogram makes for every update). Data travels as JSON text both ways.
# Writing one half of a conversation past its ttl starts a new one: the other half is reset.
_STALE = "s.updated_at <= now() - make_interval(secs => $3)"
_SET_STATE = f"""
    INSERT INTO bot_fsm_states AS s (key, state) VALUES ($1, $2)
    ON CONFLICT (key) DO UPDATE
       SET state = EXCLUDED.state, updated_at = now(),
           data = CASE WHEN {_STALE} THEN '{{}}' ELSE s.data END
"""
_SET_DATA = f"""
    INSERT INTO bot_fsm_states AS s (key, data) VALUES ($1, CAST(CAST($2 AS text) AS jsonb))
    ON CONFLICT (key) DO UPDATE
       SET data = EXCLUDED.data, updated_at = now(),
           state = CASE WHEN {_STALE} THEN NULL ELSE s.state END
"""
# jsonb || jsonb replaces top-level keys: dict.update, in one statement under the row lock.
_UPDATE_DATA = f"""
    INSERT INTO bot_fsm_states AS s (key, data) VALUES ($1, CAST(CAST($2 AS text) AS jsonb))
    ON CONFLICT (key) DO UPDATE
       SET data = CASE WHEN {_STALE} THEN '{{}}' ELSE s.data END || EXCLUDED.data,
           state = CASE WHEN {_STALE} THEN NULL ELSE s.state END,
           updated_at = now()
    RETURNING CAST(s.data AS text)
"""
# A row untouched for longer than the storage's ttl reads as no conversation.
_FRESH = "key = $1 AND updated_at > now() - make_interval(secs => $2)"
_GET_STATE = f"SELECT state FROM bot_fsm_states WHERE {_FRESH}"
_GET_DATA = f"SELECT CAST(data AS text) FROM bot_fsm_states WHERE {_FRESH}"
_GET_VALUE = f"SELECT CAST(data -> CAST($3 AS text) AS text) FROM bot_fsm_states WHERE {_FRESH}"
NO_TTL = 100 * 365 * 86400.0  # "no ttl": a century (make_interval needs a number)


class PostgresStorage(BaseStorage):
    """aiogram FSM storage on paybot's database. Data must be JSON (str keys; str, numbers,
    bools, None, lists, dicts), as with aiogram's RedisStorage.

    A conversation left alone for `ttl` (a day by default) is forgotten, so a seller's next
    message weeks later is not taken for the title of an invoice begun back then."""

    def __init__(
        self, engine: AsyncEngine, *, ttl: timedelta | None = timedelta(days=1),
        key_builder: KeyBuilder | None = None,
        json_dumps: Callable[[Any], str] = json.dumps,
        json_loads: Callable[[str], Any] = json.loads,
    ) -> None:
        self.engine = engine
        self.ttl_seconds = ttl.total_seconds() if ttl is not None else NO_TTL
        self.key_builder = key_builder or KEY_BUILDER
        self._dumps = json_dumps
        self._loads = json_loads

    def _key(self, key: StorageKey) -> str:
        return self.key_builder.build(key)

    async def _run(self, sql: str, *args: Any) -> Any:
        async with self.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            return await raw.driver_connection.fetchval(sql, *args)  # type: ignore[union-attr]

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        name = state.state if isinstance(state, State) else state
        await self._run(_SET_STATE, self._key(key), name, self.ttl_seconds)

    async def get_state(self, key: StorageKey) -> str | None:
        state = await self._run(_GET_STATE, self._key(key), self.ttl_seconds)
        return state  # type: ignore[no-any-return]

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        await self._run(_SET_DATA, self._key(key), self._dump(data), self.ttl_seconds)

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        raw = await self._run(_GET_DATA, self._key(key), self.ttl_seconds)
        return self._loads(raw) if raw is not None else {}  # type: ignore[no-any-return]

    async def update_data(self, key: StorageKey, data: Mapping[str, Any]) -> dict[str, Any]:
        raw = await self._run(_UPDATE_DATA, self._key(key), self._dump(data),
                              self.ttl_seconds)
        return self._loads(raw)  # type: ignore[no-any-return]

    async def get_value(self, storage_key: StorageKey, dict_key: str,
                        default: Any | None = None) -> Any | None:
        raw = await self._run(_GET_VALUE, self._key(storage_key), self.ttl_seconds,
                              dict_key)
        return self._loads(raw) if raw is not None else default

    def _dump(self, data: Mapping[str, Any]) -> str:
        if not isinstance(data, Mapping):
            raise DataNotDictLikeError(
                f"Data must be a dict or dict-like object, got {type(data).__name__}")
        return self._dumps(dict(data))

    async def close(self) -> None:
        pass  # the engine belongs to the composition root


def lock_key(key: str) -> int:
    """The advisory lock id of a storage key (64 bits of a hash, namespaced)."""
    digest = hashlib.sha256(b"paybot.fsm:" + key.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresEventIsolation(BaseEventIsolation):
    """One update at a time per storage key, across processes: a PostgreSQL session advisory
    lock held on a pooled connection while the handler runs.

    Updates of one key in one process queue on an asyncio lock first, so they do not each hold
    a connection while waiting. At most `max_held` connections (half the pool's capacity by
    default) hold locks at once, so handlers always find connections for their own work."""

    def __init__(self, engine: AsyncEngine, *, key_builder: KeyBuilder | None = None,
                 max_held: int | None = None) -> None:
        self.engine = engine
        self.key_builder = key_builder or KEY_BUILDER
        if max_held is None:
            # make_engine's pools open up to twice their size: half the capacity for locks.
            size = engine.pool.size() if isinstance(engine.pool, QueuePool) else 8
            max_held = max(1, size)
        self._held = asyncio.Semaphore(max_held)
        self._local: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._users: defaultdict[str, int] = defaultdict(int)

    @asynccontextmanager
    async def lock(self, key: StorageKey) -> AsyncGenerator[None, None]:
        name = self.key_builder.build(key, "lock")
        self._users[name] += 1
        try:
            async with self._local[name], self._held:
                conn = await self.engine.connect()
                try:
                    await conn.execute(text("SELECT pg_advisory_lock(:k)"),
                                       {"k": lock_key(name)})
                except BaseException:
                    await _discard(conn)  # cancelled mid-wait: the lock may be ours; drop it
                    raise
                try:
                    yield
                finally:
                    await _unlock(conn, lock_key(name))
        finally:
            self._users[name] -= 1
            if not self._users[name]:  # forget idle keys (aiogram's own never does)
                del self._users[name]
                self._local.pop(name, None)

    async def close(self) -> None:
        pass  # locks end with their handlers; the engine belongs to the composition root


async def _unlock(conn: AsyncConnection, key: int) -> None:
    try:
        await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    except BaseException:
        await _discard(conn)  # ending the session is what releases a lock we cannot unlock
        raise
    await conn.close()


async def _discard(conn: AsyncConnection) -> None:
    try:
        await conn.invalidate()
    finally:
        await conn.close()
