"""The invoice as a PDF document in the chat: the seller sends it on to a client who wants
paper (the same document the pay page serves at /pay/<id>/invoice.pdf)."""

from __future__ import annotations

from typing import Final

from aiogram import Bot, Router
from aiogram.types import BufferedInputFile, CallbackQuery

from bot.documents.of_invoice import InvoicePdfs
from bot.telegram.config import BotConfig
from bot.telegram.i18n import Translator
from bot.telegram.keyboards import DocCb
from bot.telegram.links import pay_url
from ledger.core import Ledger
from ledger.models import User

router: Final[Router] = Router(name=__name__)


@router.callback_query(DocCb.filter())
async def send_pdf(
    cb: CallbackQuery, callback_data: DocCb, bot: Bot, user: User, tr: Translator,
    ledger: Ledger, cfg: BotConfig, pdfs: InvoicePdfs,
) -> None:
    read = await ledger.invoice(callback_data.invoice)  # InvoiceNotFound: one sentence
    invoice = read.invoice
    body, _ = await pdfs.get(invoice, read.seller, tr.lang, pay_url(cfg, invoice.public_id))
    await cb.answer()
    chat = cb.message.chat.id if cb.message is not None else user.telegram_id
    number = invoice.number or tr("invoice.draft_number")  # a draft has no number yet
    await bot.send_document(chat, BufferedInputFile(body, f"{number}.pdf"),
                            caption=tr("doc.sent", number=number))
