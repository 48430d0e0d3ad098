"""An invoice as a document: its lines, discounts, tax rates, buyer and memo, with the totals
they add up to (ledger/totals.py), as stored in `invoices.document` (JSON).

A plain invoice (title and amount, the quick path) stores no document; `document_of` gives
it one line, so the bot, the pay page, the API and the PDF all show lines the same way.
"""

from __future__ import annotations

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
    TaxAmount,
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
                "lines": [{"amount": t.amount, "line_discount": t.line_discount,
                           "invoice_discount": t.invoice_discount, "taxable": t.taxable,
                           "tax": t.tax} for t in self.totals.lines],
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Document:
        """The stored document (written by to_json, so trusted: no re-checking)."""
        totals = data["totals"]
        buyer = data.get("buyer") or {}
        return cls(
            lines=tuple(Line(description=x["description"], quantity=Decimal(x["quantity"]),
                             unit_price=x["unit_price"], discount=_discount_of(x.get("discount")),
                             tax_rate=x.get("tax_rate"), item_id=x.get("item_id"))
                        for x in data["lines"]),
            discount=_discount_of(data.get("discount")),
            tax_rates=tuple(TaxRate(r["name"], Decimal(r["percent"]), r["inclusive"])
                            for r in data.get("tax_rates") or ()),
            buyer=Buyer(**{k: buyer.get(k) or "" for k in ("name", "company", "tax_id",
                                                            "address")}),
            memo=data.get("memo"),
            totals=Totals(
                subtotal=totals["subtotal"], discount=totals["discount"],
                taxes=tuple(TaxAmount(t["name"], Decimal(t["percent"]), t["inclusive"],
                                      t["base"], t["amount"]) for t in totals["taxes"]),
                tax=totals["tax"], total=totals["total"],
                lines=tuple(LineTotals(t["amount"], t["line_discount"], t["invoice_discount"],
                                       t["taxable"], t["tax"]) for t in totals["lines"])),
        )


def make_document(lines: Any, discount: Discount | None = None,
                  tax_rates: Any = (), buyer: Buyer | None = None,
                  memo: str | None = None) -> Document:
    """Check and compute a document (InvalidInvoice says what is wrong); nothing is written."""
    if not isinstance(lines, list | tuple) or not all(isinstance(x, Line) for x in lines):
        raise InvalidInvoice("lines must be a list of lines")
    clean_lines = []
    for i, line in enumerate(lines, 1):
        description = clean_line(line.description or "")
        if not description:
            raise InvalidInvoice(f"line {i}: the description is empty")
        if line.item_id is not None and not 0 < len(line.item_id) <= ITEM_ID_MAX:
            raise InvalidInvoice(f"line {i}: item_id must be 1 to {ITEM_ID_MAX} characters")
        clean_lines.append(Line(description, line.quantity, line.unit_price, line.discount,
                                line.tax_rate, line.item_id))
    rates = []
    for rate in tax_rates:
        name = clean_line(rate.name or "") if isinstance(rate.name, str) else ""
        if not name or len(name) > TAX_NAME_MAX:
            raise InvalidInvoice(f"a tax rate needs a name of 1 to {TAX_NAME_MAX} characters")
        rates.append(TaxRate(name, rate.percent, rate.inclusive))
    for i, line in enumerate(clean_lines, 1):
        if line.tax_rate is not None and line.tax_rate not in {r.name for r in rates}:
            # names are compared as cleaned, so "VAT  20 %" and "VAT 20 %" are one rate
            cleaned = clean_line(line.tax_rate)
            if cleaned not in {r.name for r in rates}:
                raise InvalidInvoice(f"line {i} names an unknown tax rate {line.tax_rate!r}")
            clean_lines[i - 1] = Line(line.description, line.quantity, line.unit_price,
                                      line.discount, cleaned, line.item_id)
    totals = compute(clean_lines, discount, rates)
    buyer = buyer or Buyer()
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
    memo = clean_block(memo or "") or None
    if memo and len(memo) > MEMO_MAX:
        raise InvalidInvoice(f"the memo is longer than {MEMO_MAX} characters")
    return Document(tuple(clean_lines), discount, tuple(rates), Buyer(**fields, address=address),
                    memo, totals)


def document_of(invoice: Invoice) -> Document:
    """The invoice's document; a plain invoice is one line: its title (and description), 1 ×
    its amount."""
    if invoice.document is not None:
        return Document.from_json(invoice.document)
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
