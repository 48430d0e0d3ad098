"""Stripe Checkout through the official `stripe` SDK (its aiohttp client: nothing blocks).

A session is made per quote (the quote's token is its idempotency key, its
client_reference_id and metadata.quote), paid on Stripe's page, and reported by the webhook
(`checkout.session.completed` / `async_payment_succeeded`) or read back by id (the return
page, the job). Amounts are minor units as Stripe takes them: JPY has none, KWD three — whose
last digit Stripe requires to be 0.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import stripe

from bot.web.cards.checkout import (
    CardPayment,
    ProviderDown,
    ProviderRefused,
    Redirect,
    State,
    UnknownCheckout,
)
from ledger.rails import CURRENCY_EXP, RailQuote

WEBHOOK_TOLERANCE = 300  # seconds; Stripe's own default: an older signed event is a replay
PAID = ("paid", "no_payment_required")
# Events that can carry a paid session; every other type is answered 200 and ignored.
SETTLING_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")
FAILED_EVENT = "checkout.session.async_payment_failed"


class StripeCheckout:
    name = "stripe"
    rail = "card:stripe"

    def __init__(self, secret_key: str, *, api_base: str | None = None,
                 deadline: float = 10.0) -> None:
        self.deadline = deadline
        self._http = stripe.AIOHTTPClient(timeout=deadline)
        self.client = stripe.StripeClient(
            secret_key, base_addresses={"api": api_base} if api_base else None,
            http_client=self._http, max_network_retries=1)

    def amount_step(self, currency: str) -> int:
        # Stripe takes three-decimal currencies only in whole tens of the minor unit: the
        # quote is rounded up to it.
        return 10 if CURRENCY_EXP.get(currency) == 3 else 1

    async def create(self, quote: RailQuote, *, title: str, return_url: str,
                     cancel_url: str) -> Redirect:
        if CURRENCY_EXP.get(quote.currency) == 3 and quote.amount % 10:
            # Stripe takes three-decimal currencies only in whole tens of the minor unit.
            raise ProviderRefused(f"{quote.amount} {quote.currency}: Stripe needs a last 0")
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": [{"quantity": 1, "price_data": {
                "currency": quote.currency.lower(), "unit_amount": quote.amount,
                "product_data": {"name": (title or quote.invoice_public_id or "Invoice")[:250]},
            }}],
            "client_reference_id": quote.token,
            "metadata": {"quote": quote.token, "invoice": quote.invoice_public_id or ""},
            "success_url": return_url,
            "cancel_url": cancel_url,
        }
        session = await self._call(self.client.v1.checkout.sessions.create_async(
            params, {"idempotency_key": quote.token}))
        if not session.get("id") or not session.get("url"):
            raise ProviderDown("Stripe answered a session without an id or URL")
        return Redirect(ref=session["id"], url=session["url"])

    async def retrieve(self, ref: str) -> CardPayment:
        return session_payment(await self._call(
            self.client.v1.checkout.sessions.retrieve_async(ref)))

    async def _call(self, call: Any) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self.deadline):
                return (await call).to_dict()  # plain data from here on
        except TimeoutError:
            raise ProviderDown("Stripe did not answer in time") from None
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                raise UnknownCheckout(str(exc.user_message or exc)) from None
            raise ProviderRefused(str(exc.user_message or exc)) from None
        except stripe.StripeError as exc:
            raise ProviderDown(str(exc.user_message or exc)) from None

    async def close(self) -> None:
        await self._http.close_async()


def event_of(payload: bytes, signature: str | None, secret: str) -> dict[str, Any]:
    """The event as plain data, if Stripe signed exactly these bytes less than
    WEBHOOK_TOLERANCE seconds ago; else ValueError (stripe.SignatureVerificationError for a
    bad, missing or stale signature)."""
    if not signature:
        raise ValueError("no Stripe-Signature header")
    event = stripe.Webhook.construct_event(payload, signature, secret,
                                           tolerance=WEBHOOK_TOLERANCE)
    return event.to_dict()


def session_payment(session: Mapping[str, Any], *, failed: bool = False) -> CardPayment:
    """A Checkout Session (from the webhook or read by id) as the ledger needs it."""
    state: State = "pending"
    if session.get("payment_status") in PAID:
        state = "paid"
    elif failed or session.get("status") == "expired":
        state = "failed"
    intent = session.get("payment_intent")
    if isinstance(intent, Mapping):  # expanded
        intent = intent.get("id")
    metadata = session.get("metadata") or {}
    token = metadata.get("quote") or session.get("client_reference_id")
    amount = session.get("amount_total")
    return CardPayment(
        reference=str(session.get("id") or ""), state=state,
        provider_reference=intent if isinstance(intent, str) else None,
        token=token if isinstance(token, str) else None,
        currency=str(session.get("currency") or "").upper(),
        amount=amount if isinstance(amount, int) and not isinstance(amount, bool) else 0,
        details={"payment_status": session.get("payment_status"),
                 "status": session.get("status")},
    )
