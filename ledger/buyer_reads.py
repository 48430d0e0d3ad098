"""What a buyer is shown of their own affairs (the Mini App's buyer view): invoices sent to them
and still to pay, their subscriptions, their balances, and their history — what they paid, to
whom, how, and what moved on their balance — a page at a time.

Plain reads, each bounded by the buyer's own rows through an index: invoices by `sent_to`
(pending ones only), subscriptions by subscriber, payments through the buyer's grants (a grant
names whoever paid, or whoever claimed a guest's purchase: ledger/payers.py `bind_user`), balance
moves through the buyer's accounts. Nothing here can show another user's invoice or payment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from ledger.db import Executor, fetch_all
from ledger.models import User
from ledger.purchases import joined_user, user_columns

# Balance moves a buyer recognises as their own (payments are listed from the payments
# themselves; a seller's takings are not the buyer view's).
BALANCE_KINDS: Final = ("deposit", "topup", "payout", "payout_return", "adjustment", "excess")
PAYMENT: Final = 0  # the `source` of a history line: a payment, or (BALANCE) a balance entry
BALANCE: Final = 1


@dataclass(frozen=True, slots=True)
class ToPay:
    """An invoice sent to the buyer, still payable."""

    public_id: str
    number: str
    title: str
    seller: User | None
    currency: str
    amount: int
    amount_due: int
    due_at: datetime | None
    expires_at: datetime
    overdue: bool


@dataclass(frozen=True, slots=True)
class BuyerSubscription:
    public_id: str
    plan_public_id: str
    plan_name: str
    seller: User | None
    status: str
    months: int
    amount: int
    currency: str
    current_period_end: datetime
    cancel_at_period_end: bool
    trial_end: datetime | None
    grace_until: datetime | None
    ended_at: datetime | None


@dataclass(frozen=True, slots=True, order=True)
class HistoryPosition:
    """Where a history page ended: lines are ordered by (at, source, id), newest first."""

    at: datetime
    source: int
    id: int


@dataclass(frozen=True, slots=True)
class HistoryLine:
    position: HistoryPosition
    kind: str  # "payment", or a balance move's transaction kind (BALANCE_KINDS)
    amount: int  # a payment: what was paid (> 0); a balance move: signed, as the entry
    currency: str
    method: str | None  # a payment's method: internal, ton, usdt, stars, card:<provider>, manual
    invoice_public_id: str | None
    invoice_number: str | None
    title: str | None
    seller: User | None
    reversed_at: datetime | None  # a manual payment undone by the seller
    refund: str | None  # a card or Stars payment's refund: "pending" or "done"


async def invoices_to_pay(db: Executor, user_id: int, now: datetime | None = None,
                          limit: int = 50) -> list[ToPay]:
    """Invoices sent to the user, and the open period invoices of the user's subscriptions (a
    first period or a renewal waiting for payment), open and not expired, the earliest due first
    (those without a due date last, oldest first)."""
    now = now or datetime.now(UTC)
    rows = await fetch_all(
        db,
        f"""
        SELECT i.public_id, i.number, i.title, i.currency, i.amount, i.due_at, i.expires_at,
               CASE WHEN i.kind = 'one_time'
                    THEN CASE WHEN i.uses > 0 THEN 0 ELSE i.amount - i.amount_paid END
                    ELSE i.amount END AS amount_due,
               {user_columns("s", "s_")}
          FROM invoices i
          JOIN users s ON s.id = i.seller_id
         WHERE i.id IN (SELECT x.id FROM invoices x  -- index invoices_sent_to_open
                         WHERE x.sent_to = :user AND x.status = 'pending'
                        UNION
                        SELECT p.invoice_id FROM subscriptions b  -- subscriptions_subscriber
                          JOIN subscription_periods p ON p.subscription_id = b.id
                         WHERE b.subscriber_id = :user
                           AND b.status IN ('incomplete', 'active', 'past_due')
                           AND p.status = 'open' AND p.invoice_id IS NOT NULL)
           AND i.status = 'pending' AND i.expires_at > :now
         ORDER BY i.due_at ASC NULLS LAST, i.id ASC
         LIMIT :limit
        """,
        user=user_id, now=now, limit=limit,
    )
    return [
        ToPay(r["public_id"], r["number"], r["title"], joined_user(r, "s_"), r["currency"],
              r["amount"], r["amount_due"], r["due_at"], r["expires_at"],
              r["due_at"] is not None and r["due_at"] < now)
        for r in rows if r["amount_due"] > 0
    ]


async def subscriptions_of_buyer(db: Executor, user_id: int,
                                 limit: int = 50) -> list[BuyerSubscription]:
    """The user's subscriptions, live ones first, then the newest."""
    rows = await fetch_all(
        db,
        f"""
        SELECT s.public_id, p.public_id AS plan_public_id, p.name AS plan_name, s.status,
               s.months, s.amount, s.currency, s.current_period_end, s.cancel_at_period_end,
               s.trial_end, s.grace_until, s.ended_at, {user_columns("u", "s_")}
          FROM subscriptions s
          JOIN plans p ON p.id = s.plan_id
          JOIN users u ON u.id = s.seller_id
         WHERE s.subscriber_id = :user
         ORDER BY s.ended_at IS NOT NULL, s.id DESC
         LIMIT :limit
        """,
        user=user_id, limit=limit,
    )
    return [
        BuyerSubscription(r["public_id"], r["plan_public_id"], r["plan_name"],
                          joined_user(r, "s_"), r["status"], r["months"], r["amount"],
                          r["currency"], r["current_period_end"], r["cancel_at_period_end"],
                          r["trial_end"], r["grace_until"], r["ended_at"])
        for r in rows
    ]


