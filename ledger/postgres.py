"""Where the database comes from: DATABASE_URL, or an embedded PostgreSQL (pgserver's binaries)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import shutil
import subprocess
import tempfile
import warnings
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


# A busy machine can take long to start a server (initdb, crash recovery after a kill):
# pg_ctl waits this long for it, where pgserver gave up after 10 s (and left it starting).
_PG_CTL_WAIT_SECONDS = 120
_PG_USER = "pgserver"  # PostgreSQL refuses to run as root; pgserver's unprivileged user then


@contextlib.contextmanager
def embedded_postgres(data_dir: str | os.PathLike[str]) -> Iterator[str]:
    """Start (or join) an embedded PostgreSQL in `data_dir`, yield its URL; the last process
    using it stops it on the way out.

    pgserver supplies the binaries; the life cycle is ours: initdb on first use, the server
    listening on a Unix socket only (in the data directory), never on a TCP port. Each process
    using the directory holds a shared flock on it; starting and stopping take it exclusively.
    So a server found running with nobody holding the lock was left by a killed process: it is
    adopted, and the next clean stop of the last user stops it (pgserver counted users in a pid
    list a killed process never left, so such a server was never stopped again). The lock is
    the directory's own: servers in different directories start side by side.
    """
    path = Path(data_dir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY)  # flock works on a directory: no file beside the data
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits only for a start or stop of this directory
        try:
            url = _ensure_running(path)
        finally:
            fcntl.flock(fd, fcntl.LOCK_SH)  # in use by us, as long as we hold it
        yield url
    finally:
        try:
            _stop_if_last(path, fd)
        finally:
            os.close(fd)  # releases our lock (the kernel does the same for a killed process)


def _pgserver_bin() -> Path:
    """pgserver's PostgreSQL binaries (importing it computes a lock path we do not use: its
    warning that XDG_RUNTIME_DIR is unset is beside the point)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        from pgserver.postgres_server import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


def _pg(program: str, *args: str, path: Path) -> subprocess.CompletedProcess[str]:
    # Output to files, not pipes: a server started by pg_ctl could hold a pipe open forever.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        result = subprocess.run(
            [str(_pgserver_bin() / program), "-D", str(path), *args], stdin=subprocess.DEVNULL,
            stdout=out, stderr=err, text=True, check=False,
            user=_PG_USER if os.geteuid() == 0 else None,
        )
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(result.args, result.returncode, out.read(), err.read())


def _checked(result: subprocess.CompletedProcess[str], what: str, path: Path) -> None:
    if result.returncode != 0:
        log_file = path / "log"
        tail = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
        raise RuntimeError(f"embedded PostgreSQL: {what} failed in {path}: "
                           f"{result.stderr.strip() or result.stdout.strip()}\n{tail}")


def _ensure_running(path: Path) -> str:
    """The server of `path` running (initialised, started or adopted); its URL. Called with
    the directory's lock held exclusively."""
    _pgserver_bin()  # imports pgserver quietly, before pgserver.utils
    from pgserver.utils import PostmasterInfo

    if os.geteuid() == 0:
        _prepare_for_pg_user(path)
    if not (path / "PG_VERSION").exists():
        _checked(_pg("initdb", "--auth=trust", "--auth-local=trust", "--encoding=utf8",
                     "-U", "postgres", path=path), "initdb", path)
    if _pg("pg_ctl", "status", path=path).returncode == 0:
        # Nobody else holds the lock: a killed process left it running. It is ours now.
        log.warning("adopting the embedded PostgreSQL left running in %s", path)
    else:
        _checked(_pg("pg_ctl", "start", "-w", "-t", str(_PG_CTL_WAIT_SECONDS),
                     "-l", str(path / "log"), "-o", f'-h "" -k "{_socket_dir(path)}"',
                     path=path), "start", path)
    info = PostmasterInfo.read_from_pgdata(path)
    if info is None or not info.is_running():
        raise RuntimeError(f"embedded PostgreSQL in {path} is not running after start")
    log.info("embedded PostgreSQL running in %s", path)
    return info.get_uri()


def _stop_if_last(path: Path, fd: int) -> None:
    """Stop the server unless another process still uses it (holds its shared lock)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # from shared: only if we are alone
    except BlockingIOError:
        log.info("embedded PostgreSQL in %s left running for the other process using it", path)
        return
    if _pg("pg_ctl", "status", path=path).returncode != 0:
        return  # not running (it died, or was stopped by hand)
    result = _pg("pg_ctl", "stop", "-w", "-t", str(_PG_CTL_WAIT_SECONDS), "-m", "fast",
                 path=path)
    if result.returncode != 0:
        log.error("embedded PostgreSQL in %s did not stop: %s", path, result.stderr.strip())
    else:
        log.info("embedded PostgreSQL stopped")


def _socket_dir(path: Path) -> Path:
    """The data directory, unless its path is too long for a Unix socket name (~107 bytes)."""
    if len(str(path / ".s.PGSQL.5432").encode()) < 100:
        return path
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    short = Path(tempfile.gettempdir()) / f"paybot-pgsock-{os.getuid()}" / digest
    short.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(short, _PG_USER)
    return short


def _prepare_for_pg_user(path: Path) -> None:
    """Running as root: the server runs as pgserver's user, who must own the data directory
    and reach the binaries (as pgserver itself arranges)."""
    import stat

    from pgserver.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    bin_dir = _pgserver_bin()
    ensure_user_exists(_PG_USER)
    ensure_prefix_permissions(path)
    ensure_prefix_permissions(bin_dir)
    readable = stat.S_IRGRP | stat.S_IROTH
    ensure_folder_permissions(bin_dir, readable | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(bin_dir.parent / "lib", readable)
    shutil.chown(path, _PG_USER, _PG_USER)


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


def make_engine(
    url: str, *, pool_size: int = 10, connect_timeout: float = 10.0,
    command_timeout: float | None = None, pool_timeout: float = 30.0,
) -> AsyncEngine:
    """The engine every part shares. Deadlines keep a frozen or unreachable server from
    hanging callers: `connect_timeout` to open a connection, `command_timeout` for one
    statement (asyncpg cancels it client-side, so it also fires when the server does not
    answer at all; None: no limit, for migrations and benchmarks), `pool_timeout` to wait for
    a pooled connection. Each raises TimeoutError, which the edges answer with 503. The
    defaults suit tools and tests; `paybot run` passes DATABASE_*_TIMEOUT (a few seconds)."""
    connect_args: dict[str, float] = {"timeout": connect_timeout}
    if command_timeout is not None:
        connect_args["command_timeout"] = command_timeout
    return create_async_engine(
        asyncpg_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=pool_timeout,
        pool_pre_ping=False,
        connect_args=connect_args,
        # Ledger functions are single statements that are their own transaction: no BEGIN/COMMIT
        # round trips around them. Multi-statement work opens an explicit transaction.
        isolation_level="AUTOCOMMIT",
    )
