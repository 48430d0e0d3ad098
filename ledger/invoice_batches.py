"""Invoices issued and read in batches (ledger/coalesce.py): concurrent requests share one call.

Issuing: create_invoices() (migrations/versions/0005_invoice_batches.py) writes each checked
NewInvoice with its idempotency key in one transaction per batch. Reading: one
`public_id = ANY(...)` query answers every lookup that arrived while the previous one ran, so
each answer is still read after its request arrived (never a cached, older state).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence
from typing import Any

from sqlalchemy import RowMapping, TextClause, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger.coalesce import Coalescer, Pending
from ledger.errors import IdempotencyKeyReused
from ledger.ids import new_invoice_id
from ledger.invoices import NewInvoice
from ledger.models import Invoice

Issued = tuple[Invoice, bool]  # the invoice, and whether an earlier request made it

_CREATE = text("""
SELECT r_idx AS idx, r_outcome AS outcome, (r_invoice).*
  FROM create_invoices(
    CAST(:sellers AS bigint[]), CAST(:keys AS text[]), CAST(:hashes AS bytea[]),
    CAST(:public_ids AS text[]), CAST(:titles AS text[]), CAST(:descriptions AS text[]),
    CAST(:currencies AS text[]), CAST(:amounts AS bigint[]), CAST(:ton_amounts AS bigint[]),
    CAST(:ton_rates AS numeric[]), CAST(:kinds AS text[]), CAST(:max_uses AS int[]),
    CAST(:payloads AS jsonb[]), CAST(:expires_at AS timestamptz[]))
""")

_READ = text("SELECT * FROM invoices WHERE public_id = ANY(CAST(:ids AS text[]))")


def _create_params(requests: Sequence[NewInvoice]) -> dict[str, list[Any]]:
    return {
        "sellers": [r.seller_id for r in requests],
        "keys": [r.idempotency_key for r in requests],
        "hashes": [r.request_hash for r in requests],
        "public_ids": [r.public_id for r in requests],
        "titles": [r.title for r in requests],
        "descriptions": [r.description for r in requests],
        "currencies": [r.currency for r in requests],
        "amounts": [r.amount for r in requests],
        "ton_amounts": [r.ton_amount for r in requests],
        "ton_rates": [r.ton_rate for r in requests],
        "kinds": [r.kind for r in requests],
        "max_uses": [r.max_uses for r in requests],
        "payloads": [r.payload for r in requests],
        "expires_at": [r.expires_at for r in requests],
    }


def _outcome(request: NewInvoice, row: RowMapping) -> Issued:
    if row["outcome"] == "key_reused":
        raise IdempotencyKeyReused((request.idempotency_key or "")[:40])
    return Invoice.from_row(row), row["outcome"] == "replayed"


def _id_taken(exc: IntegrityError) -> bool:
    # A 65-bit random id collides only in theory, but an invoice must never fail on it.
    return "invoices_public_id_key" in str(exc)


async def create_alone(conn: AsyncConnection, request: NewInvoice) -> Issued:
    """Issue one invoice on this connection (inside the caller's transaction)."""
    rows = (await conn.execute(_CREATE, _create_params([request]))).mappings().all()
    return _outcome(request, rows[0])


class InvoiceCreator(Coalescer[Issued]):
    def _conflicts(self, args: NewInvoice) -> tuple[Hashable, ...]:
        # The same key twice waits for the next batch, where it finds the first one's invoice.
        return () if args.idempotency_key is None else ((args.seller_id, args.idempotency_key),)

    def _statement(self, batch: list[Pending[Issued]]) -> tuple[TextClause, dict[str, Any]]:
        return _CREATE, _create_params([r.args for r in batch])

    async def _execute(self, conn: AsyncConnection, batch: list[Pending[Issued]]
                       ) -> Sequence[RowMapping]:
        try:
            return await super()._execute(conn, batch)
        except IntegrityError as exc:
            if not _id_taken(exc):
                raise
            if any(r.args.id_chosen for r in batch):
                raise
        for req in batch:  # the whole batch rolled back: draw new ids and send it once more
            req.args = dataclasses.replace(req.args, public_id=new_invoice_id())
        return await super()._execute(conn, batch)

    def _settle(self, batch: list[Pending[Issued]], rows: Sequence[RowMapping]
                ) -> list[Pending[Issued]]:
        for row in rows:
            req = batch[row["idx"] - 1]
            try:
                req.future.set_result(_outcome(req.args, row))
            except IdempotencyKeyReused as exc:
                req.future.set_exception(exc)
        return []


class InvoiceReader(Coalescer[Invoice | None]):
    max_in_flight = 2  # reads need no group commit; fewer, fuller batches cost less CPU

    def _statement(self, batch: list[Pending[Invoice | None]]
                   ) -> tuple[TextClause, dict[str, Any]]:
        return _READ, {"ids": sorted({r.args for r in batch})}

    def _settle(self, batch: list[Pending[Invoice | None]], rows: Sequence[RowMapping]
                ) -> list[Pending[Invoice | None]]:
        found = {row["public_id"]: Invoice.from_row(row) for row in rows}
        for req in batch:
            req.future.set_result(found.get(req.args))
        return []
