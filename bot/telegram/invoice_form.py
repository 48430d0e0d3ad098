"""/invoice: a short conversation (title, amount, one-time or multi-use, expiry, optional item)
or one line (`/invoice 12.50 Coffee beans`). The reply carries every way to pay: the pay page,
the t.me deep link, a QR and a share button."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import BufferedInputFile, CallbackQuery, Message

from bot.qr import qr_png
from bot.telegram import parse
from bot.telegram.config import BotConfig
from bot.telegram.i18n import Translator
from bot.telegram.keyboards import (
    FormCb,
    expiry_keyboard,
    kind_keyboard,
    seller_share_keyboard,
    skip_keyboard,
)
from bot.telegram.links import pay_deep_link, pay_url
from bot.telegram.render import CAPTION_LIMIT, fit, money
from bot.telegram.views import created_caption
from ledger.core import Ledger
from ledger.invoices import new_invoice
from ledger.models import Invoice, User
from ledger.money import SYMBOLS

router: Final[Router] = Router(name=__name__)

NOT_A_COMMAND = F.text & ~F.text.startswith("/")


class InvoiceForm(StatesGroup):
    title = State()
    amount = State()
    kind = State()
    expiry = State()
    item = State()


@router.message(Command("invoice"))
async def cmd_invoice(
    message: Message, command: CommandObject, state: FSMContext, bot: Bot, user: User,
    tr: Translator, ledger: Ledger, cfg: BotConfig,
) -> None:
    await state.clear()
    if not command.args:
        await state.set_state(InvoiceForm.title)
        await message.answer(tr("form.title"))
        return
    first, rest = parse.split_amount(command.args)
    try:
        amount = parse.amount(first, cfg.currency, tr, cfg.ton_rate)
        title = parse.title(rest, tr)
    except parse.InputProblem as problem:
        await message.answer(f"{problem}\n\n{tr('form.oneline.usage')}")
        return
    invoice, _ = await ledger.issue_invoice(new_invoice(
        seller_id=user.id, title=title, amount=amount, currency=cfg.currency,
        expires_in=cfg.invoice_expiry, ton_rate=cfg.ton_rate,
    ))
    await send_created(bot, message.chat.id, tr, cfg, invoice)


@router.message(Command("cancel"))
async def cmd_cancel(message: Message, state: FSMContext, tr: Translator) -> None:
    if await state.get_state() is None:
        await message.answer(tr("form.nothing"))
        return
    await state.clear()
    await message.answer(tr("form.cancelled"))


@router.message(InvoiceForm.title, NOT_A_COMMAND)
async def got_title(message: Message, state: FSMContext, tr: Translator, cfg: BotConfig) -> None:
    try:
        title = parse.title(message.text or "", tr)
    except parse.InputProblem as problem:
        await message.answer(str(problem))
        return
    await state.update_data(title=title)
    await state.set_state(InvoiceForm.amount)
    await message.answer(tr("form.amount", currency=SYMBOLS.get(cfg.currency, cfg.currency)))


@router.message(InvoiceForm.amount, NOT_A_COMMAND)
async def got_amount(message: Message, state: FSMContext, tr: Translator, cfg: BotConfig) -> None:
    try:
        amount = parse.amount(message.text or "", cfg.currency, tr, cfg.ton_rate)
    except parse.InputProblem as problem:
        await message.answer(str(problem))
        return
    await state.update_data(amount=amount)
    await state.set_state(InvoiceForm.kind)
    await message.answer(tr("form.kind"), reply_markup=kind_keyboard(tr))


@router.callback_query(InvoiceForm.kind, FormCb.filter(F.field == "kind"))
async def got_kind(
    cb: CallbackQuery, callback_data: FormCb, state: FSMContext, tr: Translator
) -> None:
    if callback_data.value not in ("one_time", "multi_use"):
        await cb.answer(tr("stale_button"), show_alert=True)
        return
    await state.update_data(kind=callback_data.value)
    await state.set_state(InvoiceForm.expiry)
    await cb.answer()
    if isinstance(cb.message, Message):
        await cb.message.answer(tr("form.expiry"), reply_markup=expiry_keyboard(tr))


@router.message(InvoiceForm.kind, NOT_A_COMMAND)
async def kind_needs_a_tap(message: Message, tr: Translator) -> None:
    await message.answer(tr("form.kind"), reply_markup=kind_keyboard(tr))


async def _expiry_chosen(state: FSMContext, span: timedelta, chat: Message, tr: Translator) -> None:
    await state.update_data(expiry_seconds=int(span.total_seconds()))
    await state.set_state(InvoiceForm.item)
    await chat.answer(tr("form.item"), reply_markup=skip_keyboard(tr))


@router.callback_query(InvoiceForm.expiry, FormCb.filter(F.field == "expiry"))
async def got_expiry_tap(
    cb: CallbackQuery, callback_data: FormCb, state: FSMContext, tr: Translator
) -> None:
    try:
        span = parse.duration(callback_data.value, tr)
    except parse.InputProblem as problem:
        await cb.answer(str(problem), show_alert=True)
        return
    await cb.answer()
    if isinstance(cb.message, Message):
        await _expiry_chosen(state, span, cb.message, tr)


@router.message(InvoiceForm.expiry, NOT_A_COMMAND)
async def got_expiry_text(message: Message, state: FSMContext, tr: Translator) -> None:
    try:
        span = parse.duration(message.text or "", tr)
    except parse.InputProblem as problem:
        await message.answer(str(problem), reply_markup=expiry_keyboard(tr))
        return
    await _expiry_chosen(state, span, message, tr)


@router.message(InvoiceForm.item, NOT_A_COMMAND)
async def got_item(
    message: Message, state: FSMContext, bot: Bot, user: User, tr: Translator,
    ledger: Ledger, cfg: BotConfig,
) -> None:
    try:
        item = parse.item_id(message.text or "", tr)
    except parse.InputProblem as problem:
        await message.answer(str(problem), reply_markup=skip_keyboard(tr))
        return
    await _create(state, bot, message.chat.id, user, tr, ledger, cfg, item)


@router.callback_query(InvoiceForm.item, FormCb.filter(F.field == "item"))
async def skipped_item(
    cb: CallbackQuery, state: FSMContext, bot: Bot, user: User, tr: Translator,
    ledger: Ledger, cfg: BotConfig,
) -> None:
    await cb.answer()
    chat_id = cb.message.chat.id if cb.message else user.telegram_id
    await _create(state, bot, chat_id, user, tr, ledger, cfg, None)


@router.message(InvoiceForm.title, ~F.text)
@router.message(InvoiceForm.amount, ~F.text)
@router.message(InvoiceForm.expiry, ~F.text)
@router.message(InvoiceForm.item, ~F.text)
async def text_please(message: Message, tr: Translator) -> None:
    await message.answer(tr("form.text_only"))


async def _create(
    state: FSMContext, bot: Bot, chat_id: int, user: User, tr: Translator, ledger: Ledger,
    cfg: BotConfig, item: str | None,
) -> None:
    data = await state.get_data()
    # Cleared before the insert: a second tap on "Skip" finds no form and creates nothing.
    await state.clear()
    invoice, _ = await ledger.issue_invoice(new_invoice(
        seller_id=user.id, title=data["title"], amount=data["amount"],
        currency=cfg.currency, kind=data["kind"],
        expires_in=timedelta(seconds=data["expiry_seconds"]),
        payload={"item_id": item} if item else None, ton_rate=cfg.ton_rate,
    ))
    await send_created(bot, chat_id, tr, cfg, invoice)


async def send_created(
    bot: Bot, chat_id: int, tr: Translator, cfg: BotConfig, invoice: Invoice
) -> None:
    deep = pay_deep_link(cfg, invoice.public_id)
    share_text = tr("share.text", title=invoice.title, amount=money(invoice.amount,
                                                                   invoice.currency))
    await bot.send_photo(
        chat_id, BufferedInputFile(qr_png(pay_url(cfg, invoice.public_id)), "invoice.png"),
        caption=fit(created_caption(tr, cfg, invoice), CAPTION_LIMIT),
        reply_markup=seller_share_keyboard(tr, cfg, invoice, share_text, deep),
    )
