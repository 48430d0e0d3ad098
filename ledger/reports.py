"""A seller's reports: the dashboard of a period, its top items, subscriptions' MRR and churn,
and the rows of its exports.

The dashboard reads rollups kept by ledger/sql/reports.sql in the transaction of each payment,
reversal and invoice change — revenue per day (`revenue_daily`), conversion per day of issue
(`invoices_daily`), revenue per month and item (`item_revenue_monthly`) — and a partial index
of open invoices (migration 0018), so its cost follows the days, items and open invoices asked
about, not the history. Exports stream their rows from one server-side cursor
(`EXPORT_BATCH` at a time): memory stays flat however long the period.

Periods are UTC dates, both ends included.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Final, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.db import Executor, fetch_all, typed_errors
from ledger.money import decimals

EXPORT_BATCH: Final = 1000
MAX_YEARS: Final = 5

ExportKind = Literal["payments", "invoices"]


@dataclass(frozen=True, slots=True)
class Sum:
    currency: str
    amount: int  # minor units
    count: int


@dataclass(frozen=True, slots=True)
class MonthRevenue:
    month: str  # YYYY-MM
    currency: str
    amount: int
    payments: int


@dataclass(frozen=True, slots=True)
class MethodRevenue:
    method: str
    currency: str
    amount: int
    payments: int


@dataclass(frozen=True, slots=True)
class Dashboard:
    start: date
    end: date  # included
    by_month: list[MonthRevenue]
    by_method: list[MethodRevenue]
    open: list[Sum]  # open invoices now: what is still due, per currency
    overdue: list[Sum]  # ...of which past their due date
    issued: int  # invoices issued in the period
    paid: int  # ...of which are paid now

    @property
    def conversion(self) -> float:
        return round(self.paid / self.issued, 4) if self.issued else 0.0


def period_error(start: date, end: date) -> str | None:
    """Why a period cannot be reported on, in one sentence, or None."""
    if start > end:
        return "from must not be after to"
    try:
        limit = start.replace(year=start.year + MAX_YEARS)
    except ValueError:  # 29 February
        limit = start.replace(year=start.year + MAX_YEARS, day=28)
    if end >= limit:
        return f"a period is at most {MAX_YEARS} years"
    return None


def _bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """The period as UTC instants, [start 00:00, the day after end 00:00)."""
    return (datetime.combine(start, time(), UTC),
            datetime.combine(end + timedelta(days=1), time(), UTC))


async def dashboard(db: Executor, seller_id: int, start: date, end: date,
                    now: datetime | None = None) -> Dashboard:
    rows = await fetch_all(
        db,
        """
        SELECT 'month' AS kind, to_char(date_trunc('month', day), 'YYYY-MM') AS key, currency,
               sum(amount) AS amount, sum(payments) AS n
          FROM revenue_daily
         WHERE seller_id = :seller AND day BETWEEN :start AND :end
         GROUP BY 2, 3
        UNION ALL
        SELECT 'method', method, currency, sum(amount), sum(payments)
          FROM revenue_daily
         WHERE seller_id = :seller AND day BETWEEN :start AND :end
         GROUP BY 2, 3
        UNION ALL
        SELECT 'open', NULL, currency, sum(amount - amount_paid), count(*)
          FROM invoices WHERE seller_id = :seller AND status = 'pending'
         GROUP BY currency
        UNION ALL
        SELECT 'overdue', NULL, currency, sum(amount - amount_paid), count(*)
          FROM invoices WHERE seller_id = :seller AND status = 'pending' AND due_at < :now
         GROUP BY currency
        UNION ALL
        SELECT 'issued', NULL, NULL, sum(paid), coalesce(sum(issued), 0)
          FROM invoices_daily
         WHERE seller_id = :seller AND day BETWEEN :start AND :end
        """,
        seller=seller_id, start=start, end=end, now=now or datetime.now(UTC),
    )
    by_month: list[MonthRevenue] = []
    by_method: list[MethodRevenue] = []
    open_: list[Sum] = []
    overdue: list[Sum] = []
    issued = paid = 0
    for r in rows:
        kind, amount, n = r["kind"], int(r["amount"] or 0), int(r["n"])
        if kind == "month":
            by_month.append(MonthRevenue(r["key"], r["currency"], amount, n))
        elif kind == "method":
            by_method.append(MethodRevenue(r["key"], r["currency"], amount, n))
        elif kind == "open":
            open_.append(Sum(r["currency"], amount, n))
        elif kind == "overdue":
            overdue.append(Sum(r["currency"], amount, n))
        else:
            issued, paid = n, amount
    by_month.sort(key=lambda m: (m.month, m.currency))
    by_method.sort(key=lambda m: (m.currency, -m.amount, m.method))
    open_.sort(key=lambda s: s.currency)
    overdue.sort(key=lambda s: s.currency)
    return Dashboard(start, end, by_month, by_method, open_, overdue, issued, paid)


@dataclass(frozen=True, slots=True)
class ItemRevenue:
    item: str  # the invoice's title
    currency: str
    amount: int
    payments: int


def months_of(start: date, end: date) -> tuple[date, date]:
    """The whole months a period touches: top items are kept per month, so they cover
    [the first day of start's month, the last day of end's month]."""
    last = (end.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    return start.replace(day=1), last


async def top_items(db: Executor, seller_id: int, start: date, end: date,
                    limit: int = 5) -> list[ItemRevenue]:
    """What sold best over the months of the period (months_of), net of reversals: per
    currency, the `limit` largest by revenue."""
    first, _ = months_of(start, end)
    rows = await fetch_all(
        db,
        """
        SELECT item, currency, amount, payments FROM (
            SELECT item, currency, sum(amount) AS amount, sum(payments) AS payments,
                   row_number() OVER (PARTITION BY currency
                                      ORDER BY sum(amount) DESC, item) AS rank
              FROM item_revenue_monthly
             WHERE seller_id = :seller AND month BETWEEN :first AND :end
             GROUP BY item, currency
            HAVING sum(amount) > 0) t
         WHERE rank <= :limit
         ORDER BY currency, amount DESC, item
        """,
        seller=seller_id, first=first, end=end, limit=limit)
    return [ItemRevenue(r["item"], r["currency"], int(r["amount"]), int(r["payments"]))
            for r in rows]


@dataclass(frozen=True, slots=True)
class SubscriptionSummary:
    currency: str
    mrr: int  # minor units a month: each live paid subscription's price over its months
    active: int  # live and paying (active or past due; trials are not revenue yet)
    churned: int  # of those live at the window's start, how many ended in it
    churn_rate: float  # churned / live at the window's start; 0.0 when none were


async def subscription_summary(db: Executor, seller_id: int, now: datetime | None = None,
                               days: int = 30) -> list[SubscriptionSummary]:
    """MRR and churn of the seller's subscriptions, per currency (empty without any).
    Reads the seller's subscriptions (index subscriptions_seller): its cost follows how many
    subscriptions the seller ever had, not payments."""
    now = now or datetime.now(UTC)
    rows = await fetch_all(
        db,
        """
        SELECT currency,
               coalesce(sum(amount / months) FILTER (WHERE status IN ('active', 'past_due')), 0)
                   AS mrr,
               count(*) FILTER (WHERE status IN ('active', 'past_due')) AS active,
               count(*) FILTER (WHERE at_start AND ended_at < :now) AS churned,
               count(*) FILTER (WHERE at_start) AS at_start
          FROM (SELECT s.currency, s.amount, s.months, s.status, s.ended_at,
                       -- Live at the window's start: begun before it (a trial or a paid
                       -- period; an unpaid first invoice is not a customer), not ended.
                       s.created_at < :since AND (s.ended_at IS NULL OR s.ended_at >= :since)
                       AND EXISTS (SELECT 1 FROM subscription_periods p
                                    WHERE p.subscription_id = s.id
                                      AND p.status IN ('trial', 'paid')
                                      AND p.starts_at < :since) AS at_start
                  FROM subscriptions s
                 WHERE s.seller_id = :seller) s
         GROUP BY currency
         ORDER BY currency
        """,
        seller=seller_id, since=now - timedelta(days=days), now=now)
    return [SubscriptionSummary(
        r["currency"], int(r["mrr"]), int(r["active"]), int(r["churned"]),
        round(int(r["churned"]) / int(r["at_start"]), 4) if r["at_start"] else 0.0)
        for r in rows]


# --- exports ------------------------------------------------------------------------------------

# The columns an accountant expects, in order; amounts in the currency's major units.
PAYMENT_COLUMNS: Final = ("payment_id", "paid_at", "invoice_number", "invoice_id", "buyer",
                          "method", "reference", "currency", "amount", "reversed_at",
                          "reversal_reason")
INVOICE_COLUMNS: Final = ("number", "invoice_id", "status", "issued_at", "due_at", "paid_at",
                          "buyer", "lines", "currency", "subtotal", "discount", "tax", "total",
                          "amount_paid", "amount_due")
COLUMNS: Final[dict[str, tuple[str, ...]]] = {"payments": PAYMENT_COLUMNS,
                                              "invoices": INVOICE_COLUMNS}

_BUYER = "coalesce('@' || u.username, u.first_name, '')"

_PAYMENTS_SQL = f"""
SELECT p.id, p.created_at, i.number, i.public_id, {_BUYER} AS buyer, p.method,
       coalesce(p.reference, p.external_ref) AS reference, p.currency, p.amount,
       v.created_at AS reversed_at, v.reason
  FROM invoices i
  JOIN payments p ON p.invoice_id = i.id
  LEFT JOIN users u ON u.id = p.payer_id
  LEFT JOIN payment_reversals v ON v.payment_id = p.id
 WHERE i.seller_id = :seller AND p.created_at >= :since AND p.created_at < :until
 ORDER BY p.created_at, p.id