async def balances_of_user(db: Executor, user_id: int) -> dict[str, int]:
    """currency -> what the user can spend (credits not folded in yet included), for every
    account the user has."""
    rows = await fetch_all(
        db,
        """
        SELECT a.currency,
               a.balance + coalesce((SELECT sum(e.amount) FROM entries e
                                      WHERE e.account_id = a.id AND e.balance_after IS NULL), 0)
                   AS total
          FROM accounts a WHERE a.user_id = :user
         ORDER BY a.currency
        """,
        user=user_id,
    )
    return {r["currency"]: int(r["total"]) for r in rows}


_HISTORY_SQL = f"""
WITH paid AS (
    SELECT p.created_at AS at, {PAYMENT} AS source, p.id, 'payment' AS kind, p.amount,
           p.currency, p.method, i.public_id, i.number, i.title, i.seller_id,
           r.created_at AS reversed_at,
           (SELECT f.status FROM rail_payments rp JOIN rail_refunds f ON f.rail_payment_id = rp.id
             WHERE rp.payment_id = p.id AND f.status IN ('pending', 'done')
             ORDER BY f.id DESC LIMIT 1) AS refund
      FROM grants g
      JOIN payments p ON p.id = g.payment_id
      JOIN invoices i ON i.id = p.invoice_id
      LEFT JOIN payment_reversals r ON r.payment_id = p.id
     WHERE g.user_id = :user
       AND (CAST(:at AS timestamptz) IS NULL
            OR (p.created_at, {PAYMENT}, p.id) < (CAST(:at AS timestamptz), :source, :id))
     ORDER BY p.created_at DESC, p.id DESC
     LIMIT :limit
), moved AS (
    SELECT e.created_at AS at, {BALANCE} AS source, e.id, t.kind, e.amount, a.currency,
           NULL::text AS method, NULL::text AS public_id, NULL::text AS number,
           NULL::text AS title, NULL::bigint AS seller_id, NULL::timestamptz AS reversed_at,
           NULL::text AS refund
      FROM accounts a
      JOIN entries e ON e.account_id = a.id
      JOIN ledger_transactions t ON t.id = e.tx_id
     WHERE a.user_id = :user AND t.kind = ANY(CAST(:kinds AS text[]))
       AND (CAST(:at AS timestamptz) IS NULL
            OR (e.created_at, {BALANCE}, e.id) < (CAST(:at AS timestamptz), :source, :id))
     ORDER BY e.created_at DESC, e.id DESC
     LIMIT :limit
)
SELECT h.*, {user_columns("s", "s_")}
  FROM (SELECT * FROM paid UNION ALL SELECT * FROM moved) h
  LEFT JOIN users s ON s.id = h.seller_id
 ORDER BY h.at DESC, h.source DESC, h.id DESC
 LIMIT :limit
"""


def _line(r: Any) -> HistoryLine:
    return HistoryLine(HistoryPosition(r["at"], r["source"], r["id"]), r["kind"], r["amount"],
                       r["currency"], r["method"], r["public_id"], r["number"], r["title"],
                       joined_user(r, "s_"), r["reversed_at"], r["refund"])


async def buyer_history(db: Executor, user_id: int, after: HistoryPosition | None = None,
                        limit: int = 20) -> tuple[list[HistoryLine], HistoryPosition | None]:
    """One page of the user's history, newest first: their payments (whatever paid them) and
    their balance moves (deposits, top-ups, withdrawals, adjustments). Returns the page and the
    position to pass as `after` for the next one (None at the end)."""
    rows = await fetch_all(
        db, _HISTORY_SQL, user=user_id, kinds=list(BALANCE_KINDS), limit=limit + 1,
        at=after.at if after else None, source=after.source if after else 0,
        id=after.id if after else 0,
    )
    lines = [_line(r) for r in rows[:limit]]
    return lines, (lines[-1].position if len(rows) > limit else None)
