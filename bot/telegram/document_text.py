"""An invoice's lines and totals as the bot shows them (the form's preview, the seller's card,
the buyer's card, reminders). The figures are `bot/documents/figures.py: invoice_figures`, the
one formatting function the PDF and the pay page use too, so every edge shows the same numbers;
this module only lays them out as chat text."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import cast

from bot.documents.figures import Figures, invoice_figures
from bot.telegram.i18n import Translator
from bot.telegram.render import day
from ledger.documents import Document
from ledger.models import Invoice

MAX_SHOWN_LINES = 20  # a card is a summary; the PDF carries every line


def figures_text(tr: Translator, figures: Figures) -> str:
    """'1. Design work — 2 × 15.50 = 31.00' per line, then the totals (subtotal, discount, a
    row per tax rate, total, paid and due), the amount to pay in bold."""
    rows = []
    for number, line in enumerate(figures.lines, 1):
        if number > MAX_SHOWN_LINES:
            rows.append(tr("card.more_lines", n=len(figures.lines) - MAX_SHOWN_LINES))
            break
        row = (f"{number}. {escape(line.description)} — {line.quantity} × {line.unit_price}"
               f" = {line.amount}")
        if line.discount:
            row += f" ({line.discount})"
        rows.append(row)
    for total in figures.totals:
        amount = f"<b>{total.amount}</b>" if total.strong else total.amount
        rows.append(f"{escape(total.label)}: {amount}")
    return "\n".join(rows)


@dataclass(frozen=True, slots=True)
class _Unissued:
    """What invoice_figures reads of an invoice, for the form's preview before it exists."""

    currency: str
    kind: str = "one_time"
    amount_paid: int = 0

    @property
    def amount_due(self) -> int:
        return 0


def preview_text(tr: Translator, currency: str, doc: Document) -> str:
    return figures_text(tr, invoice_figures(cast(Invoice, _Unissued(currency)), tr.lang, doc))


def invoice_lines_text(tr: Translator, invoice: Invoice, *, due: bool = True) -> str:
    """The document part of an invoice card: nothing for a plain one-line invoice unless part of
    it is paid (its card is as before), else its lines and totals, paid and due; and its due
    date."""
    rows = []
    partly_paid = invoice.kind == "one_time" and invoice.amount_paid and invoice.amount_due
    if invoice.document is not None or partly_paid:
        rows.append(figures_text(tr, invoice_figures(invoice, tr.lang)))
    if due and invoice.due_at is not None:
        rows.append(due_text(tr, invoice))
    return "\n".join(rows)


def due_text(tr: Translator, invoice: Invoice) -> str:
    assert invoice.due_at is not None
    if invoice.overdue(datetime.now(UTC)):
        return tr("card.overdue_since", date=day(invoice.due_at))
    return tr("card.due_on", date=day(invoice.due_at))
