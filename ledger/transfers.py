"""Incoming chain transfers: the ledger side of the TON watcher, and the operator's tools.

The watcher (watchers/ton_watcher.py) reads and decodes the chain and parses the comment; here
each transaction becomes one call of the SQL function `paybot_ton_receive` = one database
transaction that records the transfer (unique hash) with its outcome and its predecessor —
which advances the cursor — and moves the money through balanced entries, settling invoices
through `settle_external_payment`. The cursor is a base row followed along those records, so
it never passes a transaction that is not recorded (get_cursor). The SQL is in
migrations/versions/0003_ton_watcher.py.

Outcomes: paid | excess (paid, more than the quote arrived) | partial | late_or_duplicate |
unmatched | deposit | ignored (not a customer payment: bounced, aborted, outgoing...).
Lateness is judged by the transfer's block time: sent before the invoice's expiry, it pays even
when settled after ("paid late", note says so; the invoice is expired first and stays closed
for new payments, see migrations/versions/0008_paid_late.py); sent at or after, it is late.
Money that cannot go anywhere yet sits in `suspense` as a holding, released once by
`resolve_transfer` (operator), `claim_excess` (a claimed purchase) or ledger.payers.bind_user.
The payer is named by the comment's payer tag (`INV-<id>-<tag>`, ledger/payers.py, SQL in
migrations/versions/0009_payer_tags.py); a bare `INV-<id>` pays with nobody known.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import IntegrityError

from ledger.db import Executor, fetch_all, fetch_one, typed_errors
from ledger.errors import (
    AmountShortfall,
    InvoiceNotFound,
    LedgerError,
    UserNotFound,
    register_sqlstates,
)
from ledger.ids import normalize_code, parse_invoice_id
from ledger.invoices import get_invoice
from ledger.money import DECIMALS

__all__ = [
    "BelowCursor",
    "ChainTransfer",
    "InvalidContact",
    "InvalidResolution",
    "InvoiceContact",
    "InvoiceNotTon",
    "InvoiceTransfers",
    "NotEnoughForInvoice",
    "NothingHeld",
    "Resolution",
    "TransferNotFound",
    "TransferRecord",
    "TransferResult",
    "claim_excess",
    "get_cursor",
    "invoice_contacts",
    "list_transfers",
    "normalize_tx_hash",
    "record_invoice_contact",
    "record_transfer",
    "resolve_transfer",
    "start_cursor",
    "transfers_for_invoice",
]

COMMENT_MAX = 2000  # stored characters of a comment (a comment can be ~127 KB on chain)
OUTCOMES = ("paid", "partial", "excess", "late_or_duplicate", "unmatched", "deposit", "ignored")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_TELEGRAM = re.compile(r"[A-Za-z0-9_]{5,32}")


class BelowCursor(LedgerError):
    code = "below_cursor"
    message = "This transaction is at or before the chain cursor but was never settled."


class TransferNotFound(LedgerError):
    code = "transfer_not_found"
    message = "No incoming transfer with this transaction hash."


class NothingHeld(LedgerError):
    code = "nothing_held"
    message = "Nothing is held for this transfer (settled, ignored, or already resolved)."


class InvoiceNotTon(LedgerError):
    code = "invoice_not_ton"
    message = "This invoice has no TON price."


class NotEnoughForInvoice(AmountShortfall):
    code = "not_enough_for_invoice"
    message = "The held amount does not cover the invoice's TON price."


class HoldOfInvoice(LedgerError):
    code = "hold_of_invoice"
    message = "This partial payment already counts toward that invoice."


class InvalidResolution(LedgerError):
    code = "invalid_resolution"
    message = "Choose exactly one of: apply to an invoice, credit a user, or record a refund."


class InvalidContact(LedgerError):
    code = "invalid_contact"
    message = "Leave a valid email address or Telegram username."


register_sqlstates({
    "PB101": BelowCursor,
    "PB110": TransferNotFound,
    "PB111": NothingHeld,
    "PB112": InvoiceNotTon,
    "PB113": NotEnoughForInvoice,
    "PB114": HoldOfInvoice,
})



# --- what the watcher hands in, and what it gets back --------------------------------------


@dataclass(frozen=True, slots=True)
class ChainTransfer:
    """One transaction of the followed account, decoded and matched by the watcher."""

    address: str  # the followed account, raw "0:hex"
    tx_hash: str  # 64 lowercase hex
    lt: int
    utime: int
    prev_lt: int  # the account's previous transaction: what the cursor follows
    prev_hash: str
    incoming: bool
    source: str | None
    value_nano: int
    body_kind: str
    comment: str | None
    ignore_reason: str | None = None  # not a customer payment (bounced, aborted, outgoing...)
    invoice_id: str | None = None  # canonical public id found in the comment
    deposit_code: str | None = None  # canonical deposit code found in the comment
    payer_tag: str | None = None  # canonical payer tag of `INV-<id>-<tag>` (ledger/payers.py)


@dataclass(frozen=True, slots=True)
class TransferResult:
    transfer_id: int
    outcome: str
    replayed: bool  # this transaction had been settled before: nothing happened now
    invoice_status: str | None
    payment_id: int | None
    claim_token: str | None
    held_nano: int
    credited: int | None


def _clean_comment(comment: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL; a comment is attacker-controlled and must never make the
    # insert (and so the watcher) fail. The full text stays on chain.
    if comment is None:
        return None
    return comment.replace("\x00", "\ufffd")[:COMMENT_MAX]


def _check_rate(currency: str, ton_rate: Decimal) -> None:
    if currency not in DECIMALS:
        raise ValueError(f"unknown balance currency {currency!r}")
    if not isinstance(ton_rate, Decimal) or not ton_rate > 0:
        raise ValueError(f"the TON rate must be a positive Decimal, got {ton_rate!r}")


async def record_transfer(
    db: Executor, t: ChainTransfer, *, currency: str, ton_rate: Decimal
) -> TransferResult:
    """Settle one chain transaction exactly once, recording it after its predecessor (the
    cursor advance) in the same database transaction.

    `currency`/`ton_rate`: the internal balance currency and its rate (units per TON) for
    deposits and excess credits. The same transaction again returns the first outcome
    (`replayed`), also when two calls race. A transaction at or before the cursor's base that
    was never recorded raises BelowCursor (start the cursor first: `start_cursor`).
    """
    _check_rate(currency, ton_rate)
    if not _HEX64.fullmatch(t.tx_hash) or not _HEX64.fullmatch(t.prev_hash):
        raise ValueError("transaction hashes must be 64 lowercase hex characters")
    if t.value_nano < 0:
        raise ValueError("a transfer value cannot be negative")
    with typed_errors():
        row = await fetch_one(
            db,
            """
            SELECT * FROM paybot_ton_receive(:address, :hash, :lt, :utime, :prev_lt, :prev_hash,
                :incoming, :source, :value, :body_kind, :comment, :ignore, :invoice, :deposit,
                :currency, :rate, :claim, :tag)
            """,
            address=t.address, hash=t.tx_hash, lt=t.lt, utime=t.utime, prev_lt=t.prev_lt,
            prev_hash=t.prev_hash, incoming=t.incoming, source=t.source, value=t.value_nano,
            body_kind=t.body_kind, comment=_clean_comment(t.comment), ignore=t.ignore_reason,
            invoice=t.invoice_id, deposit=t.deposit_code, currency=currency, rate=ton_rate,
            claim=secrets.token_urlsafe(24),
            tag=normalize_code(t.payer_tag)[:16] if t.invoice_id and t.payer_tag else None,
        )
    assert row is not None
    return TransferResult(
        transfer_id=row["transfer_id"], outcome=row["outcome"], replayed=row["replayed"],
        invoice_status=row["invoice_status"], payment_id=row["payment_id"],
        claim_token=row["claim_token"], held_nano=row["held_nano"], credited=row["credited"],
    )


async def get_cursor(db: Executor, address: str) -> tuple[int, str] | None:
    """(lt, hash) of the newest transaction of `address` up to which every transaction is
    settled, or None when the watcher never started there. Moves the base row up to it."""
    row = await fetch_one(db, "SELECT * FROM paybot_ton_cursor(:a, true)", a=address)
    return None if row is None else (int(row["cursor_lt"]), str(row["cursor_hash"]))


async def start_cursor(db: Executor, address: str, lt: int, tx_hash: str) -> None:
    """Where settling starts on `address`: after transaction (lt, hash) — (0, "0"*64) for the
    account's first. Does nothing when the address already has a cursor."""
    if not _HEX64.fullmatch(tx_hash) or lt < 0:
        raise ValueError("a cursor is a non-negative lt and a 64-hex transaction hash")
    await fetch_one(
        db,
        "INSERT INTO ton_cursors (address, lt, hash) VALUES (:a, :lt, :h) "
        "ON CONFLICT (address) DO NOTHING RETURNING address",
        a=address, lt=lt, h=tx_hash,
    )


