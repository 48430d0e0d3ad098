"""Invoices: create, read, cancel, expire. Amount and TON quote are fixed at creation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import orjson

from ledger.db import Executor, connection, fetch_all, fetch_one
from ledger.documents import Buyer, Document, make_document
from ledger.errors import (
    IdempotencyKeyReused,
    InvalidAmount,
    InvalidCursor,
    InvalidInvoice,
    InvoiceNotFound,
    from_db_error,
)
from ledger.ids import new_invoice_id, parse_invoice_id
from ledger.models import INVOICE_FIELDS, Invoice
from ledger.money import PRICE_CURRENCIES, check_amount, quote_ton
from ledger.text import clean_block, clean_line
from ledger.totals import Discount, Line, TaxRate

TITLE_MAX = 128
DESCRIPTION_MAX = 1024
DEFAULT_EXPIRY = timedelta(days=7)
MIN_EXPIRY = timedelta(minutes=1)
MAX_EXPIRY = timedelta(days=366)
DUE_GRACE = timedelta(days=30)  # a link with a due date lives this long past it by default
PAYLOAD_KEYS = {"item_id", "achievement_id", "callback_url"}
MAX_TON_QUOTE = 10**18  # nanotons; bigint holds 9.2e18
KEY_MAX = 200  # characters of an idempotency key


def _clean_payload(payload: Mapping[str, Any] | None) -> dict[str, str]:
    payload = dict(payload or {})
    unknown = set(payload) - PAYLOAD_KEYS
    if unknown:
        raise InvalidInvoice(f"unknown payload keys: {', '.join(sorted(unknown))}")
    clean: dict[str, str] = {}
    for key, value in payload.items():
        if value is None or value == "":
            continue
        if not isinstance(value, str) or len(value) > 512:
            raise InvalidInvoice(f"payload {key} must be text of at most 512 characters")
        clean[key] = value.strip()
    url = clean.get("callback_url")
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInvoice("callback_url must be an http(s) URL")
    return clean


@dataclass(frozen=True, slots=True)
class NewInvoice:
    """A checked request to issue an invoice: what create_invoices() receives per row."""

    seller_id: int
    title: str
    description: str | None
    currency: str
    amount: int
    ton_amount: int | None
    ton_rate: Decimal | None
    kind: str
    max_uses: int | None
    payload: str  # JSON text
    expires_at: datetime
    public_id: str
    id_chosen: bool = False  # the caller chose public_id: a clash is an error, not a redraw
    idempotency_key: str | None = None
    request_hash: bytes | None = None
    draft: bool = False
    document: str | None = None  # JSON text of ledger.documents.Document, None: one line
    due_at: datetime | None = None


def new_invoice(
    *,
    seller_id: int,
    title: str | None = None,
    amount: int | None = None,
    currency: str = "LIQ",
    description: str | None = None,
    kind: str = "one_time",
    max_uses: int | None = None,
    expires_in: timedelta | None = None,
    payload: Mapping[str, Any] | None = None,
    ton_rate: Decimal | None = None,
    public_id: str | None = None,
    idempotency_key: str | None = None,
    request_hash: bytes = b"",
    lines: Sequence[Line] | None = None,
    discount: Discount | None = None,
    tax_rates: Sequence[TaxRate] = (),
    buyer: Buyer | None = None,
    memo: str | None = None,
    due_at: datetime | None = None,
    draft: bool = False,
    now: datetime | None = None,
) -> NewInvoice:
    """Check an invoice request (InvalidInvoice/InvalidAmount say what is wrong); nothing is
    written. `ton_rate` (units of `currency` per TON) locks the TON quote now.

    A document: `lines` (with optional `discount`, `tax_rates`, `buyer`, `memo`) — the amount
    is their total (ledger/totals.py) and the title defaults to the first line's description.
    `due_at`: when payment is expected (reminders, "overdue"); the link then lives until at
    least 30 days after it unless `expires_in` says otherwise. `draft`: editable, not payable,
    numbered when issued."""
    now = now or datetime.now(UTC)
    document: Document | None = None
    if lines is not None or discount is not None or tax_rates or buyer or memo:
        if amount is not None:
            raise InvalidInvoice("give either lines or an amount, not both")
        document = make_document(list(lines or ()), discount, tax_rates, buyer, memo)
        amount = document.totals.total
        if not title:
            first = document.lines[0].description
            title = first if len(document.lines) == 1 else f"{first} +{len(document.lines) - 1}"
            title = title[:TITLE_MAX]
    if amount is None:
        raise InvalidAmount("the amount is missing")
    if document is not None and kind != "one_time":
        raise InvalidInvoice("an invoice with lines is one-time")
    title = clean_line(title or "")
    if not title:
        raise InvalidInvoice("the title is empty")
    if len(title) > TITLE_MAX:
        raise InvalidInvoice(f"the title is longer than {TITLE_MAX} characters")
    description = clean_block(description or "") or None
    if description and len(description) > DESCRIPTION_MAX:
        raise InvalidInvoice(f"the description is longer than {DESCRIPTION_MAX} characters")
    if currency not in PRICE_CURRENCIES:
        raise InvalidInvoice(f"unknown currency {currency!r}")
    check_amount(amount)
    if kind not in ("one_time", "multi_use"):
        raise InvalidInvoice("the type must be one_time or multi_use")
    if max_uses is not None and (kind != "multi_use" or max_uses < 1):
        raise InvalidInvoice("max uses is a positive number, for multi-use invoices only")
    if due_at is not None:
        if due_at.tzinfo is None:
            raise InvalidInvoice("the due date needs a timezone")
        if due_at <= now and not draft:
            raise InvalidInvoice("the due date is in the past")
        if due_at > now + MAX_EXPIRY:
            raise InvalidInvoice("the due date is more than a year away")
        if expires_in is None:
            expires_in = min(due_at + DUE_GRACE - now, MAX_EXPIRY)
        elif now + expires_in < due_at:
            raise InvalidInvoice("the link would expire before the due date")
    if expires_in is None:
        expires_in = DEFAULT_EXPIRY
    if not MIN_EXPIRY <= expires_in <= MAX_EXPIRY:
        raise InvalidInvoice("the expiry must be between one minute and one year")
    if idempotency_key is not None and not 0 < len(idempotency_key) <= KEY_MAX:
        raise InvalidInvoice(f"the idempotency key must be 1 to {KEY_MAX} characters")
    clean_payload = _clean_payload(payload)
    ton_amount = quote_ton(amount, currency, ton_rate) if ton_rate is not None else None
    if currency == "TON":
        ton_amount = amount
    if ton_amount is not None and ton_amount > MAX_TON_QUOTE:
        raise InvalidAmount("the amount is too large to quote in TON")
    return NewInvoice(
        seller_id=seller_id, title=title, description=description, currency=currency,
        amount=amount, ton_amount=ton_amount, ton_rate=ton_rate, kind=kind, max_uses=max_uses,
        payload=orjson.dumps(clean_payload).decode(), expires_at=now + expires_in,
        public_id=public_id or new_invoice_id(), id_chosen=public_id is not None,
        idempotency_key=idempotency_key,
        request_hash=request_hash if idempotency_key is not None else None,
        draft=draft,
        document=orjson.dumps(document.to_json()).decode() if document is not None else None,
        due_at=due_at,
    )


async def create_invoice(db: Executor, **request: Any) -> Invoice:
    """Issue an invoice (the arguments are new_invoice's)."""
    invoice, _replayed = await issue_invoice(db, new_invoice(**request))
    return invoice


Issued = tuple[Invoice, bool]  # the invoice, and whether an earlier request made it

CREATE_INVOICES = f"""
SELECT r_idx AS idx, r_outcome AS outcome, {', '.join(f'(r_invoice).{c}' for c in INVOICE_FIELDS)}
  FROM create_invoices($1::bigint[], $2::text[], $3::bytea[], $4::text[], $5::text[],
                       $6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::numeric[],
                       $11::text[], $12::int[], $13::jsonb[], $14::timestamptz[],
                       $15::text[], $16::jsonb[], $17::timestamptz[])
"""


def create_args(requests: Sequence[NewInvoice]) -> list[list[Any]]:
    """create_invoices' arguments: one array per column, in its parameter order."""
    return [
        [r.seller_id for r in requests],
        [r.idempotency_key for r in requests],
        [r.request_hash for r in requests],
        [r.public_id for r in requests],
        [r.title for r in requests],
        [r.description for r in requests],
        [r.currency for r in requests],
        [r.amount for r in requests],
        [r.ton_amount for r in requests],
        [r.ton_rate for r in requests],
        [r.kind for r in requests],
        [r.max_uses for r in requests],
        [r.payload for r in requests],
        [r.expires_at for r in requests],
        [("draft" if r.draft else None) for r in requests],
        [r.document for r in requests],
        [r.due_at for r in requests],
    ]


def issue_outcome(request: NewInvoice, row: asyncpg.Record) -> Issued:
    if row["outcome"] == "key_reused":
        raise IdempotencyKeyReused((request.idempotency_key or "")[:40])
    return Invoice.from_row(row), row["outcome"] == "replayed"


async def issue_invoice(db: Executor, request: NewInvoice) -> tuple[Invoice, bool]:
    """Write a checked invoice; (invoice, replayed). With an idempotency key, at most once per
    (seller, key): the same key with the same request_hash returns the first invoice
    (replayed=True), with a different request IdempotencyKeyReused. Inside a caller's
    transaction or alone; the edges call `Ledger.issue_invoice`, where
    concurrent requests share one database call (ledger/invoice_batches.py)."""
    async with connection(db) as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        try:
            rows = await driver.fetch(CREATE_INVOICES, *create_args([request]))
        except asyncpg.PostgresError as exc:
            typed = from_db_error(exc)
            if typed is not None:
                raise typed from exc
            raise
    return issue_outcome(request, rows[0])


async def check_cursor(db: Executor, seller_id: int, after: str) -> None:
    """An empty page after `after`: the last one, or a cursor that is not one of this seller's
    invoices (InvalidCursor, like a made-up one)."""
    known = await fetch_one(
        db, "SELECT 1 AS ok FROM invoices WHERE public_id = :after AND seller_id = :seller",
        after=after, seller=seller_id)
    if known is None:
        raise InvalidCursor(after[:40])


async def list_invoices(
    db: Executor, seller_id: int, *, status: str | None = None, limit: int = 20,
    before_id: int | None = None,
) -> list[Invoice]:
    rows = await fetch_all(
        db,
        """
        SELECT * FROM invoices
         WHERE seller_id = :seller AND (CAST(:status AS text) IS NULL OR status = :status)
           AND (CAST(:before AS bigint) IS NULL OR id < :before)
         ORDER BY id DESC LIMIT :limit
        """,
        seller=seller_id, status=status, before=before_id, limit=limit,
    )
    return [Invoice.from_row(r) for r in rows]


async def list_seller_invoices(
    db: Executor, seller_id: int, *, status: str | None = None,
    created_from: datetime | None = None, created_to: datetime | None = None,
    limit: int = 20, after: str | None = None,
) -> tuple[list[Invoice], str | None]:
    """Newest first; returns the page and the cursor of the next one (None at the end).

    The cursor is the public id of the page's last invoice: random, so it tells nothing of how
    many invoices anyone issued, and it only means something to the seller it belongs to
    (another seller's cursor is refused with InvalidCursor, like a made-up one)."""
    rows = await fetch_all(
        db,
        """
        SELECT * FROM invoices
         WHERE seller_id = :seller
           AND (CAST(:status AS text) IS NULL OR status = :status)
           AND (CAST(:since AS timestamptz) IS NULL OR created_at >= :since)
           AND (CAST(:until AS timestamptz) IS NULL OR created_at < :until)
           AND (CAST(:after AS text) IS NULL OR id < (
                SELECT a.id FROM invoices a WHERE a.public_id = :after AND a.seller_id = :seller))
         ORDER BY id DESC LIMIT :limit
        """,
        seller=seller_id, status=status, since=created_from, until=created_to,
        after=after, limit=limit + 1,
    )
    if after is not None and not rows:  # the last page, or a cursor that is not this seller's
        await check_cursor(db, seller_id, after)
    page = [Invoice.from_row(r) for r in rows[:limit]]
    return page, (page[-1].public_id if len(rows) > limit else None)


async def cancel_invoice(db: Executor, public_id: str, seller_id: int) -> Invoice:
    """Cancel a pending invoice (only its seller may). Cancelling twice is a no-op."""
    canonical = parse_invoice_id(public_id)
    if canonical is None:
        raise InvoiceNotFound(public_id[:40])
    row = await fetch_one(
        db, "SELECT * FROM cancel_invoice(:id, :seller)", id=canonical, seller=seller_id
    )
    assert row is not None
    return Invoice.from_row(row)


async def expire_due_invoices(db: Executor, limit: int = 1000) -> list[Invoice]:
    """Mark pending invoices past their expiry as expired (a scheduled job calls this)."""
    rows = await fetch_all(db, "SELECT * FROM expire_due_invoices(:limit)", limit=limit)
    return [Invoice.from_row(r) for r in rows]
