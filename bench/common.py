"""Shared benchmark plumbing: a server to run against and throwaway databases on it."""

from __future__ import annotations

import contextlib
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator

import asyncpg
from sqlalchemy.engine import make_url

from ledger.postgres import embedded_postgres, libpq_url


def with_database(url: str, name: str) -> str:
    return make_url(libpq_url(url)).set(database=name).render_as_string(hide_password=False)


@contextlib.contextmanager
def server(database_url: str | None) -> Iterator[str]:
    """The given server, or an embedded one in a temporary directory for this run."""
    if database_url:
        yield libpq_url(database_url)
        return
    with tempfile.TemporaryDirectory(prefix="paybot-bench-") as data_dir:
        with embedded_postgres(data_dir) as url:
            yield url


@contextlib.asynccontextmanager
async def scratch_database(server_url: str, prefix: str) -> AsyncIterator[str]:
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield with_database(server_url, name)
    finally:
        admin = await asyncpg.connect(with_database(server_url, "postgres"))
        try:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return sorted_values[index]
