"""The seller API's JSON for an invoice: the same body in `GET /invoices/{id}` and in every
signed callback (the composition root hands `invoice_renderer(links)` to callback delivery)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from bot.links import Links
from ledger import totals
from ledger.db import Executor
from ledger.documents import Buyer, document_of
from ledger.manual_payments import InvoicePayment
from ledger.models import Invoice, iso
from ledger.money import format_amount
from ledger.purchases import Payer, payers_of_invoices


def payer_view(payer: Payer | None) -> dict[str, Any] | None:
    """Who paid, for the invoice's seller only: the Telegram user (id, @username, name), or
    a guest's contact (e-mail or @handle, as the guest typed it: unproven)."""
    if payer is None or not payer.known:
        return None
    user = payer.user
    return {
        "telegram_id": user.telegram_id if user else None,
        "username": user.username if user else None,
        "name": user.full_name if user else None,
        "contact": payer.contact,
    }

async def payers_for_views(db: Executor, invoices: Iterable[Invoice]) -> dict[int, Payer]:
    """The payers invoice_view shows, in one query; unpaid invoices cost nothing."""
    paid = [inv.id for inv in invoices if inv.uses]
    return await payers_of_invoices(db, paid) if paid else {}


class _AmountTexts(dict[int, str]):
    """Decimal text per amount, formatted once per view: a plain invoice shows its amount
    and zero a dozen times between them (every answer renders one; keep it cheap)."""

    __slots__ = ("currency",)

    def __init__(self, currency: str) -> None:
        super().__init__()
        self.currency = currency

    def __missing__(self, minor: int) -> str:
        text = self[minor] = format_amount(minor, self.currency)
        return text


def invoice_view(inv: Invoice, links: Links, payers: Mapping[int, Payer] | None = None
                 ) -> dict[str, Any]:
    """The seller-facing JSON form of an invoice (API responses and callback bodies).
    `payers` (from payers_for_views) fills `paid_by`: the payer of the latest payment."""
    m = _AmountTexts(inv.currency)
    doc = document_of(inv)  # a plain invoice reads as one line, as every edge shows it
    t = doc.totals
    due = inv.amount_due
    ton_due = inv.ton_due
    return {
        "id": inv.public_id,
        "number": inv.number,
        "status": inv.status,
        "title": inv.title,
        "description": inv.description,
        "currency": inv.currency,
        "amount": m[inv.amount],
        "amount_minor": inv.amount,
        "ton_amount": format_amount(inv.ton_amount, "TON") if inv.ton_amount else None,
        "ton_amount_nano": inv.ton_amount,
        "ton_due": format_amount(ton_due, "TON") if ton_due else None,
        "ton_due_nano": ton_due,
        "ton_comment": inv.comment,
        "kind": inv.kind,
        "max_uses": inv.max_uses,
        "uses": inv.uses,
        "item_id": inv.payload.get("item_id"),
        "achievement_id": inv.payload.get("achievement_id"),
        "callback_url": inv.payload.get("callback_url"),
        "pay_url": f"{links.public_url.rstrip('/')}/pay/{inv.public_id}",
        "bot_url": f"https://t.me/{links.bot_username}?start=pay_{inv.public_id}",
        "created_at": iso(inv.created_at),
        "expires_at": iso(inv.expires_at),
        "paid_at": iso(inv.paid_at),
        "closed_at": iso(inv.closed_at),
        "paid_by": payer_view(payers.get(inv.id)) if payers else None,
        "lines": [_line_view(line, figures, m)
                  for line, figures in zip(doc.lines, t.lines, strict=True)],
        "discount": _discount_view(doc.discount, m),
        "tax_rates": [{"name": r.name, "percent": _decimal(r.percent), "inclusive": r.inclusive}
                      for r in doc.tax_rates],
        "subtotal": m[t.subtotal],
        "subtotal_minor": t.subtotal,
        "discount_amount": m[t.discount],
        "discount_amount_minor": t.discount,
        "taxes": [{"name": tax.name, "percent": _decimal(tax.percent),
                   "inclusive": tax.inclusive, "base": m[tax.base], "base_minor": tax.base,
                   "amount": m[tax.amount], "amount_minor": tax.amount} for tax in t.taxes],
        "tax": m[t.tax],
        "tax_minor": t.tax,
        "total": m[t.total],
        "total_minor": t.total,
        "amount_paid": m[inv.amount_paid],
        "amount_paid_minor": inv.amount_paid,
        "amount_due": m[due],
        "amount_due_minor": due,
        "due_at": iso(inv.due_at),
        "overdue": inv.overdue(),
        "issued_at": iso(inv.issued_at),
        "sent_at": iso(inv.sent_at),
        "viewed_at": iso(inv.viewed_at),
        "buyer": _buyer_view(doc.buyer),
        "memo": doc.memo,
        "version": inv.version,
    }


def _decimal(value: Decimal) -> str:
    """A quantity or percent as plain decimal text ("1.5", "20"), never with an exponent."""
    return format(value, "f")


def _discount_view(d: totals.Discount | None, m: _AmountTexts) -> dict[str, Any] | None:
    if d is None:
        return None
    if isinstance(d, totals.PercentOff):
        return {"percent": _decimal(d.percent)}
    return {"amount": m[d.amount], "amount_minor": d.amount}


def _line_view(line: totals.Line, figures: totals.LineTotals,
               m: _AmountTexts) -> dict[str, Any]:
    return {
        "description": line.description,
        "quantity": _decimal(line.quantity),
        "unit_price": m[line.unit_price],
        "unit_price_minor": line.unit_price,
        "item_id": line.item_id,
        "tax_rate": line.tax_rate,
        "discount": _discount_view(line.discount, m),
        "amount": m[figures.amount],
        "amount_minor": figures.amount,
        "discount_amount": m[figures.discount],
        "discount_amount_minor": figures.discount,
        "tax": m[figures.tax],
        "tax_minor": figures.tax,
    }


def _buyer_view(b: Buyer) -> dict[str, Any] | None:
    if not b:
        return None
    return {"name": b.name or None, "company": b.company or None, "tax_id": b.tax_id or None,
            "address": b.address or None}


def payment_view(p: InvoicePayment) -> dict[str, Any]:
    """One payment of an invoice (GET /invoices/{id}/payments)."""
    return {
        "id": p.id,
        "method": p.method,
        "amount": format_amount(p.amount, p.currency),
        "amount_minor": p.amount,
        "currency": p.currency,
        "reference": p.reference,
        "note": p.note,
        "received_on": p.received_on.isoformat() if p.received_on else None,
        "created_at": iso(p.created_at),
        "reversed": p.reversed_at is not None,
        "reversed_at": iso(p.reversed_at),
        "reversal_reason": p.reversal_reason,
    }


InvoiceRenderer = Callable[[Invoice, Payer | None], dict[str, Any]]


def invoice_renderer(links: Links) -> InvoiceRenderer:
    """The JSON of an invoice and its payer for callback bodies (watchers/callbacks.py gets
    this from the composition root: delivery knows no URLs)."""
    def render(invoice: Invoice, payer: Payer | None) -> dict[str, Any]:
        return invoice_view(invoice, links, {invoice.id: payer} if payer else None)
    return render
