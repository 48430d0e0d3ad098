"""The one read path for invoices: the pay page, its status API, the Mini App, the bot's cards
and buttons, the seller API and the notices all read an invoice (with its seller) here.

- `get_invoice(db, id)`: the invoice alone, on an engine or inside a caller's transaction.
- `InvoiceReader`: the same query for every id asked at about the same time — one round trip
  and one pooled connection per batch (ledger/coalesce.py); each answer is still read after
  its request arrived, never an older state.
- `RecentInvoices`: the one cache, with one rule — a read at most `ttl` seconds old, for what
  is only shown (a page, a card, a QR image); anything that decides (a payment, a
  cancellation) is decided by the SQL function on the row itself, and a change made through
  this process's `Ledger` drops the cached read at once. `ttl` 0: always read.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.coalesce import Coalescer, Pending, Row
from ledger.db import Executor, fetch_all, fetch_one
from ledger.errors import InvoiceNotFound
from ledger.ids import parse_invoice_id
from ledger.models import INVOICE_FIELDS, Invoice, User

_SELLER = ("id", "telegram_id", "username", "language", "deposit_code", "first_name",
           "last_name")
_COLUMNS = ", ".join([f"i.{c}" for c in INVOICE_FIELDS]
                     + [f"u.{c} AS seller_{c}" for c in _SELLER])
_READ_MANY = f"""
SELECT {_COLUMNS}
  FROM invoices i JOIN users u ON u.id = i.seller_id
 WHERE i.public_id = ANY($1::text[])
"""


@dataclass(frozen=True, eq=False)
class InvoiceRead:
    """An invoice and its seller, as read at one moment (compared by identity: a page may
    remember what it rendered from this very read)."""

    invoice: Invoice
    seller: User

    @classmethod
    def from_row(cls, row: Any) -> InvoiceRead:
        seller = User(*(row[f"seller_{c}"] for c in _SELLER))
        return cls(Invoice.from_row(row), seller)


async def get_invoice(db: Executor, public_id: str) -> Invoice:
    """The invoice for a public id, in any case; InvoiceNotFound for unknown or malformed ids."""
    canonical = parse_invoice_id(public_id)
    row = None
    if canonical is not None:
        row = await fetch_one(db, "SELECT * FROM invoices WHERE public_id = :id", id=canonical)
    if row is None:
        raise InvoiceNotFound(public_id[:40])
    return Invoice.from_row(row)


class InvoiceReader(Coalescer[InvoiceRead | None]):
    max_in_flight = 2  # a read needs no group commit; two lanes keep a lone read from waiting

    def _statement(self, batch: list[Pending[InvoiceRead | None]]) -> tuple[str, list[Any]]:
        return _READ_MANY, [sorted({r.args for r in batch})]

    def _settle(self, batch: list[Pending[InvoiceRead | None]], rows: Sequence[Row]
                ) -> list[Pending[InvoiceRead | None]]:
        found = {row["public_id"]: InvoiceRead.from_row(row) for row in rows}
        for req in batch:
            req.future.set_result(found.get(req.args))
        return []

    async def read(self, public_id: str) -> InvoiceRead:
        """Like read_invoice, shared with every concurrent read."""
        canonical = parse_invoice_id(public_id)
        found = await self.submit(canonical) if canonical is not None else None
        if found is None:
            raise InvoiceNotFound(public_id[:40])
        return found


class RecentInvoices:
    """Invoice reads at most `ttl` seconds old, for what is only shown. A multi-use invoice
    shared in a big channel is opened by many people at once; with this, that costs one query
    per `ttl` instead of one per visitor. Bounded; unknown ids are not remembered."""

    def __init__(self, reader: InvoiceReader, ttl: float, size: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.reader = reader
        self.ttl = ttl
        self.size = size
        self.clock = clock
        self._items: OrderedDict[str, tuple[float, InvoiceRead]] = OrderedDict()

    async def get(self, public_id: str) -> InvoiceRead:
        canonical = parse_invoice_id(public_id)
        if self.ttl <= 0 or canonical is None:
            return await self.reader.read(public_id)
        now = self.clock()
        hit = self._items.get(canonical)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        read = await self.reader.read(canonical)
        self._items[canonical] = (now, read)
        self._items.move_to_end(canonical)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return read

    def forget(self, public_id: str) -> None:
        self._items.pop(public_id, None)


async def invoices_by_public_id(db: Executor, public_ids: Iterable[str]) -> dict[str, Invoice]:
    rows = await fetch_all(
        db, "SELECT * FROM invoices WHERE public_id = ANY(CAST(:ids AS text[]))",
        ids=sorted(set(public_ids)),
    )
    return {r["public_id"]: Invoice.from_row(r) for r in rows}
