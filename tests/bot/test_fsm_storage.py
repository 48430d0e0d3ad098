"""The conversation storage's contract (bot/telegram/fsm_storage.py) on a real PostgreSQL:
what one storage object writes, another on the same database (a restarted process, a second
replica) reads; keys never mix; merges are atomic; nothing is deleted; the event isolation
holds one update per key at a time across replicas."""

from __future__ import annotations

import asyncio
import itertools
import secrets

import pytest
from aiogram.exceptions import DataNotDictLikeError
from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import StorageKey

from bot.telegram.fsm_storage import KEY_BUILDER, PostgresEventIsolation, PostgresStorage
from tests.conftest import run_sql

_ids = itertools.count(secrets.randbelow(10**9) * 1000 + 1)


class Form(StatesGroup):
    title = State()


def new_key(**kw: object) -> StorageKey:
    n = next(_ids)
    return StorageKey(**({"bot_id": 4242, "chat_id": n, "user_id": n} | kw))  # type: ignore[arg-type]


async def test_a_new_storage_object_reads_what_the_first_wrote(engine) -> None:
    key = new_key()
    first = PostgresStorage(engine)
    await first.set_state(key, Form.title)
    await first.set_data(key, {"title": "Coffee beans", "amount": 1250, "tags": ["a", None]})

    again = PostgresStorage(engine)  # a restarted process
    assert await again.get_state(key) == "Form:title"
    assert await again.get_data(key) == {"title": "Coffee beans", "amount": 1250,
                                         "tags": ["a", None]}
    assert await again.get_value(key, "amount") == 1250
    assert await again.get_value(key, "missing", "fallback") == "fallback"


async def test_an_unknown_key_has_no_state_and_no_data(engine) -> None:
    storage = PostgresStorage(engine)
    key = new_key()
    assert await storage.get_state(key) is None
    assert await storage.get_data(key) == {}
    assert await storage.get_value(key, "title") is None


async def test_keys_never_mix(engine) -> None:
    storage = PostgresStorage(engine)
    key = new_key()
    others = [
        StorageKey(bot_id=1, chat_id=key.chat_id, user_id=key.user_id),  # another bot
        StorageKey(bot_id=key.bot_id, chat_id=key.chat_id + 1, user_id=key.user_id),  # group
        StorageKey(bot_id=key.bot_id, chat_id=key.chat_id, user_id=key.user_id, thread_id=7),
        StorageKey(bot_id=key.bot_id, chat_id=key.chat_id, user_id=key.user_id,
                   business_connection_id="bc1"),
        StorageKey(bot_id=key.bot_id, chat_id=key.chat_id, user_id=key.user_id,
                   destiny="other"),
    ]
    await storage.set_state(key, "Form:title")
    await storage.set_data(key, {"title": "mine"})
    for other in others:
        assert await storage.get_state(other) is None
        assert await storage.get_data(other) == {}


async def test_update_data_merges_atomically_across_replicas(engine) -> None:
    """Forty merges from two storage objects at once: none is lost (a read-modify-write in
    Python, aiogram's default update_data, loses some)."""
    key = new_key()
    replicas = [PostgresStorage(engine), PostgresStorage(engine)]
    await replicas[0].set_data(key, {"kept": True})
    results = await asyncio.gather(*(
        replicas[i % 2].update_data(key, {f"k{i}": i}) for i in range(40)))
    expected = {"kept": True} | {f"k{i}": i for i in range(40)}
    assert await replicas[1].get_data(key) == expected
    assert all(r[f"k{i}"] == i and r["kept"] is True for i, r in enumerate(results))
    merged = await replicas[0].update_data(key, {"kept": False})  # replaces a top-level key
    assert merged == expected | {"kept": False}


async def test_clearing_keeps_the_row_and_forgets_the_conversation(engine) -> None:
    storage = PostgresStorage(engine)
    key = new_key()
    await storage.set_state(key, Form.title)
    await storage.update_data(key, {"title": "Tea"})
    await storage.set_state(key, None)
    await storage.set_data(key, {})
    assert await storage.get_state(key) is None
    assert await storage.get_data(key) == {}
    rows = await run_sql(engine, "SELECT state, data FROM bot_fsm_states WHERE key = :k",
                         k=KEY_BUILDER.build(key))
    assert rows == [{"state": None, "data": {}}]  # nothing deleted


