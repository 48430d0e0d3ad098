"""/start (with pay_<id>, claim_<token> and bind_<id>_<tag>_<proof> deep links) and /help.

`bind_…` is a guest's proof, shown only to the browser holding that payer tag's cookie
(bot/web/claims.py): opening it binds the tag to this Telegram account, so what was paid with
it comes here, and what will be paid with it too."""

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
from bot.web.claims import BIND_PREFIX, parse_bind_payload
from ledger.errors import ClaimNotFound
from ledger.models import User
from ledger.payers import bind_user
from ledger.payments import claim_grant, grants_of_user

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
    elif arg.startswith(BIND_PREFIX):
        await bind(message, arg, user, tr, engine, cfg)
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



async def bind(
    message: Message, arg: str, user: User, tr: Translator, engine: AsyncEngine, cfg: BotConfig
) -> None:
    """The guest proved this is their Telegram account: the tag and what it paid are theirs.
    A wrong proof, an unknown tag (ClaimNotFound / UnknownTag) or a tag already bound to
    someone else (TagTaken) is one sentence from errors.py, with nothing changed."""
    parsed = parse_bind_payload(arg)
    if parsed is None:
        raise ClaimNotFound(arg[:40])
    public_id, tag, proof = parsed
    payer = await bind_user(engine, public_id, tag, user.id, proof=proof,
                            currency=cfg.currency, ton_rate=cfg.ton_rate)
    grants = [g for g in await grants_of_user(engine, user.id) if g.invoice_id == payer.invoice_id]
    if not grants:  # nothing paid yet: it will come here
        await message.answer(tr("claim.bound", comment=payer.comment))
        return
    lines = [line for g in grants for line in granted_items(
        tr, {"item_id": g.item_id, "achievement_id": g.achievement_id})]
    granted = ("\n" + "\n".join(lines)) if lines else tr("claim.nothing")
    await message.answer(tr("claim.done", granted=granted))
