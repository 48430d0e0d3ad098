"""The seller's "refund the difference": a payer who sent more than the invoice asked (TON or
USDT) gets the overpayment back to the wallet that sent it, by the hot wallet (a payout,
ledger/payouts.py) — after the seller confirms. Nothing held any more (refunded already, or
credited meanwhile): one sentence, nothing sent twice."""

from __future__ import annotations

from typing import Final, Literal

from aiogram import F, Router
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup

from bot.telegram.i18n import Translator
from ledger.core import Ledger
from ledger.errors import NothingHeld
from ledger.models import Invoice, User
from ledger.money import display_amount
from ledger.payouts import Payout

router: Final[Router] = Router(name=__name__)


class ExcessCb(CallbackData, prefix="xrf"):
    action: Literal["ask", "do", "back"]
    invoice: str


def _amounts(held: dict[str, int]) -> str:
    return ", ".join(display_amount(amount, asset) for asset, amount in held.items())


async def excess_button(ledger: Ledger, tr: Translator,
                        invoice: Invoice) -> InlineKeyboardButton | None:
    """"↩️ Refund the overpayment (0.5 USDT)" while an overpayment of the invoice is held."""
    held = await ledger.excess_held(invoice.public_id)
    if not held:
        return None
    return InlineKeyboardButton(
        text=tr("btn.refund_excess", amount=_amounts(held)),
        callback_data=ExcessCb(action="ask", invoice=invoice.public_id).pack())


@router.callback_query(ExcessCb.filter(F.action == "ask"))
async def ask(cb: CallbackQuery, callback_data: ExcessCb, user: User, tr: Translator,
              ledger: Ledger) -> None:
    invoice = await ledger.seller_invoice(user.id, callback_data.invoice)  # not theirs: refused
    held = await ledger.excess_held(invoice.public_id)
    if not held:
        await cb.answer(tr("excess.none"), show_alert=True)
        return
    await cb.answer()
    if cb.message is not None:
        await cb.message.answer(
            tr("excess.confirm", amount=_amounts(held)),
            reply_markup=InlineKeyboardMarkup(inline_keyboard=[
                [InlineKeyboardButton(text=tr("btn.excess_yes"), callback_data=ExcessCb(
                    action="do", invoice=invoice.public_id).pack())],
                [InlineKeyboardButton(text=tr("btn.back"), callback_data=ExcessCb(
                    action="back", invoice=invoice.public_id).pack())]]))


@router.callback_query(ExcessCb.filter(F.action == "do"))
async def do(cb: CallbackQuery, callback_data: ExcessCb, user: User, tr: Translator,
             ledger: Ledger) -> None:
    try:
        payouts = await ledger.refund_excess(callback_data.invoice, seller_id=user.id,
                                             note="overpayment refunded by the seller")
    except NothingHeld:  # a second tap, or the operator got there first
        await cb.answer(tr("excess.none"), show_alert=True)
        return
    await cb.answer()
    text = tr("excess.done", amount=_amounts(_sum(payouts)),
              ids=", ".join(f"#{p.id}" for p in payouts))
    if cb.message is not None:
        await cb.message.edit_text(text)


@router.callback_query(ExcessCb.filter(F.action == "back"))
async def back(cb: CallbackQuery, tr: Translator) -> None:
    await cb.answer()
    if cb.message is not None:
        await cb.message.edit_text(tr("excess.kept"))


def _sum(payouts: list[Payout]) -> dict[str, int]:
    total: dict[str, int] = {}
    for p in payouts:
        total[p.asset] = total.get(p.asset, 0) + p.amount
    return total
