"""Gathers concurrent internal payments into one database call (ledger/coalesce.py).

Each payment is still its own all-or-nothing request with its own result, but many of them
share one transaction, one round trip and one WAL flush. The SQL side is
process_invoice_payments (ledger/sql/); `Ledger.pay_from_balance` (ledger/core.py) submits
here. A payment that touches an invoice or buyer already locked by an earlier one in the
batch comes back as 'batch_conflict' and goes in the next batch.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from ledger.coalesce import Coalescer, Pending, Row
from ledger.errors import from_code
from ledger.models import Invoice, PaymentResult

_SQL = "SELECT * FROM process_invoice_payments($1::text[], $2::bigint[], $3::text[])"


class PaymentBatcher(Coalescer[PaymentResult]):
    async def pay(self, invoice: str, buyer: int, key: str | None) -> PaymentResult:
        return await self.submit((invoice, buyer, key))

    def _conflicts(self, args: tuple[str, int, str | None]) -> tuple[Hashable, ...]:
        # One request per invoice and per buyer in a batch; the rest waits for the next.
        return (("invoice", args[0]), ("buyer", args[1]))

    def _statement(self, batch: list[Pending[PaymentResult]]) -> tuple[str, list[Any]]:
        return _SQL, [[r.args[0] for r in batch], [r.args[1] for r in batch],
                      [r.args[2] for r in batch]]

    def _settle(self, batch: list[Pending[PaymentResult]], rows: Sequence[Row]
                ) -> list[Pending[PaymentResult]]:
        again = []
        for row in rows:
            req = batch[row["idx"] - 1]
            if req.future.done():
                continue
            if row["error"] == "batch_conflict":
                again.append(req)
            elif row["error"]:
                req.future.set_exception(from_code(row["error"], row["error_detail"]))
            else:
                invoice = row["r_invoice"]
                req.future.set_result(PaymentResult(
                    payment_id=row["payment_id"], replayed=row["replayed"],
                    invoice_status=row["invoice_status"], grant_id=row["grant_id"],
                    buyer_balance=row["buyer_balance"],
                    invoice=Invoice.from_row(invoice) if invoice is not None else None,
                    seller_username=row["r_seller_username"], amount=row["r_amount"],
                ))
        return again

