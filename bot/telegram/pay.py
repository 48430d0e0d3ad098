"""A buyer pays an invoice from the bot: from the balance (one confirmation) or with TON.

The confirmation's idempotency key is bound to the message the buttons are on, so a double
tap, a retried update or an old copy of the same confirmation pays once; a fresh /start
pay_<id> makes a new message and so (for multi-use invoices) a new purchase."""

from __future__ import annotations

import logging
from html import escape
from typing import Final

from aiogram import Bot, F, Router
from aiogram.types import BufferedInputFile, CallbackQuery
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.qr import qr_png
from bot.telegram.account import send_balance
from bot.telegram.config import BotConfig
from bot.telegram.i18n import Translator
from bot.telegram.keyboards import PayCb, confirm_keyboard, short_keyboard, wallet_keyboard
from bot.telegram.links import invoice_ton_links, invoice_usdt_links
from bot.telegram.render import CAPTION_LIMIT, fit, granted_line, money, top_up_text
from bot.telegram.views import edit, invoice_card, refuse_unless_pending
from ledger.accounts import balance
from ledger.core import Ledger
from ledger.errors import LedgerError, OwnInvoice
from ledger.invoice_reads import get_invoice
from ledger.models import Invoice, User
from ledger.payers import tag_for_user
from ledger.payments import canonical_invoice_id

log = logging.getLogger(__name__)
router: Final[Router] = Router(name=__name__)


async def _payable(engine: AsyncEngine, public_id: str, user: User) -> Invoice:
    invoice = await get_invoice(engine, public_id)
    refuse_unless_pending(invoice)
    if invoice.seller_id == user.id:
        raise OwnInvoice(invoice.public_id)
    return invoice


def chat_of(cb: CallbackQuery, user: User) -> int:
    return cb.message.chat.id if cb.message is not None else user.telegram_id


@router.callback_query(PayCb.filter(F.action == "ask"))
async def ask(
    cb: CallbackQuery, callback_data: PayCb, user: User, tr: Translator, engine: AsyncEngine,
    cfg: BotConfig,
) -> None:
    invoice = await _payable(engine, callback_data.invoice, user)
    have = await balance(engine, user.id, invoice.currency)
    # What the payment takes: the amount due (a one-time invoice may be partly paid already).
    values = dict(amount=money(invoice.amount_due, invoice.currency),
                  title=escape(invoice.title), balance=money(have, invoice.currency))
    if have < invoice.amount_due:
        text = tr("pay.short", **values, top_up=top_up_text(tr, cfg, user, cfg.ton_rate))
        await edit(cb, text, short_keyboard(tr, invoice.public_id))
    else:
        await edit(cb, tr("pay.confirm", **values), confirm_keyboard(tr, invoice.public_id))
    await cb.answer()


@router.callback_query(PayCb.filter(F.action == "confirm"))
async def confirm(
    cb: CallbackQuery, callback_data: PayCb, user: User, tr: Translator, ledger: Ledger,
) -> None:
    public_id = canonical_invoice_id(callback_data.invoice)
    # The message holding the buttons + the invoice + the payer: taps on one confirmation are
    # one payment (the ledger also scopes keys per payer).
    where = (f"{cb.message.chat.id}:{cb.message.message_id}" if cb.message
             else f"i:{cb.inline_message_id or cb.id}")
    key = f"tg:{where}:{public_id}:{user.id}"
    try:
        result = await ledger.pay_from_balance(public_id, user.id, key)
    except LedgerError:
        raise  # a definite answer: errors.py tells the user
    except Exception as exc:
        # The payment may or may not have happened (the connection broke mid-call, a deadline
        # passed). The message keeps its buttons and so its key: the next tap asks about the
        # same payment and gets its first outcome, never a second charge.
        log.warning("payment outcome unknown for %s (%s: %s); asked to tap again", key,
                    type(exc).__name__, str(exc)[:200])
        await cb.answer(tr("pay.retry"), show_alert=True)
        return
    invoice = result.invoice
    if invoice is None:  # never from the batch; if it were: the same button again tells
        await cb.answer(tr("pay.retry"), show_alert=True)
        return
    # Answer first: whatever happens to the message below, the tap is told the outcome.
    await cb.answer(tr("pay.replayed.alert") if result.replayed else tr("pay.done.alert"),
                    show_alert=result.replayed)
    text = tr("pay.done", amount=money(result.amount or invoice.amount, invoice.currency),
              title=escape(invoice.title), granted=granted_line(tr, invoice.payload),
              balance=money(result.buyer_balance or 0, invoice.currency))
    await edit(cb, text, None)


