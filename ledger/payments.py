"""Where an invoice gets paid. Each use case is one SQL function call = one transaction.

- pay_from_balance: the buyer's internal balance pays, here inside a caller's transaction (or
  alone); the edges call `Ledger.pay_from_balance` (ledger/core.py), where concurrent payments
  share database calls through ledger/batcher.py, each keeping its own outcome.
- settle_external_payment: money arrived elsewhere (TON transfer, operator-confirmed manual
  payment); the invoice is settled from the matching system account.
The SQL is ledger/sql/payments.sql (process_invoice_payments, settle_external_payment,
and paybot_fulfil, which completes a purchase for both).
"""

from __future__ import annotations

import secrets

from ledger.db import Executor, fetch_all, fetch_one
from ledger.errors import ClaimNotFound, InvalidAmount, InvoiceNotFound
from ledger.ids import parse_invoice_id
from ledger.models import Grant, PaymentResult

IDEMPOTENCY_KEY_MAX = 200


def canonical_invoice_id(public_id: str) -> str:
    """The canonical public id; InvoiceNotFound for one that cannot be an invoice's."""
    canonical = parse_invoice_id(public_id)
    if canonical is None:
        raise InvoiceNotFound(public_id[:40])
    return canonical


async def pay_from_balance(
    db: Executor, invoice_id: str, buyer_id: int, idempotency_key: str | None
) -> PaymentResult:
    """Debit buyer, credit seller, mark the invoice, record the payment, grant the item and
    queue notifications — all or nothing. The same key again returns the first result."""
    if idempotency_key is not None and not 0 < len(idempotency_key) <= IDEMPOTENCY_KEY_MAX:
        raise InvalidAmount("the idempotency key must be 1 to 200 characters")
    invoice = canonical_invoice_id(invoice_id)
    # The same SQL as the batched path, as a batch of one.
    row = await fetch_one(
        db, "SELECT * FROM process_invoice_payment(:invoice, :buyer, :key)",
        invoice=invoice, buyer=buyer_id, key=idempotency_key,
    )
    assert row is not None
    return PaymentResult(
        payment_id=row["payment_id"],
        replayed=row["replayed"],
        invoice_status=row["invoice_status"],
        grant_id=row["grant_id"],
        buyer_balance=row["buyer_balance"],
    )


async def settle_external_payment(
    db: Executor,
    invoice_id: str,
    *,
    method: str,
    reference: str,
    payer_id: int | None = None,
) -> PaymentResult:
    """Settle an invoice paid outside the balance, once per `reference` (e.g. a transaction
    hash). With no known payer the grant waits under a claim token (returned)."""
    if method not in ("ton", "manual"):
        raise ValueError(f"unknown external method {method!r}")
    if not reference:
        raise ValueError("an external payment needs a reference")
    row = await fetch_one(
        db,
        "SELECT * FROM settle_external_payment(:invoice, :method, :ref, :payer, :claim)",
        invoice=canonical_invoice_id(invoice_id),
        method=method,
        ref=reference,
        payer=payer_id,
        claim=secrets.token_urlsafe(24),
    )
    assert row is not None
    return PaymentResult(
        payment_id=row["payment_id"],
        replayed=row["replayed"],
        invoice_status=row["invoice_status"],
        grant_id=row["grant_id"],
        claim_token=row["claim_token"],
    )


async def claim_grant(db: Executor, claim_token: str, user_id: int) -> Grant:
    """Hand a guest's purchase to the Telegram user who opened the claim link (once)."""
    if not claim_token or len(claim_token) > 100:
        raise ClaimNotFound(claim_token[:40])
    row = await fetch_one(db, "SELECT * FROM claim_grant(:token, :user)",
                          token=claim_token, user=user_id)
    assert row is not None
    return Grant.from_row(row)


async def grants_of_user(db: Executor, user_id: int, limit: int = 50) -> list[Grant]:
    rows = await fetch_all(
        db, "SELECT * FROM grants WHERE user_id = :user AND revoked_at IS NULL"
            " ORDER BY id DESC LIMIT :limit",
        user=user_id, limit=limit,
    )
    return [Grant.from_row(r) for r in rows]
