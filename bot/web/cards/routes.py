"""Cards in a plain browser: the /pay/<id> page's "Pay by card", the providers' webhooks and
the verify fallback.

POST /pay/<id>/card          form field `currency` (application/x-www-form-urlencoded or
                             multipart; a JSON body {"currency": "USD"} works too). The guest's
                             cookie (pb_guest, as the pay page issues it; one is issued here
                             when the browser has none) names the payer tag the quote carries,
                             so the purchase waits under it for the guest's claim; Mini App init
                             data (`Authorization: tma …`), when sent, names the user instead.
                             303 to the provider's checkout page (Stripe Checkout, YooKassa).
                             404 no card payment in that currency (or the invoice is unknown),
                             409/410 the invoice cannot be paid, 400 no currency, 503 the
                             provider did not answer (nothing charged) — a sentence each, an
                             HTML page for a browser (JSON when the client asks for it).
GET  /pay/<id>/card/return   ?q=<quote token>: the provider sends the buyer back here; the
                             checkout is read back by id and settled if paid (the webhook may
                             not have come: the seed's "Model 2"), then 303 to the pay page.
POST /webhooks/stripe        Stripe's signature over the raw body (Stripe-Signature, 300 s
                             tolerance); checkout.session.completed (paid) and
                             async_payment_succeeded settle; async_payment_failed changes
                             nothing. 400 bad/missing/stale signature; 200 otherwise.
POST /webhooks/yookassa      the body only names a payment: it is read back from YooKassa by
                             id, and its status there decides. 400 not a notification or an
                             unknown payment, 503 YooKassa did not answer (it retries).

Every settlement is the ledger's `settle_rail_payment`, once per (rail, session / payment id):
a replayed or duplicated event answers 200 and changes nothing; a failure after a success
changes nothing either.
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any

import stripe
from aiohttp import web

from bot.http_errors import ledger_status
from bot.ratelimit import client_address
from bot.settings import Settings
from bot.web import render
from bot.web.auth import AuthError
from bot.web.cards.checkout import (
    CardCheckout,
    CardPayment,
    ProviderDown,
    ProviderRefused,
    UnknownCheckout,
)
from bot.web.cards.stripe_checkout import (
    FAILED_EVENT,
    SETTLING_EVENTS,
    StripeCheckout,
    event_of,
    session_payment,
)
from bot.web.cards.yookassa_checkout import YooKassaCheckout, trusted_source
from bot.web.guard import PageGuard
from bot.web.i18n import request_language, t
from bot.web.view import page_url, rail_rate
from ledger.core import Ledger
from ledger.errors import InvoiceNotFound, LedgerError, QuoteNotFound
from ledger.ids import parse_invoice_id
from ledger.rails import RailQuote, RailSettlement

if TYPE_CHECKING:
    from bot.web.routes import PayPages

log = logging.getLogger(__name__)

_CURRENCY_RE = re.compile(r"[A-Z]{3}")
_TOKEN_RE = re.compile(r"q[A-Za-z0-9_-]{10,63}")
_YOOKASSA_ID_RE = re.compile(r"[A-Za-z0-9-]{1,64}")

# The sentences of this route, by language (English for any other).
_TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "choose": "Choose the currency to pay in.",
        "not_offered": "Card payment in {currency} is not offered for this invoice.",
        "refused": "This amount cannot be paid by card in {currency}. Nothing was charged.",
        "down": "The card payment service is not answering right now. Nothing was charged; "
                "please try again in a minute.",
        "title": "Pay by card",
    },
    "ru": {
        "choose": "Выберите валюту оплаты.",
        "not_offered": "Оплата картой в {currency} для этого счёта недоступна.",
        "refused": "Эту сумму нельзя оплатить картой в {currency}. Деньги не списаны.",
        "down": "Платёжный сервис сейчас не отвечает. Деньги не списаны; попробуйте через "
                "минуту.",
        "title": "Оплата картой",
    },
}


def _text(lang: str, key: str, **kw: str) -> str:
    return _TEXTS.get(lang, _TEXTS["en"])[key].format(**kw)


class CardCheckouts:
    """The configured providers and the one way a provider's report reaches the ledger."""

    def __init__(self, ledger: Ledger, providers: dict[str, CardCheckout],
                 by_currency: dict[str, str]) -> None:
        self.ledger = ledger
        self.providers = providers  # name -> provider
        self.by_currency = {c: p for c, p in by_currency.items() if p in providers}

    @classmethod
    def from_settings(cls, ledger: Ledger, settings: Settings) -> CardCheckouts:
        pay = settings.payments
        providers: dict[str, CardCheckout] = {}
        wanted = set(pay.web_card.values())
        if "stripe" in wanted:
            if pay.stripe_secret_key is None:
                log.warning("PAYMENTS_WEB_CARD names stripe, but PAYMENTS_STRIPE_SECRET_KEY is "
                            "not set: no Stripe checkout")
            else:
                providers["stripe"] = StripeCheckout(pay.stripe_secret_key.get_secret_value(),
                                                     api_base=pay.stripe_api_base)
        if "yookassa" in wanted:
            if pay.yookassa_shop_id is None or pay.yookassa_secret_key is None:
                log.warning("PAYMENTS_WEB_CARD names yookassa, but the YooKassa shop id or "
                            "secret key is not set: no YooKassa checkout")
            else:
                providers["yookassa"] = YooKassaCheckout(
                    pay.yookassa_shop_id, pay.yookassa_secret_key.get_secret_value(),
                    api_url=pay.yookassa_api_url)
        return cls(ledger, providers, dict(pay.web_card))

    def for_currency(self, currency: str) -> CardCheckout | None:
        name = self.by_currency.get(currency)
        return self.providers.get(name) if name else None

    def for_rail(self, rail: str) -> CardCheckout | None:
        return self.providers.get(rail.removeprefix("card:"))

    async def settle(self, provider: CardCheckout, payment: CardPayment,
                     **details: Any) -> RailSettlement | None:
        """Settle what the provider reports paid (exactly once, by its reference); anything
        else changes nothing."""
        if payment.state != "paid":
            return None
        payer_id = None
        if payment.token:
            try:
                payer_id = (await self.ledger.rail_quote(payment.token)).user_id
            except QuoteNotFound:
                pass  # recorded all the same: held as an unknown quote, the operator told
        return await self.ledger.settle_rail_payment(
            rail=provider.rail, channel="web", reference=payment.reference,
            provider_reference=payment.provider_reference, token=payment.token,
            currency=payment.currency, amount=payment.amount, payer_id=payer_id,
            details={**payment.details, **details})

    async def verify_quote(self, quote: RailQuote) -> RailSettlement | None:
        """Read a web quote's checkout back from its provider and settle it if paid (the
        return page and the job; ProviderDown / UnknownCheckout when it cannot be read)."""
        provider = self.for_rail(quote.rail)
        if provider is None or quote.channel != "web" or not quote.provider_ref:
            return None
        payment = await provider.retrieve(quote.provider_ref)
        return await self.settle(provider, payment, via="verify")

    async def close(self, _app: web.Application | None = None) -> None:
        for provider in self.providers.values():
            await provider.close()


