"""Seller input checked at the edge, so each mistake gets its own sentence in the user's
language (the ledger checks everything again)."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from html import escape

from bot.telegram.i18n import Translator
from ledger.errors import InvalidAmount
from ledger.invoices import MAX_EXPIRY, MAX_TON_QUOTE, TITLE_MAX
from ledger.money import decimals, parse_amount, quote_ton
from ledger.text import clean_line
from ledger.totals import (
    MAX_DESCRIPTION,
    MAX_QUANTITY,
    PERCENT_PLACES,
    QUANTITY_PLACES,
    TAX_PLACES,
    AmountOff,
    Discount,
    Line,
    PercentOff,
    TaxRate,
)

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


# --- invoices as documents: a line, a discount, a tax rate, a due date -----------------------

# "Design work, 2 x 15.50", "Hosting 1,5 × 20", "Domain 12" (quantity 1); Cyrillic "х" too.
_LINE = re.compile(r"^(?P<desc>.*?)[\s,;:—–-]*(?:(?P<qty>\d+(?:[.,]\d+)?)\s*[x×хX*]\s*)?"
                   r"(?P<price>\d+(?:[.,]\d+)?)\s*$", re.DOTALL)
_PERCENT = re.compile(r"^\s*(\d{1,3}(?:[.,]\d+)?)\s*%\s*$")
# "VAT 20%", "VAT 20 % incl", "НДС 20% вкл", "20%" (named after the word the seller uses).
_TAX = re.compile(r"^\s*(?P<name>.*?)\s*(?P<pct>\d{1,3}(?:[.,]\d+)?)\s*%\s*"
                  r"(?P<incl>incl\w*|inc|вкл\w*|в т\.?\s*ч\.?)?\s*$", re.IGNORECASE)
_IN_DAYS = re.compile(r"^\s*(?:in|через)?\s*(\d{1,3})\s*(?:d|days?|д|дн\w*|день)?\s*$",
                      re.IGNORECASE)
MAX_DUE_DAYS = 364  # the end of that day stays within the ledger's year
TAX_NAME_MAX = 40


def _decimal(text: str) -> Decimal:
    return Decimal(text.replace(",", "."))


def line(text: str, currency: str, tr: Translator) -> Line:
    """'Design work, 2 x 15.50' → a line of 2 × 15.50; the ledger's compute checks it again."""
    m = _LINE.match(text.strip())
    description = clean_line(m.group("desc")) if m else ""
    if m is None or not description:
        raise InputProblem(tr("line.bad"))
    if len(description) > MAX_DESCRIPTION:
        raise InputProblem(tr.n("title.too_long", len(description), length=len(description),
                                max=MAX_DESCRIPTION))
    quantity = _decimal(m.group("qty")) if m.group("qty") else Decimal(1)
    if quantity <= 0 or quantity > MAX_QUANTITY or quantity != round(quantity, QUANTITY_PLACES):
        raise InputProblem(tr("line.quantity", places=QUANTITY_PLACES))
    price = amount(m.group("price"), currency, tr)
    return Line(description=description, quantity=quantity.normalize() if quantity % 1 else
                quantity.quantize(Decimal(1)), unit_price=price)


def discount(text: str, currency: str, tr: Translator) -> Discount:
    """'10%' is a percent off the lines; '5.00' an amount off."""
    m = _PERCENT.match(text)
    if m is not None:
        percent = _decimal(m.group(1))
        if not 0 < percent <= 100 or percent != round(percent, PERCENT_PLACES):
            raise InputProblem(tr("discount.bad"))
        return PercentOff(percent)
    try:
        return AmountOff(amount(text, currency, tr))
    except InputProblem:
        raise InputProblem(tr("discount.bad")) from None


def tax_rate(text: str, tr: Translator) -> TaxRate:
    """'VAT 20%' (added on top), 'VAT 20% incl' (already in the prices); 0–100 %."""
    m = _TAX.match(text)
    if m is None:
        raise InputProblem(tr("tax.bad"))
    percent = _decimal(m.group("pct"))
    if percent > 100 or percent != round(percent, TAX_PLACES):
        raise InputProblem(tr("tax.bad"))
    name = clean_line(m.group("name")) or tr("tax.default_name")
    if len(name) > TAX_NAME_MAX:
        raise InputProblem(tr("tax.bad"))
    shown = f"{name} {format(percent.normalize(), 'f')} %"
    return TaxRate(name=shown, percent=percent, inclusive=m.group("incl") is not None)


def due_date(text: str, tr: Translator, today: date) -> date:
    """'in 14 days', '14', '2026-12-31', '31.12.2026': from today up to a year ahead."""
    text = text.strip()
    m = _IN_DAYS.match(text)
    if m is not None:
        due = today + timedelta(days=int(m.group(1)))
    else:
        due = None
        for pattern in ("%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y"):
            try:
                due = datetime.strptime(text, pattern).date()
                break
            except ValueError:
                continue
        if due is None:
            raise InputProblem(tr("due.bad"))
    if not today <= due <= today + timedelta(days=MAX_DUE_DAYS):
        raise InputProblem(tr("due.bad"))
    return due
