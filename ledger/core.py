"""The ledger as every edge calls it: one `Ledger` per process, built at the composition root
(bot/app.py) and handed to the bot, the pay pages and Mini App, the seller API and delivery.

It owns the engine, the batchers that let concurrent requests share one database call
(ledger/coalesce.py: payments, invoice issuing, invoice reads, delivery marks) and the one
invoice cache. Each method is one use case and one transaction; the same SQL functions also
run as plain functions inside a caller's transaction (ledger/payments.py, ledger/invoices.py).

After commit, one hook: a notice or callback queued by any path wakes delivery at once.
Every outbox insert NOTIFYs on commit (ledger/sql/outbox.sql; heard by watchers/wakeup.py in
whatever process delivers) — except on the two hot paths, balance payments made here and the
TON watcher's settlements, whose commits must not be serialized by NOTIFY's lock: after each
of those the caller calls `after_commit`, which the composition root points at the same
wake-up.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.batcher import PaymentBatcher
from ledger.errors import InvalidAmount, InvoiceNotFound
from ledger.invoice_batches import InvoiceCreator
from ledger.invoice_reads import InvoiceRead, InvoiceReader, RecentInvoices
from ledger.invoices import NewInvoice, cancel_invoice
from ledger.models import Invoice, PaymentResult
from ledger.outbox import DeliveredMarks
from ledger.payments import IDEMPOTENCY_KEY_MAX, canonical_invoice_id


class Ledger:
    def __init__(self, engine: AsyncEngine, *, invoice_cache_seconds: float = 0.0,
                 after_commit: Callable[[], None] | None = None) -> None:
        self.engine = engine
        self.after_commit = after_commit  # wakes delivery; set by the composition root
        self._payments = PaymentBatcher(engine)
        self._issuing = InvoiceCreator(engine)
        self._reads = InvoiceReader(engine)
        self._delivered = DeliveredMarks(engine)
        self.recent = RecentInvoices(self._reads, invoice_cache_seconds)

    # --- reads ------------------------------------------------------------------------------

    async def invoice(self, public_id: str) -> InvoiceRead:
        """The invoice and its seller, read now (shared with concurrent reads)."""
        return await self._reads.read(public_id)

    async def shown_invoice(self, public_id: str) -> InvoiceRead:
        """The invoice and its seller for display: at most the cache's age old."""
        return await self.recent.get(public_id)

    async def seller_invoice(self, seller_id: int, public_id: str) -> Invoice:
        """One of the seller's invoices; another seller's looks exactly like a missing one."""
        invoice = (await self._reads.read(public_id)).invoice
        if invoice.seller_id != seller_id:
            raise InvoiceNotFound(public_id[:40])
        return invoice

    # --- use cases --------------------------------------------------------------------------

    async def pay_from_balance(self, public_id: str, buyer_id: int,
                               idempotency_key: str | None) -> PaymentResult:
        """The buyer's balance pays the invoice: debit, credit, mark, grant, notices — all or
        nothing, once per key (the same key again returns the first outcome). The bot's
        confirmation and the Mini App's Pay button both come here. The result carries the
        invoice as the payment left it: nothing is read after the money moved, so nothing
        can turn the answer into a failure."""
        if idempotency_key is not None and not 0 < len(idempotency_key) <= IDEMPOTENCY_KEY_MAX:
            raise InvalidAmount("the idempotency key must be 1 to 200 characters")
        canonical = canonical_invoice_id(public_id)
        result = await self._payments.pay(canonical, buyer_id, idempotency_key)
        self.recent.forget(canonical)
        if not result.replayed and self.after_commit is not None:
            self.after_commit()  # the payment's notices and callback are queued: deliver now
        return result

    async def issue_invoice(self, request: NewInvoice) -> tuple[Invoice, bool]:
        """Write a checked invoice: (invoice, replayed). With an idempotency key, at most once
        per (seller, key); the same key with another request is IdempotencyKeyReused."""
        return await self._issuing.submit(request)

    async def cancel_invoice(self, public_id: str, seller_id: int) -> Invoice:
        invoice = await cancel_invoice(self.engine, public_id, seller_id)
        self.recent.forget(invoice.public_id)
        return invoice

    async def mark_delivered(self, event_id: int) -> None:
        """An outbox event was delivered; deliveries finishing together share one statement."""
        await self._delivered.submit(event_id)