CARDS = web.AppKey("card_checkouts", CardCheckouts)


class CardRoutes:
    def __init__(self, pages: PayPages, cards: CardCheckouts, settings: Settings,
                 yookassa_check_source: bool) -> None:
        self.pages = pages
        self.cards = cards
        self.ledger = pages.ledger
        secret = settings.payments.stripe_webhook_secret
        self.stripe_secret = secret.get_secret_value() if secret is not None else None
        self.yookassa_check_source = yookassa_check_source
        self.address_header = settings.web.client_address_header

    # --- answers --------------------------------------------------------------------------

    def _refuse(self, request: web.Request, status: int, code: str,
                message: str) -> web.Response:
        """A browser's form gets a page; a script asking for JSON gets the usual shape."""
        if "application/json" in request.headers.get("Accept", ""):
            return web.json_response({"error": {"code": code, "message": message}},
                                     status=status, headers={"Cache-Control": "no-store"})
        lang = request_language(request)
        return render.html_response(render.error_page(
            lang, self.pages.static, heading=_text(lang, "title"), message=message),
            status=status, headers={"Cache-Control": "no-store"})

    def _ledger_refusal(self, request: web.Request, exc: LedgerError) -> web.Response:
        """The pay page's status and sentence for a ledger refusal."""
        from bot.web.routes import _TEXT_OF_CODE  # at call time: that module mounts this one

        exc = exc.public()
        text = t(request_language(request), _TEXT_OF_CODE.get(exc.code, "err_generic"))
        return self._refuse(request, ledger_status(exc), exc.code, text)

    # --- POST /pay/<id>/card --------------------------------------------------------------

    async def checkout(self, request: web.Request) -> web.StreamResponse:
        lang = request_language(request)
        currency = await self._currency(request)
        if currency is None:
            return self._refuse(request, 400, "bad_request", _text(lang, "choose"))
        try:
            invoice = (await self.ledger.shown_invoice(request.match_info["invoice_id"])).invoice
        except InvoiceNotFound as exc:
            return self._ledger_refusal(request, exc)
        provider = self.cards.for_currency(currency)
        offer = next((o for o in self.pages.cfg.web_cards if o.currency == currency), None)
        if provider is None or offer is None:  # no provider, or no rate to lock a price at
            return self._refuse(request, 404, "card_not_offered",
                                _text(lang, "not_offered", currency=currency))
        user_id, tag, fresh = await self._payer(request, invoice)
        rate = rail_rate(offer, invoice.currency, self.pages.cfg.ton_rate)
        try:
            quote = await self.ledger.quote_rail(
                purpose="invoice", rail=provider.rail, channel="web", currency=currency,
                rate=rate, invoice=invoice.public_id, user_id=user_id, payer_tag=tag,
                step=provider.amount_step(currency))
        except LedgerError as exc:
            return self._ledger_refusal(request, exc)
        page = page_url(invoice, self.pages.cfg)
        try:
            redirect = await provider.create(
                quote, title=invoice.title, cancel_url=page,
                return_url=f"{page}/card/return?q={quote.token}")
        except ProviderRefused as exc:
            log.warning("%s refused a checkout for %s: %s", provider.name, quote.token, exc)
            return self._refuse(request, 409, "card_refused",
                                _text(lang, "refused", currency=currency))
        except ProviderDown as exc:
            log.warning("%s is down (checkout for %s): %s", provider.name, quote.token, exc)
            return self._refuse(request, 503, "provider_unavailable", _text(lang, "down"))
        # Should this fail, the checkout still carries the quote (metadata): its webhook
        # settles it all the same.
        await self.ledger.attach_provider_ref(quote.token, redirect.ref)
        response = web.Response(status=303, headers={"Location": redirect.url,
                                                     "Cache-Control": "no-store"})
        if fresh is not None:  # the return page and the claim belong to this browser
            self.pages._set_guest_cookie(response, invoice, fresh)
        return response

    async def _currency(self, request: web.Request) -> str | None:
        raw: Any = None
        if request.content_type == "application/json":
            try:
                data = await request.json()
            except (ValueError, RecursionError):  # not JSON, not UTF-8, absurd numbers
                data = None
            raw = data.get("currency") if isinstance(data, dict) else None
        elif request.content_type in ("application/x-www-form-urlencoded",
                                      "multipart/form-data"):
            raw = (await request.post()).get("currency")
        if not isinstance(raw, str):
            return None
        currency = raw.strip().upper()
        return currency if _CURRENCY_RE.fullmatch(currency) else None

    async def _payer(self, request: web.Request, invoice: Any) -> tuple[int | None, str | None,
                                                                         Any]:
        """(user id, guest tag, a new guest cookie to set): the Mini App user when init data
        is sent and valid, else this browser's guest tag (issued now if it has none)."""
        try:
            viewer = self.pages._viewer(request)
        except AuthError:  # bad or expired init data: a plain browser
            viewer = None
        if viewer is not None:
            user = await self.pages.buyers.get(viewer.telegram_id, viewer.username,
                                               viewer.language)
            return user.id, None, None
        guest = self.pages._guest(request, invoice)
        if guest is not None:
            return None, guest.tag, None
        if invoice.effective_status() != "pending":
            return None, None, None  # the quote refuses it anyway; no tag for nothing
        fresh, payer = await self.pages._new_guest(invoice)
        return None, payer.tag, fresh

    # --- GET /pay/<id>/card/return --------------------------------------------------------

    async def card_return(self, request: web.Request) -> web.StreamResponse:
        public_id = parse_invoice_id(request.match_info["invoice_id"])
        if public_id is None:
            raise web.HTTPNotFound(text="no invoice with this id")
        token = request.query.get("q", "")
        if _TOKEN_RE.fullmatch(token):
            await self._verify(token, public_id)
        raise web.HTTPSeeOther(f"/pay/{public_id}", headers={"Cache-Control": "no-store"})

    async def _verify(self, token: str, public_id: str) -> None:
        try:
            quote = await self.ledger.rail_quote(token)
        except QuoteNotFound:
            return
        if quote.invoice_public_id != public_id or not quote.provider_ref:
            return
        if await self.ledger.rail_payment_by_reference(quote.rail, quote.provider_ref):
            return  # recorded already: a reload (or a stranger with the link) asks no provider
        try:
            settled = await self.cards.verify_quote(quote)
        except (ProviderDown, UnknownCheckout) as exc:
            # The page shows what is known; the webhook or the job settles it later.
            log.warning("could not verify checkout %s on return: %s", quote.provider_ref, exc)
            return
        if settled is not None and not settled.replayed:
            log.info("card payment %s settled on return (%s)", quote.provider_ref,
                     settled.outcome)

    # --- webhooks -------------------------------------------------------------------------

    async def stripe_webhook(self, request: web.Request) -> web.Response:
        provider = self.cards.providers.get("stripe")
        if provider is None or self.stripe_secret is None:
            return _json(404, "not_configured", "Stripe is not configured here.")
        body = await request.read()
        try:
            event = event_of(body, request.headers.get("Stripe-Signature"), self.stripe_secret)
        except (ValueError, stripe.SignatureVerificationError):
            return _json(400, "bad_signature", "The Stripe signature does not verify.")
        kind = event.get("type")
        if kind not in SETTLING_EVENTS:
            if kind == FAILED_EVENT:  # nothing was paid; after a success: nothing changes
                log.info("stripe: %s for %s", kind, _object_id(event))
            return _json(200, None, None, received=True)
        session = (event.get("data") or {}).get("object") or {}
        try:
            payment = session_payment(session)
            settled = await self.cards.settle(provider, payment, event=event.get("id"),
                                              type=kind, via="webhook")
        except LedgerError as exc:  # signed, yet not a payment the ledger can record
            log.error("stripe event %s not recorded: %s", event.get("id"), exc)
            return _json(400, exc.public().code, "The event does not describe a payment.")
        return _json(200, None, None, received=True, **_outcome(settled))

    async def yookassa_webhook(self, request: web.Request) -> web.Response:
        provider = self.cards.providers.get("yookassa")
        if provider is None:
            return _json(404, "not_configured", "YooKassa is not configured here.")
        if self.yookassa_check_source and not trusted_source(
                client_address(request, self.address_header)):
            return _json(403, "untrusted_source", "Not one of YooKassa's addresses.")
        try:
            data = json.loads(await request.read())
        except (ValueError, RecursionError):  # not JSON, not UTF-8, absurd numbers
            data = None
        obj = data.get("object") if isinstance(data, dict) else None
        event = data.get("event") if isinstance(data, dict) else None
        ref = obj.get("id") if isinstance(obj, dict) else None
        if not isinstance(event, str) or not isinstance(ref, str) \
                or not _YOOKASSA_ID_RE.fullmatch(ref):
            return _json(400, "bad_request", "Not a YooKassa notification.")
        if not event.startswith("payment."):  # refunds, payouts, deals: not ours to act on
            return _json(200, None, None, received=True)
        try:
            payment = await provider.retrieve(ref)  # the body is a hint; YooKassa decides
        except UnknownCheckout:
            return _json(400, "unknown_payment", "YooKassa has no such payment.")
        except ProviderDown as exc:
            log.warning("yookassa: could not read payment %s: %s", ref, exc)
            return _json(503, "provider_unavailable", "YooKassa did not answer; retry.")
        try:
            settled = await self.cards.settle(provider, payment, event=event, via="webhook")
        except LedgerError as exc:
            log.error("yookassa payment %s not recorded: %s", ref, exc)
            return _json(400, exc.public().code, "The payment cannot be recorded.")
        return _json(200, None, None, received=True, **_outcome(settled))


