"""What an operator sees and does with incoming chain transfers (`paybot admin transfers`,
`paybot admin resolve`): the list with outcomes and what is still held, one invoice's
transfers, and releasing what a transfer left in suspense — once, through the ledger
(paybot_ton_resolve, ledger/sql/ton_holds.sql)."""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from ledger.db import Executor, fetch_all, fetch_one, typed_errors
from ledger.errors import (
    InvalidResolution,
    InvoiceNotFound,
    NothingHeld,
    TransferNotFound,
)
from ledger.ids import parse_invoice_id
from ledger.invoice_reads import get_invoice
from ledger.transfers import HEX64, check_rate


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
    if HEX64.fullmatch(text.lower()):
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
    check_rate(currency, ton_rate)
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
    check_rate(currency, ton_rate)
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
