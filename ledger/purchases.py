"""What was bought and from whom, and who paid: the reads behind a buyer's inventory, the
payment lines of a statement, and the "who paid" a seller sees (notice, list, page, API).

A payer is the Telegram user who paid (or who claimed a guest's purchase); for a guest nobody
knows yet, the contact the guest left (an e-mail or a @handle), when it can only be theirs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger.db import Executor, fetch_all, fetch_one
from ledger.invoice_reads import get_invoice
from ledger.models import User

_USER_COLUMNS = ("id", "telegram_id", "username", "language", "deposit_code", "first_name",
                 "last_name")


def user_columns(alias: str, prefix: str) -> str:
    """`alias.id AS <prefix>id, ...`: a user row joined into another query."""
    return ", ".join(f"{alias}.{c} AS {prefix}{c}" for c in _USER_COLUMNS)


def joined_user(row: Any, prefix: str) -> User | None:
    """The user selected with user_columns(…, prefix), None when the join found nobody."""
    if row[f"{prefix}id"] is None:
        return None
    return User(*(row[f"{prefix}{c}"] for c in _USER_COLUMNS))


@dataclass(frozen=True, slots=True)
class Payer:
    """Who paid an invoice (its latest payment): a user, or a guest's contact, or neither."""

    user: User | None
    contact: str | None  # a guest's e-mail or "@handle"; None when the payer is a user

    @property
    def known(self) -> bool:
        return self.user is not None or self.contact is not None


@dataclass(frozen=True, slots=True)
class Purchase:
    """One thing a user holds: what it is, the invoice it was bought with, from whom."""

    grant_id: int
    item_id: str | None
    achievement_id: str | None
    invoice_public_id: str | None
    invoice_number: str | None
    title: str | None
    amount: int | None
    currency: str | None
    seller: User | None
    acquired_at: datetime


# The payer of each payment: the user who paid, else the user who claimed the guest's grant
# (or proved the guest's tag). For a guest still unknown: the contact left with the payer tag
# the transfer carried (ledger/payers.py), else the contact left on the invoice when there is
# exactly one (with several guests' contacts nobody can tell whose money it was, and a wrong
# name is worse than none).
_PAYER_SQL = f"""
    SELECT p.id AS payment_id, p.invoice_id, {user_columns("u", "u_")},
           CASE WHEN u.id IS NULL THEN coalesce(
               (SELECT pt.contact FROM ton_transfers t JOIN payer_tags pt ON pt.id = t.payer_tag_id
                 WHERE t.invoice_id = p.invoice_id AND t.payment_id = p.id
                 ORDER BY t.id LIMIT 1),
               (SELECT CASE WHEN count(DISTINCT coalesce(c.email, c.telegram)) = 1
                            THEN max(coalesce(c.email, '@' || c.telegram)) END
                  FROM invoice_contacts c
                 WHERE c.invoice_id = p.invoice_id AND c.user_id IS NULL)) END AS contact
      FROM payments p
      LEFT JOIN grants g ON g.payment_id = p.id
      LEFT JOIN users u ON u.id = coalesce(p.payer_id, g.user_id)
"""


def _payer(row: Any) -> Payer:
    user = joined_user(row, "u_")
    return Payer(user, None if user is not None else row["contact"])


async def payer_of_payment(db: Executor, payment_id: int) -> Payer:
    row = await fetch_one(db, _PAYER_SQL + " WHERE p.id = :id", id=payment_id)
    return Payer(None, None) if row is None else _payer(row)


async def payers_of_payments(db: Executor, payment_ids: Iterable[int]) -> dict[int, Payer]:
    """payments.id -> its payer, in one query (a batch of callbacks names each its own)."""
    ids = sorted(set(payment_ids))
    if not ids:
        return {}
    rows = await fetch_all(db, _PAYER_SQL + " WHERE p.id = ANY(CAST(:ids AS bigint[]))",
                           ids=ids)
    return {int(r["payment_id"]): _payer(r) for r in rows}


async def payers_of_invoices(db: Executor, invoice_ids: Iterable[int]) -> dict[int, Payer]:
    """invoices.id -> the payer of its latest payment (invoices without one are left out)."""
    ids = sorted(set(invoice_ids))
    if not ids:
        return {}
    rows = await fetch_all(
        db,
        f"""
        SELECT * FROM ({_PAYER_SQL}
                        WHERE p.id IN (SELECT (SELECT id FROM payments
                                                WHERE invoice_id = x ORDER BY id DESC LIMIT 1)
                                         FROM unnest(CAST(:ids AS bigint[])) x)) y
        """,
        ids=ids,
    )
    return {int(r["invoice_id"]): _payer(r) for r in rows}


async def purchases_of_user(db: Executor, user_id: int, limit: int = 50) -> list[Purchase]:
    """What the user holds, newest first, each with its invoice and seller."""
    rows = await fetch_all(
        db,
        f"""
        SELECT g.id, g.item_id, g.achievement_id, coalesce(g.claimed_at, g.created_at) AS at,
               i.public_id, i.number, i.title, coalesce(p.amount, i.amount) AS amount,
               coalesce(p.currency, i.currency) AS currency, {user_columns("s", "s_")}
          FROM grants g
          LEFT JOIN payments p ON p.id = g.payment_id
          LEFT JOIN invoices i ON i.id = coalesce(g.invoice_id, p.invoice_id)
          LEFT JOIN users s ON s.id = i.seller_id
         WHERE g.user_id = :user AND g.revoked_at IS NULL  -- refunded: no longer held
         ORDER BY g.id DESC LIMIT :limit
        """,
        user=user_id, limit=limit,
    )
    return [
        Purchase(r["id"], r["item_id"], r["achievement_id"], r["public_id"], r["number"],
                 r["title"], r["amount"], r["currency"], joined_user(r, "s_"), r["at"])
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class InvoiceContact:
    id: int
    invoice: str
    user_id: int | None
    email: str | None
    telegram: str | None
    created_at: datetime

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
