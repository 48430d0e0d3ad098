"""Seller input checked at the edge, so each mistake gets its own sentence in the user's
language (the ledger checks everything again)."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from html import escape

from bot.telegram.i18n import Translator
from ledger.errors import InvalidAmount
from ledger.invoices import MAX_EXPIRY, MAX_TON_QUOTE, TITLE_MAX
from ledger.money import decimals, parse_amount, quote_ton
from ledger.text import clean_line

ITEM_MAX = 128
# A thousands separator as Russian (and French) sellers type it: a space, a no-break space or
# a thin space between groups of three digits ("1 000", "12 500,50", "1 000 000").
_SPACES = " \u00a0\u2009\u202f"
_GROUPED = re.compile(rf"\d{{1,3}}(?:[{_SPACES}]\d{{3}})+(?:[.,]\d+)?")
_DURATION = re.compile(r"^\s*(\d{1,4})\s*([hdчд]?)\s*$", re.IGNORECASE)


class InputProblem(ValueError):
    """Bad input, with the message to show (already translated)."""


def split_amount(args: str) -> tuple[str, str]:
    """'/invoice <amount> <title>' arguments as (amount, title): an amount written in groups
    of three ("1 000 Test item") is one amount, never an amount and a title starting "000"."""
    args = args.strip()
    grouped = _GROUPED.match(args)
    if grouped is not None and (grouped.end() == len(args) or args[grouped.end()].isspace()):
        return grouped.group(), args[grouped.end():].strip()
    first, _, rest = args.partition(" ")
    return first, rest


def amount(text: str, currency: str, tr: Translator, ton_rate: Decimal | None = None) -> int:
    """Minor units of `text`; with `ton_rate`, also small enough for the ledger to quote the
    invoice in TON (checked here so the form says so at the amount step, not at the end).

    "1 000,50" is a thousand and a half; "1.000" or "1,000" (a thousand to some, one to
    others) has more decimals than the currency and is refused rather than read as 1."""
    text = text.strip()
    if _GROUPED.fullmatch(text):
        text = "".join(ch for ch in text if ch not in _SPACES)
    whole, sep, fraction = text.replace(",", ".").partition(".")
    places = decimals(currency)
    if sep and whole.isdigit() and fraction.isdigit() and len(fraction) > places:
        if len(fraction) == 3 and not fraction.strip("0") and places < 3:
            raise InputProblem(tr.n("amount.ambiguous", places, text=escape(text[:20]),
                                    whole=whole, thousands=whole + fraction, places=places))
        raise InputProblem(tr.n("amount.decimals", places, currency=currency, places=places))
    try:
        minor = parse_amount(text, currency)
    except InvalidAmount:
        raise InputProblem(_amount_problem(text, currency, tr)) from None
    if ton_rate is not None and quote_ton(minor, currency, ton_rate) > MAX_TON_QUOTE:
        raise InputProblem(tr("amount.too_large"))
    return minor


def _amount_problem(text: str, currency: str, tr: Translator) -> str:
    cleaned = text.strip().replace(",", ".")
    shown = cleaned[:20] + ("…" if len(cleaned) > 20 else "")
    if cleaned.startswith("-"):
        return tr("amount.not_positive")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        value = None
    # parse_amount takes plain digits only: exponents, infinities and words are not amounts.
    if value is None or not value.is_finite() or not re.fullmatch(r"[\d.]+", cleaned):
        return tr("amount.not_number", text=escape(shown))
    if value <= 0:
        return tr("amount.not_positive")
    places = decimals(currency)
    if value != value.quantize(Decimal(1).scaleb(-places)):
        return tr.n("amount.decimals", places, currency=currency, places=places)
    return tr("amount.too_large")


def title(text: str, tr: Translator) -> str:
    clean = clean_line(text)
    if not clean:
        raise InputProblem(tr("title.empty"))
    if len(clean) > TITLE_MAX:
        raise InputProblem(tr.n("title.too_long", len(clean), length=len(clean), max=TITLE_MAX))
    return clean


def item_id(text: str, tr: Translator) -> str:
    clean = text.strip()
    if not clean or len(clean) > ITEM_MAX or any(c.isspace() for c in clean):
        raise InputProblem(tr.n("item.bad", ITEM_MAX, max=ITEM_MAX))
    return clean


def duration(text: str, tr: Translator) -> timedelta:
    """'12h', '3d', '12' (hours); Russian 'ч'/'д' too. Between one hour and the ledger's max."""
    m = _DURATION.match(text)
    if m is None:
        raise InputProblem(tr("form.expiry.bad"))
    n, unit = int(m.group(1)), m.group(2).lower()
    span = timedelta(days=n) if unit in ("d", "д") else timedelta(hours=n)
    if not timedelta(hours=1) <= span <= MAX_EXPIRY:
        raise InputProblem(tr("form.expiry.bad"))
    return span
