"""Typed ledger errors become one clear sentence for the user; nothing else leaks out.

A tap on a button gets the sentence as an alert (the message it came from stays as it was);
a command gets it as a reply."""

from __future__ import annotations

import logging
from typing import Final

from aiogram import Router
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.filters import ExceptionTypeFilter
from aiogram.types import ErrorEvent

from bot.telegram import card_pay
from bot.telegram.i18n import Translator, has_text, translator
from bot.telegram.render import money
from ledger.errors import InsufficientFunds, LedgerError

log = logging.getLogger(__name__)
router: Final[Router] = Router(name=__name__)

ALERT_LIMIT = 200  # Telegram's limit for callback answer texts


def ledger_message(tr: Translator, exc: LedgerError) -> str:
    if isinstance(exc, InsufficientFunds) and exc.needed is not None:
        currency = str(exc.info.get("currency", "LIQ"))
        return tr("err.insufficient_funds", needed=money(int(exc.needed), currency),
                  available=money(int(exc.available or 0), currency))
    key = f"err.{exc.code}"
    return tr(key) if has_text(key) else tr("err.ledger_error")


def _translator(event: ErrorEvent, tr: Translator | None) -> Translator:
    if tr is not None:
        return tr
    update = event.update
    sender = (update.callback_query or update.message or update.edited_message
              or update.pre_checkout_query)
    code = sender.from_user.language_code if sender and sender.from_user else None
    return translator(code)


async def tell(event: ErrorEvent, text: str) -> None:
    """Alert on a callback, reply to a message, refuse a pre-checkout (the buyer is not
    charged); a failure to tell is logged, not raised."""
    update = event.update
    try:
        if update.callback_query is not None:
            await update.callback_query.answer(text[:ALERT_LIMIT], show_alert=True)
        elif update.message is not None:
            await update.message.answer(text)
        elif update.pre_checkout_query is not None:  # unanswered, Telegram fails the payment
            await update.pre_checkout_query.answer(ok=False, error_message=text)
    except TelegramAPIError as exc:
        log.warning("could not tell the user about an error: %s", exc)


@router.error(ExceptionTypeFilter(LedgerError))
async def on_ledger_error(event: ErrorEvent, tr: Translator | None = None) -> None:
    exc = event.exception
    assert isinstance(exc, LedgerError)
    log.info("update %s refused: %s", event.update.update_id, exc)
    await tell(event, ledger_message(_translator(event, tr), exc))


@router.error(ExceptionTypeFilter(TelegramBadRequest))
async def on_bad_request(event: ErrorEvent) -> None:
    # Editing a message into exactly what it shows already is harmless (e.g. a double tap).
    if "message is not modified" in str(event.exception):
        if event.update.callback_query is not None:
            await tell_silently(event)
        return
    await on_unexpected(event)


async def tell_silently(event: ErrorEvent) -> None:
    try:
        assert event.update.callback_query is not None
        await event.update.callback_query.answer()
    except TelegramAPIError:
        pass


@router.error()
async def on_unexpected(event: ErrorEvent, tr: Translator | None = None) -> None:
    log.error("update %s failed", event.update.update_id, exc_info=event.exception)
    tr = _translator(event, tr)
    await tell(event, card_pay.failure_text(tr, event.update) or tr("error.generic"))
