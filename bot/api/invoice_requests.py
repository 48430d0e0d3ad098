"""POST /invoices and PUT /invoices/{id} bodies as the ledger's checked request (NewInvoice).

The schema (schemas.InvoiceCreate) has checked shapes; here decimal text becomes minor units
in the invoice's currency and the document's parts become ledger.totals values. Every rule
about the figures (quantities, discounts, tax rates, totals) is the ledger's: its refusals
are InvalidInvoice with one sentence, answered 422.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from bot.api.schemas import AmountOff, BuyerIn, InvoiceCreate, LineIn, PercentOff
from ledger import totals
from ledger.documents import Buyer
from ledger.errors import InvalidAmount, InvalidInvoice
from ledger.invoices import NewInvoice, new_invoice
from ledger.money import parse_amount


def minor_units(text: str, currency: str, what: str) -> int:
    """Decimal text (schema-checked digits) as minor units; zero allowed (a free line)."""
    if Decimal(text) == 0:
        return 0
    try:
        return parse_amount(text, currency)
    except InvalidAmount as exc:
        raise InvalidInvoice(f"{what}: {exc.detail}") from None


def _discount(d: PercentOff | AmountOff | None, currency: str,
              what: str) -> totals.Discount | None:
    if d is None:
        return None
    if isinstance(d, PercentOff):
        return totals.PercentOff(Decimal(d.percent))
    return totals.AmountOff(minor_units(d.amount, currency, what))


def _line(i: int, line: LineIn, currency: str) -> totals.Line:
    return totals.Line(
        description=line.description, quantity=Decimal(line.quantity),
        unit_price=minor_units(line.unit_price, currency, f"line {i}: the unit price"),
        discount=_discount(line.discount, currency, f"line {i}: the discount"),
        tax_rate=line.tax_rate, item_id=line.item_id,
    )


def _buyer(b: BuyerIn | None) -> Buyer | None:
    if b is None:
        return None
    return Buyer(name=b.name or "", company=b.company or "", tax_id=b.tax_id or "",
                 address=b.address or "")


def document_args(req: InvoiceCreate, amount: int | None) -> dict[str, Any]:
    """new_invoice's keywords for the request's amount and document (just the amount for a
    plain one: today's path)."""
    if req.plain:
        return {"amount": amount}
    args: dict[str, Any] = {"buyer": _buyer(req.buyer), "memo": req.memo, "due_at": req.due(),
                            "draft": req.draft}
    if req.lines is not None:
        args["lines"] = [_line(i, line, req.currency) for i, line in enumerate(req.lines, 1)]
        args["discount"] = _discount(req.discount, req.currency, "the invoice discount")
        args["tax_rates"] = [totals.TaxRate(r.name, Decimal(r.percent), r.inclusive)
                             for r in req.tax_rates or ()]
    elif req.buyer is not None or req.memo is not None:
        # A buyer or a memo makes a document; title × amount is its one line.
        args["lines"] = [totals.Line(req.title or "", Decimal(1), amount or 0)]
    else:
        args["amount"] = amount
    return args


def new_invoice_of(req: InvoiceCreate, *, seller_id: int, amount: int | None,
                   payload: dict[str, Any], expires_in: timedelta | None, ton_rate: Decimal,
                   idempotency_key: str | None = None) -> NewInvoice:
    """The ledger's checked request (InvalidInvoice / InvalidAmount say what is wrong)."""
    return new_invoice(
        seller_id=seller_id, idempotency_key=idempotency_key,
        request_hash=req.fingerprint() if idempotency_key is not None else b"",
        title=req.title, currency=req.currency, description=req.description,
        kind=req.kind, max_uses=req.max_uses, expires_in=expires_in, payload=payload,
        ton_rate=ton_rate, **document_args(req, amount),
    )
