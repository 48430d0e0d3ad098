"""The Telegram bot: one router per module (start, invoice_form, invoices, pay, account,
api_tokens, errors, fallback), the outbox notifier, and the runtime that starts it all."""

from bot.telegram.notifier import Notifier
from bot.telegram.runtime import TelegramService, create_bot, create_dispatcher

__all__ = ["Notifier", "TelegramService", "create_bot", "create_dispatcher"]
