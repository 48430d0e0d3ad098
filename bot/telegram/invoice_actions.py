"""The seller's buttons on an invoice card — record a payment received elsewhere, send the
invoice to a client, void it, write it off — and the buyer's "stop reminders".

Each ends in one Ledger call; its typed errors (too large, void, not yours ...) are one sentence
from errors.py with nothing changed. Voiding and writing off ask to confirm first."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html import escape
from typing import Final

from aiogram import F, Router
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message

from bot.telegram import parse
from bot.telegram.config import BotConfig
from bot.telegram.i18n import Translator
from bot.telegram.keyboards import (
    ActCb,
    StopCb,
    confirm_action_keyboard,
    seller_actions_keyboard,
)
from bot.telegram.links import pay_deep_link
from bot.telegram.render import money, person
from bot.telegram.views import edit, refuse_unless_pending
from ledger.core import Ledger
from ledger.errors import RecipientNotFound
from ledger.models import Invoice, User

router: Final[Router] = Router(name=__name__)

NOT_A_COMMAND = F.text & ~F.text.startswith("/")
REFERENCE_MAX = 100
_USERNAME = re.compile(r"^@?[A-Za-z][A-Za-z0-9_]{3,31}$")


class PaymentForm(StatesGroup):
    amount = State()
    reference = State()


class SendForm(StatesGroup):
    to = State()


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


@router.message(PaymentForm.amount, ~F.text)
@router.message(PaymentForm.reference, ~F.text)
@router.message(SendForm.to, ~F.text)
async def text_please(message: Message, tr: Translator) -> None:
    await message.answer(tr("form.text_only"))
