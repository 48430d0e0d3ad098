"""What the ledger hands back to the edges: plain, immutable values."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from asyncpg import Record
from sqlalchemy import RowMapping


@dataclass(frozen=True, slots=True)
class User:
    id: int
    telegram_id: int
    username: str | None
    language: str
    deposit_code: str
    first_name: str | None = None
    last_name: str | None = None

    @classmethod
    def from_row(cls, row: RowMapping) -> User:
        return cls(row["id"], row["telegram_id"], row["username"], row["language"],
                   row["deposit_code"], row.get("first_name"), row.get("last_name"))

    @property
    def full_name(self) -> str | None:
        """"First Last" as the person set it in Telegram; None when we know no name."""
        name = " ".join(part for part in (self.first_name, self.last_name) if part)
        return name or None


@dataclass(frozen=True, slots=True)
class Invoice:
    id: int
    public_id: str
    seller_id: int
    number: str | None  # None while a draft: numbered when issued
    title: str
    description: str | None
    currency: str
    amount: int
    ton_amount: int | None
    kind: str
    max_uses: int | None
    uses: int
    status: str
    payload: dict[str, Any]
    ton_received: int
    created_at: datetime
    expires_at: datetime
    paid_at: datetime | None
    closed_at: datetime | None
    # Invoices as documents (ledger/documents.py): NULL document = one line, title x amount.
    due_at: datetime | None
    amount_paid: int  # one-time invoices: settled so far (manual payments may pay in parts)
    document: dict[str, Any] | None
    version: int  # +1 per draft edit: the PDF of a new version is a new document
    updated_at: datetime
    issued_at: datetime | None  # None while a draft
    viewed_at: datetime | None
    sent_at: datetime | None
    sent_to: int | None  # users.id of the buyer it was sent to
    reminders_off: bool

    @classmethod
    def from_row(cls, row: RowMapping | Record) -> Invoice:
        return cls(*_invoice_values(row))

    @property
    def amount_due(self) -> int:
        """What is still to pay: a one-time invoice may be partly paid; a multi-use invoice
        costs its amount per use."""
        if self.kind == "one_time":
            return 0 if self.uses else self.amount - self.amount_paid
        return self.amount

    @property
    def ton_due(self) -> int | None:
        """Nanotons still to pay: the locked quote, or once a one-time invoice is partly paid
        the same share of it as the amount due, rounded up — what the watcher settles against
        (SQL `paybot_ton_due`, ledger/sql/invoices.sql); never short."""
        if not self.ton_amount or self.kind != "one_time" or not self.amount_paid:
            return self.ton_amount
        return -(-self.ton_amount * (self.amount - self.amount_paid) // self.amount)

    @property
    def usdt_due(self) -> int | None:
        """Micro-USDT still to pay: Liquid $ is a dollar, so USDT pays it 1:1 (SQL
        `paybot_asset_due`, ledger/sql/ton_transfers.sql); None for an invoice in TON."""
        if self.currency == "LIQ":
            return self.amount_due * 10_000
        return self.amount_due if self.currency == "USDT" else None

    def overdue(self, now: datetime | None = None) -> bool:
        """Issued, still payable, and past its due date."""
        return (self.due_at is not None and self.effective_status(now) == "pending"
                and self.due_at <= (now or datetime.now(UTC)))

    @property
    def comment(self) -> str:
        """The wallet comment that pays this invoice on chain."""
        return f"INV-{self.public_id}"

    def effective_status(self, now: datetime | None = None) -> str:
        """A pending invoice past its expiry is expired, even before the expiry job marks it
        (the SQL functions refuse to take it either way)."""
        if self.status == "pending" and self.expires_at <= (now or datetime.now(UTC)):
            return "expired"
        return self.status


INVOICE_FIELDS = tuple(f.name for f in fields(Invoice))
# every field by name in one C call (a mapping or an asyncpg Record): rows are built per request
_invoice_values = itemgetter(*INVOICE_FIELDS)


@dataclass(frozen=True, slots=True)
class PaymentResult:
    payment_id: int
    replayed: bool
    invoice_status: str
    grant_id: int | None
    buyer_balance: int | None = None
    claim_token: str | None = None
    # The invoice as the payment left it, and its seller's @username (batched payments).
    invoice: Invoice | None = None
    seller_username: str | None = None
    amount: int | None = None  # what the payment took (a partly paid invoice: the rest)


@dataclass(frozen=True, slots=True)
class Movement:
    ledger_tx_id: int
    replayed: bool


@dataclass(frozen=True, slots=True)
class StatementLine:
    entry_id: int
    at: datetime
    kind: str
    reason: str | None
    amount: int
    balance_after: int | None
    # for a payment: the invoice, and the other party (the seller to a buyer, the payer to a
    # seller; None for a guest)
    invoice_number: str | None = None
    title: str | None = None
    counterparty: User | None = None


@dataclass(frozen=True, slots=True)
class Grant:
    """What one payment delivered: an item, an achievement, or a claim waiting for a guest."""

    id: int
    payment_id: int
    invoice_id: int
    user_id: int | None
    item_id: str | None
    achievement_id: str | None
    claim_token: str | None
    claimed_at: datetime | None
    created_at: datetime
    line_items: list[str] | None = None  # the item ids a document's lines name

    @classmethod
    def from_row(cls, row: RowMapping) -> Grant:
        return cls(**{f.name: row[f.name] for f in fields(cls)})


def iso(at: datetime | None) -> str | None:
    if at is None:
        return None
    if at.tzinfo is not UTC:  # asyncpg already hands back UTC; convert anything else
        at = at.astimezone(UTC)
    return at.isoformat().replace("+00:00", "Z")
