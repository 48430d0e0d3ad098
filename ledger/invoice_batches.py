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

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger.coalesce import Coalescer, Pending, Row
from ledger.errors import IdempotencyKeyReused, from_db_error
from ledger.ids import new_invoice_id
from ledger.invoices import NewInvoice
from ledger.models import INVOICE_FIELDS, Invoice

Issued = tuple[Invoice, bool]  # the invoice, and whether an earlier request made it

_CREATE = f"""
SELECT r_idx AS idx, r_outcome AS outcome, {', '.join(f'(r_invoice).{c}' for c in INVOICE_FIELDS)}
  FROM create_invoices($1::bigint[], $2::text[], $3::bytea[], $4::text[], $5::text[],
                       $6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::numeric[],
                       $11::text[], $12::int[], $13::jsonb[], $14::timestamptz[])
"""

_READ = (f"SELECT {', '.join(INVOICE_FIELDS)} FROM invoices "
         "WHERE public_id = ANY($1::text[])")


def _create_args(requests: Sequence[NewInvoice]) -> list[list[Any]]:
    """create_invoices' arguments: one array per column, in its parameter order."""
    return [
        [r.seller_id for r in requests],
        [r.idempotency_key for r in requests],
        [r.request_hash for r in requests],
        [r.public_id for r in requests],
        [r.title for r in requests],
        [r.description for r in requests],
        [r.currency for r in requests],
        [r.amount for r in requests],
        [r.ton_amount for r in requests],
        [r.ton_rate for r in requests],
        [r.kind for r in requests],
        [r.max_uses for r in requests],
        [r.payload for r in requests],
        [r.expires_at for r in requests],
    ]


def _outcome(request: NewInvoice, row: Row) -> Issued:
    if row["outcome"] == "key_reused":
        raise IdempotencyKeyReused((request.idempotency_key or "")[:40])
    return Invoice.from_row(row), row["outcome"] == "replayed"


async def create_alone(conn: AsyncConnection, request: NewInvoice) -> Issued:
    """Issue one invoice on this connection (inside the caller's transaction)."""
    driver = (await conn.get_raw_connection()).driver_connection
    try:
        rows = await driver.fetch(_CREATE, *_create_args([request]))
    except asyncpg.PostgresError as exc:
        typed = from_db_error(exc)
        if typed is not None:
            raise typed from exc
        raise
    return _outcome(request, rows[0])


class InvoiceCreator(Coalescer[Issued]):
    max_in_flight = 1

    def _conflicts(self, args: NewInvoice) -> tuple[Hashable, ...]:
        # The same key twice waits for the next batch, where it finds the first one's invoice.
        return () if args.idempotency_key is None else ((args.seller_id, args.idempotency_key),)

    def _statement(self, batch: list[Pending[Issued]]) -> tuple[str, list[Any]]:
        return _CREATE, _create_args([r.args for r in batch])

    async def _execute(self, conn: AsyncConnection, batch: list[Pending[Issued]]
                       ) -> Sequence[Row]:
        try:
            return await super()._execute(conn, batch)
        except asyncpg.UniqueViolationError as exc:
            # A 65-bit random id collides only in theory, but an invoice must never fail on it.
            if exc.constraint_name != "invoices_public_id_key":
                raise
            if any(r.args.id_chosen for r in batch):
                raise
        for req in batch:  # the whole batch rolled back: draw new ids and send it once more
            req.args = dataclasses.replace(req.args, public_id=new_invoice_id())
        return await super()._execute(conn, batch)

    def _settle(self, batch: list[Pending[Issued]], rows: Sequence[Row]
                ) -> list[Pending[Issued]]:
        for row in rows:
            req = batch[row["idx"] - 1]
            try:
                req.future.set_result(_outcome(req.args, row))
            except IdempotencyKeyReused as exc:
                req.future.set_exception(exc)
        return []


class InvoiceReader(Coalescer[Invoice | None]):
    max_in_flight = 1  # reads need no group commit; fewer, fuller batches cost less CPU

    def _statement(self, batch: list[Pending[Invoice | None]]) -> tuple[str, list[Any]]:
        return _READ, [sorted({r.args for r in batch})]

    def _settle(self, batch: list[Pending[Invoice | None]], rows: Sequence[Row]
                ) -> list[Pending[Invoice | None]]:
        found = {row["public_id"]: Invoice.from_row(row) for row in rows}
        for req in batch:
            req.future.set_result(found.get(req.args))
        return []
