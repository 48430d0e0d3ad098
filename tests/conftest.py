"""Test fixtures: a real PostgreSQL (DATABASE_URL's server, or an embedded one) with a fresh
database per test run, migrated to head."""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.accounts import adjust_balance
from ledger.migrate import upgrade
from ledger.models import User
from ledger.postgres import embedded_postgres, libpq_url, make_engine
from ledger.users import ensure_user


def with_database(url: str, name: str) -> str:
    return make_url(libpq_url(url)).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """URL of a PostgreSQL server's maintenance database."""
    if os.environ.get("DATABASE_URL"):
        yield libpq_url(os.environ["DATABASE_URL"])
        return
    with tempfile.TemporaryDirectory(prefix="paybot-pg-") as data_dir:
        with embedded_postgres(data_dir) as url:
            yield url


@pytest.fixture(scope="session")
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    """Creates an empty database for this run; yields its URL; drops it afterwards."""

    @contextlib.asynccontextmanager
    async def admin() -> AsyncIterator[asyncpg.Connection]:
        conn = await asyncpg.connect(with_database(server_url, "postgres"))
        try:
            yield conn
        finally:
            await conn.close()

    name = f"paybot_test_{secrets.token_hex(4)}"
    async with admin() as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(server_url, name)
    finally:
        async with admin() as conn:
            await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
async def database_url(fresh_database: str) -> str:
    await upgrade(fresh_database)
    return fresh_database


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url, pool_size=10)
    yield eng
    await eng.dispose()


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
    created: list[str] = []

    async def _make() -> str:
        name = f"paybot_scratch_{secrets.token_hex(4)}"
        conn = await asyncpg.connect(with_database(server_url, "postgres"))
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        created.append(name)
        return with_database(server_url, name)

    yield _make
    conn = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        for name in created:
            await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def run_sql(engine: AsyncEngine, sql: str, **params: object) -> list[dict[str, object]]:
    """Direct SQL for assertions about stored state (tests only)."""
    from sqlalchemy import text

    async with engine.connect() as conn:
        result = await conn.execute(text(sql), params)
        return [dict(r) for r in result.mappings().all()] if result.returns_rows else []
