"""The exact totals of an invoice: lines, discounts and taxes to integers in minor units.

Pure arithmetic (no database, no edge), so the ledger, the bot, the pay page, the API and the
PDF all show the same figures by calling `compute`.

The rounding rule — per line, half-up to the minor unit, each figure rounded once:

1. line amount   = quantity × unit price, rounded half-up;
2. line discount = a fixed amount (at most the line amount), or the line amount × percent,
   rounded half-up;
3. invoice discount: a fixed amount, or (the sum of the lines after their own discounts)
   × percent rounded half-up once; then allocated to the lines in proportion to what each
   line has left, by largest remainder (ties to the earlier line), so the shares sum exactly
   and no share exceeds its line;
4. taxable = line amount − line discount − its share of the invoice discount;
5. tax per line: exclusive: taxable × rate, rounded half-up, added on top; inclusive: the
   taxable amount is gross, tax = taxable × rate / (100 + rate), rounded half-up, extracted;
6. tax per rate = the sum of its lines' taxes (never re-rounded); its base is the sum of its
   lines' amounts without tax (taxable, less the tax for an inclusive rate).

So subtotal − discount + exclusive tax = total, the per-rate taxes sum to the tax total, and
nothing is negative. Stripe rounds per line item too; rounding per line means each line the
document shows is exact on its own and the totals are the sums of what it shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, NamedTuple

from ledger.errors import InvalidInvoice
from ledger.money import MAX_AMOUNT

MAX_LINES: Final = 100
MAX_QUANTITY: Final = Decimal(1_000_000)
MAX_DESCRIPTION: Final = 500
QUANTITY_PLACES: Final = 3
PERCENT_PLACES: Final = 2  # discounts
TAX_PLACES: Final = 4  # tax rates (e.g. 8.875 % sales tax)


@dataclass(frozen=True, slots=True)
class PercentOff:
    """A discount of `percent` % (0–100, at most two decimal places)."""

    percent: Decimal


@dataclass(frozen=True, slots=True)
class AmountOff:
    """A discount of a fixed amount in minor units."""

    amount: int


Discount = PercentOff | AmountOff


@dataclass(frozen=True, slots=True)
class TaxRate:
    """A named rate, e.g. TaxRate("VAT 20 %", Decimal(20), inclusive=False)."""

    name: str
    percent: Decimal
    inclusive: bool = False


@dataclass(frozen=True, slots=True)
class Line:
    description: str
    quantity: Decimal
    unit_price: int  # minor units
    discount: Discount | None = None
    tax_rate: str | None = None  # the name of one of the invoice's TaxRates
    item_id: str | None = None


# The computed figures are NamedTuples: built per line on every document read and write, and a
# tuple is several times cheaper to make than a frozen dataclass.
class LineTotals(NamedTuple):
    amount: int  # quantity × unit price
    line_discount: int
    invoice_discount: int  # this line's share of the invoice discount
    taxable: int  # amount − both discounts (gross of tax when the rate is inclusive)
    tax: int

    @property
    def discount(self) -> int:
        return self.line_discount + self.invoice_discount


class TaxAmount(NamedTuple):
    name: str
    percent: Decimal
    inclusive: bool
    base: int  # the lines' amounts without this tax
    amount: int


class Totals(NamedTuple):
    subtotal: int  # sum of line amounts
    discount: int  # line discounts + the invoice discount
    taxes: tuple[TaxAmount, ...]  # per rate used, in the order the rates were given
    tax: int  # all tax, inclusive and exclusive
    total: int  # subtotal − discount + exclusive tax
    lines: tuple[LineTotals, ...]


def compute(lines: Sequence[Line], discount: Discount | None = None,
            tax_rates: Sequence[TaxRate] = ()) -> Totals:
    """The totals of an invoice, or InvalidInvoice saying what is wrong with it."""
    if not lines:
        raise InvalidInvoice("an invoice needs at least one line")
    if len(lines) > MAX_LINES:
        raise InvalidInvoice(f"an invoice has at most {MAX_LINES} lines")
    rates = _check_rates(tax_rates)
    amounts = [_line_amount(i, line) for i, line in enumerate(lines, 1)]

    if len(lines) == 1 and discount is None and not rates and lines[0].discount is None \
            and lines[0].tax_rate is None:
        # The fast path: one line, no discount, no tax — the total is the amount.
        amount = amounts[0]
        _check_total(amount)
        return Totals(amount, 0, (), 0, amount, (LineTotals(amount, 0, 0, amount, 0),))

    own = [_line_discount(i, line.discount, amount)
           for i, (line, amount) in enumerate(zip(lines, amounts, strict=True), 1)]
    nets = [a - d for a, d in zip(amounts, own, strict=True)]
    shares = _allocate(_invoice_discount(discount, sum(nets)), nets)

    results: list[LineTotals] = []
    # each rate in 10**-TAX_PLACES percent units (checked by _check_rates: never None)
    scaled_rates = {name: _units(r.percent, TAX_PLACES) or 0 for name, r in rates.items()}
    per_rate: dict[str, list[int]] = {}  # name -> [base, tax]
    exclusive = 0
    for i, (line, amount, d, net, share) in enumerate(
            zip(lines, amounts, own, nets, shares, strict=True), 1):
        taxable = net - share
        tax = 0
        if line.tax_rate is not None:
            rate = rates.get(line.tax_rate)
            if rate is None:
                raise InvalidInvoice(f"line {i} names an unknown tax rate {line.tax_rate!r}")
            scaled = scaled_rates[rate.name]
            if rate.inclusive:
                tax = _half_up(taxable * scaled, 100 * 10**TAX_PLACES + scaled)
                base = taxable - tax
            else:
                tax = _half_up(taxable * scaled, 100 * 10**TAX_PLACES)
                base = taxable
                exclusive += tax
            acc = per_rate.setdefault(rate.name, [0, 0])
            acc[0] += base
            acc[1] += tax
        results.append(LineTotals(amount, d, share, taxable, tax))

    subtotal = sum(amounts)
    discounted = sum(own) + sum(shares)
    total = subtotal - discounted + exclusive
    _check_total(total)
    taxes = tuple(TaxAmount(r.name, r.percent, r.inclusive, *per_rate[r.name])
                  for r in rates.values() if r.name in per_rate)
    return Totals(subtotal, discounted, taxes, sum(t.amount for t in taxes), total,
                  tuple(results))


def _half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half-up, both non-negative integers."""
    return (2 * numerator + denominator) // (2 * denominator)


