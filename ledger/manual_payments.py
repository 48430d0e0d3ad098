"""Manual payments: money a seller (or the operator) received outside paybot — a bank
transfer, cash — recorded against an invoice, partial allowed, idempotent by reference, and
undone only by a compensating reversal with a reason (ledger/sql/documents.sql)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from ledger.db import Executor, fetch_all, fetch_one
from ledger.errors import InvalidAmount, InvalidInvoice, InvoiceNotFound
from ledger.models import INVOICE_FIELDS, Invoice
from ledger.money import check_amount
from ledger.text import clean_block, clean_line

REFERENCE_MAX = 200
NOTE_MAX = 1000
REASON_MAX = 500
EARLIEST = timedelta(days=3 * 366)  # a received-on date older than this is a typo
_ROW = ", ".join(f"(r_invoice).{c}" for c in INVOICE_FIELDS)


@dataclass(frozen=True, slots=True)
class ManualPayment:
    payment_id: int
    replayed: bool
    invoice: Invoice


@dataclass(frozen=True, slots=True)
class InvoicePayment:
    """One payment of an invoice, as its seller sees it."""

    id: int
    method: str  # internal | ton | manual | stars | card:<provider>
    amount: int
    currency: str
    reference: str | None
    note: str | None
    received_on: date | None
    created_at: datetime
    payer_id: int | None
    reversed_at: datetime | None
    reversal_reason: str | None


def check_manual_payment(amount: int, received_on: date, reference: str,
                         note: str | None) -> tuple[str, str | None]:
    """The reference and note as stored, or a typed error saying what is wrong."""
    check_amount(amount)
    reference = clean_line(reference or "")
    if not reference:
        raise InvalidAmount("a manual payment needs a reference (e.g. the bank transfer's id)")
    if len(reference) > REFERENCE_MAX:
        raise InvalidAmount(f"the reference is longer than {REFERENCE_MAX} characters")
    note = clean_block(note or "") or None
    if note and len(note) > NOTE_MAX:
        raise InvalidAmount(f"the note is longer than {NOTE_MAX} characters")
    today = datetime.now(UTC).date()
    if received_on > today + timedelta(days=1):  # a day of slack for timezones
        raise InvalidAmount("the payment's date is in the future")
    if received_on < today - EARLIEST:
        raise InvalidAmount("the payment's date is more than three years ago")
    return reference, note


async def record_manual_payment(
    db: Executor, public_id: str, *, seller_id: int | None, amount: int, received_on: date,
    reference: str, note: str | None = None, recorded_by: int | None = None,
) -> ManualPayment:
    """Record money received outside paybot (seller_id None: the operator, any invoice)."""
    reference, note = check_manual_payment(amount, received_on, reference, note)
    row = await fetch_one(
        db,
        f"""SELECT payment_id, replayed, {_ROW}
              FROM record_manual_payment(:id, :seller, :amount, :on, :ref, :note, :by, :claim)""",
        id=public_id, seller=seller_id, amount=amount, on=received_on, ref=reference,
        note=note, by=recorded_by if recorded_by is not None else seller_id,
        claim=secrets.token_urlsafe(24))
    if row is None:
        raise InvoiceNotFound(public_id[:40])
    return ManualPayment(row["payment_id"], row["replayed"], Invoice.from_row(row))


async def reverse_manual_payment(db: Executor, payment_id: int, *, seller_id: int | None,
                                 reason: str, reversed_by: int | None = None) -> Invoice:
    """Undo a manual payment with a compensating entry (seller_id None: the operator)."""
    reason = clean_line(reason or "")
    if not reason:
        raise InvalidInvoice("say why the payment is reversed")
    if len(reason) > REASON_MAX:
        raise InvalidInvoice(f"the reason is longer than {REASON_MAX} characters")
    if not 0 < payment_id < 2**63:
        raise InvalidInvoice("the payment id is not valid")
    row = await fetch_one(db, "SELECT * FROM reverse_manual_payment(:p, :seller, :reason, :by)",
                          p=payment_id, seller=seller_id, reason=reason,
                          by=reversed_by if reversed_by is not None else seller_id)
    if row is None:
        raise InvoiceNotFound(str(payment_id))
    return Invoice.from_row(row)


async def payments_of_invoice(db: Executor, public_id: str,
                              seller_id: int | None) -> list[InvoicePayment]:
    """Every payment of the invoice, oldest first, with its reversal if any."""
    invoice = await fetch_one(db, "SELECT id, seller_id FROM invoices WHERE public_id = "
                                  "upper(:id)", id=public_id)
    if invoice is None or (seller_id is not None and invoice["seller_id"] != seller_id):
        raise InvoiceNotFound(public_id[:40])
    rows = await fetch_all(
        db,
        """SELECT p.id, p.method, p.amount, p.currency, p.reference, p.note, p.received_on,
                  p.created_at, p.payer_id, r.created_at AS reversed_at,
                  r.reason AS reversal_reason
             FROM payments p LEFT JOIN payment_reversals r ON r.payment_id = p.id
            WHERE p.invoice_id = :invoice ORDER BY p.id""",
        invoice=invoice["id"])
    return [InvoicePayment(**dict(row)) for row in rows]