# --- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TransferRecord:
    id: int
    tx_hash: str
    lt: int
    utime: datetime
    incoming: bool
    source: str | None
    value_nano: int
    body_kind: str
    comment: str | None
    outcome: str
    note: str | None
    invoice: str | None  # public id
    user_id: int | None
    payment_id: int | None
    claim_token: str | None
    excess_nano: int
    held_nano: int  # put in suspense when it arrived
    credited: int | None
    credited_currency: str | None
    open_hold_nano: int  # still in suspense now (0 once released)
    open_hold_reason: str | None

    @classmethod
    def from_row(cls, row: Any) -> TransferRecord:
        return cls(**{f: row[f] for f in cls.__slots__})  # type: ignore[attr-defined]


_SELECT_TRANSFERS = """
SELECT t.id, t.tx_hash, t.lt, t.utime, t.incoming, t.source, t.value_nano, t.body_kind,
       t.comment, t.outcome, t.note, i.public_id AS invoice, t.user_id, t.payment_id,
       t.claim_token, t.excess_nano, t.held_nano, t.credited, t.credited_currency,
       coalesce(h.amount_nano, 0) AS open_hold_nano, h.reason AS open_hold_reason
  FROM ton_transfers t
  LEFT JOIN invoices i ON i.id = t.invoice_id
  LEFT JOIN ton_holds h ON h.transfer_id = t.id AND h.released_at IS NULL
"""


