"""An invoice's totals are exact integers in minor units under one rounding rule (per line,
half-up): checked against a model written with Fractions, by invariants, and on examples a
seller would work out by hand."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import InvalidInvoice
from ledger.money import MAX_AMOUNT
from ledger.totals import (
    MAX_LINES,
    AmountOff,
    Discount,
    Line,
    PercentOff,
    TaxRate,
    compute,
)

VAT = TaxRate("VAT 20 %", Decimal(20))
VAT_INCL = TaxRate("VAT 20 % incl.", Decimal(20), inclusive=True)


# --- the model: the rule applied literally, with Fractions ----------------------------------


def _round(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))  # half-up (x is never negative)


def _off(discount: Discount | None, amount: int) -> int:
    if discount is None:
        return 0
    if isinstance(discount, AmountOff):
        return discount.amount
    return _round(amount * Fraction(discount.percent) / 100)


def model(lines: list[Line], discount: Discount | None, rates: list[TaxRate]) -> dict | None:
    """The figures the rule gives, or None when the invoice must be refused."""
    by_name = {r.name: r for r in rates}
    amounts = [_round(Fraction(line.quantity) * line.unit_price) for line in lines]
    own = [_off(line.discount, a) for line, a in zip(lines, amounts, strict=True)]
    if any(d > a for d, a in zip(own, amounts, strict=True)):
        return None
    nets = [a - d for a, d in zip(amounts, own, strict=True)]
    whole = sum(nets)
    invoice_off = _off(discount, whole)
    if invoice_off > whole:
        return None
    quotas = [Fraction(invoice_off * n, whole) if whole else Fraction(0) for n in nets]
    shares = [math.floor(q) for q in quotas]
    order = sorted(range(len(lines)), key=lambda k: (shares[k] - quotas[k], k))
    for k in order[: invoice_off - sum(shares)]:
        shares[k] += 1
    taxes: dict[str, list[int]] = {}
    exclusive = 0
    for line, net, share in zip(lines, nets, shares, strict=True):
        if line.tax_rate is None:
            continue
        rate = by_name[line.tax_rate]
        taxable = net - share
        r = Fraction(rate.percent)
        if rate.inclusive:
            tax = _round(taxable * r / (100 + r))
            base = taxable - tax
        else:
            tax = _round(taxable * r / 100)
            base = taxable
            exclusive += tax
        taxes.setdefault(rate.name, [0, 0])
        taxes[rate.name][0] += base
        taxes[rate.name][1] += tax
    total = whole - invoice_off + exclusive
    if not 0 < total <= MAX_AMOUNT:
        return None
    return {"subtotal": sum(amounts), "discount": sum(own) + invoice_off, "total": total,
            "taxes": {name: tuple(v) for name, v in taxes.items()}, "shares": shares}


# --- random invoices ------------------------------------------------------------------------

percents = st.integers(0, 10_000).map(lambda n: Decimal(n).scaleb(-2))
discounts = st.one_of(st.none(), percents.map(PercentOff),
                      st.integers(0, 50_000).map(AmountOff))
tax_percents = st.integers(0, 1_000_000).map(lambda n: Decimal(n).scaleb(-4))


@st.composite
def invoices(draw: st.DrawFn) -> tuple[list[Line], Discount | None, list[TaxRate]]:
    names = draw(st.lists(st.sampled_from(["VAT 20 %", "VAT 10 %", "GST", "Sales tax"]),
                          max_size=3, unique=True))
    rates = [TaxRate(n, draw(tax_percents), draw(st.booleans())) for n in names]
    line = st.builds(
        Line,
        description=st.just("work"),
        quantity=st.integers(1, 10**6).map(lambda n: Decimal(n).scaleb(-3)),
        unit_price=st.integers(0, 10**7),
        discount=discounts,
        tax_rate=st.sampled_from([None, *names]),
    )
    return draw(st.lists(line, min_size=1, max_size=8)), draw(discounts), rates


@given(invoices())
def test_totals_agree_with_the_rule_applied_literally(invoice) -> None:
    lines, discount, rates = invoice
    expected = model(lines, discount, rates)
    if expected is None:
        with pytest.raises(InvalidInvoice):
            compute(lines, discount, rates)
        return
    got = compute(lines, discount, rates)
    assert (got.subtotal, got.discount, got.total) == (
        expected["subtotal"], expected["discount"], expected["total"])
    assert {t.name: (t.base, t.amount) for t in got.taxes} == expected["taxes"]
    assert [r.invoice_discount for r in got.lines] == expected["shares"]


@given(invoices())
def test_the_figures_always_add_up(invoice) -> None:
    lines, discount, rates = invoice
    try:
        got = compute(lines, discount, rates)
    except InvalidInvoice:
        return
    inclusive = {r.name for r in rates if r.inclusive}
    exclusive_tax = sum(t.amount for t in got.taxes if t.name not in inclusive)
    assert got.subtotal - got.discount + exclusive_tax == got.total
    assert sum(t.amount for t in got.taxes) == got.tax
    assert sum(r.amount for r in got.lines) == got.subtotal
    assert sum(r.discount for r in got.lines) == got.discount
    invoice_off = got.discount - sum(r.line_discount for r in got.lines)
    assert sum(r.invoice_discount for r in got.lines) == invoice_off  # shares sum exactly
    if isinstance(discount, AmountOff):
        assert invoice_off == discount.amount
    for r in got.lines:
        assert r.amount - r.discount == r.taxable
        assert min(r.amount, r.line_discount, r.invoice_discount, r.taxable, r.tax) >= 0
    for t in got.taxes:
        assert t.base >= 0 and t.amount >= 0
    assert 0 < got.total <= MAX_AMOUNT


# --- what a seller works out by hand ---------------------------------------------------------


def test_one_and_a_half_hours_at_40_plus_vat_20() -> None:
    got = compute([Line("Consulting", Decimal("1.5"), 4000, tax_rate=VAT.name)], tax_rates=[VAT])
    assert (got.subtotal, got.tax, got.total) == (6000, 1200, 7200)
    (vat,) = got.taxes
    assert (vat.name, vat.percent, vat.inclusive, vat.base, vat.amount) == (
        "VAT 20 %", Decimal(20), False, 6000, 1200)


def test_a_price_including_vat_20_shows_the_vat_inside_it() -> None:
    got = compute([Line("Book", Decimal(1), 1000, tax_rate=VAT_INCL.name)], tax_rates=[VAT_INCL])
    # 10.00 × 20/120 = 1.666… → 1.67 of VAT, 8.33 without it; the buyer pays 10.00.
    assert (got.subtotal, got.tax, got.total) == (1000, 167, 1000)
    assert (got.taxes[0].base, got.taxes[0].amount) == (833, 167)


def test_ten_percent_off_the_invoice_is_spread_over_three_lines() -> None:
    lines = [Line("a", Decimal(1), 1000), Line("b", Decimal(1), 2000), Line("c", Decimal(1), 3333)]
    got = compute(lines, PercentOff(Decimal(10)))
    # 10 % of 63.33 = 6.333 → 6.33, shared 0.9995 / 1.999 / 3.3314 → 1.00, 2.00, 3.33.
    assert got.discount == 633
    assert [r.invoice_discount for r in got.lines] == [100, 200, 333]
    assert got.total == 5700


def test_a_fixed_discount_larger_than_one_line_is_shared_by_all() -> None:
    lines = [Line("a", Decimal(1), 500), Line("b", Decimal(1), 2000)]
    got = compute(lines, AmountOff(1000))
    assert [r.taxable for r in got.lines] == [300, 1200]
    assert (got.discount, got.total) == (1000, 1500)


def test_line_discounts_come_before_the_invoice_discount_and_tax() -> None:
    lines = [Line("a", Decimal(2), 1000, PercentOff(Decimal(25)), VAT.name),
             Line("b", Decimal(1), 1000, AmountOff(500))]
    got = compute(lines, AmountOff(500), [VAT])
    # nets 15.00 and 5.00; 5.00 off shared 3.75 / 1.25; VAT on 11.25 = 2.25.
    assert [r.taxable for r in got.lines] == [1125, 375]
    assert (got.discount, got.tax, got.total) == (1000 + 500, 225, 1725)


def test_each_line_is_rounded_once_half_up() -> None:
    # 0.005 × 1.00 = half a cent → 1 cent on each line (per invoice it would be 1.5 → 2).
    got = compute([Line("x", Decimal("0.005"), 100)] * 3)
    assert [r.amount for r in got.lines] == [1, 1, 1] and got.total == 3


def test_an_even_split_gives_the_odd_cent_to_the_earlier_line() -> None:
    got = compute([Line("x", Decimal(1), 1000)] * 3, AmountOff(100))
    assert [r.invoice_discount for r in got.lines] == [34, 33, 33]


def test_a_one_line_invoice_without_discount_or_tax_totals_its_amount() -> None:
    got = compute([Line("Ebook", Decimal(1), 1250)])
    assert (got.subtotal, got.discount, got.tax, got.total, got.taxes) == (1250, 0, 0, 1250, ())
    assert got.lines[0].taxable == 1250


# --- bad input: one clear sentence --------------------------------------------------------


def _line(**kw) -> Line:
    return Line(**{"description": "x", "quantity": Decimal(1), "unit_price": 1000, **kw})


@pytest.mark.parametrize(("lines", "discount", "rates", "says"), [
    ([_line(quantity=Decimal(0))], None, [], "greater than zero"),
    ([_line(quantity=Decimal(-1))], None, [], "greater than zero"),
    ([_line(quantity=Decimal("1.0005"))], None, [], "decimal places"),
    ([_line(quantity=Decimal("NaN"))], None, [], "decimal places"),
    ([_line(quantity=1.5)], None, [], "decimal places"),
    ([_line(quantity=Decimal(10**7))], None, [], "quantity is more than"),
    ([_line(unit_price=-1)], None, [], "unit price"),
    ([_line(discount=AmountOff(1001))], None, [], "larger than the line"),
    ([_line(discount=PercentOff(Decimal(101)))], None, [], "percent from 0 to 100"),
    ([_line()], AmountOff(1001), [], "larger than the lines"),
    ([_line()], PercentOff(Decimal("10.005")), [], "percent from 0 to 100"),
    ([_line(tax_rate="VAT")], None, [TaxRate("VAT", Decimal(-1))], "between 0 and 100"),
    ([_line(tax_rate="VAT")], None, [TaxRate("VAT", Decimal(101))], "between 0 and 100"),
    ([_line(tax_rate="VAT")], None, [TaxRate("VAT", Decimal("20.00001"))], "decimal places"),
    ([_line(tax_rate="GST")], None, [VAT], "unknown tax rate 'GST'"),
    ([_line()], None, [VAT, VAT], "given twice"),
    ([_line()] * (MAX_LINES + 1), None, [], f"at most {MAX_LINES} lines"),
    ([], None, [], "at least one line"),
    ([_line(unit_price=0)], None, [], "total must be greater than zero"),
    ([_line()], PercentOff(Decimal(100)), [], "total must be greater than zero"),
    ([_line(unit_price=MAX_AMOUNT, quantity=Decimal(2))], None, [], "too large"),
    ([_line(unit_price=MAX_AMOUNT), _line()], None, [], "total is too large"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_input_is_refused_with_a_clear_sentence(lines, discount, rates, says) -> None:
    with pytest.raises(InvalidInvoice) as caught:
        compute(lines, discount, rates)
    assert says in caught.value.detail
