"""Test fixtures: a real PostgreSQL (DATABASE_URL's server, or an embedded one) with a fresh
database per test run, migrated to head."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.accounts import adjust_balance
from ledger.core import Ledger
from ledger.migrate import upgrade
from ledger.models import User
from ledger.postgres import make_engine, server, throwaway_database
from ledger.users import ensure_user


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """URL of a PostgreSQL server's maintenance database (DATABASE_URL's, or embedded)."""
    with server(os.environ.get("DATABASE_URL")) as url:
        yield url


@pytest.fixture(scope="session")
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    """An empty database for this run, dropped afterwards."""
    async with throwaway_database(server_url, "paybot_test") as url:
        yield url


@pytest.fixture(scope="session")
async def database_url(fresh_database: str) -> str:
    await upgrade(fresh_database)
    return fresh_database


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url, pool_size=10)
    yield eng
    await eng.dispose()


@pytest.fixture
def ledger(engine: AsyncEngine) -> Ledger:
    """The ledger as the edges get it from the composition root (batchers, no invoice cache)."""
    return Ledger(engine)


_telegram_ids = itertools.count(secrets.randbelow(10**9) * 1000 + 1)


@pytest.fixture
def make_user(engine: AsyncEngine):  # type: ignore[no-untyped-def]
    """Creates a new Telegram user, optionally with money on the internal balance."""

    async def _make(balance: int = 0, currency: str = "LIQ", **kw: str) -> User:
        user = await ensure_user(engine, next(_telegram_ids), **kw)
        if balance:
            await adjust_balance(engine, user.id, balance, currency, reason="test funding")
        return user

    return _make


@pytest.fixture
async def scratch_database(server_url: str) -> AsyncIterator[object]:
    """A factory of extra empty databases (for tests that must break or rebuild one)."""
    async with contextlib.AsyncExitStack() as stack:

        async def _make() -> str:
            return await stack.enter_async_context(
                throwaway_database(server_url, "paybot_scratch")
            )

        yield _make


async def run_sql(engine: AsyncEngine, sql: str, **params: object) -> list[dict[str, object]]:
    """Direct SQL for assertions about stored state (tests only)."""
    from sqlalchemy import text

    async with engine.connect() as conn:
        result = await conn.execute(text(sql), params)
        return [dict(r) for r in result.mappings().all()] if result.returns_rows else []


async def wait_until_serving(http: object, url: str, server: asyncio.Task[object]) -> None:
    """Poll `url` until it answers 200, failing at once if the server task died."""
    import aiohttp

    assert isinstance(http, aiohttp.ClientSession)
    while True:
        try:
            async with http.get(url) as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        assert not server.done(), server.exception()
        await asyncio.sleep(0.1)


async def legacy_contact(engine: AsyncEngine, public_id: str, *, email: str | None = None,
                         telegram: str | None = None, user_id: int | None = None) -> None:
    """A contact left on an invoice's pay page before payer tags (migration 0009): such rows
    are kept and still name a payer when they can only be theirs (ledger/purchases.py)."""
    await run_sql(engine, "INSERT INTO invoice_contacts (invoice_id, user_id, email, telegram) "
                          "SELECT id, :user, :email, :telegram FROM invoices "
                          "WHERE public_id = :id", id=public_id.upper(), user=user_id,
                  email=email, telegram=telegram.lstrip("@") if telegram else None)