async def list_transfers(
    db: Executor, *, unmatched: bool = False, limit: int = 50, before_id: int | None = None,
) -> list[TransferRecord]:
    """Incoming transfers, newest first. `unmatched`: only those with money still held in
    suspense (unmatched, late/duplicate, partial, a guest's excess) — what needs an operator."""
    if not 1 <= limit <= 1000:
        raise ValueError("limit must be between 1 and 1000")
    rows = await fetch_all(
        db,
        _SELECT_TRANSFERS + """
         WHERE t.incoming
           AND (NOT :unmatched OR h.id IS NOT NULL)
           AND (CAST(:before AS bigint) IS NULL OR t.id < :before)
         ORDER BY t.id DESC LIMIT :limit
        """,
        unmatched=unmatched, before=before_id, limit=limit,
    )
    return [TransferRecord.from_row(r) for r in rows]


@dataclass(frozen=True, slots=True)
class Claim:
    token: str
    claimed: bool
    payment_id: int


@dataclass(frozen=True, slots=True)
class InvoiceTransfers:
    """What arrived on chain for one invoice — for the pay page."""

    invoice: str
    status: str
    kind: str
    ton_quote: int | None  # nanotons per payment
    ton_received: int  # nanotons received toward it (partials, payments and their excess)
    partial_nano: int  # received but not enough yet: waiting for the rest
    excess_held_nano: int  # overpaid by a guest: held for claim or refund
    transfers: list[TransferRecord] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)  # guests' claims of TON payments
    # The claim to show on the pay page: a one-time invoice paid by a guest, not yet claimed.
    claim_token: str | None = None


