"""Invoices issued in batches (ledger/coalesce.py): concurrent requests share one call.

create_invoices() (ledger/sql/) writes each checked NewInvoice with its idempotency key in
one transaction per batch; `Ledger.issue_invoice` (ledger/core.py) submits here. One invoice
alone, inside a caller's transaction: ledger.invoices.issue_invoice (the same SQL).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger.coalesce import Coalescer, Pending, Row
from ledger.errors import IdempotencyKeyReused
from ledger.ids import new_invoice_id
from ledger.invoices import CREATE_INVOICES, Issued, NewInvoice, create_args, issue_outcome


class InvoiceCreator(Coalescer[Issued]):
    max_in_flight = 1

    def _conflicts(self, args: NewInvoice) -> tuple[Hashable, ...]:
        # The same key twice waits for the next batch, where it finds the first one's invoice.
        return () if args.idempotency_key is None else ((args.seller_id, args.idempotency_key),)

    def _statement(self, batch: list[Pending[Issued]]) -> tuple[str, list[Any]]:
        return CREATE_INVOICES, create_args([r.args for r in batch])

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
                req.future.set_result(issue_outcome(req.args, row))
            except IdempotencyKeyReused as exc:
                req.future.set_exception(exc)
        return []
