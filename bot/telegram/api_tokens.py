"""/api: a seller gets a token for the HTTP API (shown once, stored only as a hash)."""

from __future__ import annotations

from typing import Final

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.telegram.i18n import Translator
from ledger.models import User
from ledger.sellers import issue_token

router: Final[Router] = Router(name=__name__)


@router.message(Command("api"))
async def cmd_api(message: Message, user: User, tr: Translator, engine: AsyncEngine) -> None:
    token, _token_id = await issue_token(engine, user.id)  # TooManyTokens -> error handler
    await message.answer(tr("api.token", token=token))