async def transfers_for_invoice(db: Executor, invoice_public_id: str) -> InvoiceTransfers:
    """Transfers that named this invoice, what was received, and the guest's claim token."""
    inv = await get_invoice(db, invoice_public_id)
    rows = await fetch_all(
        db, _SELECT_TRANSFERS + " WHERE t.invoice_id = :id ORDER BY t.lt", id=inv.id
    )
    held = await fetch_one(
        db,
        """
        SELECT coalesce(sum(amount_nano) FILTER (WHERE reason = 'partial'), 0) AS partial,
               coalesce(sum(amount_nano) FILTER (WHERE reason = 'excess'), 0) AS excess
          FROM ton_holds WHERE invoice_id = :id AND released_at IS NULL
        """,
        id=inv.id,
    )
    claim_rows = await fetch_all(
        db,
        """
        SELECT g.claim_token, g.user_id IS NOT NULL AS claimed, g.payment_id
          FROM grants g JOIN payments p ON p.id = g.payment_id
         WHERE g.invoice_id = :id AND g.claim_token IS NOT NULL AND p.method = 'ton'
         ORDER BY g.id
        """,
        id=inv.id,
    )
    claims = [Claim(r["claim_token"], r["claimed"], r["payment_id"]) for r in claim_rows]
    open_claim = None
    if inv.kind == "one_time":
        open_claim = next((c.token for c in claims if not c.claimed), None)
    assert held is not None
    return InvoiceTransfers(
        invoice=inv.public_id, status=inv.status, kind=inv.kind, ton_quote=inv.ton_amount,
        ton_received=inv.ton_received, partial_nano=int(held["partial"]),
        excess_held_nano=int(held["excess"]),
        transfers=[TransferRecord.from_row(r) for r in rows], claims=claims,
        claim_token=open_claim,
    )


# --- releasing held money -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resolution:
    hold_id: int
    action: str  # apply | credit | refund
    amount_nano: int  # what was released from suspense
    outcome: str | None  # for apply: paid | excess
    invoice_status: str | None
    payment_id: int | None
    claim_token: str | None
    credited: int | None  # minor units put on a balance
    held_nano: int  # an excess of an applied transfer that stays held (guest invoice)


def normalize_tx_hash(raw: str) -> str:
    """A transaction hash as 64 lowercase hex; explorers also show it in base64."""
    text = (raw or "").strip()
    if _HEX64.fullmatch(text.lower()):
        return text.lower()
    try:
        data = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        data = b""
    if len(data) != 32:
        raise TransferNotFound(text[:64])
    return data.hex()


async def resolve_transfer(
    db: Executor,
    tx_hash: str,
    *,
    apply_invoice: str | None = None,
    credit_user_id: int | None = None,
    refund_note: str | None = None,
    note: str | None = None,
    currency: str,
    ton_rate: Decimal,
) -> Resolution:
    """Release what a transfer left in suspense, once, through the ledger: apply it to an
    invoice (settled like a transfer with its comment), credit a user's balance at the rate,
    or record that it was refunded on chain. A second attempt raises NothingHeld."""
    _check_rate(currency, ton_rate)
    chosen = [x is not None for x in (apply_invoice, credit_user_id, refund_note)]
    if sum(chosen) != 1:
        raise InvalidResolution()
    invoice = None
    if apply_invoice is not None:
        invoice = parse_invoice_id(re.sub(r"(?i)^\s*inv-", "", apply_invoice))
        if invoice is None:
            raise InvoiceNotFound(apply_invoice[:40])
    if refund_note is not None and not refund_note.strip():
        raise InvalidResolution("a refund needs a note (e.g. the refund transaction)")
    action = "apply" if invoice else "credit" if credit_user_id is not None else "refund"
    with typed_errors():
        row = await fetch_one(
            db,
            """
            SELECT * FROM paybot_ton_resolve(:hash, :action, :invoice, :user, :note,
                                             :currency, :rate, :claim)
            """,
            hash=normalize_tx_hash(tx_hash), action=action, invoice=invoice,
            user=credit_user_id, note=(refund_note or note or None), currency=currency,
            rate=ton_rate, claim=secrets.token_urlsafe(24),
        )
    assert row is not None
    return Resolution(
        hold_id=row["hold_id"], action=row["release"], amount_nano=row["amount_nano"],
        outcome=row["outcome"], invoice_status=row["invoice_status"],
        payment_id=row["payment_id"], claim_token=row["claim_token"], credited=row["credited"],
        held_nano=row["held_nano"],
    )


