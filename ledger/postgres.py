"""Where the database comes from: DATABASE_URL, or an embedded PostgreSQL (pgserver)."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

log = logging.getLogger(__name__)


def asyncpg_url(url: str) -> str:
    """SQLAlchemy's asyncpg form of a libpq-style URL (the embedded server gives those)."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {url.split('@')[-1]!r}")


def libpq_url(url: str) -> str:
    """The plain form, for libpq tools such as psql and pgbench."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@contextlib.contextmanager
def embedded_postgres(data_dir: str | os.PathLike[str]) -> Iterator[str]:
    """Start (or join) an embedded PostgreSQL in `data_dir`, yield its URL, stop it on exit.

    pgserver runs initdb on first use and keeps the data between runs; the server listens on a
    Unix socket inside the data directory only, never on a TCP port.
    """
    if "XDG_RUNTIME_DIR" not in os.environ:  # where pgserver keeps its inter-process lock file
        runtime = Path(tempfile.gettempdir()) / f"paybot-runtime-{os.getuid()}"
        runtime.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    import pgserver  # imported lazily: only needed when DATABASE_URL is unset

    path = Path(data_dir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(path, cleanup_mode="stop")
    log.info("embedded PostgreSQL running in %s", path)
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        log.info("embedded PostgreSQL stopped")


def with_database(url: str, name: str) -> str:
    """The same server's URL for database `name`."""
    return make_url(libpq_url(url)).set(database=name).render_as_string(hide_password=False)


@contextlib.contextmanager
def server(database_url: str | None) -> Iterator[str]:
    """A server to make throwaway databases on (tests, benchmarks): the one `database_url`
    points at, or an embedded one in a temporary directory for the life of the block."""
    if database_url:
        yield libpq_url(database_url)
        return
    with tempfile.TemporaryDirectory(prefix="paybot-pg-") as data_dir:
        with embedded_postgres(data_dir) as url:
            yield url


@contextlib.asynccontextmanager
async def throwaway_database(server_url: str, prefix: str) -> AsyncIterator[str]:
    """A new empty database on the server, dropped (connections and all) afterwards."""
    import asyncpg

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


def pg_bin_dir() -> Path | None:
    """Directory with psql/pgbench: the embedded server's own, else the system's."""
    try:
        import pgserver.postgres_server as ps

        return Path(ps.POSTGRES_BIN_PATH)
    except Exception:  # pragma: no cover - pgserver is a hard dependency
        return None


def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        asyncpg_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        # Ledger functions are single statements that are their own transaction: no BEGIN/COMMIT
        # round trips around them. Multi-statement work opens an explicit transaction.
        isolation_level="AUTOCOMMIT",
    )
