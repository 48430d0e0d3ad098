"""Renewals happen exactly once per (subscription, period) (issue 13, "Renewal"): two replicas
running the renewal job at the same instant never charge a subscriber twice, and a job that
was down for a day catches up on restart, charging each period that fell due once.

A database of its own: the job renews everything due at the `now` it is given, and moving the
clock months ahead must not touch the subscriptions of other tests in the run."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.accounts import adjust_balance, apply_pending_credits, balance
from ledger.core import Ledger
from ledger.invariants import check_invariants
from ledger.migrate import upgrade
from ledger.postgres import make_engine, throwaway_database
from ledger.subscriptions import add_months, renew_due
from ledger.users import ensure_user
from tests.conftest import run_sql

PRICE = 500  # 5.00 Liquid $ a month
SUBSCRIBERS = 200
MINUTE = timedelta(minutes=1)
_telegram_ids = itertools.count(secrets.randbelow(10**9) * 1000 + 1)


@pytest.fixture(scope="module")
async def race_url(server_url: str) -> AsyncIterator[str]:
    async with throwaway_database(server_url, "paybot_renewals") as url:
        await upgrade(url)
        yield url


async def run_job(db: AsyncEngine, now: datetime, limit: int = 20) -> int:
    """The renewal job, run after run until it makes no more progress (each run moves a
    subscription on by one period, so a job that was down catches up run after run).
    Small statements (`limit`), so two replicas interleave rather than one taking all.
    Returns the renewals made."""
    total = 0
    while True:
        report = await renew_due(db, now, limit=limit)
        total += report.renewed
        if report.renewed + report.cancelled + report.expired == 0:
            return total


async def charges(db: AsyncEngine, subscription_ids: list[int]) -> dict[tuple[int, int], int]:
    """Payments per (subscription, period): the thing that must never exceed one."""
    rows = await run_sql(
        db,
        "SELECT sp.subscription_id AS s, sp.period_index AS k, count(p.id) AS n "
        "  FROM subscription_periods sp LEFT JOIN payments p ON p.invoice_id = sp.invoice_id "
        " WHERE sp.subscription_id = ANY(:ids) GROUP BY 1, 2",
        ids=subscription_ids,
    )
    return {(int(r["s"]), int(r["k"])): int(r["n"]) for r in rows}


async def test_two_workers_racing_and_a_day_of_downtime_charge_each_period_once(
        race_url: str) -> None:
    e1 = make_engine(race_url, pool_size=4)
    e2 = make_engine(race_url, pool_size=4)  # a second replica: its own pool, its own sessions
    ledger = Ledger(e1)
    try:
        seller = await ensure_user(e1, next(_telegram_ids))
        plan = await ledger.create_plan(seller.id, "Club", {1: PRICE})
        funding = PRICE * 3 + 7  # the first period, two renewals, and a little over
        subs = []
        subscribers = []
        for _ in range(SUBSCRIBERS):
            user = await ensure_user(e1, next(_telegram_ids))
            await adjust_balance(e1, user.id, funding, "LIQ", reason="test funding")
            subscribed = await ledger.subscribe(plan.public_id, user.id, 1)
            assert subscribed.invoice is not None
            await ledger.pay_from_balance(subscribed.invoice, user.id, None)
            subs.append(await ledger.subscription(subscribed.subscription.public_id))
            subscribers.append(user)
        assert {s.status for s in subs} == {"active"}
        ids = [s.id for s in subs]
        first_end = max(s.current_period_end for s in subs)

        # Both replicas wake at the same instant, a minute after every period ended.
        now = first_end + MINUTE
        assert sum(await asyncio.gather(run_job(e1, now), run_job(e2, now))) == SUBSCRIBERS
        assert set((await charges(e1, ids)).values()) == {1}
        assert len(await charges(e1, ids)) == SUBSCRIBERS * 2  # periods 0 and 1, each paid once
        for sub in subs:
            renewed = await ledger.subscription(sub.public_id)
            assert renewed.status == "active" and renewed.period_index == 1
            assert renewed.current_period_start == sub.current_period_end
            assert renewed.current_period_end == add_months(sub.anchor_at, 2)
        for user in subscribers:
            assert await balance(e1, user.id) == funding - 2 * PRICE

        # Running again at the same instant (a retry, a third replica) changes nothing.
        assert await asyncio.gather(run_job(e1, now), run_job(e2, now)) == [0, 0]

        # Down for a day past the next period's end; on restart both replicas catch up.
        second_end = max(add_months(s.anchor_at, 2) for s in subs)
        later = second_end + timedelta(days=1)
        e2_restarted = make_engine(race_url, pool_size=4)
        await e2.dispose()
        e2 = e2_restarted
        assert sum(await asyncio.gather(run_job(e1, later), run_job(e2, later))) == SUBSCRIBERS
        assert await asyncio.gather(run_job(e1, later), run_job(e2, later)) == [0, 0]
        paid = await charges(e1, ids)
        assert set(paid.values()) == {1} and len(paid) == SUBSCRIBERS * 3
        for user in subscribers:
            assert await balance(e1, user.id) == funding - 3 * PRICE
        while await apply_pending_credits(e1):  # fold the seller's credits in
            pass
        assert await balance(e1, seller.id) == SUBSCRIBERS * 3 * PRICE
        for sub in subs:
            after = await ledger.subscription(sub.public_id)
            assert after.period_index == 2 and after.status == "active"
            assert after.current_period_end == add_months(sub.anchor_at, 3)
        assert await check_invariants(e1) == []
    finally:
        await e1.dispose()
        await e2.dispose()


async def test_the_job_down_for_longer_than_a_period_charges_each_missed_period_once(
        race_url: str) -> None:
    """Catching up after a long outage: every period that fell due is its own invoice and its
    own payment, once, and the subscription ends up in the current period (the ledger's model:
    every period is an invoice; a catch-up never bills one period twice nor skips to a double
    charge of the current one)."""
    e1 = make_engine(race_url, pool_size=4)
    e2 = make_engine(race_url, pool_size=4)
    ledger = Ledger(e1)
    try:
        seller = await ensure_user(e1, next(_telegram_ids))
        plan = await ledger.create_plan(seller.id, "Weekly-ish", {1: PRICE})
        user = await ensure_user(e1, next(_telegram_ids))
        await adjust_balance(e1, user.id, PRICE * 10, "LIQ", reason="test funding")
        subscribed = await ledger.subscribe(plan.public_id, user.id, 1)
        assert subscribed.invoice is not None
        await ledger.pay_from_balance(subscribed.invoice, user.id, None)
        sub = await ledger.subscription(subscribed.subscription.public_id)
        # Down from the end of period 0 until a day into period 3: periods 1, 2, 3 fell due.
        later = add_months(sub.anchor_at, 3) + timedelta(days=1)
        await asyncio.gather(run_job(e1, later), run_job(e2, later))
        assert await run_job(e1, later) == 0
        after = await ledger.subscription(sub.public_id)
        paid = await charges(e1, [sub.id])
        assert set(paid.values()) == {1}, paid
        periods = after.period_index + 1
        assert len(paid) == periods
        assert after.current_period_end > later  # the subscription is in the current period
        assert after.current_period_end == add_months(sub.anchor_at, periods)
        assert await balance(e1, user.id) == PRICE * 10 - PRICE * periods
        assert await check_invariants(e1) == []
    finally:
        await e1.dispose()
        await e2.dispose()



async def test_past_due_subscriptions_do_not_hold_up_the_renewals_behind_them(
        race_url: str) -> None:
    """Past-due subscriptions stay due through their grace (the job retries their charge);
    however many there are, the job still returns and still renews the funded subscriptions
    due after them. Here the job takes 2 at a time and 3 that fall past due come first (in
    production: 200 at a time, so 200 subscribers short of money at once)."""
    ledger = Ledger(e := make_engine(race_url, pool_size=4))
    try:
        seller = await ensure_user(e, next(_telegram_ids))
        plan = await ledger.create_plan(seller.id, "Queue", {1: PRICE})
        subs = []
        for funding in (PRICE, PRICE, PRICE, 2 * PRICE):  # the last can pay its renewal
            user = await ensure_user(e, next(_telegram_ids))
            await adjust_balance(e, user.id, funding, "LIQ", reason="test funding")
            subscribed = await ledger.subscribe(plan.public_id, user.id, 1)
            assert subscribed.invoice is not None
            await ledger.pay_from_balance(subscribed.invoice, user.id, None)
            subs.append(await ledger.subscription(subscribed.subscription.public_id))
        now = max(s.current_period_end for s in subs) + MINUTE  # all four due, poor first
        # A hang guard, not a timing check: a job that never returns fails here.
        report = await asyncio.wait_for(renew_due(e, now, limit=2), timeout=60)
        assert (report.renewed, report.past_due) == (1, 3)
        assert (await ledger.subscription(subs[3].public_id)).period_index == 1
        assert [(await ledger.subscription(s.public_id)).status for s in subs[:3]] == \
            ["past_due"] * 3
    finally:
        await e.dispose()