async def test_data_that_is_not_a_dict_or_not_json_changes_nothing(engine) -> None:
    storage = PostgresStorage(engine)
    key = new_key()
    await storage.set_data(key, {"title": "Tea"})
    with pytest.raises(DataNotDictLikeError):
        await storage.set_data(key, ["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await storage.update_data(key, {"when": object()})
    assert await storage.get_data(key) == {"title": "Tea"}


async def _waiting_advisory_locks(engine) -> int:  # type: ignore[no-untyped-def]
    rows = await run_sql(engine, "SELECT count(*) AS n FROM pg_locks "
                                 "WHERE locktype = 'advisory' AND NOT granted "
                                 "AND database = (SELECT oid FROM pg_database "
                                 "                 WHERE datname = current_database())")
    return int(rows[0]["n"])  # type: ignore[call-overload]


async def _until(check) -> None:  # type: ignore[no-untyped-def]
    for _ in range(2000):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never happened")


async def test_isolation_holds_one_update_per_key_across_replicas(engine) -> None:
    a, b = PostgresEventIsolation(engine), PostgresEventIsolation(engine)  # two processes
    key, other = new_key(), new_key()
    order: list[str] = []
    release, inside = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with a.lock(key):
            order.append("a in")
            inside.set()
            await release.wait()
            order.append("a out")

    async def second() -> None:
        async with b.lock(key):
            order.append("b in")

    holder = asyncio.create_task(first())
    await inside.wait()
    waiter = asyncio.create_task(second())
    await _until(lambda: _has_waiter(engine))  # b is blocked inside PostgreSQL
    async with b.lock(other):  # another person is not held up
        order.append("b other")
    assert not waiter.done()
    release.set()
    await asyncio.gather(holder, waiter)
    assert order == ["a in", "b other", "a out", "b in"]


async def _has_waiter(engine) -> bool:  # type: ignore[no-untyped-def]
    return await _waiting_advisory_locks(engine) > 0


async def test_a_cancelled_wait_leaves_no_lock_behind(engine) -> None:
    a, b = PostgresEventIsolation(engine), PostgresEventIsolation(engine)
    key = new_key()
    release = asyncio.Event()
    inside = asyncio.Event()

    async def hold() -> None:
        async with a.lock(key):
            inside.set()
            await release.wait()

    holder = asyncio.create_task(hold())
    await inside.wait()

    async def wait_for_it() -> None:
        async with b.lock(key):
            raise AssertionError("must not get the lock while a holds it")

    waiter = asyncio.create_task(wait_for_it())
    await _until(lambda: _has_waiter(engine))
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    await holder
    async with asyncio.timeout(30):  # a third replica gets it: nothing was left held
        async with PostgresEventIsolation(engine).lock(key):
            pass
    assert await _waiting_advisory_locks(engine) == 0


async def _age(engine, key: StorageKey, days: int) -> None:  # type: ignore[no-untyped-def]
    await run_sql(engine, "UPDATE bot_fsm_states SET updated_at = now() - make_interval("
                          "days => :d) WHERE key = :k", d=days, k=KEY_BUILDER.build(key))


async def test_a_conversation_left_for_a_day_is_forgotten(engine) -> None:
    """The seller's next message weeks later is not the title of an invoice begun back then;
    writing to an old conversation starts a new one."""
    storage = PostgresStorage(engine)
    keys = [new_key() for _ in range(3)]
    for key in keys:
        await storage.set_state(key, Form.title)
        await storage.set_data(key, {"title": "old"})
        await _age(engine, key, 2)
    first, second, third = keys
    assert await storage.get_state(first) is None
    assert await storage.get_data(first) == {}
    assert await storage.get_value(first, "title") is None
    assert await storage.update_data(first, {"amount": 5}) == {"amount": 5}
    assert await storage.get_state(first) is None
    await storage.set_state(second, Form.title)
    assert await storage.get_data(second) == {}
    await storage.set_data(third, {"amount": 7})
    assert await storage.get_state(third) is None
    kept = PostgresStorage(engine, ttl=None)  # without a ttl, nothing is forgotten
    key = new_key()
    await kept.set_state(key, Form.title)
    await _age(engine, key, 400)
    assert await kept.get_state(key) == "Form:title"


async def test_many_people_at_once_never_starve_the_pool(database_url) -> None:
    """Handlers holding locks still find connections for their own work: with a small pool,
    twenty people's updates at once all finish (were every pooled connection holding a lock,
    each handler's own query would wait for a connection that never comes)."""
    from ledger.postgres import make_engine

    small = make_engine(database_url, pool_size=2, pool_timeout=5)
    isolation, storage = PostgresEventIsolation(small), PostgresStorage(small)

    async def update(key: StorageKey) -> str | None:
        async with isolation.lock(key):
            await storage.update_data(key, {"seen": True})
            return await storage.get_state(key)

    try:
        assert await asyncio.gather(*(update(new_key()) for _ in range(20))) == [None] * 20
    finally:
        await small.dispose()
