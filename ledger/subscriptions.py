"""Subscriptions: subscribe, renew, cancel, change plan, extend (ledger/sql/subscriptions.sql).

Every paid period is an ordinary invoice of the seller, so a period is paid like any invoice
(balance, TON, the pay page, a manual payment) and a paid period invoice activates or extends
its subscription (a trigger). The renewal job (`renew_due`) opens each due subscription's next
period once and pays it from the subscriber's balance through the one balance payment; a short
balance makes it past due, a grace period later it expires and its access ends.

Periods are calendar months in UTC, counted from the billing-cycle anchor each time
(`add_months`): 31 January + 1 month = 28/29 February, + 2 = 31 March.
"""

from __future__ import annotations

import asyncio
import calendar
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from ledger.db import Executor, fetch_all, fetch_one
from ledger.errors import InvalidPlan, SubscriptionNotFound
from ledger.ids import new_invoice_id, parse_invoice_id
from ledger.text import clean_line

LIVE: Final = ("incomplete", "trialing", "active", "past_due")
DEFAULT_GRACE: Final = timedelta(days=3)
BATCH: Final = 500  # subscriptions per renewal statement
LANES: Final = 2  # renewal statements at once (bench/subscriptions.py: ~1.2x a single one)
REASON_MAX: Final = 500


def add_months(anchor: datetime, months: int) -> datetime:
    """`anchor` plus calendar months in UTC, the day clamped to the month's last (SQL
    paybot_add_months): 2027-01-31 + 1 = 2027-02-28, + 2 = 2027-03-31."""
    at = anchor.astimezone(UTC)
    index = at.month - 1 + months
    year, month = at.year + index // 12, index % 12 + 1
    day = min(at.day, calendar.monthrange(year, month)[1])
    return at.replace(year=year, month=month, day=day)


@dataclass(frozen=True, slots=True)
class Subscription:
    id: int
    public_id: str
    plan_id: int
    seller_id: int
    subscriber_id: int
    months: int
    amount: int
    currency: str
    status: str
    anchor_at: datetime
    anchor_index: int
    extra_months: int
    period_index: int
    current_period_start: datetime
    current_period_end: datetime
    trial_end: datetime | None
    trial_plan_id: int | None
    cancel_at_period_end: bool
    grace_until: datetime | None
    retry_at: datetime | None
    cancelled_at: datetime | None
    ended_at: datetime | None
    created_at: datetime
    updated_at: datetime
    plan_public_id: str | None = None
    plan_name: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> Subscription:
        return cls(**{f.name: row.get(f.name) for f in fields(cls)})

    def entitled(self, now: datetime | None = None) -> bool:
        """Whether the subscriber has what the plan grants now: trialing, active, or past due
        within the grace period."""
        now = now or datetime.now(UTC)
        if self.status in ("trialing", "active"):
            return True
        return self.status == "past_due" and self.grace_until is not None \
            and self.grace_until > now

    def period_end(self, k: int) -> datetime:
        """When period k ends (as SQL paybot_period_end)."""
        return add_months(self.anchor_at,
                          (k - self.anchor_index + 1) * self.months + self.extra_months)


@dataclass(frozen=True, slots=True)
class Subscribed:
    subscription: Subscription
    invoice: str | None  # the first period's invoice to pay (None: a trial runs first)
    replayed: bool


@dataclass(frozen=True, slots=True)
class RenewalReport:
    renewed: int = 0
    past_due: int = 0
    cancelled: int = 0
    expired: int = 0
    retried: int = 0  # left for the next step (a subscriber with two due at once)

    def __add__(self, other: RenewalReport) -> RenewalReport:
        return RenewalReport(*(getattr(self, f.name) + getattr(other, f.name)
                               for f in fields(self)))

    @property
    def total(self) -> int:
        return self.renewed + self.past_due + self.cancelled + self.expired + self.retried


_SUB_COLUMNS = ", ".join(f"(r_subscription).{f.name}" for f in fields(Subscription)
                         if f.name not in ("plan_public_id", "plan_name"))
