"""The figures of an invoice as people read them: every line and every total already formatted,
in the reader's language. The one formatting function of the PDF, the pay page and its JSON API,
so the three can never show different numbers for the same invoice.

The amounts come from the ledger (`ledger.documents.document_of`, `ledger/totals.py`); nothing
here computes money, it only writes it down."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from bot.documents.labels import label
from ledger.documents import Document, document_of
from ledger.models import Invoice
from ledger.money import display_amount, format_amount
from ledger.totals import Discount, PercentOff


@dataclass(frozen=True, slots=True)
class LineFigures:
    description: str
    quantity: str  # "1.5"
    unit_price: str  # "120.00" (the currency is said once, in the totals)
    discount: str  # "−18.00 (10 %)", "−5.00" or ""
    tax: str  # the rate's name, "VAT 20 %", or ""
    amount: str  # quantity × unit price


@dataclass(frozen=True, slots=True)
class TotalFigure:
    key: str  # subtotal | discount | tax | total | paid | due
    label: str  # in the reader's language; a tax row is the rate's own name
    amount: str  # "1 234.50 Liquid $"
    minor: int  # the same amount in minor units (negative for what is taken off)
    strong: bool = False  # what is left to pay: drawn bold


@dataclass(frozen=True, slots=True)
class Figures:
    lines: tuple[LineFigures, ...]
    totals: tuple[TotalFigure, ...]

    def as_json(self) -> dict[str, Any]:
        return {"lines": [asdict(line) for line in self.lines],
                "totals": [asdict(row) for row in self.totals]}


def number(value: Decimal) -> str:
    """A quantity or a percent without trailing zeros: Decimal("1.500") -> "1.5"."""
    return format(value.normalize(), "f")


def invoice_figures(invoice: Invoice, lang: str, doc: Document | None = None) -> Figures:
    """The invoice's lines and totals as its documents show them, in `lang`."""
    doc = doc if doc is not None else document_of(invoice)
    currency = invoice.currency
    totals = doc.totals
    lines = tuple(
        LineFigures(
            description=line.description,
            quantity=number(line.quantity),
            unit_price=format_amount(line.unit_price, currency),
            discount=_line_discount(line.discount, figures.line_discount, currency),
            tax=line.tax_rate or "",
            amount=format_amount(figures.amount, currency),
        )
        for line, figures in zip(doc.lines, totals.lines, strict=True))

    def row(key: str, text: str, minor: int, strong: bool = False) -> TotalFigure:
        shown = display_amount(abs(minor), currency)
        return TotalFigure(key, text, f"−{shown}" if minor < 0 else shown, minor, strong)

    rows: list[TotalFigure] = []
    if totals.discount or totals.taxes:  # a plain invoice shows its total alone
        rows.append(row("subtotal", label(lang, "doc.subtotal"), totals.subtotal))
    if totals.discount:
        rows.append(row("discount", _discount_label(lang, doc), -totals.discount))
    for tax in totals.taxes:
        name = f"{label(lang, 'doc.tax_included')} {tax.name}" if tax.inclusive else tax.name
        rows.append(row("tax", name, tax.amount))
    paid = invoice.amount_paid if invoice.kind == "one_time" else 0
    if paid:
        rows.append(row("total", label(lang, "doc.total"), totals.total))
        rows.append(row("paid", label(lang, "doc.paid"), -paid))
        rows.append(row("due", label(lang, "doc.amount_due"), invoice.amount_due, strong=True))
    else:
        rows.append(row("total", label(lang, "doc.total_due"), totals.total, strong=True))
    return Figures(lines, tuple(rows))


def _line_discount(discount: Discount | None, minor: int, currency: str) -> str:
    if discount is None or not minor:
        return ""
    off = f"−{format_amount(minor, currency)}"
    if isinstance(discount, PercentOff):
        return f"{off} ({number(discount.percent)} %)"
    return off


def _discount_label(lang: str, doc: Document) -> str:
    """"Discount", or "Discount 10 %" when the only discount is a percent off the invoice."""
    text = label(lang, "doc.discount")
    if isinstance(doc.discount, PercentOff) and not any(line.discount for line in doc.lines):
        return f"{text} {number(doc.discount.percent)} %"
    return text
