"""Last in line: buttons nobody handles any more and messages nobody understands.

A button from an old message (a finished form, a changed keyboard layout, forged data) gets a
clear alert and changes nothing."""

from __future__ import annotations

from typing import Final

from aiogram import F, Router
from aiogram.types import CallbackQuery, Message

from bot.telegram.i18n import Translator

router: Final[Router] = Router(name=__name__)


@router.callback_query()
async def stale_button(cb: CallbackQuery, tr: Translator) -> None:
    await cb.answer(tr("stale_button"), show_alert=True)


@router.message(F.chat.type == "private")  # in groups, stay quiet
async def not_understood(message: Message, tr: Translator) -> None:
    await message.answer(tr("unknown"))
