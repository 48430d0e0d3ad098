"""Paid channels, the bot's side: subscribers join through a link that asks for approval, and
the bot approves the request of whoever is entitled at that moment (a paid subscription, a
trial, a renewal in its grace period) and declines the rest, telling them where to subscribe.
The notifier hands out the links (`join_link`) and removes members whose access ended
(`remove_member`), each decision read from the ledger when it is made, never remembered."""

from __future__ import annotations

import html
import logging
from typing import Final

from aiogram import Bot, Router
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.types import ChatJoinRequest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.telegram.config import BotConfig
from bot.telegram.i18n import Translator, translator
from bot.telegram.links import deep_link
from ledger.channel_access import entitled_to_channel, plans_of_channel

log = logging.getLogger(__name__)
router: Final[Router] = Router(name=__name__)


def subscribe_link(cfg: BotConfig, plan_public_id: str) -> str:
    return deep_link(cfg, f"sub_{plan_public_id}")


@router.chat_join_request()
async def on_join_request(request: ChatJoinRequest, bot: Bot, engine: AsyncEngine,
                          cfg: BotConfig, tr: Translator | None = None) -> None:
    chat_id, person = request.chat.id, request.from_user.id
    entitled = await entitled_to_channel(engine, chat_id, person)
    try:
        if entitled:
            await request.approve()
        else:
            await request.decline()
    except TelegramBadRequest as exc:
        # Handled already (another replica, an admin) or the bot lost its rights: the seller
        # sees the latter in their channel; nothing here can fix it.
        log.warning("join request of %s to %s not %s: %s", person, chat_id,
                    "approved" if entitled else "declined", exc.message)
        return
    log.info("join request of %s to %s %s", person, chat_id,
             "approved" if entitled else "declined")
    if not entitled:
        await _tell_refused(bot, engine, cfg, request,
                            tr or translator(request.from_user.language_code))


async def _tell_refused(bot: Bot, engine: AsyncEngine, cfg: BotConfig,
                        request: ChatJoinRequest, tr: Translator) -> None:
    """One sentence with the plans' subscribe links. Telegram lets a bot write to someone who
    asked to join (user_chat_id) for a few minutes even if they never started it; when it
    cannot, they simply stay out."""
    title = html.escape(request.chat.title or "")
    plans = await plans_of_channel(engine, request.chat.id)
    if plans:
        links = ", ".join(f'<a href="{html.escape(subscribe_link(cfg, p.public_id))}">'
                          f"{html.escape(p.name)}</a>" for p in plans)
        text = tr("channel.refused", title=title, plans=links)
    else:
        text = tr("channel.refused.closed", title=title)
    try:
        await bot.send_message(request.user_chat_id, text)
    except (TelegramForbiddenError, TelegramBadRequest) as exc:
        log.info("could not tell %s why they were declined: %s", request.user_chat_id,
                 exc.message)


async def join_link(bot: Bot, chat_id: int, telegram_id: int, name: str) -> str | None:
    """A new invite link to the channel that asks for approval (so only the entitled get in,
    whoever the link is passed on to), named after what it was made for; None when the bot
    cannot make one (it is no longer an admin allowed to invite)."""
    try:
        # A removal that broke between its ban and its unban must not keep a payer out.
        await bot.unban_chat_member(chat_id, telegram_id, only_if_banned=True)
    except (TelegramForbiddenError, TelegramBadRequest) as exc:
        log.warning("could not lift a ban of %s in %s: %s", telegram_id, chat_id, exc.message)
    try:
        link = await bot.create_chat_invite_link(chat_id, name=name[:32],
                                                 creates_join_request=True)
    except (TelegramForbiddenError, TelegramBadRequest) as exc:
        log.warning("no join link for channel %s: %s", chat_id, exc.message)
        return None
    return link.invite_link


async def remove_member(bot: Bot, engine: AsyncEngine, chat_id: int, telegram_id: int) -> bool:
    """Take someone whose access ended out of the channel, free to come back after paying
    again (a ban, then lifting it: Telegram's way to remove a member). Someone entitled again
    by now (paid, re-subscribed, another plan of the channel) stays: False."""
    if await entitled_to_channel(engine, chat_id, telegram_id):
        return False
    await bot.ban_chat_member(chat_id, telegram_id)
    await bot.unban_chat_member(chat_id, telegram_id, only_if_banned=True)
    return True
