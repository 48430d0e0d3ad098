"""The PDF of an invoice as paybot has it today: one line (its title, once, at its amount),
the seller by their Telegram name, how to pay (the pay page's link and its QR), and a PAID or
VOID stamp once it is paid or cancelled.

No TON address or comment on paper: the pay page gives each payer a comment naming them
(`INV-<id>-<tag>`, ledger/payers.py); a printed bare `INV-<id>` would pay with nobody known.

Lines, taxes, legal details and bank details come with invoices as documents (ledger/totals.py);
the layout already shows them (bot/documents/model.py).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from typing import Final

from bot.documents.labels import label
from bot.documents.model import InvoiceDocument, Line, Party, Payment, Stamp, TotalRow
from bot.documents.pdf import render_pdf
from ledger.models import Invoice, User
from ledger.money import display_amount

STAMP_OF_STATUS: dict[str, Stamp] = {"paid": "PAID", "cancelled": "VOID"}
CACHE_SIZE: Final = 256  # rendered PDFs kept (~60 KB each)
Version = tuple[str, str, int, str]  # public id, status, uses, language


def invoice_document(invoice: Invoice, seller: User, lang: str,
                     page_url: str) -> InvoiceDocument:
    amount = display_amount(invoice.amount, invoice.currency)
    status = invoice.effective_status()
    # A multi-use invoice is never "paid" as a whole until its last use: no stamp before.
    return InvoiceDocument(
        number=invoice.number, issued_on=invoice.created_at.date(),
        due_on=invoice.expires_at.date(), language=lang,
        seller=Party(name=f"@{seller.username}" if seller.username
                     else seller.full_name or f"#{seller.telegram_id}"),
        buyer=Party(name=""),  # whoever holds the link
        lines=(Line(description=" — ".join(filter(None, (invoice.title, invoice.description))),
                    quantity="1", unit_price=amount, amount=amount),),
        totals=(TotalRow(label(lang, "doc.total_due"), amount, strong=True),),
        payment=Payment(pay_url=page_url),
        # The invoice's version: a payment or a cancellation changes what the PDF shows.
        created_at=invoice.paid_at or invoice.closed_at or invoice.created_at,
        stamp=STAMP_OF_STATUS.get(status),
    )


class InvoicePdfs:
    """The PDFs of invoices, rendered off the event loop (typst: ~3-15 ms of CPU) once per
    version (status, uses) and language, and kept (bounded); shared by the pay page and the
    seller API. Returns (bytes, ETag)."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[Version, tuple[bytes, str]] = OrderedDict()
        # A link opened by many at once is rendered once: the others wait for that render.
        self._rendering: dict[Version, asyncio.Future[tuple[bytes, str]]] = {}

    async def get(self, invoice: Invoice, seller: User, lang: str,
                  page_url: str) -> tuple[bytes, str]:
        version = (invoice.public_id, invoice.effective_status(), invoice.uses, lang)
        hit = self._items.get(version)
        if hit is not None:
            return hit
        pending = self._rendering.get(version)
        if pending is not None:
            return await asyncio.shield(pending)
        pending = self._rendering[version] = asyncio.get_running_loop().create_future()
        try:
            doc = invoice_document(invoice, seller, lang, page_url)
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
    return {"ETag": etag, "Content-Disposition": f'inline; filename="{invoice.number}.pdf"',
            "X-Content-Type-Options": "nosniff", "Content-Language": lang}
