"""/invoices: the seller's invoices with their status, newest first, and a cancel button."""

from __future__ import annotations

from html import escape
from typing import Final

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.telegram.i18n import Translator
from bot.telegram.keyboards import CancelCb, PageCb, cancel_confirm_keyboard
from bot.telegram.views import View, edit, invoices_list, refuse_unless_pending
from ledger.core import Ledger
from ledger.errors import NotInvoiceSeller
from ledger.invoice_reads import get_invoice
from ledger.invoices import list_invoices
from ledger.models import User
from ledger.purchases import payers_of_invoices

router: Final[Router] = Router(name=__name__)

PAGE = 10


async def _page(engine: AsyncEngine, tr: Translator, user: User, before: int | None) -> View:
    found = await list_invoices(engine, user.id, limit=PAGE + 1, before_id=before)
    page = found[:PAGE]
    payers = await payers_of_invoices(engine, [i.id for i in page if i.uses])
    return invoices_list(tr, page, has_older=len(found) > PAGE, payers=payers)


@router.message(Command("invoices"))
async def cmd_invoices(message: Message, user: User, tr: Translator, engine: AsyncEngine) -> None:
    text, markup = await _page(engine, tr, user, None)
    await message.answer(text, reply_markup=markup)


@router.callback_query(PageCb.filter())
async def older(
    cb: CallbackQuery, callback_data: PageCb, user: User, tr: Translator, engine: AsyncEngine
) -> None:
    await edit(cb, *await _page(engine, tr, user, callback_data.before or None))
    await cb.answer()


@router.callback_query(CancelCb.filter(F.action == "ask"))
async def ask_cancel(
    cb: CallbackQuery, callback_data: CancelCb, user: User, tr: Translator, engine: AsyncEngine
) -> None:
    invoice = await get_invoice(engine, callback_data.invoice)
    if invoice.seller_id != user.id:
        raise NotInvoiceSeller(invoice.public_id)
    refuse_unless_pending(invoice)
    text = tr("cancel.confirm", number=invoice.number, title=escape(invoice.title))
    await edit(cb, text, cancel_confirm_keyboard(tr, invoice.public_id))
    await cb.answer()


@router.callback_query(CancelCb.filter(F.action == "do"))
async def do_cancel(
    cb: CallbackQuery, callback_data: CancelCb, user: User, tr: Translator, engine: AsyncEngine,
    ledger: Ledger,
) -> None:
    invoice = await ledger.cancel_invoice(callback_data.invoice, user.id)
    await cb.answer(tr("cancel.done", number=invoice.number))
    await edit(cb, *await _page(engine, tr, user, None))


@router.callback_query(CancelCb.filter(F.action == "back"))
async def back_to_list(cb: CallbackQuery, user: User, tr: Translator, engine: AsyncEngine) -> None:
    await edit(cb, *await _page(engine, tr, user, None))
    await cb.answer()
