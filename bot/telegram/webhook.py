"""The webhook's request handler: every update is answered at once and handled in the
background — except a `successful_payment`. Telegram took the buyer's money; its answer waits
until the ledger has recorded the payment, and is a 500 when it has not (the database was down
past the handler's retries, the process is stopping), so Telegram sends the update again and
it is settled then — once, by its charge id. A process killed mid-payment never answered at
all: Telegram sends it again too.

(Long polling confirms an update when it asks for the next ones, before handling ends: there a
crash between receiving and settling loses the update — Stars payments come back through the
reconciliation job, card ones from the log and the provider's dashboard. Production runs the
webhook.)"""

from __future__ import annotations

import logging
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

from ledger.core import Ledger

log = logging.getLogger(__name__)


def charge_of(update: Any) -> str | None:
    """The telegram_payment_charge_id of a successful_payment update the ledger can record,
    else None (one it could never record must not come back forever: it is handled, and
    logged, like any other update)."""
    message = update.get("message") if isinstance(update, dict) else None
    paid = message.get("successful_payment") if isinstance(message, dict) else None
    if not isinstance(paid, dict):
        return None
    charge, currency, amount = (paid.get("telegram_payment_charge_id"), paid.get("currency"),
                                paid.get("total_amount"))
    if not (isinstance(charge, str) and 0 < len(charge) <= 200 and isinstance(currency, str)
            and len(currency) == 3 and currency.isascii() and currency.isupper()
            and isinstance(amount, int) and not isinstance(amount, bool) and amount > 0):
        return None
    return charge


class PaymentsFirstHandler(SimpleRequestHandler):
    def __init__(self, dispatcher: Dispatcher, bot: Bot, ledger: Ledger, **kwargs: Any) -> None:
        super().__init__(dispatcher, bot, handle_in_background=True, **kwargs)
        self.ledger = ledger

    async def handle(self, request: web.Request) -> web.Response:
        bot = await self.resolve_bot(request)
        if not self.verify_secret(request.headers.get("X-Telegram-Bot-Api-Secret-Token", ""),
                                  bot):
            return web.Response(body="Unauthorized", status=401)
        try:
            update = await request.json(loads=bot.session.json_loads)
        except ValueError:
            return web.Response(body="Bad Request", status=400)
        charge = charge_of(update)
        if charge is None:
            return await self._handle_request_background(bot=bot, request=request)
        # The body is cached by aiohttp: the dispatcher reads the same update.
        await self.dispatcher.feed_webhook_update(bot, update, **self.data)
        try:
            recorded = await self.ledger.is_rail_payment_recorded(charge)
        except Exception as exc:  # the database is still away: not recorded as far as we know
            log.warning("successful_payment %s: could not confirm it was recorded (%s)",
                        charge, type(exc).__name__)
            recorded = False
        if not recorded:
            log.error("successful_payment %s not recorded: answered 500, Telegram sends it "
                      "again", charge)
            return web.Response(body="not recorded yet", status=500)
        return web.json_response({})
