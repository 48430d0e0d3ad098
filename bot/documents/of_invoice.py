"""The PDF of an invoice: the whole document (`ledger.documents.document_of`: its lines,
discounts, taxes and totals, the buyer), the seller as their settings describe them (legal
name and details, logo, bank details), how to pay, and a stamp for its state (PAID, VOID,
UNCOLLECTIBLE; a draft is marked DRAFT and has no number yet).

The figures are the ones the pay page shows (`bot/documents/figures.py`). The TON instructions
give the bare comment `INV-<id>`: a transfer with it pays as a guest (the pay page gives each
payer a comment naming them, ledger/payers.py), which is what paper can do.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from datetime import datetime
from typing import Final

from bot.documents.figures import invoice_figures
from bot.documents.labels import label
from bot.documents.model import InvoiceDocument, Line, Party, Payment, Stamp, TotalRow
from bot.documents.pdf import render_pdf
from ledger.core import Ledger
from ledger.documents import document_of
from ledger.models import Invoice, User
from ledger.money import display_amount
from ledger.seller_settings import SellerSettings

STAMP_OF_STATUS: dict[str, Stamp] = {
    "paid": "PAID", "cancelled": "VOID", "void": "VOID", "uncollectible": "UNCOLLECTIBLE",
    "draft": "DRAFT"}
PAYABLE: Final = ("pending", "draft")  # a draft shows how it will be paid once issued
CACHE_SIZE: Final = 256  # rendered PDFs kept (~60 KB each)
# public id, version, status, amount paid, uses, settings' time, language
Version = tuple[str, int, str, int, int, datetime | None, str]


def invoice_document(invoice: Invoice, seller: User, settings: SellerSettings, lang: str,
                     page_url: str, ton_address: str | None) -> InvoiceDocument:
    """What the PDF of `invoice` shows, in `lang`; `ton_address` is where TON payments go
    (None: TON is not offered)."""
    doc = document_of(invoice)
    figures = invoice_figures(invoice, lang, doc)
    status = invoice.effective_status()
    buyer = doc.buyer
    payment = None
    if status in PAYABLE:
        ton = bool(ton_address and invoice.ton_amount)
        payment = Payment(
            pay_url=page_url, ton_address=(ton_address or "") if ton else "",
            ton_comment=invoice.comment if ton else "",
            ton_amount=display_amount(invoice.ton_due or 0, "TON") if ton else "",
            bank_details=settings.bank_details or "")
    # A multi-use invoice is never "paid" as a whole until its last use: no stamp before.
    return InvoiceDocument(
        number=invoice.number or (label(lang, "doc.draft") if status == "draft" else "—"),
        issued_on=invoice.issued_at.date() if invoice.issued_at else None,
        due_on=invoice.due_at.date() if invoice.due_at else None, language=lang,
        seller=Party(name=settings.legal_name or seller_name(seller),
                     details=settings.legal_details or "", logo=settings.logo),
        buyer=Party(name=buyer.name or "", company=buyer.company or "",
                    tax_id=buyer.tax_id or "", address=buyer.address or "")
        if buyer else Party(name=""),  # not named: whoever holds the link
        lines=tuple(Line(description=line.description, quantity=line.quantity,
                         unit_price=line.unit_price, amount=line.amount,
                         discount=line.discount, tax=line.tax) for line in figures.lines),
        totals=tuple(TotalRow(row.label, row.amount, strong=row.strong)
                     for row in figures.totals),
        payment=payment,
        created_at=version_time(invoice, settings),
        stamp=STAMP_OF_STATUS.get(status),
        note=doc.memo or "",
    )


def seller_name(seller: User) -> str:
    return (f"@{seller.username}" if seller.username
            else seller.full_name or f"#{seller.telegram_id}")


def version_time(invoice: Invoice, settings: SellerSettings) -> datetime:
    """When what the document shows last changed: an edit, the issue, a payment, a closing,
    the seller's settings. The PDF's creation date, so one version gives the same bytes."""
    times = (invoice.created_at, invoice.updated_at, invoice.issued_at, invoice.paid_at,
             invoice.closed_at, settings.updated_at)
    return max(t for t in times if t is not None)


class InvoicePdfs:
    """The PDFs of invoices, rendered off the event loop (typst: ~5-20 ms of CPU) once per
    version (edits, status, payments, uses, the seller's settings) and language, and kept
    (bounded); used by the pay page, the seller API and the bot. Returns (bytes, ETag).

    `ton_address` (friendly form) is where TON payments go; None when TON is not offered."""

    def __init__(self, ledger: Ledger, ton_address: str | None = None,
                 size: int = CACHE_SIZE) -> None:
        self.ledger = ledger
        self.ton_address = ton_address
        self.size = size
        self._items: OrderedDict[Version, tuple[bytes, str]] = OrderedDict()
        # A link opened by many at once is rendered once: the others wait for that render.
        self._rendering: dict[Version, asyncio.Future[tuple[bytes, str]]] = {}

    async def get(self, invoice: Invoice, seller: User, lang: str,
                  page_url: str) -> tuple[bytes, str]:
        settings = await self.ledger.seller_settings(invoice.seller_id)
        version = (invoice.public_id, invoice.version, invoice.effective_status(),
                   invoice.amount_paid, invoice.uses, settings.updated_at, lang)
        hit = self._items.get(version)
        if hit is not None:
            return hit
        pending = self._rendering.get(version)
        if pending is not None:
            return await asyncio.shield(pending)
        pending = self._rendering[version] = asyncio.get_running_loop().create_future()
        try:
            doc = invoice_document(invoice, seller, settings, lang, page_url, self.ton_address)
            body = await asyncio.to_thread(render_pdf, doc)
            hit = (body, f'"{hashlib.sha256(body).hexdigest()[:32]}"')
        except BaseException as exc:
            if isinstance(exc, Exception):
                pending.set_exception(exc)
                pending.exception()  # retrieved: a render nobody else awaited logs nothing
            else:
                pending.cancel()  # the waiters ask again (their request was not the failure)
            raise
        finally:
            del self._rendering[version]
        pending.set_result(hit)
        self._items[version] = hit
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return hit


def pdf_headers(invoice: Invoice, etag: str, lang: str) -> dict[str, str]:
    name = invoice.number or f"invoice-{invoice.public_id}"  # a draft has no number yet
    return {"ETag": etag, "Content-Disposition": f'inline; filename="{name}.pdf"',
            "X-Content-Type-Options": "nosniff", "Content-Language": lang}
