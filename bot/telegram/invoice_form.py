"""/invoice: a short conversation (title, amount, one-time or multi-use, expiry, optional item)
or one line (`/invoice 12.50 Coffee beans`). The reply carries every way to pay: the pay page,
the t.me deep link, a QR and a share button.

Invoices as documents take no extra step: beside "one buyer or many?" the seller may add lines
("Design work, 2 x 15.50"), a discount, a tax rate and a due date, each an optional button that
comes back to the same question with the lines and totals so far."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Final

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import BufferedInputFile, CallbackQuery, Message

from bot.qr import qr_png
from bot.telegram import parse
from bot.telegram.config import BotConfig
from bot.telegram.document_text import preview_text
from bot.telegram.i18n import Translator
from bot.telegram.keyboards import (
    FormCb,
    expiry_keyboard,
    kind_keyboard,
    seller_share_keyboard,
    skip_keyboard,
    tax_default_keyboard,
)
from bot.telegram.links import pay_deep_link, pay_url
from bot.telegram.render import CAPTION_LIMIT, fit, money
from bot.telegram.views import created_caption
from ledger.core import Ledger
from ledger.documents import make_document
from ledger.errors import InvalidInvoice
from ledger.invoices import DUE_GRACE, MAX_EXPIRY, new_invoice
from ledger.models import Invoice, User
from ledger.money import SYMBOLS
from ledger.totals import AmountOff, Discount, Line, PercentOff, TaxRate

router: Final[Router] = Router(name=__name__)

NOT_A_COMMAND = F.text & ~F.text.startswith("/")


class InvoiceForm(StatesGroup):
    title = State()
    amount = State()
    kind = State()
    expiry = State()
    item = State()
    # the optional extras, each answered by text, then back to `kind`
    line = State()
    discount = State()
    tax = State()
    due = State()


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
    if callback_data.value == "multi_use" and _document(await state.get_data())[0] is not None:
        await cb.answer(tr("form.lines_one_time"), show_alert=True)
        return
    await state.update_data(kind=callback_data.value)
    await state.set_state(InvoiceForm.expiry)
    await cb.answer()
    if isinstance(cb.message, Message):
        await cb.message.answer(tr("form.expiry"), reply_markup=expiry_keyboard(tr))


@router.message(InvoiceForm.kind, NOT_A_COMMAND)
async def kind_needs_a_tap(message: Message, state: FSMContext, tr: Translator) -> None:
    multi_use = _document(await state.get_data())[0] is None
    await message.answer(tr("form.kind"), reply_markup=kind_keyboard(tr, multi_use=multi_use))


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


@router.callback_query(InvoiceForm.kind, FormCb.filter(F.field == "extra"))
async def extra_asked(
    cb: CallbackQuery, callback_data: FormCb, state: FSMContext, user: User, tr: Translator,
    ledger: Ledger,
) -> None:
    extra = callback_data.value
    if extra not in EXTRA_STATES:
        await cb.answer(tr("stale_button"), show_alert=True)
        return
    await state.set_state(EXTRA_STATES[extra])
    await cb.answer()
    if not isinstance(cb.message, Message):
        return
    markup = None
    if extra == "tax":
        default = (await ledger.seller_settings(user.id)).default_tax
        if default is not None:
            markup = tax_default_keyboard(tr, default.name)
    await cb.message.answer(tr(f"form.{extra}"), reply_markup=markup)


@router.message(InvoiceForm.line, NOT_A_COMMAND)
async def got_line(message: Message, state: FSMContext, tr: Translator, cfg: BotConfig) -> None:
    try:
        line = parse.line(message.text or "", cfg.currency, tr)
    except parse.InputProblem as problem:
        await message.answer(str(problem))
        return
    data = await state.get_data()
    lines = [*data.get("lines", []), [line.description, str(line.quantity), line.unit_price]]
    await _extra_done(message, state, tr, cfg, {"lines": lines})


@router.message(InvoiceForm.discount, NOT_A_COMMAND)
async def got_discount(
    message: Message, state: FSMContext, tr: Translator, cfg: BotConfig
) -> None:
    try:
        off = parse.discount(message.text or "", cfg.currency, tr)
    except parse.InputProblem as problem:
        await message.answer(str(problem))
        return
    stored = ({"percent": str(off.percent)} if isinstance(off, PercentOff)
              else {"amount": off.amount})
    await _extra_done(message, state, tr, cfg, {"discount": stored})


@router.message(InvoiceForm.tax, NOT_A_COMMAND)
async def got_tax(message: Message, state: FSMContext, tr: Translator, cfg: BotConfig) -> None:
    try:
        rate = parse.tax_rate(message.text or "", tr)
    except parse.InputProblem as problem:
        await message.answer(str(problem))
        return
    await _extra_done(message, state, tr, cfg, {"tax": _stored_tax(rate)})


@router.callback_query(InvoiceForm.tax, FormCb.filter(F.field == "tax"))
async def default_tax_chosen(
    cb: CallbackQuery, state: FSMContext, user: User, tr: Translator, ledger: Ledger,
    cfg: BotConfig,
) -> None:
    rate = (await ledger.seller_settings(user.id)).default_tax
    if rate is None or not isinstance(cb.message, Message):
        await cb.answer(tr("stale_button"), show_alert=True)
        return
    await cb.answer()
    await _extra_done(cb.message, state, tr, cfg, {"tax": _stored_tax(rate)})


@router.message(InvoiceForm.due, NOT_A_COMMAND)
async def got_due(message: Message, state: FSMContext, tr: Translator, cfg: BotConfig) -> None:
    try:
        due = parse.due_date(message.text or "", tr, datetime.now(UTC).date())
    except parse.InputProblem as problem:
        await message.answer(str(problem))
        return
    await _extra_done(message, state, tr, cfg, {"due": due.isoformat()})


EXTRA_STATES: Final = {"line": InvoiceForm.line, "discount": InvoiceForm.discount,
                       "tax": InvoiceForm.tax, "due": InvoiceForm.due}


async def _extra_done(
    chat: Message, state: FSMContext, tr: Translator, cfg: BotConfig, change: dict[str, Any]
) -> None:
    """Take the extra if the invoice still adds up (a discount larger than the lines is one
    sentence, and the step can be answered again), then ask "one buyer or many?" again under
    the lines and totals so far."""
    data = {**await state.get_data(), **change}
    try:
        preview = _preview(tr, cfg, data)
    except InvalidInvoice:
        await chat.answer(tr("form.does_not_add_up"))
        return
    await state.update_data(**change)
    await state.set_state(InvoiceForm.kind)
    multi_use = _document(data)[0] is None
    await chat.answer(f"{preview}\n\n{tr('form.kind')}",
                      reply_markup=kind_keyboard(tr, multi_use=multi_use))


def _preview(tr: Translator, cfg: BotConfig, data: dict[str, Any]) -> str:
    """The lines and totals so far, as the card and the PDF will show them (InvalidInvoice
    when they do not add up)."""
    lines, discount, rates = _document(data)
    doc = make_document(lines or [Line(data["title"], Decimal(1), data["amount"])],
                        discount, rates)
    text = preview_text(tr, cfg.currency, doc)
    if "due" in data:
        text += "\n" + tr("card.due_on", date=data["due"])
    return text


def _document(
    data: dict[str, Any]
) -> tuple[list[Line] | None, Discount | None, tuple[TaxRate, ...]]:
    """The form's lines, discount and tax rate as ledger values; (None, None, ()) for a plain
    one-line invoice (no line, discount or tax added): it is issued exactly as before."""
    if not ({"lines", "discount", "tax"} & data.keys()):
        return None, None, ()
    rates: tuple[TaxRate, ...] = ()
    if "tax" in data:
        tax = data["tax"]
        rates = (TaxRate(tax["name"], Decimal(tax["percent"]), bool(tax["inclusive"])),)
    tax_name = rates[0].name if rates else None
    first = Line(data["title"], Decimal(1), data["amount"], tax_rate=tax_name)
    lines = [first] + [Line(description, Decimal(quantity), price, tax_rate=tax_name)
                       for description, quantity, price in data.get("lines", [])]
    stored = data.get("discount")
    discount: Discount | None = None
    if stored is not None:
        discount = (PercentOff(Decimal(stored["percent"])) if "percent" in stored
                    else AmountOff(int(stored["amount"])))
    return lines, discount, rates


def _stored_tax(rate: TaxRate) -> dict[str, Any]:
    return {"name": rate.name, "percent": str(rate.percent), "inclusive": rate.inclusive}


@router.message(InvoiceForm.title, ~F.text)
@router.message(InvoiceForm.amount, ~F.text)
@router.message(InvoiceForm.expiry, ~F.text)
@router.message(InvoiceForm.item, ~F.text)
@router.message(InvoiceForm.line, ~F.text)
@router.message(InvoiceForm.discount, ~F.text)
@router.message(InvoiceForm.tax, ~F.text)
@router.message(InvoiceForm.due, ~F.text)
async def text_please(message: Message, tr: Translator) -> None:
    await message.answer(tr("form.text_only"))


async def _create(
    state: FSMContext, bot: Bot, chat_id: int, user: User, tr: Translator, ledger: Ledger,
    cfg: BotConfig, item: str | None,
) -> None:
    data = await state.get_data()
    # Cleared before the insert: a second tap on "Skip" finds no form and creates nothing.
    await state.clear()
    expires_in = timedelta(seconds=data["expiry_seconds"])
    extras: dict[str, Any] = {}
    lines, discount, rates = _document(data)
    if lines is not None:
        extras.update(lines=lines, discount=discount, tax_rates=rates)
    else:
        extras["amount"] = data["amount"]
    if "due" in data:
        due_at = datetime.combine(date.fromisoformat(data["due"]), time.max, UTC)
        extras["due_at"] = due_at
        # Payable past its due date whatever expiry was tapped (overdue reminders need it
        # open), as the ledger does when no expiry is given.
        expires_in = min(MAX_EXPIRY, max(expires_in, due_at + DUE_GRACE - datetime.now(UTC)))
    invoice, _ = await ledger.issue_invoice(new_invoice(
        seller_id=user.id, title=data["title"], currency=cfg.currency, kind=data["kind"],
        expires_in=expires_in, payload={"item_id": item} if item else None,
        ton_rate=cfg.ton_rate, **extras,
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