def _units(value: object, places: int) -> int | None:
    """`value` in units of 10**-places, when it is an exact int or finite Decimal with at most
    `places` decimals; else None (floats are not exact). One scaling, no rounding."""
    if type(value) is int:
        return value * 10**places
    if type(value) is not Decimal or not value.is_finite():
        return None
    scaled = value.scaleb(places)
    units = int(scaled)
    return units if units == scaled else None


def _check_rates(tax_rates: Sequence[TaxRate]) -> dict[str, TaxRate]:
    rates: dict[str, TaxRate] = {}
    for rate in tax_rates:
        if not isinstance(rate.name, str) or not rate.name.strip():
            raise InvalidInvoice("a tax rate needs a name")
        if rate.name in rates:
            raise InvalidInvoice(f"the tax rate {rate.name!r} is given twice")
        percent = _units(rate.percent, TAX_PLACES)
        if percent is None or not 0 <= percent <= 100 * 10**TAX_PLACES:
            raise InvalidInvoice(f"the tax rate {rate.name!r} must be between 0 and 100 % "
                                 f"with at most {TAX_PLACES} decimal places")
        rates[rate.name] = rate
    return rates


def _line_amount(i: int, line: Line) -> int:
    if not isinstance(line.description, str) or len(line.description) > MAX_DESCRIPTION:
        raise InvalidInvoice(f"line {i}: the description is longer than {MAX_DESCRIPTION} "
                             "characters")
    quantity = _units(line.quantity, QUANTITY_PLACES)
    if quantity is None:
        raise InvalidInvoice(f"line {i}: the quantity must be a number with at most "
                             f"{QUANTITY_PLACES} decimal places")
    if quantity <= 0:
        raise InvalidInvoice(f"line {i}: the quantity must be greater than zero")
    if quantity > MAX_QUANTITY * 10**QUANTITY_PLACES:
        raise InvalidInvoice(f"line {i}: the quantity is more than {MAX_QUANTITY}")
    price = line.unit_price
    if isinstance(price, bool) or not isinstance(price, int) or price < 0:
        raise InvalidInvoice(f"line {i}: the unit price must be zero or more")
    if price > MAX_AMOUNT:
        raise InvalidInvoice(f"line {i}: the unit price is too large")
    amount = _half_up(quantity * price, 10**QUANTITY_PLACES)
    if amount > MAX_AMOUNT:
        raise InvalidInvoice(f"line {i}: the amount is too large")
    return amount


def _line_discount(i: int, discount: Discount | None, amount: int) -> int:
    if discount is None:
        return 0
    off = _discount(discount, amount)
    if off is None:
        raise InvalidInvoice(f"line {i}: the discount must be a percent from 0 to 100 with at "
                             f"most {PERCENT_PLACES} decimal places, or an amount of zero or more")
    if off > amount:
        raise InvalidInvoice(f"line {i}: the discount is larger than the line's amount")
    return off


def _invoice_discount(discount: Discount | None, net: int) -> int:
    if discount is None:
        return 0
    off = _discount(discount, net)
    if off is None:
        raise InvalidInvoice(f"the invoice discount must be a percent from 0 to 100 with at most "
                             f"{PERCENT_PLACES} decimal places, or an amount of zero or more")
    if off > net:
        raise InvalidInvoice("the invoice discount is larger than the lines' amount")
    return off


def _discount(discount: Discount, amount: int) -> int | None:
    """The discount in minor units on `amount`, or None when the discount itself is malformed."""
    if isinstance(discount, AmountOff):
        off = discount.amount
        if isinstance(off, bool) or not isinstance(off, int) or off < 0:
            return None
        return off
    if isinstance(discount, PercentOff):
        percent = _units(discount.percent, PERCENT_PLACES)
        if percent is None or not 0 <= percent <= 100 * 10**PERCENT_PLACES:
            return None
        return _half_up(amount * percent, 100 * 10**PERCENT_PLACES)
    return None


def _allocate(total: int, weights: list[int]) -> list[int]:
    """`total` split in proportion to `weights` by largest remainder: the shares sum to
    `total` exactly, and none exceeds its weight when total ≤ sum(weights)."""
    whole = sum(weights)
    if total == 0 or whole == 0:
        return [0] * len(weights)
    shares = [total * w // whole for w in weights]
    left = total - sum(shares)
    by_remainder = sorted(range(len(weights)), key=lambda k: (-(total * weights[k] % whole), k))
    for k in by_remainder[:left]:
        shares[k] += 1
    return shares


def _check_total(total: int) -> None:
    if total <= 0:
        raise InvalidInvoice("the invoice total must be greater than zero")
    if total > MAX_AMOUNT:
        raise InvalidInvoice("the invoice total is too large")
