"""The invoice as an A4 PDF, compiled by Typst (the `typst` package: the compiler itself, no
system tools). Chosen by `python -m bench.documents`: the fastest of the renderers tried (about
ten times fpdf2 and weasyprint) that draws the design right.

The design is `invoice.typ`; the document's data reaches it as JSON, never as markup. The same
document gives the same bytes: Typst's output is deterministic once the creation date is fixed
(the invoice version's time), the fonts are the ones committed beside this module (DejaVu Sans:
Latin and Cyrillic, Bitstream Vera licence, see fonts/LICENSE) with system fonts ignored, and
the QR code comes from bot/qr.py."""

from __future__ import annotations

import json
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Any, Final

import typst
from PIL import Image

from bot.documents.labels import day, label
from bot.documents.model import InvoiceDocument
from bot.qr import qr_svg
from ledger.seller_settings import PNG_MAGIC

HERE: Final = Path(__file__).parent
LOGO_BOX: Final = (50, 22)  # mm, in invoice.typ
FONTS: Final = HERE / "fonts"
TEMPLATE: Final = (HERE / "invoice.typ").read_bytes()


def render_pdf(doc: InvoiceDocument) -> bytes:
    """The invoice document as PDF bytes (A4, the document's language)."""
    data, images = _data(doc)
    files: dict[str, bytes] = {"main.typ": TEMPLATE, "doc.json": json.dumps(data).encode(),
                               **images}
    compiler = typst.Compiler(files, font_paths=_fonts())
    return compiler.compile()


@cache
def _fonts() -> typst.Fonts:
    # Scanned once per process; only the committed fonts, so every machine draws the same.
    return typst.Fonts(include_system_fonts=False, include_embedded_fonts=False,
                       font_paths=[str(FONTS)])


def _data(doc: InvoiceDocument) -> tuple[dict[str, Any], dict[str, bytes]]:
    lang = doc.language
    keys = ("invoice", "number", "how_to_pay", "scan", "note")
    labels = {key: label(lang, f"doc.{key}") for key in keys}
    dates = []
    if doc.issued_on is not None:
        dates.append([label(lang, "doc.issued"), day(lang, doc.issued_on)])
    if doc.due_on is not None:
        dates.append([label(lang, "doc.due"), day(lang, doc.due_on)])
    # A company buyer without a person's name: the company is the name.
    buyer_name = doc.buyer.name or doc.buyer.company
    buyer = [doc.buyer.company if doc.buyer.name else ""]
    if doc.buyer.tax_id:
        buyer.append(f"{label(lang, 'doc.tax_id')}: {doc.buyer.tax_id}")
    buyer.append(doc.buyer.address)
    # Empty discount or tax columns are left out: a plain invoice stays plain.
    fields = [("description", "left"), ("quantity", "right"), ("unit_price", "right")]
    fields += [(name, "right") for name in ("discount", "tax")
               if any(getattr(line, name) for line in doc.lines)]
    fields.append(("amount", "right"))
    pay = doc.payment
    instructions: list[list[str | None]] = []
    if pay is not None:
        instructions.append([label(lang, "doc.pay_online"), pay.pay_url, pay.pay_url])
        if pay.bank_details:
            instructions.append([label(lang, "doc.bank"), pay.bank_details, None])
        if pay.ton_address:
            instructions.append([label(lang, "doc.ton"), pay.ton_address, None])
            if pay.ton_comment:
                instructions.append([label(lang, "doc.ton_comment"), pay.ton_comment, None])
            if pay.ton_amount:
                instructions.append([label(lang, "doc.ton_amount"), pay.ton_amount, None])
    files = {"qr.svg": qr_svg(pay.pay_url)} if pay is not None else {}
    created = doc.created_at
    logo = None
    if doc.seller.logo is not None:
        logo = {"format": "png" if doc.seller.logo.startswith(PNG_MAGIC) else "jpg",
                # The side that fills the box first, so the logo sits at the top left of it.
                "wide": _aspect(doc.seller.logo) > LOGO_BOX[0] / LOGO_BOX[1]}
    # A draft has no number yet: its header says DRAFT where "No. INV-…" will be.
    heading = doc.number if doc.stamp == "DRAFT" else f"{labels['number']} {doc.number}"
    return {
        "language": lang, "number": heading, "l": labels, "dates": dates,
        "title": f"{labels['invoice']} {doc.number}",
        "created_at": [created.year, created.month, created.day, created.hour, created.minute,
                       created.second],
        "stamp": doc.stamp,
        "stamp_text": label(lang, f"doc.stamp.{doc.stamp}") if doc.stamp else None,
        "logo": logo,
        # The package reads in-memory files as text: the image travels as its byte values.
        "logo_bytes": list(doc.seller.logo) if doc.seller.logo is not None else None,
        "seller": {"title": label(lang, "doc.seller"), "name": doc.seller.name,
                   "details": doc.seller.details},
        "buyer": {"title": label(lang, "doc.buyer"), "name": buyer_name,
                  "details": "\n".join(part for part in buyer if part)},
        "columns": [[align, label(lang, f"doc.{name}")] for name, align in fields],
        "rows": [[getattr(line, name) for name, _ in fields] for line in doc.lines],
        "totals": [[row.label, row.amount, row.strong] for row in doc.totals],
        "pay": instructions,
        "note": doc.note,
    }, files


def _aspect(image: bytes) -> float:
    with Image.open(BytesIO(image)) as opened:
        width, height = opened.size
    return width / height
