"""Callback data factories and the inline keyboards built from them.

Callback data carries only public ids and a verb; everything else is read again from the ledger
when the button is tapped, so an old message can never act on stale amounts or states."""

from __future__ import annotations

from typing import Literal

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, WebAppInfo

from bot.telegram.config import BotConfig
from bot.telegram.i18n import Translator
from bot.telegram.links import pay_url, share_url, usable_in_button
from ledger.models import Invoice


class PayCb(CallbackData, prefix="pay"):
    action: Literal["ask", "confirm", "back", "ton", "topup"]
    invoice: str


class CancelCb(CallbackData, prefix="cxl"):
    action: Literal["ask", "do", "back"]
    invoice: str


class DocCb(CallbackData, prefix="doc"):
    invoice: str  # send this invoice as a PDF document


class PageCb(CallbackData, prefix="invs"):
    before: int  # list invoices older than this internal id (0: the newest)


class FormCb(CallbackData, prefix="form"):
    field: Literal["kind", "expiry", "item"]
    value: str


EXPIRY_CHOICES_HOURS = (1, 24, 24 * 7, 24 * 30)


def _column(buttons: list[InlineKeyboardButton]) -> InlineKeyboardMarkup | None:
    # Built directly: aiogram's InlineKeyboardBuilder deep-copies every button (pydantic
    # models), which cost more than the database read on the /start pay_<id> path.
    return InlineKeyboardMarkup(inline_keyboard=[[b] for b in buttons]) if buttons else None


def _callback(text: str, data: CallbackData) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=data.pack())


def invoice_card_keyboard(
    tr: Translator, cfg: BotConfig, invoice: Invoice, amount_text: str, *, payable: bool
) -> InlineKeyboardMarkup | None:
    if not payable:
        return None
    buttons = [_callback(tr("btn.pay_balance", amount=amount_text),
                         PayCb(action="ask", invoice=invoice.public_id))]
    if cfg.ton_destination and invoice.ton_amount:
        buttons.append(_callback(tr("btn.pay_ton"),
                                 PayCb(action="ton", invoice=invoice.public_id)))
    url = pay_url(cfg, invoice.public_id)
    if usable_in_button(url):  # Web App buttons need a public https URL
        buttons.append(InlineKeyboardButton(text=tr("btn.mini_app"), web_app=WebAppInfo(url=url)))
    return _column(buttons)


def confirm_keyboard(tr: Translator, public_id: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[
        [InlineKeyboardButton(text=tr("btn.confirm"),
                              callback_data=PayCb(action="confirm", invoice=public_id).pack())],
        [InlineKeyboardButton(text=tr("btn.back"),
                              callback_data=PayCb(action="back", invoice=public_id).pack())],
    ])


def short_keyboard(tr: Translator, public_id: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[
        [InlineKeyboardButton(text=tr("btn.top_up"),
                              callback_data=PayCb(action="topup", invoice=public_id).pack())],
        [InlineKeyboardButton(text=tr("btn.back"),
                              callback_data=PayCb(action="back", invoice=public_id).pack())],
    ])


def seller_share_keyboard(
    tr: Translator, cfg: BotConfig, invoice: Invoice, share_text: str, deep: str
) -> InlineKeyboardMarkup | None:
    url = pay_url(cfg, invoice.public_id)
    public = usable_in_button(url)
    # The share sheet carries the page when it is public, else the t.me link (always works).
    buttons = [InlineKeyboardButton(text=tr("btn.share"),
                                    url=share_url(url if public else deep, share_text))]
    if public:
        buttons.append(InlineKeyboardButton(text=tr("btn.open_page"), url=url))
    buttons.append(_callback(tr("btn.pdf"), DocCb(invoice=invoice.public_id)))
    return _column(buttons)


def wallet_keyboard(tr: Translator, wallet_url: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[
        [InlineKeyboardButton(text=tr("btn.wallet"), url=wallet_url)],
    ])


def invoices_keyboard(
    tr: Translator, invoices: list[Invoice], *, older_than: int | None
) -> InlineKeyboardMarkup | None:
    buttons = [_callback(tr("btn.cancel_invoice", number=inv.number),
                         CancelCb(action="ask", invoice=inv.public_id))
               for inv in invoices if inv.status == "pending"]
    if older_than is not None:
        buttons.append(_callback(tr("btn.older"), PageCb(before=older_than)))
    return _column(buttons)


def cancel_confirm_keyboard(tr: Translator, public_id: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[
        [InlineKeyboardButton(text=tr("btn.cancel_yes"),
                              callback_data=CancelCb(action="do", invoice=public_id).pack())],
        [InlineKeyboardButton(text=tr("btn.back"),
                              callback_data=CancelCb(action="back", invoice=public_id).pack())],
    ])


def kind_keyboard(tr: Translator) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[
        [InlineKeyboardButton(text=tr(f"form.kind.{kind}"),
                              callback_data=FormCb(field="kind", value=kind).pack())]
        for kind in ("one_time", "multi_use")
    ])


def expiry_keyboard(tr: Translator) -> InlineKeyboardMarkup:
    row = [_callback(tr("hours", n=hours) if hours < 48 else tr("days", n=hours // 24),
                     FormCb(field="expiry", value=str(hours)))
           for hours in EXPIRY_CHOICES_HOURS]
    return InlineKeyboardMarkup(inline_keyboard=[row])


def skip_keyboard(tr: Translator) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[
        [InlineKeyboardButton(text=tr("form.skip"),
                              callback_data=FormCb(field="item", value="-").pack())],
    ])


class ApiCb(CallbackData, prefix="api"):
    action: Literal["new", "ask", "revoke", "list"]
    token: int = 0  # api_tokens.id; revoking checks it is the tapping seller's own


def api_tokens_keyboard(
    tr: Translator, tokens: list[tuple[int, str]], *, can_issue: bool
) -> InlineKeyboardMarkup | None:
    """/api: a new token (below the limit), and one revoke button per active token."""
    buttons = [_callback(tr("btn.api_new"), ApiCb(action="new"))] if can_issue else []
    buttons += [_callback(tr("btn.api_revoke", hint=hint), ApiCb(action="ask", token=token_id))
                for token_id, hint in tokens]
    return _column(buttons)


def api_revoke_keyboard(tr: Translator, token_id: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[
        [_callback(tr("btn.api_revoke_yes"), ApiCb(action="revoke", token=token_id))],
        [_callback(tr("btn.back"), ApiCb(action="list"))],
    ])
