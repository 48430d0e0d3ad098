"""Exact money: integers in minor units, parsed from and formatted to decimal text."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal, InvalidOperation

from ledger.errors import InvalidAmount

# Minor-unit exponent per currency; mirrors the `currencies` table.
DECIMALS: dict[str, int] = {"LIQ": 2, "TON": 9, "USDT": 6}
SYMBOLS: dict[str, str] = {"LIQ": "Liquid $", "TON": "TON", "USDT": "USDT"}
# What an invoice or a plan may be priced in (USDT pays Liquid $ 1:1 instead: ledger/models.py).
PRICE_CURRENCIES: tuple[str, ...] = ("LIQ", "TON")
MAX_AMOUNT = 10**15  # far above any real invoice, far below bigint overflow


def decimals(currency: str) -> int:
    try:
        return DECIMALS[currency]
    except KeyError:
        raise InvalidAmount(f"unknown currency {currency!r}") from None


def parse_amount(text: str, currency: str) -> int:
    """'12.50' -> 1250 (LIQ). Rejects junk, signs, zero, exponents, excess precision."""
    places = decimals(currency)
    cleaned = text.strip().replace(",", ".")
    if not cleaned or not all(c.isdigit() or c == "." for c in cleaned) or cleaned.count(".") > 1:
        raise InvalidAmount(f"{text!r} is not an amount")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise InvalidAmount(f"{text!r} is not an amount") from None
    minor = value.scaleb(places)
    if minor != minor.to_integral_value():
        raise InvalidAmount(f"{text!r} has more than {places} decimal places")
    return check_amount(int(minor))


def check_amount(minor: int) -> int:
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise InvalidAmount(f"{minor!r} is not an integer amount")
    if minor <= 0:
        raise InvalidAmount("the amount must be greater than zero")
    if minor > MAX_AMOUNT:
        raise InvalidAmount("the amount is too large")
    return minor


def format_amount(minor: int, currency: str) -> str:
    """1250 -> '12.50' (LIQ); 1500000000 -> '1.5' (TON, trailing zeros dropped)."""
    places = decimals(currency)
    text = f"{Decimal(minor).scaleb(-places):.{places}f}"
    if currency in ("TON", "USDT"):
        text = text.rstrip("0").rstrip(".")
    return text


def display_amount(minor: int, currency: str) -> str:
    """How people read an amount: "12.50 Liquid $", "2.5 TON"."""
    return f"{format_amount(minor, currency)} {SYMBOLS.get(currency, currency)}"


def quote_ton(amount_minor: int, currency: str, ton_rate: Decimal) -> int:
    """Nanotons for an amount, at `ton_rate` units of `currency` per 1 TON, rounded up so a
    buyer who pays the quote never underpays by a rounding nanoton."""
    if currency == "TON":
        return amount_minor
    if ton_rate <= 0:
        raise InvalidAmount("the TON rate must be positive")
    units = Decimal(amount_minor).scaleb(-decimals(currency))
    return int((units / ton_rate).scaleb(DECIMALS["TON"]).to_integral_value(ROUND_CEILING))


def from_ton(nano: int, currency: str, ton_rate: Decimal) -> int:
    """Minor units of `currency` worth `nano` nanotons at the rate, rounded down (never
    credit more than was received)."""
    if currency == "TON":
        return nano
    units = Decimal(nano).scaleb(-DECIMALS["TON"]) * ton_rate
    return int(units.scaleb(decimals(currency)).to_integral_value(rounding="ROUND_FLOOR"))
