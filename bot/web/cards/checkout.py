"""What every browser card provider gives the pay page: a checkout made for a quote, and what
the provider itself says about it later (read by id, never taken from a request's body)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, Protocol

from ledger.rails import CURRENCY_EXP, RailQuote

State = Literal["paid", "pending", "failed"]


class ProviderDown(Exception):
    """The provider did not answer in time or refused the call: nothing was charged."""


class ProviderRefused(ProviderDown):
    """The provider answered that this checkout cannot be made (e.g. an amount it does not
    take); trying again will not help."""


class UnknownCheckout(Exception):
    """The provider has no such session / payment (a forged or foreign id)."""


@dataclass(frozen=True, slots=True)
class Redirect:
    """A checkout made at the provider: its id (the quote's provider_ref) and where the buyer
    pays."""
    ref: str
    url: str


@dataclass(frozen=True, slots=True)
class CardPayment:
    """One checkout as the provider reports it."""
    reference: str  # Stripe: the Checkout Session id; YooKassa: the payment id
    state: State
    provider_reference: str | None  # Stripe: the PaymentIntent; YooKassa: the payment id
    token: str | None  # the quote it was made for (metadata.quote)
    currency: str  # upper case
    amount: int  # minor units of `currency`
    details: dict[str, Any] = field(default_factory=dict)


class CardCheckout(Protocol):
    name: str  # "stripe" | "yookassa"
    rail: str  # "card:stripe" | "card:yookassa"

    async def create(self, quote: RailQuote, *, title: str, return_url: str,
                     cancel_url: str) -> Redirect: ...

    def amount_step(self, currency: str) -> int:
        """The provider takes amounts in multiples of this many minor units."""
        ...

    async def retrieve(self, ref: str) -> CardPayment: ...

    async def close(self) -> None: ...


def minor_units(value: str | int | Decimal, currency: str) -> int:
    """'12.50' RUB -> 1250; a value with more digits than the currency has raises ValueError."""
    try:
        scaled = Decimal(str(value)).scaleb(CURRENCY_EXP.get(currency, 2))
    except InvalidOperation:
        raise ValueError(f"not an amount: {value!r}") from None
    if not scaled.is_finite() or scaled != scaled.to_integral_value():
        raise ValueError(f"not an amount in {currency}: {value!r}")
    return int(scaled)
