"""What a message shows for an invoice, a list of invoices, a payment: text plus keyboard."""

from __future__ import annotations

import logging
from html import escape

from aiogram.exceptions import TelegramBadRequest
from aiogram.types import CallbackQuery, InlineKeyboardMarkup

from bot.telegram.config import BotConfig
from bot.telegram.document_text import invoice_lines_text
from bot.telegram.i18n import Translator
from bot.telegram.keyboards import (
    invoice_card_keyboard,
    invoices_keyboard,
    seller_actions_keyboard,
)
from bot.telegram.links import pay_deep_link, pay_url, usable_in_button
from bot.telegram.render import fit, money, person, ton_suffix, when
from ledger.errors import (
    InvoiceAlreadyPaid,
    InvoiceCancelled,
    InvoiceDraft,
    InvoiceExpired,
    InvoiceUncollectible,
    InvoiceVoid,
)
from ledger.models import Invoice, User
from ledger.purchases import Payer

log = logging.getLogger(__name__)

View = tuple[str, InlineKeyboardMarkup | None]


def refuse_unless_pending(invoice: Invoice) -> None:
    """Raise the error a payment would meet now (the ledger re-checks when money moves)."""
    status = invoice.effective_status()
    if status == "paid":
        raise InvoiceAlreadyPaid(invoice.public_id)
    if status == "cancelled":
        raise InvoiceCancelled(invoice.public_id)
    if status == "expired":
        raise InvoiceExpired(invoice.public_id)
    if status in NOT_PAYABLE:
        raise NOT_PAYABLE[status](invoice.public_id)


NOT_PAYABLE = {"draft": InvoiceDraft, "void": InvoiceVoid, "uncollectible": InvoiceUncollectible}


def with_lines(tr: Translator, text: str, invoice: Invoice, *, due: bool = True) -> str:
    """`text` followed by the invoice's lines and totals (as the PDF shows them), what was
    paid so far and (unless `text` says it) the due date; a plain one-line invoice's text is
    unchanged."""
    lines = invoice_lines_text(tr, invoice, due=due)
    return f"{text}\n\n{lines}" if lines else text


def invoice_card(
    tr: Translator, cfg: BotConfig, invoice: Invoice, seller: User | None, viewer: User
) -> View:
    amount = money(invoice.amount, invoice.currency)
    text = tr("invoice.card", title=escape(invoice.title), amount=amount, ton=ton_suffix(invoice),
              seller=person(seller), status=tr(f"status.{invoice.effective_status()}"),
              number=invoice.number or tr("invoice.draft_number"))
    text = with_lines(tr, text, invoice)
    own = invoice.seller_id == viewer.id
    payable = invoice.effective_status() == "pending" and not own
    url = pay_url(cfg, invoice.public_id)
    if own:
        text += "\n\n" + tr("invoice.yours", url=escape(url))
        return text, seller_actions_keyboard(tr, invoice)
    if payable and not usable_in_button(url):
        text += "\n\n" + tr("invoice.open_web", url=escape(url))
    due = money(invoice.amount_due, invoice.currency)
    return text, invoice_card_keyboard(tr, cfg, invoice, due, payable=payable)


def created_caption(tr: Translator, cfg: BotConfig, invoice: Invoice) -> str:
    item = invoice.payload.get("item_id")
    text = tr(
        "invoice.created", number=invoice.number, title=escape(invoice.title),
        amount=money(invoice.amount, invoice.currency), ton=ton_suffix(invoice),
        kind=tr(f"invoice.kind.{invoice.kind}"), expires=when(invoice.expires_at),
        item=tr("invoice.item", item=escape(item)) if item else "",
        url=escape(pay_url(cfg, invoice.public_id)),
        deep=escape(pay_deep_link(cfg, invoice.public_id)), comment=invoice.comment,
    )
    return with_lines(tr, text, invoice)


def payer_label(tr: Translator, payer: Payer | None) -> str:
    """Who paid, as the seller sees it: a name or @username, else the guest's contact."""
    if payer is not None and payer.user is not None:
        return person(payer.user)
    if payer is not None and payer.contact:
        return tr("notify.guest_contact", contact=escape(payer.contact))
    return tr("notify.guest")


def invoices_list(tr: Translator, invoices: list[Invoice], *, has_older: bool,
                  payers: dict[int, Payer] | None = None) -> View:
    """The seller's invoices; `payers` (invoices.id -> the latest payer) names who paid."""
    if not invoices:
        return tr("invoices.empty"), None
    lines = [tr("invoices.title")]
    for inv in invoices:
        line = tr("invoices.line", number=inv.number or tr("invoice.draft_number"),
                  title=escape(inv.title[:40]),
                  amount=money(inv.amount, inv.currency),
                  status=tr(f"status.{inv.effective_status()}"))
        if inv.kind == "multi_use" and inv.uses:
            line += tr("invoices.uses", uses=inv.uses)
        if payers is not None and inv.id in payers:
            line += tr("invoices.by", payer=payer_label(tr, payers[inv.id]))
        lines.append(line)
    older = invoices[-1].id if has_older else None
    return fit("\n".join(lines)), invoices_keyboard(tr, invoices, older_than=older)


async def edit(cb: CallbackQuery, text: str, markup: InlineKeyboardMarkup | None) -> None:
    """Show `text` in the message the button was on (by id, so that old and inaccessible
    messages work too). Editing into the same content is not an error; a message that cannot
    be edited any more (deleted, too old) gets a new message instead, so an outcome such as a
    payment is never left untold."""
    if cb.message is None or cb.bot is None:
        return
    chat_id = cb.message.chat.id
    try:
        await cb.bot.edit_message_text(text=fit(text), chat_id=chat_id,
                                       message_id=cb.message.message_id, reply_markup=markup)
    except TelegramBadRequest as exc:
        if "message is not modified" in str(exc):
            return
        log.info("could not edit message %s (%s); sending a new one", cb.message.message_id,
                 exc.message)
        await cb.bot.send_message(chat_id, fit(text), reply_markup=markup)
