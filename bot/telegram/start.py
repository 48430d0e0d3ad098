"""/start (with pay_<id>, sub_<plan>, claim_<token> and bind_<id>_<tag>_<proof> deep links) and
/help.

`bind_…` is a guest's proof, shown only to the browser holding that payer tag's cookie
(bot/web/claims.py): opening it binds the tag to this Telegram account, so what was paid with
it comes here, and what will be paid with it too."""

from __future__ import annotations

import logging
from typing import Final

from aiogram import Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import Message
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.telegram.config import BotConfig
from bot.telegram.i18n import Translator
from bot.telegram.invoice_actions import with_refund_buttons
from bot.telegram.render import granted_items, money
from bot.telegram.subscriptions import show_plan
from bot.telegram.views import invoice_card
from bot.web.claims import BIND_PREFIX, parse_bind_payload
from ledger.core import Ledger
from ledger.errors import ClaimNotFound
from ledger.models import User
from ledger.payers import bind_user
from ledger.payments import claim_grant, grants_of_user
from ledger.transfer_admin import claim_excess

log = logging.getLogger(__name__)
router: Final[Router] = Router(name=__name__)


@router.message(CommandStart())
async def cmd_start(
    message: Message, command: CommandObject, user: User, tr: Translator, engine: AsyncEngine,
    ledger: Ledger, cfg: BotConfig,
) -> None:
    arg = (command.args or "").strip()
    if arg.startswith("pay_"):
        await show_invoice(message, arg.removeprefix("pay_"), user, tr, ledger, cfg)
    elif arg.startswith("sub_"):
        await show_plan(message, arg.removeprefix("sub_"), user, tr, ledger, engine, cfg)
    elif arg.startswith("claim_"):
        await claim(message, arg.removeprefix("claim_"), user, tr, engine, cfg)
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
    message: Message, public_id: str, user: User, tr: Translator, ledger: Ledger,
    cfg: BotConfig,
) -> None:
    # A card is a snapshot anyway, and every button on it reads again: a shown read will do.
    read = await ledger.shown_invoice(public_id)  # InvoiceNotFound also for malformed ids
    text, markup = invoice_card(tr, cfg, read.invoice, read.seller, user)
    if read.invoice.seller_id == user.id:  # the seller's card: refunds of Stars payments
        markup = await with_refund_buttons(ledger, tr, read.invoice, markup)
    await message.answer(text, reply_markup=markup)
    if read.invoice.viewed_at is None and read.invoice.seller_id != user.id:
        await _mark_viewed(ledger, read.invoice.public_id, user)


async def _mark_viewed(ledger: Ledger, public_id: str, user: User) -> None:
    """The first time someone other than the seller opens the card ("viewed", issue 12): a
    write only then. The card is already shown; a failure here is logged, never told."""
    try:
        await ledger.mark_viewed(public_id, user.id)
    except Exception:
        log.exception("could not record that invoice %s was viewed", public_id)


async def claim(
    message: Message, token: str, user: User, tr: Translator, engine: AsyncEngine,
    cfg: BotConfig,
) -> None:
    """A claim link (the operator hands it to a guest who paid with a bare INV-<id>): the
    purchase, and what the guest paid over the price, become this user's."""
    grant = await claim_grant(engine, token, user.id)  # ClaimNotFound / ClaimAlreadyUsed
    items = granted_items(tr, {"item_id": grant.item_id, "achievement_id": grant.achievement_id})
    granted = ("\n" + "\n".join(items)) if items else tr("claim.nothing")
    text = tr("claim.done", granted=granted)
    # Its own transaction, once; should it fail, the excess stays held for the operator.
    credited = await claim_excess(engine, token, user.id, currency=cfg.currency,
                                  ton_rate=cfg.ton_rate)
    if credited:
        text += "\n" + tr("claim.excess", amount=money(credited, cfg.currency))
    await message.answer(text)



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
