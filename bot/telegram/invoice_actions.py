"""The seller's buttons on an invoice card — record a payment received elsewhere, send the
invoice to a client, void it, write it off, refund a Stars payment — and the buyer's "stop
reminders".

Each ends in one Ledger call; its typed errors (too large, void, not yours ...) are one sentence
from errors.py with nothing changed. Voiding, writing off and refunding ask to confirm first."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html import escape
from typing import Final, Literal

from aiogram import F, Router
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot.telegram import parse
from bot.telegram.config import BotConfig
from bot.telegram.excess_refunds import excess_button
from bot.telegram.i18n import Translator
from bot.telegram.keyboards import (
    ActCb,
    StopCb,
    confirm_action_keyboard,
    seller_actions_keyboard,
)
from bot.telegram.links import pay_deep_link
from bot.telegram.render import money, person
from bot.telegram.star_refunds import refund_stars
from bot.telegram.views import edit, refuse_unless_pending
from ledger.core import Ledger
from ledger.errors import (
    AlreadyRefunded,
    InvoiceNotFound,
    RailPaymentNotFound,
    RecipientNotFound,
    RefundNotSupported,
)
from ledger.models import Invoice, User
from ledger.rails import RailPayment

router: Final[Router] = Router(name=__name__)

NOT_A_COMMAND = F.text & ~F.text.startswith("/")
REFERENCE_MAX = 100
_USERNAME = re.compile(r"^@?[A-Za-z][A-Za-z0-9_]{3,31}$")


class PaymentForm(StatesGroup):
    amount = State()
    reference = State()


class SendForm(StatesGroup):
    to = State()


class RefundForm(StatesGroup):
    reason = State()  # the reason is asked, then a confirmation with it is shown


class RefundCb(CallbackData, prefix="rfd"):
    """A Stars payment of the seller's invoice (rail_payments.id): refund it, after a reason
    and a confirmation."""

    action: Literal["ask", "do", "back"]
    payment: int


REASON_MAX = 200
REFUNDS_SHOWN = 5  # the latest refundable Stars payments of an invoice get a button each


def _chat(cb: CallbackQuery, user: User) -> int:
    return cb.message.chat.id if cb.message is not None else user.telegram_id


def _label(invoice: Invoice, tr: Translator) -> str:
    return invoice.number or tr("invoice.draft_number")


# --- record a payment ------------------------------------------------------------------------

@router.callback_query(ActCb.filter(F.action == "record"))
async def ask_payment(
    cb: CallbackQuery, callback_data: ActCb, state: FSMContext, user: User, tr: Translator,
    ledger: Ledger,
) -> None:
    invoice = await ledger.seller_invoice(user.id, callback_data.invoice)
    refuse_unless_pending(invoice)
    await state.set_state(PaymentForm.amount)
    await state.set_data({"invoice": invoice.public_id})
    await cb.answer()
    assert cb.bot is not None
    await cb.bot.send_message(_chat(cb, user), tr(
        "record.amount", number=_label(invoice, tr),
        due=money(invoice.amount_due, invoice.currency)))


@router.message(PaymentForm.amount, NOT_A_COMMAND)
async def got_payment_amount(
    message: Message, state: FSMContext, user: User, tr: Translator, ledger: Ledger,
) -> None:
    data = await state.get_data()
    invoice = await ledger.seller_invoice(user.id, data["invoice"])
    try:
        amount = parse.amount(message.text or "", invoice.currency, tr)
    except parse.InputProblem as problem:
        await message.answer(str(problem))
        return
    if amount > invoice.amount_due:  # the ledger refuses it too; said here, the step stays
        await message.answer(tr("err.manual_payment_too_large") + " " + tr(
            "record.due", due=money(invoice.amount_due, invoice.currency)))
        return
    await state.update_data(amount=amount)
    await state.set_state(PaymentForm.reference)
    await message.answer(tr("record.reference"))


@router.message(PaymentForm.reference, NOT_A_COMMAND)
async def got_payment_reference(
    message: Message, state: FSMContext, user: User, tr: Translator, ledger: Ledger,
) -> None:
    reference = " ".join((message.text or "").split())
    if not reference or len(reference) > REFERENCE_MAX:
        await message.answer(tr("record.reference_bad", max=REFERENCE_MAX))
        return
    data = await state.get_data()
    await state.clear()  # before the ledger call: a repeated message records nothing twice
    # Too large by now (paid meanwhile), void, reference reused ...: one sentence (errors.py).
    recorded = await ledger.record_manual_payment(
        data["invoice"], seller_id=user.id, amount=int(data["amount"]),
        received_on=datetime.now(UTC).date(), reference=reference, note=None)
    invoice = recorded.invoice
    amount = money(int(data["amount"]), invoice.currency)
    if invoice.status == "paid":
        text = tr("record.paid", amount=amount, number=_label(invoice, tr))
    else:
        text = tr("record.partial", amount=amount, number=_label(invoice, tr),
                  due=money(invoice.amount_due, invoice.currency))
    await message.answer(text, reply_markup=seller_actions_keyboard(tr, invoice))


# --- send to a client ------------------------------------------------------------------------

@router.callback_query(ActCb.filter(F.action == "send"))
async def ask_recipient(
    cb: CallbackQuery, callback_data: ActCb, state: FSMContext, user: User, tr: Translator,
    ledger: Ledger,
) -> None:
    invoice = await ledger.seller_invoice(user.id, callback_data.invoice)
    await state.set_state(SendForm.to)
    await state.set_data({"invoice": invoice.public_id})
    await cb.answer()
    assert cb.bot is not None
    await cb.bot.send_message(_chat(cb, user), tr("send.ask", number=_label(invoice, tr)))


@router.message(SendForm.to, NOT_A_COMMAND)
async def got_recipient(
    message: Message, state: FSMContext, user: User, tr: Translator, ledger: Ledger,
    cfg: BotConfig,
) -> None:
    text = (message.text or "").strip()
    to: int | str
    if text.isdigit() and len(text) <= 15:
        to = int(text)
    elif _USERNAME.match(text):
        to = text.removeprefix("@")
    else:
        await message.answer(tr("send.bad"))
        return
    data = await state.get_data()
    await state.clear()
    try:
        sent = await ledger.send_invoice(user.id, data["invoice"], to, cfg.ton_rate)
    except RecipientNotFound:
        link = pay_deep_link(cfg, data["invoice"])
        await message.answer(tr("send.unknown", who=escape(text), link=escape(link)))
        return
    await message.answer(tr("send.done", number=_label(sent.invoice, tr),
                            who=person(sent.recipient)))


# --- void / write off ------------------------------------------------------------------------

@router.callback_query(ActCb.filter(F.action.in_({"void_ask", "wo_ask"})))
async def ask_confirm(
    cb: CallbackQuery, callback_data: ActCb, user: User, tr: Translator, ledger: Ledger,
) -> None:
    invoice = await ledger.seller_invoice(user.id, callback_data.invoice)
    values = dict(number=_label(invoice, tr), title=escape(invoice.title),
                  due=money(invoice.amount_due, invoice.currency))
    if callback_data.action == "void_ask":
        text, markup = tr("void.confirm", **values), confirm_action_keyboard(
            tr, "void_do", invoice.public_id)
    else:
        text, markup = tr("write_off.confirm", **values), confirm_action_keyboard(
            tr, "wo_do", invoice.public_id)
    await cb.answer()
    assert cb.bot is not None
    await cb.bot.send_message(_chat(cb, user), text, reply_markup=markup)


@router.callback_query(ActCb.filter(F.action.in_({"void_do", "wo_do"})))
async def do_confirmed(
    cb: CallbackQuery, callback_data: ActCb, user: User, tr: Translator, ledger: Ledger,
) -> None:
    if callback_data.action == "void_do":
        invoice = await ledger.void_invoice(user.id, callback_data.invoice, None)
        text = tr("void.done", number=_label(invoice, tr))
    else:
        invoice = await ledger.mark_uncollectible(user.id, callback_data.invoice, None)
        text = tr("write_off.done", number=_label(invoice, tr))
    await cb.answer()
    await _replace(cb, text)


@router.callback_query(ActCb.filter(F.action == "back"))
async def back(cb: CallbackQuery, tr: Translator) -> None:
    await cb.answer()
    await _replace(cb, tr("action.kept"))


async def _replace(cb: CallbackQuery, text: str) -> None:
    """The confirmation message becomes the outcome (its buttons go)."""
    await edit(cb, text, None)


# --- the buyer: stop reminders ---------------------------------------------------------------

@router.callback_query(StopCb.filter())
async def stop_reminders(
    cb: CallbackQuery, callback_data: StopCb, user: User, tr: Translator, ledger: Ledger,
) -> None:
    invoice = await ledger.stop_reminders(callback_data.invoice, user.id)
    await cb.answer(tr("reminders.stopped", number=_label(invoice, tr)), show_alert=True)


# --- refund a Stars payment ----------------------------------------------------------------

def refundable(payment: RailPayment) -> bool:
    """A Stars payment that paid an invoice and has no refund done or under way."""
    return payment.rail == "stars" and payment.outcome == "paid" and (
        payment.refund is None or payment.refund.status == "failed")


async def refund_buttons(ledger: Ledger, tr: Translator,
                         invoice: Invoice) -> list[InlineKeyboardButton]:
    """"↩️ Refund Stars" for each refundable Stars payment of the seller's invoice."""
    payments = [p for p in await ledger.rail_payments_of_invoice(invoice.public_id)
                if refundable(p)][-REFUNDS_SHOWN:]
    return [InlineKeyboardButton(
        text=tr("btn.refund_stars", stars=p.amount) if len(payments) == 1 else
        tr("btn.refund_stars_of", stars=p.amount, id=p.id),
        callback_data=RefundCb(action="ask", payment=p.id).pack()) for p in payments]


