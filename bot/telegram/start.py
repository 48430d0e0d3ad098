"""/start (with pay_<id> and claim_<token> deep links) and /help."""

from __future__ import annotations

from typing import Final

from aiogram import Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import Message
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.telegram.config import BotConfig
from bot.telegram.i18n import Translator
from bot.telegram.people import People, RecentInvoices
from bot.telegram.render import granted_items
from bot.telegram.views import invoice_card
from ledger.models import User
from ledger.payments import claim_grant

router: Final[Router] = Router(name=__name__)


@router.message(CommandStart())
async def cmd_start(
    message: Message, command: CommandObject, user: User, tr: Translator, engine: AsyncEngine,
    people: People, cards: RecentInvoices, cfg: BotConfig,
) -> None:
    arg = (command.args or "").strip()
    if arg.startswith("pay_"):
        await show_invoice(message, arg.removeprefix("pay_"), user, tr, people, cards, cfg)
    elif arg.startswith("claim_"):
        await claim(message, arg.removeprefix("claim_"), user, tr, engine)
    elif arg:
        await message.answer(tr("start.bad_link") + "\n\n" + tr("start.welcome"))
    else:
        await message.answer(tr("start.welcome"))


@router.message(Command("help"))
async def cmd_help(message: Message, tr: Translator) -> None:
    await message.answer(tr("start.welcome"))


async def show_invoice(
    message: Message, public_id: str, user: User, tr: Translator, people: People,
    cards: RecentInvoices, cfg: BotConfig,
) -> None:
    invoice = await cards.get(public_id)  # InvoiceNotFound also for malformed ids
    seller = user if invoice.seller_id == user.id else await people.by_id(invoice.seller_id)
    text, markup = invoice_card(tr, cfg, invoice, seller, user)
    await message.answer(text, reply_markup=markup)


async def claim(
    message: Message, token: str, user: User, tr: Translator, engine: AsyncEngine
) -> None:
    grant = await claim_grant(engine, token, user.id)  # ClaimNotFound / ClaimAlreadyUsed
    items = granted_items(tr, {"item_id": grant.item_id, "achievement_id": grant.achievement_id})
    granted = ("\n" + "\n".join(items)) if items else tr("claim.nothing")
    await message.answer(tr("claim.done", granted=granted))

