"""/settings: what a seller's invoices carry (legal name and details, bank details, logo), the
default tax rate /invoice offers, and the reminder schedule (days before the due date, overdue
reminders, the daily digest of overdue invoices), and the weekly summary's switch.

Every change is one `Ledger.save_seller_settings` / `set_logo` call; the ledger checks the
values again (InvalidSettings: one sentence)."""

from __future__ import annotations

import re
from html import escape
from typing import Any, Final

from aiogram import Bot, F, Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from bot.telegram import parse
from bot.telegram.i18n import Translator
from bot.telegram.keyboards import SetCb, clear_keyboard, settings_keyboard
from bot.telegram.report import WeeklyCb, weekly_button
from bot.telegram.views import edit
from ledger.core import Ledger
from ledger.errors import InvalidSettings
from ledger.models import User
from ledger.seller_settings import (
    MAX_LOGO_BYTES,
    MAX_REMINDER_DAYS,
    MAX_REMINDERS,
    TEXT_LIMITS,
    SellerSettings,
)

router: Final[Router] = Router(name=__name__)

NOT_A_COMMAND = F.text & ~F.text.startswith("/")
LOGO_TYPES: Final = ("image/png", "image/jpeg")
_DAYS = re.compile(r"^\s*\d{1,2}(?:\s*[,; ]\s*\d{1,2})*\s*$")


class SettingsForm(StatesGroup):
    text = State()  # data["field"]: legal_name, legal_details, bank_details, tax, days
    logo = State()


def settings_text(tr: Translator, s: SellerSettings) -> str:
    def shown(value: str | None) -> str:
        return escape(value) if value else tr("settings.unset")

    tax = tr("settings.unset")
    if s.default_tax is not None:
        tax = escape(s.default_tax.name) + (
            " " + tr("settings.tax_included") if s.default_tax.inclusive else "")
    days = ", ".join(str(d) for d in sorted(s.reminder_days or (), reverse=True))
    return tr("settings.show", legal_name=shown(s.legal_name),
              legal_details=shown(s.legal_details), bank_details=shown(s.bank_details),
              logo=tr("settings.logo_set") if s.logo else tr("settings.unset"),
              tax=tax, days=days or tr("settings.none"),
              overdue=tr("settings.on") if s.remind_overdue else tr("settings.off"),
              digest=tr("settings.on") if s.overdue_digest else tr("settings.off"))


def _view(tr: Translator, s: SellerSettings) -> tuple[str, InlineKeyboardMarkup]:
    markup = settings_keyboard(tr, remind_overdue=s.remind_overdue,
                               overdue_digest=s.overdue_digest)
    # the weekly summary's switch, the same as under /report's chart
    markup.inline_keyboard.append([weekly_button(tr, s.weekly_summary, "settings")])
    return settings_text(tr, s), markup


@router.message(Command("settings"))
async def cmd_settings(
    message: Message, state: FSMContext, user: User, tr: Translator, ledger: Ledger
) -> None:
    await state.clear()
    text, markup = _view(tr, await ledger.seller_settings(user.id))
    await message.answer(text, reply_markup=markup)


@router.callback_query(SetCb.filter(F.field.in_({"overdue", "digest"})))
async def toggled(
    cb: CallbackQuery, callback_data: SetCb, user: User, tr: Translator, ledger: Ledger
) -> None:
    current = await ledger.seller_settings(user.id)
    if callback_data.field == "overdue":
        saved = await ledger.save_seller_settings(user.id,
                                                  remind_overdue=not current.remind_overdue)
    else:
        saved = await ledger.save_seller_settings(user.id,
                                                  overdue_digest=not current.overdue_digest)
    await cb.answer(tr("settings.saved"))
    await edit(cb, *_view(tr, saved))


@router.callback_query(WeeklyCb.filter(F.src == "settings"))
async def weekly_toggled(
    cb: CallbackQuery, callback_data: WeeklyCb, user: User, tr: Translator, ledger: Ledger
) -> None:
    saved = await ledger.save_seller_settings(user.id, weekly_summary=callback_data.on)
    await cb.answer(tr("report.weekly_on") if saved.weekly_summary else tr("report.weekly_off"))
    await edit(cb, *_view(tr, saved))


@router.callback_query(SetCb.filter(F.field == "logo"))
async def ask_logo(cb: CallbackQuery, state: FSMContext, tr: Translator) -> None:
    await state.set_state(SettingsForm.logo)
    await cb.answer()
    if isinstance(cb.message, Message):
        await cb.message.answer(tr("settings.ask.logo"), reply_markup=clear_keyboard(tr))


@router.callback_query(SetCb.filter(F.field.in_(
    {"legal_name", "legal_details", "bank_details", "tax", "days"})))
