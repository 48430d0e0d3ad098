"""What an invoice PDF shows, as plain frozen data: every figure is already formatted text, so
the renderer only lays it out and the document shows exactly what the bot and the pages show.

The model checks what could go wrong before anything is drawn: a logo that is not a PNG/JPEG
or is huge (the ledger's rule, `InvalidSettings`), an unknown language or stamp (ValueError).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Final, Literal

from ledger.seller_settings import logo_type

LANGUAGES: Final = ("en", "ru")
STAMPS: Final = ("PAID", "VOID", "UNCOLLECTIBLE", "DRAFT")

Stamp = Literal["PAID", "VOID", "UNCOLLECTIBLE", "DRAFT"]


@dataclass(frozen=True, slots=True)
class Party:
    """The seller (name, legal details, logo) or the buyer (name, company, tax id, address)."""

    name: str
    details: str = ""  # the seller's legal details, several lines
    company: str = ""
    tax_id: str = ""
    address: str = ""
    logo: bytes | None = None  # PNG or JPEG bytes (the seller's only)

    def __post_init__(self) -> None:
        if self.logo is not None:
            logo_type(self.logo)  # InvalidSettings: not a PNG/JPEG, or huge (the ledger's rule)


@dataclass(frozen=True, slots=True)
class Line:
    description: str
    quantity: str
    unit_price: str
    amount: str
    discount: str = ""
    tax: str = ""


@dataclass(frozen=True, slots=True)
class TotalRow:
    label: str  # already in the document's language: "Subtotal", "VAT 20 %", …
    amount: str
    strong: bool = False  # the total due: drawn bold


@dataclass(frozen=True, slots=True)
class Payment:
    pay_url: str
    ton_address: str = ""
    ton_comment: str = ""
    ton_amount: str = ""  # "2.5 TON": what is still to pay in TON
    bank_details: str = ""


@dataclass(frozen=True, slots=True)
class InvoiceDocument:
    number: str  # the invoice number, or the word "DRAFT" in the document's language
    issued_on: date | None  # None for a draft: not issued yet
    due_on: date | None
    language: str
    seller: Party
    buyer: Party
    lines: tuple[Line, ...]
    totals: tuple[TotalRow, ...]
    payment: Payment | None  # None once nothing is left to pay (paid, void, written off)
    created_at: datetime  # the invoice version's time: same version, same bytes
    stamp: Stamp | None = None
    note: str = ""  # the seller's memo to the buyer

    def __post_init__(self) -> None:
        if self.language not in LANGUAGES:
            raise ValueError(f"language must be one of {LANGUAGES}, not {self.language!r}")
        if self.stamp is not None and self.stamp not in STAMPS:
            raise ValueError(f"stamp must be None or one of {STAMPS}, not {self.stamp!r}")
        if not self.lines:
            raise ValueError("an invoice document needs at least one line")
        if self.created_at.tzinfo is None:
            raise ValueError("created_at must be timezone-aware")