async def with_refund_buttons(ledger: Ledger, tr: Translator, invoice: Invoice,
                              markup: InlineKeyboardMarkup | None,
                              ) -> InlineKeyboardMarkup | None:
    """The seller's invoice card with its refund buttons below the others (Stars payments,
    and an overpayment still held: bot/telegram/excess_refunds.py)."""
    buttons = await refund_buttons(ledger, tr, invoice)
    excess = await excess_button(ledger, tr, invoice)
    if excess is not None:
        buttons.append(excess)
    if not buttons:
        return markup
    rows = list(markup.inline_keyboard) if markup is not None else []
    return InlineKeyboardMarkup(inline_keyboard=rows + [[b] for b in buttons])


async def _own_stars_payment(ledger: Ledger, user: User,
                             payment_id: int) -> tuple[RailPayment, Invoice]:
    """The seller's refundable Stars payment; the ledger's refusals, said at the first tap."""
    payment = await ledger.rail_payment(payment_id)
    if payment.invoice_public_id is None:
        raise RailPaymentNotFound(str(payment_id))
    try:
        invoice = await ledger.seller_invoice(user.id, payment.invoice_public_id)
    except InvoiceNotFound:  # another seller's payment looks like none
        raise RailPaymentNotFound(str(payment_id)) from None
    if payment.rail != "stars":
        raise RefundNotSupported(str(payment_id))
    if payment.refund is not None and payment.refund.status != "failed":
        raise AlreadyRefunded(str(payment_id))
    return payment, invoice


