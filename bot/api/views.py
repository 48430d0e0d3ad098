"""The seller API's JSON for an invoice: the same body in `GET /invoices/{id}` and in every
signed callback (the composition root hands `invoice_renderer(links)` to callback delivery)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from bot.links import Links
from ledger.db import Executor
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


def invoice_view(inv: Invoice, links: Links, payers: Mapping[int, Payer] | None = None
                 ) -> dict[str, Any]:
    """The seller-facing JSON form of an invoice (API responses and callback bodies).
    `payers` (from payers_for_views) fills `paid_by`: the payer of the latest payment."""
    return {
        "id": inv.public_id,
        "number": inv.number,
        "status": inv.status,
        "title": inv.title,
        "description": inv.description,
        "currency": inv.currency,
        "amount": format_amount(inv.amount, inv.currency),
        "amount_minor": inv.amount,
        "ton_amount": format_amount(inv.ton_amount, "TON") if inv.ton_amount else None,
        "ton_amount_nano": inv.ton_amount,
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
    }


InvoiceRenderer = Callable[[Invoice, Payer | None], dict[str, Any]]


def invoice_renderer(links: Links) -> InvoiceRenderer:
    """The JSON of an invoice and its payer for callback bodies (watchers/callbacks.py gets
    this from the composition root: delivery knows no URLs)."""
    def render(invoice: Invoice, payer: Payer | None) -> dict[str, Any]:
        return invoice_view(invoice, links, {invoice.id: payer} if payer else None)
    return render