def _object_id(event: Any) -> str:
    obj = (event.get("data") or {}).get("object") or {}
    return str(obj.get("id", "?"))


def _outcome(settled: RailSettlement | None) -> dict[str, Any]:
    if settled is None:
        return {"outcome": None}
    return {"outcome": settled.outcome, "replayed": settled.replayed}


def _json(status: int, code: str | None, message: str | None, **body: Any) -> web.Response:
    if code is not None:
        body = {"error": {"code": code, "message": message}}
    return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})


def setup_card_checkout(app: web.Application, pages: PayPages, guard: PageGuard,
                        settings: Settings, *,
                        yookassa_check_source: bool | None = None) -> CardCheckouts:
    """Mount the card routes; the providers are `app[CARDS]` (the composition root hands their
    `verify_quote` to the card sessions job)."""
    cards = CardCheckouts.from_settings(pages.ledger, settings)
    if yookassa_check_source is None:
        yookassa_check_source = settings.payments.yookassa_check_source
    routes = CardRoutes(pages, cards, settings, yookassa_check_source)
    app[CARDS] = cards
    app.on_cleanup.append(cards.close)
    r = app.router
    r.add_post("/pay/{invoice_id}/card", guard.wrap(routes.checkout, json_api=False, kind="pay"))
    r.add_get("/pay/{invoice_id}/card/return",
              guard.wrap(routes.card_return, json_api=False, kind="read"))
    r.add_post("/webhooks/stripe", guard.wrap(routes.stripe_webhook, json_api=True, kind="pay"))
    r.add_post("/webhooks/yookassa",
               guard.wrap(routes.yookassa_webhook, json_api=True, kind="pay"))
    return cards
