"""Coalescing concurrent requests into one database call (the way TigerBeetle batches).

Each request keeps its own outcome, but requests that arrive together share one round trip,
one transaction and one WAL flush. While a batch is in flight the next one fills up, so a
lone request waits for no timer and a busy process sends batches as large as the load makes
them. Subclasses say what one call is (`_statement`) and how its rows answer each request
(`_settle`); payments (ledger/batcher.py) and invoices (ledger/invoice_batches.py) use it.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import RowMapping, TextClause
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger.db import typed_errors
from ledger.errors import LedgerError

RETRIES = 3
RETRYABLE = {"40P01", "40001"}  # deadlock detected, serialization failure

T = TypeVar("T")


@dataclass(slots=True)
class Pending(Generic[T]):
    """One request waiting in a batch: its arguments and the future its caller awaits."""

    args: Any
    future: asyncio.Future[T] = field(repr=False)


class Coalescer(Generic[T]):
    max_batch = 64
    max_in_flight = 4  # batches on separate connections at once: keeps group commit busy

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._queue: list[Pending[T]] = []
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(self.max_in_flight)
        self._runner: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()

    # --- what a subclass says -----------------------------------------------------------------

    def _conflicts(self, args: Any) -> tuple[Hashable, ...]:
        """Requests sharing any of these keys never go in the same batch."""
        return ()

    def _statement(self, batch: list[Pending[T]]) -> tuple[TextClause, dict[str, Any]]:
        raise NotImplementedError

    def _settle(self, batch: list[Pending[T]], rows: Sequence[RowMapping]) -> list[Pending[T]]:
        """Resolve the futures from the rows; return the requests to send again."""
        raise NotImplementedError

    # --- the machinery ------------------------------------------------------------------------

    async def submit(self, args: Any) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append(Pending(args, future))
        self._wake()
        return await future

    def _wake(self) -> None:
        self._wakeup.set()
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while self._queue:
            await self._slots.acquire()
            batch: list[Pending[T]] = []
            rest: list[Pending[T]] = []
            taken: set[Hashable] = set()
            for req in self._queue:
                keys = self._conflicts(req.args)
                if len(batch) < self.max_batch and taken.isdisjoint(keys):
                    batch.append(req)
                    taken.update(keys)
                else:
                    rest.append(req)
            self._queue = rest
            task = asyncio.create_task(self._send(batch))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)
            if not self._queue:
                self._wakeup.clear()
                # Wait for the next request or for a batch to come back with some to resend.
                await self._wait_for_work()

    async def _wait_for_work(self) -> None:
        while not self._queue and self._batches:
            waiter = asyncio.create_task(self._wakeup.wait())
            await asyncio.wait({waiter, *self._batches}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()

    async def _execute(self, conn: AsyncConnection, batch: list[Pending[T]]
                       ) -> Sequence[RowMapping]:
        sql, params = self._statement(batch)
        return (await conn.execute(sql, params)).mappings().all()

    async def _call(self, batch: list[Pending[T]]) -> Sequence[RowMapping]:
        for attempt in range(RETRIES + 1):
            try:
                with typed_errors():
                    async with self._engine.connect() as conn:
                        return await self._execute(conn, batch)
            except DBAPIError as exc:
                # A deadlock or serialization failure rolled the whole batch back: nothing
                # happened, so sending it again is safe (and each request keeps its key).
                state = getattr(exc.orig, "sqlstate", None)
                if state not in RETRYABLE or attempt == RETRIES:
                    raise
        raise AssertionError("unreachable")

    async def _send(self, batch: list[Pending[T]]) -> None:
        try:
            try:
                rows = await self._call(batch)
            except Exception as exc:
                if len(batch) == 1 or not _refused(exc):
                    raise
                # The database refused the call as a whole, so nothing in it happened. Send
                # each request alone, so that one bad request cannot fail the others.
                for req in batch:
                    try:
                        self._resolve([req], await self._call([req]))
                    except Exception as alone:
                        req.future.set_exception(alone)
                return
        except BaseException as exc:
            for req in batch:
                if not req.future.done():
                    req.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        finally:
            self._slots.release()
        self._resolve(batch, rows)

    def _resolve(self, batch: list[Pending[T]], rows: Sequence[RowMapping]) -> None:
        again = self._settle(batch, rows)
        for req in batch:
            if not req.future.done() and req not in again:
                req.future.set_exception(RuntimeError("the batch gave no answer for a request"))
        if again:
            self._queue.extend(again)
            self._wake()


def _refused(exc: Exception) -> bool:
    """True when the server answered with an error (the transaction surely rolled back), not
    when the connection broke (the commit may have happened)."""
    if isinstance(exc, LedgerError):
        return True
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) is not None

C = TypeVar("C", bound=Coalescer[Any])
_per_engine: weakref.WeakKeyDictionary[
    AsyncEngine, dict[tuple[type[Any], asyncio.AbstractEventLoop], Coalescer[Any]]
] = weakref.WeakKeyDictionary()


def coalescer_for(engine: AsyncEngine, kind: type[C]) -> C:
    """The coalescer of this kind for this engine on the running loop (one each)."""
    loop = asyncio.get_running_loop()
    registry = _per_engine.setdefault(engine, {})
    found = registry.get((kind, loop))
    if found is None:
        for stale in [k for k in registry if k[1].is_closed()]:
            del registry[stale]
        found = registry[(kind, loop)] = kind(engine)
    return found  # type: ignore[return-value]