async def ask_text(
    cb: CallbackQuery, callback_data: SetCb, state: FSMContext, tr: Translator
) -> None:
    await state.set_state(SettingsForm.text)
    await state.set_data({"field": callback_data.field})
    await cb.answer()
    if isinstance(cb.message, Message):
        await cb.message.answer(tr(f"settings.ask.{callback_data.field}"),
                                reply_markup=clear_keyboard(tr))


@router.callback_query(SetCb.filter(F.field == "clear"))
async def cleared(
    cb: CallbackQuery, state: FSMContext, user: User, tr: Translator, ledger: Ledger
) -> None:
    current = await state.get_state()
    field = (await state.get_data()).get("field")
    if current == SettingsForm.logo.state:
        await ledger.set_logo(user.id, None)
    elif current == SettingsForm.text.state and field is not None:
        await ledger.save_seller_settings(user.id, **_cleared(field))
    else:
        await cb.answer(tr("stale_button"), show_alert=True)
        return
    await state.clear()
    await cb.answer()
    if isinstance(cb.message, Message):
        await _saved(cb.message, tr, ledger, user)


def _cleared(field: str) -> dict[str, Any]:
    if field == "tax":
        return {"default_tax_name": None, "default_tax_percent": None,
                "default_tax_inclusive": False}
    if field == "days":
        return {"reminder_days": []}
    return {field: None}


@router.message(SettingsForm.text, NOT_A_COMMAND)
async def got_text(
    message: Message, state: FSMContext, user: User, tr: Translator, ledger: Ledger
) -> None:
    field = (await state.get_data()).get("field", "")
    try:
        values = _values(field, message.text or "", tr)
    except parse.InputProblem as problem:
        await message.answer(str(problem))
        return
    await ledger.save_seller_settings(user.id, **values)  # InvalidSettings: one sentence
    await state.clear()
    await _saved(message, tr, ledger, user)


def _values(field: str, text: str, tr: Translator) -> dict[str, Any]:
    if field == "tax":
        rate = parse.tax_rate(text, tr)
        return {"default_tax_name": rate.name, "default_tax_percent": rate.percent,
                "default_tax_inclusive": rate.inclusive}
    if field == "days":
        if not _DAYS.match(text):
            raise parse.InputProblem(tr("settings.days_bad", max=MAX_REMINDER_DAYS))
        days = sorted({int(d) for d in re.findall(r"\d+", text)}, reverse=True)
        if len(days) > MAX_REMINDERS or not all(1 <= d <= MAX_REMINDER_DAYS for d in days):
            raise parse.InputProblem(tr("settings.days_bad", max=MAX_REMINDER_DAYS))
        return {"reminder_days": days}
    if field not in TEXT_LIMITS:
        raise parse.InputProblem(tr("stale_button"))
    # Names are one line; details and bank details keep their lines (an address, an IBAN).
    value = (" ".join(text.split()) if field == "legal_name"
             else "\n".join(" ".join(line.split()) for line in text.strip().splitlines()))
    if not value:
        raise parse.InputProblem(tr("title.empty"))
    if len(value) > TEXT_LIMITS[field]:
        raise parse.InputProblem(tr("settings.too_long", max=TEXT_LIMITS[field]))
    return {field: value}


@router.message(SettingsForm.logo, F.photo | F.document)
async def got_logo(
    message: Message, state: FSMContext, bot: Bot, user: User, tr: Translator, ledger: Ledger
) -> None:
    if message.photo:
        file = message.photo[-1]  # the largest size Telegram made of it
        size = file.file_size
    else:
        assert message.document is not None
        file = message.document  # type: ignore[assignment]
        size = message.document.file_size
        if message.document.mime_type not in LOGO_TYPES:
            await message.answer(tr("settings.logo.not_image"))
            return
    if size is not None and size > MAX_LOGO_BYTES:  # refused before it is downloaded
        await message.answer(tr("settings.logo.too_big", max=MAX_LOGO_BYTES // 1024))
        return
    downloaded = await bot.download(file.file_id)
    data = downloaded.read() if downloaded is not None else b""
    if len(data) > MAX_LOGO_BYTES:
        await message.answer(tr("settings.logo.too_big", max=MAX_LOGO_BYTES // 1024))
        return
    try:
        await ledger.set_logo(user.id, data)
    except InvalidSettings:
        await message.answer(tr("settings.logo.not_image"))
        return
    await state.clear()
    await _saved(message, tr, ledger, user)


@router.message(SettingsForm.logo, ~F.text.startswith("/"))
async def logo_please(message: Message, tr: Translator) -> None:
    await message.answer(tr("settings.ask.logo"))


@router.message(SettingsForm.text, ~F.text)
async def text_please(message: Message, tr: Translator) -> None:
    await message.answer(tr("form.text_only"))


async def _saved(chat: Message, tr: Translator, ledger: Ledger, user: User) -> None:
    text, markup = _view(tr, await ledger.seller_settings(user.id))
    await chat.answer(tr("settings.saved") + "\n\n" + text, reply_markup=markup)
