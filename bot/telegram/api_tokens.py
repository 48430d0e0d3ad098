"""/api: a seller's HTTP API tokens — the active ones listed, a new one issued (shown once,
stored only as a hash), any one revoked after a confirmation. At the limit the list offers
revoking instead of a dead end."""

from __future__ import annotations

from html import escape
from typing import Final

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.telegram.i18n import Translator
from bot.telegram.keyboards import ApiCb, api_revoke_keyboard, api_tokens_keyboard
from bot.telegram.views import View, edit
from ledger.api_tokens import ApiToken, issue_token, list_tokens, revoke_token
from ledger.errors import MAX_ACTIVE_TOKENS
from ledger.models import User

router: Final[Router] = Router(name=__name__)


async def _active(engine: AsyncEngine, user: User) -> list[ApiToken]:
    return [t for t in await list_tokens(engine, user.id) if t.revoked_at is None]


async def _tokens_view(engine: AsyncEngine, tr: Translator, user: User) -> View:
    tokens = await _active(engine, user)
    if not tokens:
        text = tr("api.none")
    else:
        lines = [tr("api.list", count=len(tokens), max=MAX_ACTIVE_TOKENS)]
        for token in tokens:  # not `t`: extraction reads `t(` as the page texts' keyword
            used = (token.last_used_at.strftime("%Y-%m-%d") if token.last_used_at
                    else tr("api.never"))
            lines.append(tr("api.line", hint=escape(token.hint),
                            created=token.created_at.strftime("%Y-%m-%d"), used=used))
        if len(tokens) >= MAX_ACTIVE_TOKENS:
            lines.append("\n" + tr("api.full"))
        text = "\n".join(lines)
    markup = api_tokens_keyboard(tr, [(t.id, t.hint) for t in tokens],
                                 can_issue=len(tokens) < MAX_ACTIVE_TOKENS)
    return text, markup


@router.message(Command("api"))
async def cmd_api(message: Message, user: User, tr: Translator, engine: AsyncEngine) -> None:
    text, markup = await _tokens_view(engine, tr, user)
    await message.answer(text, reply_markup=markup)


@router.callback_query(ApiCb.filter(F.action == "new"))
async def new_token(cb: CallbackQuery, user: User, tr: Translator, engine: AsyncEngine) -> None:
    token, _token_id = await issue_token(engine, user.id)  # TooManyTokens -> error handler
    await cb.answer()
    if cb.message is not None and cb.bot is not None:
        # Its own message: the list above is edited later, the token must stay readable.
        await cb.bot.send_message(cb.message.chat.id, tr("api.token", token=token))
    await edit(cb, *await _tokens_view(engine, tr, user))


@router.callback_query(ApiCb.filter(F.action == "ask"))
async def ask_revoke(
    cb: CallbackQuery, callback_data: ApiCb, user: User, tr: Translator, engine: AsyncEngine
) -> None:
    token = next((t for t in await _active(engine, user) if t.id == callback_data.token), None)
    if token is None:  # revoked meanwhile, or not this seller's: the same answer
        await cb.answer(tr("api.not_active"), show_alert=True)
        await edit(cb, *await _tokens_view(engine, tr, user))
        return
    await edit(cb, tr("api.revoke_confirm", hint=escape(token.hint)),
               api_revoke_keyboard(tr, token.id))
    await cb.answer()


@router.callback_query(ApiCb.filter(F.action == "revoke"))
async def do_revoke(
    cb: CallbackQuery, callback_data: ApiCb, user: User, tr: Translator, engine: AsyncEngine
) -> None:
    hint = next((t.hint for t in await list_tokens(engine, user.id)
                 if t.id == callback_data.token), "")
    if await revoke_token(engine, user.id, callback_data.token):
        await cb.answer(tr("api.revoked", hint=hint))
    else:
        await cb.answer(tr("api.not_active"), show_alert=True)
    await edit(cb, *await _tokens_view(engine, tr, user))


@router.callback_query(ApiCb.filter(F.action == "list"))
async def back_to_tokens(cb: CallbackQuery, user: User, tr: Translator,
                         engine: AsyncEngine) -> None:
    await edit(cb, *await _tokens_view(engine, tr, user))
    await cb.answer()