_SELECT = """
SELECT s.*, p.public_id AS plan_public_id, p.name AS plan_name
  FROM subscriptions s JOIN plans p ON p.id = s.plan_id
"""


async def subscribe(db: Executor, plan_public_id: str, subscriber_id: int, months: int, *,
                    ton_rate: Decimal | None = None,
                    grace: timedelta = DEFAULT_GRACE) -> Subscribed:
    """Subscribe (see the SQL subscribe): the first period's invoice to pay, or a trial."""
    if isinstance(months, bool) or not isinstance(months, int):
        raise InvalidPlan("the period is a number of months")
    row = await fetch_one(
        db,
        f"""SELECT {_SUB_COLUMNS}, r_invoice, r_replayed
              FROM subscribe(:plan, :user, :months, :pub, :inv, :rate, :grace)""",
        plan=plan_public_id, user=subscriber_id, months=months, pub=new_invoice_id(),
        inv=new_invoice_id(), rate=ton_rate, grace=grace)
    assert row is not None
    sub = await get_subscription(db, row["public_id"])
    return Subscribed(sub, row["r_invoice"], row["r_replayed"])


async def get_subscription(db: Executor, public_id: str) -> Subscription:
    canonical = parse_invoice_id(public_id)
    row = None
    if canonical is not None:
        row = await fetch_one(db, _SELECT + " WHERE s.public_id = :id", id=canonical)
    if row is None:
        raise SubscriptionNotFound(public_id[:40])
    return Subscription.from_row(row)


async def subscriptions_of_user(db: Executor, user_id: int,
                                limit: int = 50) -> list[Subscription]:
    rows = await fetch_all(db, _SELECT + " WHERE s.subscriber_id = :u ORDER BY s.id DESC "
                                         "LIMIT :limit", u=user_id, limit=limit)
    return [Subscription.from_row(r) for r in rows]


async def subscriptions_of_seller(db: Executor, seller_id: int, *,
                                  subscriber_id: int | None = None, status: str | None = None,
                                  limit: int = 100) -> list[Subscription]:
    rows = await fetch_all(
        db, _SELECT + """ WHERE s.seller_id = :seller
                            AND (CAST(:sub AS bigint) IS NULL OR s.subscriber_id = :sub)
                            AND (CAST(:status AS text) IS NULL OR s.status = :status)
                          ORDER BY s.id DESC LIMIT :limit""",
        seller=seller_id, sub=subscriber_id, status=status, limit=limit)
    return [Subscription.from_row(r) for r in rows]


async def has_access(db: Executor, plan_public_id: str, user_id: int,
                     now: datetime | None = None) -> Subscription | None:
    """The subscriber's live subscription to the plan when it grants access now, else None."""
    canonical = parse_invoice_id(plan_public_id)
    if canonical is None:
        return None
    row = await fetch_one(
        db, _SELECT + """ WHERE p.public_id = :plan AND s.subscriber_id = :u
                            AND s.status IN ('trialing', 'active', 'past_due')""",
        plan=canonical, u=user_id)
    if row is None:
        return None
    sub = Subscription.from_row(row)
    return sub if sub.entitled(now) else None


def _reason(reason: str | None, required: bool = False) -> str | None:
    clean = clean_line(reason or "") or None
    if required and not clean:
        raise InvalidPlan("say why")
    if clean and len(clean) > REASON_MAX:
        raise InvalidPlan(f"the reason is longer than {REASON_MAX} characters")
    return clean


async def cancel_subscription(db: Executor, public_id: str, *, actor_id: int | None,
                              at_period_end: bool, reason: str | None = None) -> Subscription:
    await fetch_one(db, "SELECT id FROM cancel_subscription(:id, :actor, :end, :reason)",
                    id=public_id, actor=actor_id, end=at_period_end, reason=_reason(reason))
    return await get_subscription(db, public_id)


