"""/balance (with deposit instructions), /inventory, /history."""

from __future__ import annotations

from html import escape
from typing import Final

from aiogram import Bot, Router
from aiogram.filters import Command
from aiogram.types import BufferedInputFile, Message
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.qr import qr_png
from bot.telegram.config import BotConfig
from bot.telegram.i18n import Translator
from bot.telegram.keyboards import balance_keyboard
from bot.telegram.links import deposit_links
from bot.telegram.render import (
    CAPTION_LIMIT,
    fit,
    granted_items,
    money,
    person,
    top_up_text,
)
from bot.telegram.withdraw import HISTORY_LIMIT, history_lines
from ledger.accounts import balance, statement
from ledger.models import StatementLine, User
from ledger.money import DECIMALS, SYMBOLS, format_amount
from ledger.payouts import list_payouts
from ledger.purchases import Purchase, purchases_of_user

router: Final[Router] = Router(name=__name__)

LIST_LIMIT = 20


async def send_balance(
    bot: Bot, chat_id: int, user: User, tr: Translator, engine: AsyncEngine, cfg: BotConfig
) -> None:
    text = tr("balance", amount=money(await balance(engine, user.id, cfg.currency), cfg.currency))
    for currency in sorted(set(DECIMALS) - {cfg.currency}):
        other = await balance(engine, user.id, currency)
        if other:
            text += tr("balance.other", amount=money(other, currency))
    if cfg.currency == "LIQ":  # the first place most buyers meet the name: say what it is
        text += tr("balance.liquid")
    text += "\n\n" + top_up_text(tr, cfg, user, cfg.ton_rate)
    links = deposit_links(cfg, f"DEP-{user.deposit_code}")
    if links is None:
        await bot.send_message(chat_id, text, reply_markup=balance_keyboard(tr, cfg, None))
        return
    await bot.send_photo(
        chat_id, BufferedInputFile(qr_png(links[0]), "top-up.png"),
        caption=fit(text, CAPTION_LIMIT), reply_markup=balance_keyboard(tr, cfg, links[1]),
    )


@router.message(Command("balance"))
async def cmd_balance(
    message: Message, bot: Bot, user: User, tr: Translator, engine: AsyncEngine, cfg: BotConfig
) -> None:
    await send_balance(bot, message.chat.id, user, tr, engine, cfg)


def _deal(purchase: Purchase) -> str:
    """"Coffee beans · INV-2026-0012 · 12.50 Liquid $ · @seller": what was bought, from whom."""
    parts = [escape(purchase.title or ""), purchase.invoice_number or ""]
    if purchase.amount is not None and purchase.currency is not None:
        parts.append(money(purchase.amount, purchase.currency))
    if purchase.seller is not None:
        parts.append(person(purchase.seller))
    return " · ".join(p for p in parts if p)


@router.message(Command("inventory"))
async def cmd_inventory(message: Message, user: User, tr: Translator, engine: AsyncEngine) -> None:
    purchases = await purchases_of_user(engine, user.id, limit=LIST_LIMIT)
    if not purchases:
        await message.answer(tr("inventory.empty"))
        return
    lines = [tr("inventory.title")]
    for p in purchases:
        items = ", ".join(granted_items(tr, {"item_id": p.item_id,
                                             "achievement_id": p.achievement_id}))
        deal, date = _deal(p), p.acquired_at.strftime("%Y-%m-%d")
        if items and deal:
            lines.append(tr("inventory.bought", what=items, deal=deal, date=date))
        else:
            lines.append(tr("inventory.line", what=items or deal or "—", date=date))
    await message.answer(fit("\n".join(lines)))


def _movement(tr: Translator, line: StatementLine) -> str:
    """What a statement line was: for a payment, the invoice and the other party."""
    kind = tr(f"kind.{line.kind}")
    if line.invoice_number is not None:
        who = person(line.counterparty) if line.counterparty else tr("history.guest")
        return f"{kind}: {escape(line.title or '')} · {line.invoice_number} · {who}"
    if line.kind == "adjustment" and line.reason:
        return f"{kind} · {escape(line.reason)}"
    return kind


@router.message(Command("history"))
async def cmd_history(
    message: Message, user: User, tr: Translator, engine: AsyncEngine, cfg: BotConfig
) -> None:
    lines_ = await statement(engine, user.id, cfg.currency, limit=LIST_LIMIT)
    symbol = SYMBOLS.get(cfg.currency, cfg.currency)
    if not lines_:
        await message.answer(tr("history.empty"))
        return
    out = [tr("history.title", symbol=symbol)]
    for line in lines_:
        sign = "+" if line.amount > 0 else "−"
        amount = format_amount(abs(line.amount), cfg.currency)
        pending = tr("history.pending") if line.balance_after is None else ""
        out.append(f"{line.at.strftime('%Y-%m-%d %H:%M')}  <b>{sign}{amount}</b> "
                   f"{_movement(tr, line)}{pending}")
    # withdrawals with where they stand (sent, waiting, given back): bot/telegram/withdraw.py
    out += history_lines(tr, await list_payouts(engine, user_id=user.id, limit=HISTORY_LIMIT))
    await message.answer(fit("\n".join(out)))
