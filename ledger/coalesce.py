"""Coalescing concurrent requests into one database call (the way TigerBeetle batches).

Each request keeps its own outcome, but requests that arrive together share one round trip,
one transaction and one WAL flush. While a batch is in flight the next one fills up, so a
lone request waits for no timer and a busy process sends batches as large as the load makes
them. Subclasses say what one call is (`_statement`) and how its rows answer each request
(`_settle`); payments (ledger/batcher.py) and invoices (ledger/invoice_batches.py) use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import asyncpg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger.errors import LedgerError, from_db_error

RETRIES = 3
RETRYABLE = {"40P01", "40001"}  # deadlock detected, serialization failure

T = TypeVar("T")
Row = asyncpg.Record  # read like a mapping: row["column"]


@dataclass(slots=True)
class Pending(Generic[T]):
    """One request waiting in a batch: its arguments and the future its caller awaits."""

    args: Any
    future: asyncio.Future[T] = field(repr=False)


class Coalescer(Generic[T]):
    max_batch = 64
    max_in_flight = 4  # lanes: batches on separate connections at once (keeps group commit busy)

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._queue: list[Pending[T]] = []
        self._lanes: set[asyncio.Task[None]] = set()

    # --- what a subclass says -----------------------------------------------------------------

    def _conflicts(self, args: Any) -> tuple[Hashable, ...]:
        """Requests sharing any of these keys never go in the same batch."""
        return ()

    def _statement(self, batch: list[Pending[T]]) -> tuple[str, list[Any]]:
        """The SQL (with $1, $2 ... placeholders) and its arguments for one batch."""
        raise NotImplementedError

    def _settle(self, batch: list[Pending[T]], rows: Sequence[Row]) -> list[Pending[T]]:
        """Resolve the futures from the rows; return the requests to send again."""
        raise NotImplementedError

    # --- the machinery ------------------------------------------------------------------------

    async def submit(self, args: Any) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append(Pending(args, future))
        self._open_lane()
        return await future

    def _open_lane(self) -> None:
        if len(self._lanes) < self.max_in_flight:
            lane = asyncio.create_task(self._lane())
            self._lanes.add(lane)
            lane.add_done_callback(self._lane_closed)

    def _lane_closed(self, lane: asyncio.Task[None]) -> None:
        self._lanes.discard(lane)
        if self._queue:  # requests sent back for another batch after the lane had finished
            self._open_lane()

    def _take(self) -> list[Pending[T]]:
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
        return batch

    async def _lane(self) -> None:
        """Send batch after batch over one connection while requests keep coming; a lone
        request waits for no timer, and under load each batch holds what queued meanwhile."""
        while self._queue:
            batch: list[Pending[T]] = []
            try:
                async with self._engine.connect() as conn:
                    while True:
                        batch = self._take()
                        rows = await self._send(conn, batch)
                        if not self._queue:
                            break  # give the connection back before the last answers
                        self._resolve(batch, rows)
                        batch = []
            except BaseException as exc:
                if not batch and isinstance(exc, Exception):
                    batch = self._take()  # no connection to be had: the next batch fails
                for req in batch:
                    if not req.future.done():
                        req.future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            self._resolve(batch, rows)

    async def _execute(self, conn: AsyncConnection, batch: list[Pending[T]]) -> Sequence[Row]:
        # The one hot statement goes to asyncpg directly: SQLAlchemy's per-execution work
        # costs more than the driver's when a batch is small. The connection is the pool's.
        sql, args = self._statement(batch)
        driver = (await conn.get_raw_connection()).driver_connection
        try:
            return await driver.fetch(sql, *args)
        except asyncpg.PostgresError:
            raise  # the server answered: the connection is fine
        except BaseException:
            await conn.invalidate()  # broken or interrupted mid-call: never reuse it
            raise

    async def _call(self, conn: AsyncConnection, batch: list[Pending[T]]) -> Sequence[Row]:
        for attempt in range(RETRIES + 1):
            try:
                return await self._execute(conn, batch)
            except (asyncpg.PostgresError, DBAPIError) as exc:
                # A deadlock or serialization failure rolled the whole batch back: nothing
                # happened, so sending it again is safe (and each request keeps its key).
                if _sqlstate(exc) not in RETRYABLE or attempt == RETRIES:
                    typed = from_db_error(exc)
                    if typed is not None:
                        raise typed from exc
                    raise
        raise AssertionError("unreachable")

    async def _send(self, conn: AsyncConnection, batch: list[Pending[T]]
                    ) -> Sequence[Row] | None:
        """The batch's rows, or None when each request was already answered on its own."""
        try:
            return await self._call(conn, batch)
        except Exception as exc:
            if len(batch) == 1 or not _refused(exc):
                raise
        # The database refused the call as a whole, so nothing in it happened. Send each
        # request alone, so that one bad request cannot fail the others.
        for req in batch:
            try:
                self._resolve([req], await self._call(conn, [req]))
            except Exception as alone:
                req.future.set_exception(alone)
        return None

    def _resolve(self, batch: list[Pending[T]], rows: Sequence[Row] | None) -> None:
        if rows is None:
            return
        again = self._settle(batch, rows)
        for req in batch:
            if not req.future.done() and req not in again:
                req.future.set_exception(RuntimeError("the batch gave no answer for a request"))
        if again:
            self._queue.extend(again)
            self._open_lane()


def _sqlstate(exc: BaseException) -> str | None:
    return getattr(getattr(exc, "orig", exc), "sqlstate", None)


def _refused(exc: Exception) -> bool:
    """True when the server answered with an error (the transaction surely rolled back), not
    when the connection broke (the commit may have happened)."""
    return isinstance(exc, LedgerError) or _sqlstate(exc) is not None