async def claim_excess(
    db: Executor, claim_token: str, user_id: int, *, currency: str, ton_rate: Decimal
) -> int:
    """A guest who overpaid and then claimed the purchase (claim_grant) gets the excess on
    their balance. Returns the minor units credited (0: nothing held under this claim, or the
    grant was not claimed by this user). Once."""
    _check_rate(currency, ton_rate)
    if not claim_token or len(claim_token) > 100:
        return 0
    try:
        with typed_errors():
            rows = await fetch_all(
                db,
                """
                SELECT r.credited FROM ton_holds h
                  JOIN grants g ON g.claim_token = h.claim_token AND g.user_id = :user
                 CROSS JOIN LATERAL paybot_ton_release(h.id, 'credit', NULL, :user,
                                                       'excess claimed with the purchase',
                                                       :currency, :rate, NULL) r
                 WHERE h.claim_token = :token AND h.reason = 'excess' AND h.released_at IS NULL
                """,
                token=claim_token, user=user_id, currency=currency, rate=ton_rate,
            )
    except NothingHeld:
        return 0  # a concurrent claim released it first
    return sum(int(r["credited"] or 0) for r in rows)


# --- contacts left on the pay page --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InvoiceContact:
    id: int
    invoice: str
    user_id: int | None
    email: str | None
    telegram: str | None
    created_at: datetime


def _clean_telegram(raw: str) -> str:
    text = raw.strip()
    for prefix in ("https://t.me/", "http://t.me/", "t.me/", "@"):
        text = text.removeprefix(prefix)
    if not _TELEGRAM.fullmatch(text):
        raise InvalidContact("a Telegram username is 5-32 letters, digits or underscores")
    return text


def _clean_email(raw: str) -> str:
    text = raw.strip()
    if len(text) > 254 or not _EMAIL.fullmatch(text):
        raise InvalidContact("not an email address")
    return text


async def record_invoice_contact(
    db: Executor,
    invoice_public_id: str,
    *,
    user_id: int | None = None,
    email: str | None = None,
    telegram: str | None = None,
) -> InvoiceContact:
    """Remember who said they are about to pay an invoice by TON (for the seller or the
    operator). It decides nothing: the payer of a transfer is the one its payer tag names
    (ledger/payers.py) — "whoever said so" would hand a guest's item to whoever was there.
    """
    email = _clean_email(email) if email else None
    telegram = _clean_telegram(telegram) if telegram else None
    if user_id is None and email is None and telegram is None:
        raise InvalidContact()
    inv = await get_invoice(db, invoice_public_id)
    try:
        row = await fetch_one(
            db,
            """
            INSERT INTO invoice_contacts (invoice_id, user_id, email, telegram)
            VALUES (:invoice, :user, :email, :telegram)
            RETURNING id, user_id, email, telegram, created_at
            """,
            invoice=inv.id, user=user_id, email=email, telegram=telegram,
        )
    except IntegrityError as exc:  # the only foreign key that can fail here is the user
        raise UserNotFound(str(user_id)) from exc
    assert row is not None
    return InvoiceContact(row["id"], inv.public_id, row["user_id"], row["email"],
                          row["telegram"], row["created_at"])


async def invoice_contacts(db: Executor, invoice_public_id: str) -> list[InvoiceContact]:
    inv = await get_invoice(db, invoice_public_id)
    rows = await fetch_all(
        db,
        """
        SELECT id, user_id, email, telegram, created_at FROM invoice_contacts
         WHERE invoice_id = :id ORDER BY id
        """,
        id=inv.id,
    )
    return [InvoiceContact(r["id"], inv.public_id, r["user_id"], r["email"], r["telegram"],
                           r["created_at"]) for r in rows]