@router.callback_query(PayCb.filter(F.action == "back"))
async def back(
    cb: CallbackQuery, callback_data: PayCb, user: User, tr: Translator, ledger: Ledger,
    cfg: BotConfig,
) -> None:
    read = await ledger.invoice(callback_data.invoice)
    await edit(cb, *invoice_card(tr, cfg, read.invoice, read.seller, user))
    await cb.answer()


@router.callback_query(PayCb.filter(F.action == "ton"))
async def pay_with_ton(
    cb: CallbackQuery, callback_data: PayCb, bot: Bot, user: User, tr: Translator,
    engine: AsyncEngine, cfg: BotConfig,
) -> None:
    invoice = await _payable(engine, callback_data.invoice, user)
    if invoice_ton_links(cfg, invoice) is None or invoice.ton_due is None:
        await cb.answer(tr("pay.ton.unavailable"), show_alert=True)
        return
    # The comment names this user too (INV-<id>-<tag>): the transfer that carries it gives
    # them the item and credits an overpayment to their balance at once.
    comment = (await tag_for_user(engine, invoice.public_id, user.id)).comment
    links = invoice_ton_links(cfg, invoice, comment)
    assert links is not None
    ton_link, wallet_link = links
    caption = tr("pay.ton", ton=money(invoice.ton_due or 0, "TON"), title=escape(invoice.title),
                 address=cfg.ton_destination, comment=comment, link=escape(ton_link))
    await cb.answer()
    await bot.send_photo(
        chat_of(cb, user), BufferedInputFile(qr_png(ton_link), f"{comment}.png"),
        caption=fit(caption, CAPTION_LIMIT), reply_markup=wallet_keyboard(tr, wallet_link),
    )


@router.callback_query(PayCb.filter(F.action == "usdt"))
async def pay_with_usdt(
    cb: CallbackQuery, callback_data: PayCb, bot: Bot, user: User, tr: Translator,
    engine: AsyncEngine, cfg: BotConfig,
) -> None:
    invoice = await _payable(engine, callback_data.invoice, user)
    if invoice_usdt_links(cfg, invoice) is None:
        await cb.answer(tr("pay.usdt.unavailable"), show_alert=True)
        return
    # The same payer tag as for TON: the jetton transfer's forward payload carries it.
    comment = (await tag_for_user(engine, invoice.public_id, user.id)).comment
    links = invoice_usdt_links(cfg, invoice, comment)
    assert links is not None
    usdt_link, wallet_link = links
    caption = tr("pay.usdt", usdt=money(invoice.usdt_due or 0, "USDT"),
                 title=escape(invoice.title), address=cfg.ton_destination, comment=comment,
                 link=escape(usdt_link))
    await cb.answer()
    await bot.send_photo(
        chat_of(cb, user), BufferedInputFile(qr_png(usdt_link), f"{comment}.png"),
        caption=fit(caption, CAPTION_LIMIT), reply_markup=wallet_keyboard(tr, wallet_link),
    )


@router.callback_query(PayCb.filter(F.action == "topup"))
async def top_up(
    cb: CallbackQuery, bot: Bot, user: User, tr: Translator, engine: AsyncEngine, cfg: BotConfig
) -> None:
    await cb.answer()
    await send_balance(bot, chat_of(cb, user), user, tr, engine, cfg)
