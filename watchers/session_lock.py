"""One worker at a time across processes: a PostgreSQL session-level advisory lock, held by a
connection of its own for as long as the worker is active. Another process trying meanwhile
stands by (logged once); when the holder's session ends (stopped, killed, connection lost),
the lock goes with it and a standby takes over. Used by the TON watcher (per followed address)
and the payout sender (per hot wallet)."""

from __future__ import annotations

import hashlib
import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)


def lock_key(name: str) -> int:
    """A 64-bit advisory lock key for a name (e.g. "paybot.ton-watcher:0:ab…")."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class SessionLock:
    def __init__(self, engine: AsyncEngine, name: str, what: str, on: str = "") -> None:
        self._engine = engine
        self.key = lock_key(name)
        self.what = what  # for the logs: "TON watcher", "payout sender"
        self.on = f" on {on}" if on else ""  # and what it works on
        self._conn: AsyncConnection | None = None
        self._standby_logged = False

    @property
    def held(self) -> bool:
        return self._conn is not None

    async def acquire(self) -> tuple[AsyncConnection | None, bool]:
        """(the connection holding the lock, whether it was taken just now); (None, False)
        while another process holds it. A connection found dead is dropped and taken again."""
        if self._conn is not None:
            try:
                await self._conn.exec_driver_sql("SELECT 1")
            except Exception:
                log.warning("%s lost its database connection; reconnecting", self.what)
                await self.release()
        if self._conn is not None:
            return self._conn, False
        conn = await self._engine.connect()
        try:
            got = (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"),
                                      {"k": self.key})).scalar()
        except BaseException:
            await conn.invalidate()
            await conn.close()
            raise
        if not got:
            await conn.close()
            if not self._standby_logged:
                log.info("another %s is active%s; standing by", self.what, self.on)
                self._standby_logged = True
            return None, False
        self._conn, self._standby_logged = conn, False
        return conn, True

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                # Discard the session rather than pool it: that is what releases the lock.
                await conn.invalidate()
                await conn.close()
            except Exception:
                log.debug("closing the %s connection failed", self.what, exc_info=True)
