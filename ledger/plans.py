"""A seller's subscription plans: the periods offered (1, 3, 6 or 12 months) with their prices,
a trial, and what a subscription grants while it is on (an item, an achievement, membership of a
channel or group). Plans are archived, never deleted."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from ledger.db import Executor, fetch_all, fetch_one
from ledger.errors import InvalidPlan, PlanNotFound
from ledger.ids import new_invoice_id, parse_invoice_id
from ledger.money import PRICE_CURRENCIES, check_amount
from ledger.text import clean_line

PERIODS: Final = (1, 3, 6, 12)
NAME_MAX: Final = 128
MAX_TRIAL_DAYS: Final = 365
TEXT_ID_MAX: Final = 512


@dataclass(frozen=True, slots=True)
class Plan:
    id: int
    public_id: str
    seller_id: int
    name: str
    currency: str
    trial_days: int
    item_id: str | None
    achievement_id: str | None
    channel_chat_id: int | None
    channel_title: str | None
    status: str
    created_at: datetime
    prices: dict[int, int] = field(default_factory=dict)  # months -> minor units

    @classmethod
    def from_row(cls, row: Any, prices: Mapping[int, int]) -> Plan:
        return cls(row["id"], row["public_id"], row["seller_id"], row["name"], row["currency"],
                   row["trial_days"], row["item_id"], row["achievement_id"],
                   row["channel_chat_id"], row["channel_title"], row["status"],
                   row["created_at"], dict(sorted(prices.items())))


def check_plan(name: str, prices: Mapping[int, int], currency: str, trial_days: int,
               item_id: str | None, achievement_id: str | None) -> str:
    """The plan's name as stored, or InvalidPlan saying what is wrong."""
    clean = clean_line(name or "")
    if not clean:
        raise InvalidPlan("the plan needs a name")
    if len(clean) > NAME_MAX:
        raise InvalidPlan(f"the name is longer than {NAME_MAX} characters")
    if currency not in PRICE_CURRENCIES:
        raise InvalidPlan(f"unknown currency {currency!r}")
    if not prices:
        raise InvalidPlan("offer at least one period (1, 3, 6 or 12 months) with its price")
    for months, amount in prices.items():
        if months not in PERIODS:
            raise InvalidPlan("periods are 1, 3, 6 or 12 months")
        try:
            check_amount(amount)
        except Exception as exc:
            raise InvalidPlan(f"the price for {months} months is not valid") from exc
    if isinstance(trial_days, bool) or not isinstance(trial_days, int) \
            or not 0 <= trial_days <= MAX_TRIAL_DAYS:
        raise InvalidPlan(f"a trial is 0 to {MAX_TRIAL_DAYS} days")
    for what, value in (("item_id", item_id), ("achievement_id", achievement_id)):
        if value is not None and not 0 < len(value) <= TEXT_ID_MAX:
            raise InvalidPlan(f"{what} must be 1 to {TEXT_ID_MAX} characters")
    return clean


async def create_plan(
    db: Executor, *, seller_id: int, name: str, prices: Mapping[int, int],
    currency: str = "LIQ", trial_days: int = 0, item_id: str | None = None,
    achievement_id: str | None = None, channel_chat_id: int | None = None,
    channel_title: str | None = None,
) -> Plan:
    """A new plan. A channel must have been checked by the caller (the bot is its admin)."""
    clean = check_plan(name, prices, currency, trial_days, item_id, achievement_id)
    title = clean_line(channel_title or "")[:256] or None
    row = await fetch_one(
        db,
        """WITH plan AS (
               INSERT INTO plans (public_id, seller_id, name, currency, trial_days, item_id,
                                  achievement_id, channel_chat_id, channel_title)
               VALUES (:pub, :seller, :name, :currency, :trial, :item, :ach, :chat, :title)
               RETURNING *
           ), priced AS (
               INSERT INTO plan_prices (plan_id, months, amount)
               SELECT plan.id, m, a FROM plan,
                      unnest(CAST(:months AS int[]), CAST(:amounts AS bigint[])) AS x (m, a)
           )
           SELECT * FROM plan""",
        pub=new_invoice_id(), seller=seller_id, name=clean, currency=currency,
        trial=trial_days, item=item_id, ach=achievement_id, chat=channel_chat_id,
        title=title, months=list(prices), amounts=list(prices.values()))
    if row is None:  # an INSERT ... RETURNING always answers; kept for the type
        raise InvalidPlan("the plan was not stored")
    return Plan.from_row(row, prices)


_WITH_PRICES = """
SELECT p.*, coalesce((SELECT jsonb_object_agg(x.months, x.amount) FROM plan_prices x
                       WHERE x.plan_id = p.id), '{}') AS prices
  FROM plans p
"""


def _plan(row: Any) -> Plan:
    return Plan.from_row(row, {int(k): int(v) for k, v in row["prices"].items()})


async def get_plan(db: Executor, public_id: str) -> Plan:
    canonical = parse_invoice_id(public_id)
    row = None
    if canonical is not None:
        row = await fetch_one(db, _WITH_PRICES + " WHERE p.public_id = :id", id=canonical)
    if row is None:
        raise PlanNotFound(public_id[:40])
    return _plan(row)


async def plans_of_seller(db: Executor, seller_id: int,
                          include_archived: bool = False) -> list[Plan]:
    rows = await fetch_all(
        db, _WITH_PRICES + " WHERE p.seller_id = :s AND (:all OR p.status = 'active') "
                           "ORDER BY p.id DESC LIMIT 100",
        s=seller_id, all=include_archived)
    return [_plan(r) for r in rows]


async def archive_plan(db: Executor, seller_id: int, public_id: str) -> Plan:
    """No new subscriptions; the live ones go on until cancelled."""
    plan = await get_plan(db, public_id)
    if plan.seller_id != seller_id:
        raise PlanNotFound(public_id[:40])
    await fetch_one(db, "UPDATE plans SET status = 'archived' WHERE id = :id RETURNING id",
                    id=plan.id)
    return await get_plan(db, public_id)