def _refund_values(tr: Translator, payment: RailPayment, invoice: Invoice) -> dict[str, str]:
    ledger_amount = money(payment.ledger_amount or 0, payment.ledger_currency or invoice.currency)
    return dict(stars=str(payment.amount), number=_label(invoice, tr),
                title=escape(invoice.title), amount=ledger_amount)


@router.callback_query(RefundCb.filter(F.action == "ask"))
async def ask_refund_reason(
    cb: CallbackQuery, callback_data: RefundCb, state: FSMContext, user: User, tr: Translator,
    ledger: Ledger,
) -> None:
    payment, invoice = await _own_stars_payment(ledger, user, callback_data.payment)
    await state.set_state(RefundForm.reason)
    await state.set_data({"payment": payment.id})
    await cb.answer()
    assert cb.bot is not None
    await cb.bot.send_message(_chat(cb, user), tr(
        "refund.reason", **_refund_values(tr, payment, invoice)))


@router.message(RefundForm.reason, NOT_A_COMMAND)
async def got_refund_reason(
    message: Message, state: FSMContext, user: User, tr: Translator, ledger: Ledger,
) -> None:
    reason = " ".join((message.text or "").split())
    if not reason or len(reason) > REASON_MAX:
        await message.answer(tr("refund.reason_bad", max=REASON_MAX))
        return
    data = await state.get_data()
    payment, invoice = await _own_stars_payment(ledger, user, int(data["payment"]))
    await state.update_data(reason=reason)
    await message.answer(
        tr("refund.confirm", reason=escape(reason), **_refund_values(tr, payment, invoice)),
        reply_markup=InlineKeyboardMarkup(inline_keyboard=[
            [InlineKeyboardButton(text=tr("btn.refund_yes", stars=payment.amount),
                                  callback_data=RefundCb(action="do", payment=payment.id).pack())],
            [InlineKeyboardButton(text=tr("btn.back"), callback_data=RefundCb(
                action="back", payment=payment.id).pack())],
        ]))


@router.callback_query(RefundCb.filter(F.action == "do"))
async def do_refund(
    cb: CallbackQuery, callback_data: RefundCb, state: FSMContext, user: User, tr: Translator,
    ledger: Ledger,
) -> None:
    """Not yours, a card, already refunded, the balance short of it: one sentence each
    (errors.py), nothing changed. Telegram's answer decides done / failed / pending."""
    data = await state.get_data()
    if data.get("payment") != callback_data.payment or not data.get("reason"):
        await cb.answer(tr("refund.stale"), show_alert=True)  # an old confirmation
        return
    await state.clear()  # before the ledger: a double tap refunds once (AlreadyRefunded)
    payment, invoice = await _own_stars_payment(ledger, user, callback_data.payment)
    assert cb.bot is not None
    refund = await refund_stars(ledger, cb.bot, payment.id, seller_id=user.id,
                                actor_id=user.id, reason=str(data["reason"]))
    values = _refund_values(tr, payment, invoice)
    if refund.status == "done":
        text = tr("refund.done", **values)
    elif refund.status == "pending":
        text = tr("refund.pending", **values)
    else:
        text = tr("refund.failed", error=escape(refund.error or ""), **values)
    await cb.answer()
    await _replace(cb, text)


@router.callback_query(RefundCb.filter(F.action == "back"))
async def refund_back(cb: CallbackQuery, state: FSMContext, tr: Translator) -> None:
    await state.clear()
    await cb.answer()
    await _replace(cb, tr("action.kept"))


@router.message(PaymentForm.amount, ~F.text)
@router.message(PaymentForm.reference, ~F.text)
@router.message(SendForm.to, ~F.text)
@router.message(RefundForm.reason, ~F.text)
async def text_please(message: Message, tr: Translator) -> None:
    await message.answer(tr("form.text_only"))
