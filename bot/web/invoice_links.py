"""The Mini App's card and Stars payments: a Telegram Payments invoice link at a locked price.

POST /pay/<id>/invoice-link   `Authorization: tma <initData>`, body {"rail": "stars" |
                              "card:<provider>", "currency": "XTR" | "USD" | ...}
  → the price is locked (`Ledger.quote_rail`, purpose "invoice", channel "telegram"), the Bot API
    makes the link (`createInvoiceLink`: payload = the quote's token; the card's provider token,
    "" for Stars) → 200 {"url", "rail", "currency", "amount" (provider minor units), "text",
    "display", "expires_at"}. The page opens it with `Telegram.WebApp.openInvoice`; Telegram's
    pre_checkout_query and successful_payment reach the bot (bot/telegram/card_pay.py), which
    settles through the ledger.
  Refusals: 401 without valid init data; 400 for a rail or currency not configured; the
  ledger's errors as on every route (404 unknown invoice, 409 paid or the seller's own, 410
  closed); 503 when the bot is not running or Telegram does not answer (nothing is charged).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import LabeledPrice
from aiohttp import web

from bot.settings import PaymentSettings
from bot.web.auth import AuthError
from bot.web.i18n import normalize, request_language, t
from bot.web.view import RailOffer, offer_amount, provider_money, rail_rate
from ledger.errors import InvalidAmount, InvoiceNotFound, LedgerError
from ledger.ids import parse_invoice_id

if TYPE_CHECKING:
    from bot.web.guard import PageGuard
    from bot.web.routes import PayPages

log = logging.getLogger(__name__)

# The running bot, set by the composition root (bot/app.py) when Telegram is configured.
TELEGRAM_BOT = web.AppKey("telegram_bot", Bot)
TITLE_MAX, DESCRIPTION_MAX = 32, 255  # Telegram's limits for an invoice's title and description
RETRY_AFTER = 2  # seconds


class InvoiceLinks:
    def __init__(self, pages: PayPages, payments: PaymentSettings) -> None:
        self.pages = pages
        self.ledger = pages.ledger
        self.offers: dict[tuple[str, str], RailOffer] = {
            (o.rail, o.currency): o for o in pages.cfg.rails}
        self.tokens = {c: card.token.get_secret_value()
                       for c, card in payments.telegram_card.items()}
        self.ttl_seconds = payments.quote_minutes * 60

    async def create(self, request: web.Request) -> web.Response:
        pages = self.pages
        lang = request_language(request)
        try:
            viewer = pages._viewer(request)
            if viewer is None:
                raise AuthError("missing_init_data", "Mini App init data is required")
        except AuthError as exc:
            return pages._auth_error(exc, lang)
        lang = normalize(viewer.language) or lang
        try:
            body: Any = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        rail = body.get("rail") if isinstance(body, dict) else None
        currency = body.get("currency") if isinstance(body, dict) else None
        offer = self.offers.get((rail, currency)) if isinstance(rail, str) and isinstance(
            currency, str) else None
        if offer is None:
            return pages._error(400, "rail_not_offered", t(lang, "err_rail_unavailable"),
                                detail="rail and currency: one of the page's pay_rails")
        public_id = parse_invoice_id(request.match_info["invoice_id"])
        if public_id is None:
            return pages._ledger_error(InvoiceNotFound(), lang)
        bot = request.app.get(TELEGRAM_BOT)
        if bot is None:  # no bot in this process: no link can be made (nothing is locked)
            return pages._error(503, "telegram_unavailable", t(lang, "err_telegram_down"),
                                headers={"Retry-After": str(RETRY_AFTER)})
        try:
            invoice = (await self.ledger.invoice(public_id)).invoice
            due = invoice.amount_due
            if invoice.effective_status() == "pending" and due > 0 and offer_amount(
                    due, invoice.currency, offer, pages.cfg.ton_rate) is None:
                # Stars outside Telegram's 1..10000 (the page offers no button): nothing locked.
                raise InvalidAmount(f"{offer.currency} cannot carry this amount")
            user = await pages.buyers.get(viewer.telegram_id, viewer.username, viewer.language)
            quote = await self.ledger.quote_rail(
                purpose="invoice", rail=offer.rail, channel="telegram", currency=offer.currency,
                rate=rail_rate(offer, invoice.currency, pages.cfg.ton_rate), invoice=public_id,
                user_id=user.id, ttl_seconds=self.ttl_seconds)
        except LedgerError as exc:
            return pages._ledger_error(exc, lang)
        title = (invoice.title or invoice.number or public_id)[:TITLE_MAX]
        number = invoice.number or public_id
        description = f"{number} · {invoice.title}" if invoice.title else number
        try:
            url = await bot.create_invoice_link(
                title=title, description=description[:DESCRIPTION_MAX], payload=quote.token,
                currency=quote.currency, prices=[LabeledPrice(label=title, amount=quote.amount)],
                provider_token=self.tokens.get(quote.currency, "") if offer.rail != "stars"
                else "")
        except (TelegramAPIError, TimeoutError) as exc:  # network errors included
            # The quote stays unused and expires; nothing was charged.
            log.warning("createInvoiceLink for %s failed: %s", public_id, exc)
            return pages._error(503, "telegram_unavailable", t(lang, "err_telegram_down"),
                                headers={"Retry-After": str(RETRY_AFTER)})
        shown = provider_money(quote.amount, quote.currency)
        return web.json_response(
            {"url": url, "rail": quote.rail, "currency": quote.currency, "amount": quote.amount,
             "text": shown["text"], "display": shown["display"],
             "expires_at": quote.expires_at.isoformat()},
            headers={"Cache-Control": "no-store"})


def setup_invoice_links(app: web.Application, pages: PayPages, guard: PageGuard,
                        payments: PaymentSettings) -> InvoiceLinks:
    links = InvoiceLinks(pages, payments)
    app.router.add_post("/pay/{invoice_id}/invoice-link",
                        guard.wrap(links.create, json_api=True, kind="pay"))
    return links
