"""Subscriptions on the ledger: a paid period invoice activates; the renewal job charges each
period once from the balance; short → past due → (grace) → expired; cancel, change, extend;
trials; the calendar. Time is passed in (`now`), never slept."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.accounts import adjust_balance, balance
from ledger.core import Ledger
from ledger.errors import (
    AlreadySubscribed,
    InsufficientFunds,
    InvalidPlan,
    OwnPlan,
    PeriodNotOffered,
    PlanNotFound,
    SamePlan,
    SubscriptionEnded,
    SubscriptionNotFound,
)
from ledger.invariants import check_invariants
from ledger.migrate import upgrade
from ledger.postgres import make_engine, throwaway_database
from ledger.subscriptions import add_months, queue_subscription_reminders, renew_due
from tests.conftest import run_sql
from watchers.subscriptions import subscriptions_job

DAY = timedelta(days=1)


# The clock moves months ahead here: a database of their own, so that no other test's
# subscriptions (or these, for other tests) fall due. Within the module each test looks at its
# own subscriptions only.
@pytest.fixture(scope="module")
async def engine(server_url: str) -> AsyncIterator[AsyncEngine]:
    async with throwaway_database(server_url, "paybot_subscriptions") as url:
        await upgrade(url)
        eng = make_engine(url, pool_size=6)
        yield eng
        await eng.dispose()


@pytest.fixture
def ledger(engine: AsyncEngine) -> Ledger:
    return Ledger(engine)


async def plan_of(ledger, seller, **kw):  # type: ignore[no-untyped-def]
    args = {"name": "Premium", "prices": {1: 500, 3: 1350, 12: 4800}} | kw
    return await ledger.create_plan(seller.id, **args)


async def active(ledger, plan, buyer, months=1):  # type: ignore[no-untyped-def]
    sub = await ledger.subscribe(plan.public_id, buyer.id, months)
    assert sub.invoice is not None
    await ledger.pay_from_balance(sub.invoice, buyer.id, "first")
    return await ledger.subscription(sub.subscription.public_id)


async def payments_of(ledger, sub) -> list[int]:  # type: ignore[no-untyped-def]
    rows = await run_sql(ledger.engine, """
        SELECT p.period_index FROM subscription_periods p JOIN payments x
            ON x.invoice_id = p.invoice_id
         WHERE p.subscription_id = :s ORDER BY 1""", s=sub.id)
    return [r["period_index"] for r in rows]


def test_calendar_months_keep_the_anchor_day() -> None:
    jan31 = datetime(2027, 1, 31, 10, tzinfo=UTC)
    assert [add_months(jan31, n).date().isoformat() for n in range(4)] == [
        "2027-01-31", "2027-02-28", "2027-03-31", "2027-04-30"]
    assert add_months(datetime(2028, 1, 31, tzinfo=UTC), 1).day == 29  # leap year
    assert add_months(datetime(2028, 2, 29, tzinfo=UTC), 12).date().isoformat() == "2029-02-28"


async def test_paying_the_first_invoice_activates(ledger, make_user) -> None:
    seller, buyer = await make_user(), await make_user(balance=10_000)
    plan = await plan_of(ledger, seller)
    sub = await ledger.subscribe(plan.public_id, buyer.id, 1)
    assert sub.subscription.status == "incomplete" and sub.invoice
    assert await ledger.has_access(plan.public_id, buyer.id) is None
    again = await ledger.subscribe(plan.public_id, buyer.id, 1)  # a second tap: the same
    assert again.replayed and again.invoice == sub.invoice
    paid = await ledger.pay_from_balance(sub.invoice, buyer.id, "k")
    assert paid.invoice_status == "paid"
    now = await ledger.subscription(sub.subscription.public_id)
    assert now.status == "active" and now.period_index == 0
    assert now.current_period_end == add_months(now.anchor_at, 1)
    assert await ledger.has_access(plan.public_id, buyer.id) is not None
    assert await balance(ledger.engine, buyer.id) == 9_500
    with pytest.raises(AlreadySubscribed):
        await ledger.subscribe(plan.public_id, buyer.id, 3)


async def test_bad_subscriptions_are_refused(ledger, make_user) -> None:
    seller, buyer = await make_user(), await make_user()
    plan = await plan_of(ledger, seller)
    with pytest.raises(PeriodNotOffered):
        await ledger.subscribe(plan.public_id, buyer.id, 6)
    with pytest.raises(OwnPlan):
        await ledger.subscribe(plan.public_id, seller.id, 1)
    with pytest.raises(PlanNotFound):
        await ledger.subscribe("0" * 13, buyer.id, 1)
    for bad in ({"prices": {}}, {"prices": {2: 100}}, {"prices": {1: 0}}, {"name": " "},
                {"trial_days": 400}):
        with pytest.raises(InvalidPlan):
            await plan_of(ledger, seller, **bad)
    await ledger.archive_plan(seller.id, plan.public_id)
    with pytest.raises(PlanNotFound):
        await ledger.subscribe(plan.public_id, buyer.id, 1)


async def test_renewal_charges_each_period_once(ledger, make_user) -> None:
    seller, buyer = await make_user(), await make_user(balance=10_000)
    plan = await plan_of(ledger, seller)
    sub = await active(ledger, plan, buyer)
    due = sub.current_period_end
    await renew_due(ledger.engine, due - DAY)
    assert await payments_of(ledger, sub) == [0]  # not yet
    await asyncio.gather(renew_due(ledger.engine, due + DAY), renew_due(ledger.engine, due + DAY))
    renewed = await ledger.subscription(sub.public_id)
    assert renewed.period_index == 1 and renewed.status == "active"
    assert renewed.current_period_start == due
    assert renewed.current_period_end == add_months(sub.anchor_at, 2)
    await renew_due(ledger.engine, due + DAY)  # a restart: nothing twice
    assert await payments_of(ledger, sub) == [0, 1]
    assert await balance(ledger.engine, buyer.id) == 9_000
    assert await check_invariants(ledger.engine) == []


async def test_after_downtime_each_missed_period_is_charged_once(ledger, make_user) -> None:
    seller, buyer = await make_user(), await make_user(balance=10_000)
    plan = await plan_of(ledger, seller)
    sub = await active(ledger, plan, buyer)
    late = add_months(sub.anchor_at, 3) + DAY  # down for three periods
    await renew_due(ledger.engine, late)
    assert await payments_of(ledger, sub) == [0, 1, 2, 3]
    assert (await ledger.subscription(sub.public_id)).current_period_end == add_months(
        sub.anchor_at, 4)


async def test_short_balance_past_due_then_expired(ledger, make_user) -> None:
    seller, buyer = await make_user(), await make_user(balance=500)
    plan = await plan_of(ledger, seller, channel_chat_id=-1001234, channel_title="VIP")
    sub = await active(ledger, plan, buyer)
    due = sub.current_period_end
    await renew_due(ledger.engine, due + timedelta(minutes=1))
    late = await ledger.subscription(sub.public_id)
    assert late.status == "past_due" and late.grace_until == due + ledger.subscription_grace
    assert late.entitled(due + DAY) and not late.entitled(due + 4 * DAY)
    await renew_due(ledger.engine, due + DAY)  # tried again: no second event
    assert (await ledger.subscription(sub.public_id)).status == "past_due"
    events = await run_sql(ledger.engine, "SELECT event_type FROM outbox WHERE payload->>"
                           "'subscription' = :s ORDER BY id", s=sub.public_id)
    assert [e["event_type"] for e in events].count("subscription.past_due") == 1

    # topped up in the grace period: the next run charges it
    await adjust_balance(ledger.engine, buyer.id, 500, "LIQ", reason="top up")
    await renew_due(ledger.engine, due + 2 * DAY)
    assert (await ledger.subscription(sub.public_id)).status == "active"
    assert await payments_of(ledger, sub) == [0, 1]

    # next period: short again, and the grace runs out
    due2 = add_months(sub.anchor_at, 2)
    await renew_due(ledger.engine, due2 + timedelta(minutes=1))
    await renew_due(ledger.engine, due2 + 4 * DAY)
    ended = await ledger.subscription(sub.public_id)
    assert ended.status == "expired" and ended.ended_at is not None
    assert await ledger.has_access(plan.public_id, buyer.id) is None
    revoke = await run_sql(ledger.engine, "SELECT payload FROM outbox WHERE event_type = "
                           "'channel.revoke' AND payload->>'subscription' = :s",
                           s=sub.public_id)
    assert [r["payload"]["chat_id"] for r in revoke] == [-1001234]
    # its unpaid period invoice can no longer be paid
    open_invoices = await run_sql(ledger.engine, """
        SELECT i.status FROM subscription_periods p JOIN invoices i ON i.id = p.invoice_id
         WHERE p.subscription_id = :s AND p.status <> 'paid'""", s=sub.id)
    assert {r["status"] for r in open_invoices} == {"void"}
    with pytest.raises(SubscriptionEnded):
        await ledger.cancel_subscription(sub.public_id, actor_id=buyer.id, at_period_end=False)
    assert await check_invariants(ledger.engine) == []


async def test_trial_then_first_charge(ledger, make_user) -> None:
    seller, buyer = await make_user(), await make_user(balance=1000)
    plan = await plan_of(ledger, seller, trial_days=7)
    sub = await ledger.subscribe(plan.public_id, buyer.id, 1)
    assert sub.invoice is None and sub.subscription.status == "trialing"
    assert await ledger.has_access(plan.public_id, buyer.id) is not None
    end = sub.subscription.trial_end
    await renew_due(ledger.engine, end + timedelta(minutes=1))
    paid = await ledger.subscription(sub.subscription.public_id)
    assert paid.status == "active" and paid.current_period_start == end
    assert paid.current_period_end == add_months(end, 1)
    assert await balance(ledger.engine, buyer.id) == 500
    # a second subscription later gets no second trial
    await ledger.cancel_subscription(paid.public_id, actor_id=buyer.id, at_period_end=False)
    again = await ledger.subscribe(plan.public_id, buyer.id, 1)
    assert again.subscription.status == "incomplete" and again.invoice


async def test_cancel_at_period_end_keeps_access_until_then(ledger, make_user) -> None:
    seller, buyer = await make_user(), await make_user(balance=10_000)
    plan = await plan_of(ledger, seller)
    sub = await active(ledger, plan, buyer)
    cancelling = await ledger.cancel_subscription(sub.public_id, actor_id=buyer.id,
                                                  at_period_end=True)
    assert cancelling.status == "active" and cancelling.cancel_at_period_end
    await renew_due(ledger.engine, sub.current_period_end + DAY)
    ended = await ledger.subscription(sub.public_id)
    assert ended.status == "cancelled" and ended.ended_at == sub.current_period_end
    assert await payments_of(ledger, sub) == [0]
    stranger = await make_user()
    with pytest.raises(SubscriptionNotFound):
        await ledger.cancel_subscription(sub.public_id, actor_id=stranger.id,
                                         at_period_end=False)


async def test_upgrade_charges_the_prorated_difference(ledger, make_user) -> None:
    seller, buyer = await make_user(), await make_user(balance=10_000)
    basic = await plan_of(ledger, seller, name="Basic", prices={1: 300})
    pro = await plan_of(ledger, seller, name="Pro", prices={1: 900})
    sub = await active(ledger, basic, buyer)
    change = await ledger.change_plan(sub.public_id, buyer.id, pro.public_id, 1)
    # right after paying nearly the whole period u is unused: credit floor(300·u) = 299,
    # charge ceil(900·u) = 900 — each rounded the seller's way, by less than a cent
    assert change.charged == 601 and change.credited == 0
    assert change.subscription.plan_id == pro.id and change.subscription.amount == 900
    assert change.subscription.current_period_end == sub.current_period_end
    assert await balance(ledger.engine, buyer.id) == 10_000 - 300 - change.charged
    with pytest.raises(SamePlan):
        await ledger.change_plan(sub.public_id, buyer.id, pro.public_id, 1)
    down = await ledger.change_plan(sub.public_id, buyer.id, basic.public_id, 1)
    assert down.charged == 0 and down.credited == 599  # floor(900·u) − ceil(300·u)
    assert await check_invariants(ledger.engine) == []


async def test_an_upgrade_without_the_money_changes_nothing(ledger, make_user) -> None:
    seller, buyer = await make_user(), await make_user(balance=300)
    basic = await plan_of(ledger, seller, name="Basic", prices={1: 300})
    pro = await plan_of(ledger, seller, name="Pro", prices={1: 900})
    sub = await active(ledger, basic, buyer)
    with pytest.raises(InsufficientFunds):
        await ledger.change_plan(sub.public_id, buyer.id, pro.public_id, 1)
    assert (await ledger.subscription(sub.public_id)).plan_id == basic.id


async def test_the_seller_extends_by_months(ledger, make_user) -> None:
    seller, buyer = await make_user(), await make_user(balance=500)
    plan = await plan_of(ledger, seller)
    sub = await active(ledger, plan, buyer)
    longer = await ledger.extend_subscription(sub.public_id, seller_id=seller.id, months=2,
                                              reason="compensation for downtime")
    assert longer.current_period_end == add_months(sub.anchor_at, 3)
    with pytest.raises(InvalidPlan):
        await ledger.extend_subscription(sub.public_id, seller_id=seller.id, months=2,
                                         reason="")
    other = await make_user()
    with pytest.raises(SubscriptionNotFound):
        await ledger.extend_subscription(sub.public_id, seller_id=other.id, months=1,
                                         reason="x")
    await renew_due(ledger.engine, sub.current_period_end + DAY)
    assert await payments_of(ledger, sub) == [0]  # the extension is free


async def test_reminders_three_days_before_and_in_the_grace_once(ledger, make_user) -> None:
    """Three days before a renewal the subscriber is reminded once, with the next period's
    invoice already open (payable by TON ahead of time); a past-due one once in its grace."""
    seller, buyer = await make_user(), await make_user(balance=1000)
    plan = await plan_of(ledger, seller)
    sub = await active(ledger, plan, buyer)
    end = sub.current_period_end
    rate = Decimal(5)
    for _ in range(2):  # twice, as two replicas or a restart would
        await queue_subscription_reminders(ledger.engine, end - 2 * DAY, ton_rate=rate)
    events = await run_sql(ledger.engine, "SELECT payload FROM outbox WHERE event_type = "
                           "'subscription.reminder' AND payload->>'subscription' = :s "
                           "ORDER BY id", s=sub.public_id)
    assert [e["payload"]["kind"] for e in events] == ["before_3"]
    invoice = events[0]["payload"]["invoice"]
    opened = await ledger.invoice(invoice)
    assert opened.invoice.amount == 500 and opened.invoice.ton_amount == 10**9

    # paid by TON-or-anything ahead of time: the renewal finds the period paid, charges nothing
    await ledger.pay_from_balance(invoice, buyer.id, "ahead")
    renewed = await ledger.subscription(sub.public_id)
    assert renewed.period_index == 1 and renewed.current_period_start == end
    await subscriptions_job(ledger, rate, end + DAY)
    assert await payments_of(ledger, sub) == [0, 1]

    # next period: nothing left on the balance -> past due, one grace reminder
    end2 = renewed.current_period_end
    await subscriptions_job(ledger, rate, end2 + timedelta(minutes=1))
    for _ in range(2):
        await subscriptions_job(ledger, rate, end2 + DAY + timedelta(hours=7))
    kinds = await run_sql(ledger.engine, "SELECT payload->>'kind' AS k FROM outbox WHERE "
                          "event_type = 'subscription.reminder' AND payload->>'subscription' "
                          "= :s ORDER BY id", s=sub.public_id)
    assert [k["k"] for k in kinds] == ["before_3", "grace"]


async def test_a_downgrade_the_sellers_balance_cannot_credit_is_refused_in_its_own_words(
        ledger, make_user) -> None:
    from ledger.errors import ProrationUnfunded

    seller, buyer = await make_user(), await make_user(balance=10_000)
    basic = await plan_of(ledger, seller, name="Basic", prices={1: 300})
    pro = await plan_of(ledger, seller, name="Pro", prices={1: 900})
    sub = await active(ledger, pro, buyer)
    # The seller already spent what the subscriber paid.
    await adjust_balance(ledger.engine, seller.id, -900, "LIQ", reason="withdrawn")
    with pytest.raises(ProrationUnfunded) as refused:
        await ledger.change_plan(sub.public_id, buyer.id, basic.public_id, 1)
    assert "seller" in refused.value.message  # not "not enough money on *your* balance"
    assert (await ledger.subscription(sub.public_id)).plan_id == pro.id  # nothing changed
    assert await balance(ledger.engine, buyer.id) == 10_000 - 900
    assert await check_invariants(ledger.engine) == []
