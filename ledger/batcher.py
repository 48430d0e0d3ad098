"""Gathers concurrent internal payments into one database call.

Each payment is still its own all-or-nothing request with its own result, but many of them
share one transaction, one round trip and one WAL flush (the way TigerBeetle batches
transfers). While a batch is in flight the next one fills up, so a lone request waits for no
timer and a busy process sends batches as large as the load makes them.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import RowMapping, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.db import typed_errors
from ledger.errors import from_code
from ledger.models import PaymentResult

MAX_BATCH = 64
RETRIES = 3
RETRYABLE = {"40P01", "40001"}  # deadlock detected, serialization failure
MAX_IN_FLIGHT = 4  # batches on separate connections at once: keeps group commit busy

_SQL = text(
    "SELECT * FROM process_invoice_payments(CAST(:invoices AS text[]), "
    "CAST(:buyers AS bigint[]), CAST(:keys AS text[]))"
)


@dataclass(slots=True)
class _Request:
    invoice: str
    buyer: int
    key: str | None
    future: asyncio.Future[PaymentResult] = field(repr=False)


class PaymentBatcher:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._queue: list[_Request] = []
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._runner: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()

    async def pay(self, invoice: str, buyer: int, key: str | None) -> PaymentResult:
        future: asyncio.Future[PaymentResult] = asyncio.get_running_loop().create_future()
        self._queue.append(_Request(invoice, buyer, key, future))
        self._wakeup.set()
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        return await future

    async def _run(self) -> None:
        while self._queue:
            await self._slots.acquire()
            # One request per invoice and per buyer in a batch; the rest waits for the next.
            batch: list[_Request] = []
            rest: list[_Request] = []
            invoices: set[str] = set()
            buyers: set[int] = set()
            for req in self._queue:
                if len(batch) < MAX_BATCH and req.invoice not in invoices \
                        and req.buyer not in buyers:
                    batch.append(req)
                    invoices.add(req.invoice)
                    buyers.add(req.buyer)
                else:
                    rest.append(req)
            self._queue = rest
            task = asyncio.create_task(self._send(batch))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)
            if not self._queue:
                self._wakeup.clear()
                # Wait for the next request or for a batch to come back with conflicts.
                await self._wait_for_work()

    async def _wait_for_work(self) -> None:
        while not self._queue and self._batches:
            waiter = asyncio.create_task(self._wakeup.wait())
            await asyncio.wait({waiter, *self._batches}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()

    async def _call(self, batch: list[_Request]) -> Sequence[RowMapping]:
        params = {"invoices": [r.invoice for r in batch], "buyers": [r.buyer for r in batch],
                  "keys": [r.key for r in batch]}
        for attempt in range(RETRIES + 1):
            try:
                with typed_errors():
                    async with self._engine.connect() as conn:
                        return (await conn.execute(_SQL, params)).mappings().all()
            except DBAPIError as exc:
                # A deadlock or serialization failure rolled the whole batch back: nothing
                # happened, so sending it again is safe (and each request keeps its key).
                state = getattr(exc.orig, "sqlstate", None)
                if state not in RETRYABLE or attempt == RETRIES:
                    raise
        raise AssertionError("unreachable")

    async def _send(self, batch: list[_Request]) -> None:
        try:
            rows = await self._call(batch)
        except BaseException as exc:  # the whole call failed: every request in it did
            for req in batch:
                if not req.future.done():
                    req.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        finally:
            self._slots.release()
        retry = False
        for row in rows:
            req = batch[row["idx"] - 1]
            if req.future.done():
                continue
            if row["error"] == "batch_conflict":
                self._queue.append(req)
                retry = True
            elif row["error"]:
                req.future.set_exception(from_code(row["error"], row["error_detail"]))
            else:
                req.future.set_result(PaymentResult(
                    payment_id=row["payment_id"], replayed=row["replayed"],
                    invoice_status=row["invoice_status"], grant_id=row["grant_id"],
                    buyer_balance=row["buyer_balance"],
                ))
        if retry:
            self._wakeup.set()
            if self._runner is None or self._runner.done():
                self._runner = asyncio.create_task(self._run())


_batchers: weakref.WeakKeyDictionary[AsyncEngine, dict[asyncio.AbstractEventLoop, PaymentBatcher]]
_batchers = weakref.WeakKeyDictionary()


def batcher_for(engine: AsyncEngine) -> PaymentBatcher:
    """The batcher of this engine on the running event loop (one per engine and loop)."""
    loop = asyncio.get_running_loop()
    per_loop = _batchers.setdefault(engine, {})
    batcher = per_loop.get(loop)
    if batcher is None:
        for stale in [lp for lp in per_loop if lp.is_closed()]:
            del per_loop[stale]
        batcher = per_loop[loop] = PaymentBatcher(engine)
    return batcher
