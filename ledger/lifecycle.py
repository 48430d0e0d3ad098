"""An invoice's life as a document: draft → issued (pending) → sent, viewed → paid, void or
uncollectible. Each function is one SQL function (ledger/sql/documents.sql), one transaction;
`Ledger` (ledger/core.py) is how the edges call them.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ledger.db import Executor, fetch_one
from ledger.errors import InvalidInvoice, InvoiceNotFound
from ledger.invoices import NewInvoice
from ledger.models import INVOICE_FIELDS, Invoice, User
from ledger.users import get_user

REASON_MAX = 500
_ROW = ", ".join(f"(r_invoice).{c}" for c in INVOICE_FIELDS)


@dataclass(frozen=True, slots=True)
class SentInvoice:
    invoice: Invoice
    recipient: User | None  # None: sent as a link


def _invoice(row: object, public_id: str) -> Invoice:
    if row is None:  # the functions raise rather than return nothing; kept for the type
        raise InvoiceNotFound(public_id[:40])
    return Invoice.from_row(row)  # type: ignore[arg-type]


def _reason(reason: str | None) -> str | None:
    if reason is not None and len(reason) > REASON_MAX:
        raise InvalidInvoice(f"the reason is longer than {REASON_MAX} characters")
    return reason or None


async def update_draft(db: Executor, seller_id: int, public_id: str,
                       request: NewInvoice) -> Invoice:
    """Replace a draft with a checked request (InvoiceNotDraft once it is issued)."""
    row = await fetch_one(
        db,
        """SELECT * FROM update_draft(:id, :seller, :title, :description, :currency, :amount,
                                      :ton_amount, :ton_rate, :kind, :max_uses,
                                      CAST(:payload AS jsonb), :expires_at,
                                      CAST(:document AS jsonb), :due_at)""",
        id=public_id, seller=seller_id, title=request.title, description=request.description,
        currency=request.currency, amount=request.amount, ton_amount=request.ton_amount,
        ton_rate=request.ton_rate, kind=request.kind, max_uses=request.max_uses,
        payload=request.payload, expires_at=request.expires_at, document=request.document,
        due_at=request.due_at)
    return _invoice(row, public_id)


async def finalize_invoice(db: Executor, seller_id: int, public_id: str,
                           ton_rate: Decimal | None = None) -> Invoice:
    """Issue a draft: numbered, amounts frozen, the TON quote locked at `ton_rate` (when given),
    the link live. An issued invoice comes back unchanged."""
    row = await fetch_one(db, "SELECT * FROM finalize_invoice(:id, :seller, :rate)",
                          id=public_id, seller=seller_id, rate=ton_rate)
    return _invoice(row, public_id)


async def void_invoice(db: Executor, seller_id: int | None, public_id: str,
                       reason: str | None = None) -> Invoice:
    row = await fetch_one(db, "SELECT * FROM void_invoice(:id, :seller, :reason)",
                          id=public_id, seller=seller_id, reason=_reason(reason))
    return _invoice(row, public_id)


async def mark_uncollectible(db: Executor, seller_id: int | None, public_id: str,
                             reason: str | None = None) -> Invoice:
    row = await fetch_one(db, "SELECT * FROM mark_invoice_uncollectible(:id, :seller, :reason)",
                          id=public_id, seller=seller_id, reason=_reason(reason))
    return _invoice(row, public_id)


def parse_recipient(to: int | str | None) -> tuple[int | None, str | None]:
    """A Telegram id, or an @username (5–32 letters, digits, underscores), or None (a link)."""
    if to is None:
        return None, None
    if isinstance(to, bool):
        raise InvalidInvoice("the recipient is a Telegram id or an @username")
    if isinstance(to, int):
        if not 0 < to < 2**52:
            raise InvalidInvoice("the Telegram id is not valid")
        return to, None
    text = to.strip()
    if text.lstrip("-").isdigit():
        return parse_recipient(int(text))
    name = text.removeprefix("@")
    if not (5 <= len(name) <= 32 and name.replace("_", "").isalnum() and name.isascii()):
        raise InvalidInvoice("the recipient is a Telegram id or an @username")
    return None, name


async def send_invoice(db: Executor, seller_id: int, public_id: str, to: int | str | None,
                       ton_rate: Decimal | None = None) -> SentInvoice:
    """Send to a Telegram user who started the bot (RecipientNotFound otherwise), or as a link;
    a draft is issued first."""
    telegram_id, username = parse_recipient(to)
    row = await fetch_one(
        db, f"SELECT {_ROW}, r_recipient FROM send_invoice(:id, :seller, :tg, :username, "
            ":rate)",
        id=public_id, seller=seller_id, tg=telegram_id, username=username, rate=ton_rate)
    invoice = _invoice(row, public_id)
    recipient = None
    if row is not None and row["r_recipient"] is not None:
        recipient = await get_user(db, row["r_recipient"])
    return SentInvoice(invoice, recipient)


async def mark_viewed(db: Executor, public_id: str, viewer_user_id: int | None) -> bool:
    """Record the first view by someone other than the seller; True when this was it."""
    row = await fetch_one(db, "SELECT mark_invoice_viewed(:id, :viewer) AS first",
                          id=public_id, viewer=viewer_user_id)
    return bool(row and row["first"])


async def stop_reminders(db: Executor, public_id: str, user_id: int) -> Invoice:
    row = await fetch_one(db, "SELECT * FROM stop_invoice_reminders(:id, :user)",
                          id=public_id, user=user_id)
    return _invoice(row, public_id)