"""

_INVOICES_SQL = f"""
SELECT i.number, i.public_id, i.status, i.issued_at, i.due_at, i.paid_at,
       coalesce(nullif(i.document -> 'buyer' ->> 'name', ''),
                nullif(i.document -> 'buyer' ->> 'company', ''), {_BUYER}) AS buyer,
       coalesce((SELECT string_agg(l ->> 'description', '; ')
                   FROM jsonb_array_elements(i.document -> 'lines') l), i.title) AS lines,
       i.currency,
       coalesce((i.document -> 'totals' ->> 'subtotal')::bigint, i.amount) AS subtotal,
       coalesce((i.document -> 'totals' ->> 'discount')::bigint, 0) AS discount,
       coalesce((i.document -> 'totals' ->> 'tax')::bigint, 0) AS tax,
       i.amount AS total, i.amount_paid, i.amount - i.amount_paid AS amount_due
  FROM invoices i
  LEFT JOIN users u ON u.id = i.sent_to
 WHERE i.seller_id = :seller AND i.issued_at >= :since AND i.issued_at < :until
 ORDER BY i.issued_at, i.id
"""

_MONEY = {"payments": ("amount",), "invoices": ("subtotal", "discount", "tax", "total",
                                                 "amount_paid", "amount_due")}


def _major(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-decimals(currency))


async def export_rows(engine: AsyncEngine, kind: ExportKind, seller_id: int, start: date,
                      end: date) -> AsyncIterator[tuple[Any, ...]]:
    """The export's rows (values in COLUMNS[kind] order: amounts as Decimal in major units,
    times as UTC datetimes), read from one snapshot through a server-side cursor."""
    since, until = _bounds(start, end)
    sql = _PAYMENTS_SQL if kind == "payments" else _INVOICES_SQL
    money = _MONEY[kind]
    # One snapshot for the whole file; a cursor needs a transaction.
    options = engine.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
    with typed_errors():
        async with options.connect() as conn, conn.begin():
            result = await conn.stream(text(sql).execution_options(yield_per=EXPORT_BATCH),
                                       {"seller": seller_id, "since": since, "until": until})
            async for part in result.mappings().partitions(EXPORT_BATCH):
                for r in part:
                    values = dict(r)
                    for name in money:
                        values[name] = _major(values[name], values["currency"])
                    yield tuple(values.values())
