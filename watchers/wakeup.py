"""After commit, one hook: whatever path wrote a notice or a callback to the outbox (a bot tap,
the Mini App, the seller API, the TON watcher, a job, another replica), delivery starts now,
not at the next scheduled poll.

The outbox's insert trigger (ledger/sql/outbox.sql) sends `NOTIFY paybot_outbox`; PostgreSQL
delivers a notification only when its transaction commits, so a wake-up never arrives for
money that did not move. Each process listens on one dedicated connection and kicks its
deliverers (`Waker`). The two hot paths, balance payments and the TON watcher's settlements,
do not NOTIFY (its lock would serialize their commits): the Ledger or the watcher that made
them calls `OutboxListener.wake` after commit instead.
The scheduled polls stay as the safety net: a lost connection, a notification sent while
nobody listened, a retry that falls due later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

CHANNEL = "paybot_outbox"
RECONNECT_SECONDS = (1.0, 30.0)  # first and longest wait before listening again


class Waker:
    """Runs `work` now when kicked; kicks that arrive while it runs make it run once more
    (a burst of a thousand payments is a few passes, never a thousand)."""

    def __init__(self, name: str, work: Callable[[], Awaitable[Any]]) -> None:
        self.name = name
        self._work = work
        self._again = False
        self._task: asyncio.Task[None] | None = None

    def kick(self) -> None:
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.create_task(self._run(), name=f"wake {self.name}")

    async def _run(self) -> None:
        while True:
            self._again = False
            try:
                await self._work()
            except Exception:  # the scheduled poll picks the work up again
                log.exception("%s after a wake-up failed", self.name)
            if not self._again:
                return

    async def close(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


class OutboxListener:
    """LISTEN paybot_outbox on a connection of its own; each notification kicks every waker.
    Start-up never waits on it, and a lost connection is retried with backoff."""

    def __init__(self, database_url: str, wakers: list[Waker]) -> None:
        self.database_url = database_url
        self.wakers = wakers
        self.listening = asyncio.Event()  # set while a LISTEN is in place (tests, /healthz)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="outbox listener")

    def wake(self, *_: object) -> None:
        """Kick every waker: on a notification, and from this process's after-commit hook."""
        for waker in self.wakers:
            waker.kick()

    async def _listen_forever(self) -> None:
        delay = RECONNECT_SECONDS[0]
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self.database_url, timeout=10)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await conn.add_listener(CHANNEL, self.wake)
                self.listening.set()
                delay = RECONNECT_SECONDS[0]
                self.wake()  # whatever was written while nobody listened
                await lost.wait()
                log.warning("outbox listener lost its connection; listening again")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox listener cannot listen (%s: %s); retrying in %.0fs",
                            type(exc).__name__, str(exc)[:200], delay)
            finally:
                self.listening.clear()
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=2))
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_SECONDS[1])

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*(w.close() for w in self.wakers))