async def extend_subscription(db: Executor, public_id: str, *, seller_id: int | None,
                              months: int, reason: str) -> Subscription:
    if isinstance(months, bool) or not isinstance(months, int) or not 1 <= months <= 120:
        raise InvalidPlan("extend by 1 to 120 months")
    await fetch_one(db, "SELECT id FROM extend_subscription(:id, :seller, :months, :reason)",
                    id=public_id, seller=seller_id, months=months,
                    reason=_reason(reason, required=True))
    return await get_subscription(db, public_id)


@dataclass(frozen=True, slots=True)
class PlanChange:
    subscription: Subscription
    charged: int  # taken from the balance now
    credited: int  # given back to the balance now


async def change_plan(db: Executor, public_id: str, subscriber_id: int, plan_public_id: str,
                      months: int, *, ton_rate: Decimal | None = None) -> PlanChange:
    if isinstance(months, bool) or not isinstance(months, int):
        raise InvalidPlan("the period is a number of months")
    row = await fetch_one(
        db, "SELECT (r_subscription).public_id AS id, r_charged, r_credited "
            "FROM change_subscription(:id, :user, :plan, :months, :inv, :rate)",
        id=public_id, user=subscriber_id, plan=plan_public_id, months=months,
        inv=new_invoice_id(), rate=ton_rate)
    assert row is not None
    return PlanChange(await get_subscription(db, row["id"]), row["r_charged"],
                      row["r_credited"])


async def renew_due(db: Executor, now: datetime | None = None, *, limit: int = BATCH,
                    ton_rate: Decimal | None = None, grace: timedelta = DEFAULT_GRACE,
                    lanes: int = LANES) -> RenewalReport:
    """Renew (or end) every subscription whose period has ended by `now`, in statements of
    `limit`: each its own transaction, so a backlog (after downtime) is worked off in short
    ones, and memory stays flat however many fall due. `lanes` statements run at once (rows
    are taken SKIP LOCKED, so they take different subscriptions). Safe to run on several
    replicas at once and again after a crash: each period is charged once."""
    now = now or datetime.now(UTC)
    reports = await asyncio.gather(*(_renew_lane(db, now, limit, ton_rate, grace)
                                     for _ in range(max(1, lanes))))
    total = RenewalReport()
    for report in reports:
        total += report
    return total


async def _renew_lane(db: Executor, now: datetime, limit: int, ton_rate: Decimal | None,
                      grace: timedelta) -> RenewalReport:
    report = RenewalReport()
    while True:
        rows = await fetch_all(
            db, "SELECT r_outcome FROM paybot_renew_due(:now, :limit, :rate, :grace, :ids)",
            now=now, limit=limit, rate=ton_rate, grace=grace,
            ids=[new_invoice_id() for _ in range(limit)])
        counts = {"renewed": 0, "past_due": 0, "cancelled": 0, "expired": 0, "retried": 0}
        for row in rows:
            outcome = row["r_outcome"]
            counts[outcome if outcome in counts else "retried"] += 1
        step = RenewalReport(**counts)
        report += step
        # Again while anything moved: a subscription renewed for a period long past (the job
        # was down) is due again for the next one. A past-due one waits for its retry time.
        if step.total == step.retried:
            return report


async def queue_subscription_reminders(db: Executor, now: datetime | None = None, *,
                                       limit: int = BATCH, ton_rate: Decimal | None = None,
                                       grace: timedelta = DEFAULT_GRACE) -> int:
    """Reminders due at `now` (3 days before a renewal, once in the grace period), each once."""
    now = now or datetime.now(UTC)
    total = 0
    while True:
        row = await fetch_one(
            db, "SELECT paybot_subscription_reminders(:now, :limit, :rate, :grace, :ids) AS n",
            now=now, limit=limit, rate=ton_rate, grace=grace,
            ids=[new_invoice_id() for _ in range(limit)])
        queued = int(row["n"]) if row else 0
        total += queued
        if queued < limit:
            return total
