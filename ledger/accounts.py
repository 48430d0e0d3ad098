"""Balances, deposits, operator adjustments and statements."""

from __future__ import annotations

from ledger.db import Executor, fetch_all, fetch_one
from ledger.errors import InvalidAmount
from ledger.models import Movement, StatementLine
from ledger.money import DECIMALS, check_amount
from ledger.purchases import joined_user, user_columns

SYSTEM_ACCOUNTS = ("chain_inflow", "adjustments", "fees", "suspense", "fx")


async def _move(
    db: Executor, kind: str, user_id: int, system: str, currency: str, amount: int,
    reason: str | None, reference: str | None,
) -> Movement:
    if currency not in DECIMALS:
        raise InvalidAmount(f"unknown currency {currency!r}")
    row = await fetch_one(
        db,
        "SELECT * FROM paybot_move(:kind, :user, :system, :currency, :amount, :reason, :ref)",
        kind=kind, user=user_id, system=system, currency=currency, amount=amount,
        reason=reason, ref=reference,
    )
    assert row is not None
    return Movement(ledger_tx_id=row["ledger_tx_id"], replayed=row["replayed"])


async def credit_deposit(
    db: Executor, user_id: int, amount: int, currency: str, reference: str
) -> Movement:
    """Money that arrived for the user (e.g. a TON top-up), once per reference."""
    check_amount(amount)
    return await _move(db, "deposit", user_id, "chain_inflow", currency, amount,
                       "deposit", reference)


async def adjust_balance(
    db: Executor, user_id: int, amount: int, currency: str, reason: str,
    reference: str | None = None,
) -> Movement:
    """Operator correction: positive credits, negative debits (never below zero)."""
    if not reason or not reason.strip():
        raise InvalidAmount("an adjustment needs a reason")
    check_amount(abs(amount))
    return await _move(db, "adjustment", user_id, "adjustments", currency, amount,
                       reason.strip(), reference)


async def balance(db: Executor, user_id: int, currency: str = "LIQ") -> int:
    """Applied balance plus credits not folded in yet: what the user can spend."""
    row = await fetch_one(
        db,
        """
        SELECT a.balance + coalesce((SELECT sum(e.amount) FROM entries e
                                      WHERE e.account_id = a.id AND e.balance_after IS NULL), 0)
               AS total
          FROM accounts a WHERE a.user_id = :user AND a.currency = :currency
        """,
        user=user_id, currency=currency,
    )
    return int(row["total"]) if row else 0


async def apply_pending_credits(db: Executor, limit: int = 1000) -> int:
    """Fold pending credits into balances (a scheduled job), one account per transaction so
    no account stays locked longer than its own fold. Returns the accounts touched."""
    rows = await fetch_all(
        db,
        "SELECT DISTINCT account_id FROM entries WHERE balance_after IS NULL LIMIT :limit",
        limit=limit,
    )
    for row in rows:
        await fetch_one(db, "SELECT apply_pending_credits(:a)", a=row["account_id"])
    return len(rows)


async def statement(
    db: Executor, user_id: int, currency: str = "LIQ", limit: int = 50
) -> list[StatementLine]:
    """The user's latest entries, newest first. `balance_after` is None for a credit that has
    not been folded into the balance yet (it already counts in `balance()`). A payment's line
    names its invoice and the other party: the seller for the buyer, the payer (or whoever
    claimed a guest's purchase) for the seller."""
    rows = await fetch_all(
        db,
        f"""
        SELECT e.id, e.created_at, t.kind, t.reason, e.amount, e.balance_after,
               i.number, i.title, {user_columns("cp", "cp_")}
          FROM accounts a
          JOIN entries e ON e.account_id = a.id
          JOIN ledger_transactions t ON t.id = e.tx_id
          LEFT JOIN payments p ON p.ledger_tx_id = t.id
                              AND t.kind IN ('invoice_payment', 'external_payment')
          LEFT JOIN invoices i ON i.id = p.invoice_id
          LEFT JOIN grants g ON g.payment_id = p.id
          LEFT JOIN users cp ON cp.id = CASE WHEN i.seller_id = a.user_id
                                             THEN coalesce(p.payer_id, g.user_id)
                                             ELSE i.seller_id END
         WHERE a.user_id = :user AND a.currency = :currency
         ORDER BY e.id DESC LIMIT :limit
        """,
        user=user_id, currency=currency, limit=limit,
    )
    return [
        StatementLine(r["id"], r["created_at"], r["kind"], r["reason"], r["amount"],
                      r["balance_after"], r["number"], r["title"], joined_user(r, "cp_"))
        for r in rows
    ]
