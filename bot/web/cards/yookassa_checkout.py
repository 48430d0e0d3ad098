"""YooKassa through the official `yookassa` SDK: a payment with redirect confirmation per quote
(the quote's token is its Idempotence-Key and metadata.quote), captured at once.

The SDK is synchronous (requests, no timeout of its own): each call runs in a small thread
pool of its own under a deadline, so the event loop never waits on YooKassa and a hung call
costs one of those threads, never a request's answer. Its configuration is global to the
process (`yookassa.Configuration`): one shop per paybot.

A notification's body is never trusted: the payment is read back by id and its status there
decides. YooKassa also publishes the addresses it notifies from (`SecurityHelper`); checking
them is a setting (off behind a proxy that does not pass the client address, and in tests).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any, TypeVar

from yookassa import Configuration, Payment
from yookassa.domain.common import SecurityHelper
from yookassa.domain.exceptions import ApiError, BadRequestError, NotFoundError

from bot.web.cards.checkout import (
    CardPayment,
    ProviderDown,
    ProviderRefused,
    Redirect,
    State,
    UnknownCheckout,
    minor_units,
)
from ledger.rails import CURRENCY_EXP, RailQuote, format_provider_amount

T = TypeVar("T")
THREADS = 4  # YooKassa calls in flight at once; more wait (under the same deadline)


class YooKassaCheckout:
    name = "yookassa"
    rail = "card:yookassa"

    def __init__(self, shop_id: str, secret_key: str, *, api_url: str | None = None,
                 deadline: float = 10.0) -> None:
        self.deadline = deadline
        kwargs: dict[str, Any] = {"max_attempts": 1}
        if api_url:
            kwargs["api_url"] = api_url.rstrip("/")
        Configuration.configure(shop_id, secret_key, **kwargs)
        self._pool = ThreadPoolExecutor(THREADS, thread_name_prefix="yookassa")

    def amount_step(self, currency: str) -> int:
        return 1

    async def create(self, quote: RailQuote, *, title: str, return_url: str,
                     cancel_url: str) -> Redirect:
        if CURRENCY_EXP.get(quote.currency) != 2:
            # The SDK rounds every amount to two decimals; YooKassa's currencies have two.
            raise ProviderRefused(f"YooKassa does not take {quote.currency}")
        params = {
            "amount": {"value": format_provider_amount(quote.amount, quote.currency),
                       "currency": quote.currency},
            "confirmation": {"type": "redirect", "return_url": return_url},
            "capture": True,
            "description": (title or quote.invoice_public_id or "Invoice")[:128],
            "metadata": {"quote": quote.token, "invoice": quote.invoice_public_id or ""},
        }
        payment = await self._call(lambda: Payment.create(params, quote.token))
        url = getattr(payment.confirmation, "confirmation_url", None)
        if not payment.id or not url:
            raise ProviderDown("YooKassa answered a payment without an id or URL")
        return Redirect(ref=payment.id, url=url)

    async def retrieve(self, ref: str) -> CardPayment:
        return payment_of(await self._call(lambda: Payment.find_one(ref)))

    async def _call(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.deadline):
                return await loop.run_in_executor(self._pool, fn)
        except TimeoutError:
            raise ProviderDown("YooKassa did not answer in time") from None
        except NotFoundError:
            raise UnknownCheckout("no such YooKassa payment") from None
        except BadRequestError as exc:
            raise ProviderRefused(str(exc)) from None
        except (ApiError, OSError, ValueError, AttributeError, TypeError) as exc:
            # The SDK turns a connection failure into an AttributeError on a missing response.
            raise ProviderDown(f"YooKassa: {type(exc).__name__}") from None

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def trusted_source(address: str) -> bool:
    """Is `address` one YooKassa sends notifications from (its SDK's published list)?"""
    try:
        return bool(SecurityHelper().is_ip_trusted(address))
    except Exception:  # not an IP address at all
        return False


def payment_of(payment: Any) -> CardPayment:
    """A YooKassa payment read by id, as the ledger needs it."""
    status = payment.status
    state: State = "pending"
    if status == "succeeded" and payment.paid:
        state = "paid"
    elif status == "canceled":
        state = "failed"
    currency = str(payment.amount.currency or "").upper()
    value = payment.amount.value
    amount = minor_units(value if isinstance(value, Decimal) else str(value), currency)
    metadata = payment.metadata or {}
    token = metadata.get("quote")
    details: dict[str, Any] = {"status": status, "paid": bool(payment.paid)}
    cancellation = getattr(payment, "cancellation_details", None)
    if cancellation is not None:
        details["cancellation"] = getattr(cancellation, "reason", None)
    return CardPayment(reference=payment.id, state=state, provider_reference=payment.id,
                       token=token if isinstance(token, str) else None, currency=currency,
                       amount=amount, details=details)
