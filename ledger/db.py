"""Thin helpers over SQLAlchemy Core: run one statement, map PB-class errors to typed ones."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from sqlalchemy import RowMapping, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger.errors import from_db_error


@contextlib.contextmanager
def typed_errors() -> Iterator[None]:
    try:
        yield
    except DBAPIError as exc:
        typed = from_db_error(exc)
        if typed is None:
            raise
        raise typed from exc


Executor = AsyncEngine | AsyncConnection


@contextlib.asynccontextmanager
async def connection(db: Executor) -> AsyncIterator[AsyncConnection]:
    if isinstance(db, AsyncConnection):
        yield db
    else:
        async with db.connect() as conn:
            yield conn


async def fetch_one(db: Executor, sql: str, **params: Any) -> RowMapping | None:
    with typed_errors():
        async with connection(db) as conn:
            result = await conn.execute(text(sql), params)
            return result.mappings().first()


async def fetch_all(db: Executor, sql: str, **params: Any) -> Sequence[RowMapping]:
    with typed_errors():
        async with connection(db) as conn:
            result = await conn.execute(text(sql), params)
            return result.mappings().all()


@contextlib.asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One explicit READ COMMITTED transaction (the engine itself runs in autocommit, since most
    use cases are a single SQL function call that is its own transaction)."""
    with typed_errors():
        async with engine.execution_options(isolation_level="READ COMMITTED").begin() as conn:
            yield conn
