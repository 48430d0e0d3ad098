"""An invoice as a document: its lines, discounts, tax rates, buyer and memo, with the totals
they add up to (ledger/totals.py), as stored in `invoices.document` (JSON).

A plain invoice (title and amount, the quick path) stores no document; `document_of` gives
it one line, so the bot, the pay page, the API and the PDF all show lines the same way.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from ledger.errors import InvalidInvoice
from ledger.models import Invoice
from ledger.text import clean_block, clean_line
from ledger.totals import (
    AmountOff,
    Discount,
    Line,
    LineTotals,
    PercentOff,
    TaxRate,
    Totals,
    compute,
)

BUYER_FIELD_MAX: Final = 200
ADDRESS_MAX: Final = 500
MEMO_MAX: Final = 1000
TAX_NAME_MAX: Final = 64
ITEM_ID_MAX: Final = 512


@dataclass(frozen=True, slots=True)
class Buyer:
    """Who the invoice is addressed to, as the seller typed it (all optional)."""

    name: str = ""
    company: str = ""
    tax_id: str = ""
    address: str = ""

    def __bool__(self) -> bool:
        return any((self.name, self.company, self.tax_id, self.address))


@dataclass(frozen=True, slots=True)
class Document:
    lines: tuple[Line, ...]
    discount: Discount | None
    tax_rates: tuple[TaxRate, ...]
    buyer: Buyer
    memo: str | None
    totals: Totals

    def to_json(self) -> dict[str, Any]:
        return {
            "lines": [_line_json(line) for line in self.lines],
            "discount": _discount_json(self.discount),
            "tax_rates": [{"name": r.name, "percent": str(r.percent), "inclusive": r.inclusive}
                          for r in self.tax_rates],
            "buyer": ({"name": self.buyer.name, "company": self.buyer.company,
                       "tax_id": self.buyer.tax_id, "address": self.buyer.address}
                      if self.buyer else None),
            "memo": self.memo,
            "totals": {
                "subtotal": self.totals.subtotal, "discount": self.totals.discount,
                "tax": self.totals.tax, "total": self.totals.total,
                "taxes": [{"name": t.name, "percent": str(t.percent), "inclusive": t.inclusive,
                           "base": t.base, "amount": t.amount} for t in self.totals.taxes],
                # Each line's figures are not stored: the same inputs give the same figures
                # (from_json computes them), and a 10-line document stays small enough to be
                # stored inline, uncompressed (creation speed: bench/invoice_creation.py).
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Document:
        """The stored document (written by to_json from checked input); its figures are
        computed again by the one rule and must give the stored total."""
        buyer = data.get("buyer") or {}
        lines = tuple(Line(description=x["description"], quantity=Decimal(x["quantity"]),
                           unit_price=x["unit_price"], discount=_discount_of(x.get("discount")),
                           tax_rate=x.get("tax_rate"), item_id=x.get("item_id"))
                      for x in data["lines"])
        discount = _discount_of(data.get("discount"))
        rates = tuple(TaxRate(r["name"], Decimal(r["percent"]), r["inclusive"])
                      for r in data.get("tax_rates") or ())
        totals = compute(lines, discount, rates)
        if totals.total != data["totals"]["total"]:  # the database checks amount = this total
            raise ValueError("a stored invoice document does not add up to its total")
        return cls(lines, discount, rates,
                   Buyer(**{k: buyer.get(k) or "" for k in ("name", "company", "tax_id",
                                                            "address")}),
                   data.get("memo"), totals)


def make_document(lines: Any, discount: Discount | None = None,
                  tax_rates: Any = (), buyer: Buyer | None = None,
                  memo: str | None = None) -> Document:
    """Check and compute a document (InvalidInvoice says what is wrong); nothing is written."""
    if not isinstance(lines, list | tuple) or not all(type(x) is Line for x in lines):
        raise InvalidInvoice("lines must be a list of lines")
    rates = []
    for rate in tax_rates:
        name = clean_line(rate.name) if isinstance(rate.name, str) else ""
        if not name or len(name) > TAX_NAME_MAX:
            raise InvalidInvoice(f"a tax rate needs a name of 1 to {TAX_NAME_MAX} characters")
        rates.append(rate if name == rate.name else TaxRate(name, rate.percent, rate.inclusive))
    names = {r.name for r in rates}
    clean_lines = []
    for i, line in enumerate(lines, 1):
        description = clean_line(line.description) if isinstance(line.description, str) else ""
        if not description:
            raise InvalidInvoice(f"line {i}: the description is empty")
        if line.item_id is not None and not (
                isinstance(line.item_id, str) and 0 < len(line.item_id) <= ITEM_ID_MAX):
            raise InvalidInvoice(f"line {i}: item_id must be 1 to {ITEM_ID_MAX} characters")
        tax_rate = line.tax_rate
        if tax_rate is not None and tax_rate not in names:
            # names are compared as cleaned, so "VAT  20 %" and "VAT 20 %" are one rate
            tax_rate = clean_line(tax_rate) if isinstance(tax_rate, str) else ""
            if tax_rate not in names:
                raise InvalidInvoice(f"line {i} names an unknown tax rate {line.tax_rate!r}")
        if description != line.description or tax_rate != line.tax_rate:
            line = Line(description, line.quantity, line.unit_price, line.discount, tax_rate,
                        line.item_id)
        clean_lines.append(line)
    totals = compute(clean_lines, discount, rates)
    clean_buyer = Buyer()
    if buyer:
        fields = {}
        for name in ("name", "company", "tax_id"):
            value = clean_line(getattr(buyer, name) or "")
            if len(value) > BUYER_FIELD_MAX:
                raise InvalidInvoice(f"the buyer's {name} is longer than {BUYER_FIELD_MAX} "
                                     "characters")
            fields[name] = value
        address = clean_block(buyer.address or "")
        if len(address) > ADDRESS_MAX:
            raise InvalidInvoice(f"the buyer's address is longer than {ADDRESS_MAX} characters")
        clean_buyer = Buyer(**fields, address=address)
    memo = clean_block(memo or "") or None
    if memo and len(memo) > MEMO_MAX:
        raise InvalidInvoice(f"the memo is longer than {MEMO_MAX} characters")
    return Document(tuple(clean_lines), discount, tuple(rates), clean_buyer, memo, totals)


_parsed: OrderedDict[tuple[str, int], Document] = OrderedDict()
PARSED_KEEP: Final = 512  # documents kept parsed: pages and cards show the same few often


def document_of(invoice: Invoice) -> Document:
    """The invoice's document; a plain invoice is one line: its title (and description), 1 ×
    its amount."""
    if invoice.document is not None:
        key = (invoice.public_id, invoice.version)  # a version's document never changes
        doc = _parsed.get(key)
        if doc is None:
            doc = _parsed[key] = Document.from_json(invoice.document)
            if len(_parsed) > PARSED_KEEP:
                _parsed.popitem(last=False)
        return doc
    description = " — ".join(filter(None, (invoice.title, invoice.description)))
    line = Line(description, Decimal(1), invoice.amount,
                item_id=invoice.payload.get("item_id"))
    amount = invoice.amount
    return Document((line,), None, (), Buyer(), None,
                    Totals(amount, 0, (), 0, amount, (LineTotals(amount, 0, 0, amount, 0),)))


def _line_json(line: Line) -> dict[str, Any]:
    out: dict[str, Any] = {"description": line.description, "quantity": str(line.quantity),
                           "unit_price": line.unit_price}
    if line.item_id is not None:
        out["item_id"] = line.item_id
    if line.discount is not None:
        out["discount"] = _discount_json(line.discount)
    if line.tax_rate is not None:
        out["tax_rate"] = line.tax_rate
    return out


def _discount_json(discount: Discount | None) -> dict[str, Any] | None:
    if discount is None:
        return None
    if isinstance(discount, PercentOff):
        return {"percent": str(discount.percent)}
    return {"amount": discount.amount}


def _discount_of(data: dict[str, Any] | None) -> Discount | None:
    if not data:
        return None
    if "percent" in data:
        return PercentOff(Decimal(data["percent"]))
    return AmountOff(int(data["amount"]))
