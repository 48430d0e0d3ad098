"""Hypothesis drives subscriptions and a small Python model side by side (issue 13, "Tests"):
subscribe, pay the first invoice, the renewal job at a clock the test controls, top-ups,
cancelling (now or at the period's end), changing plan, the seller's extension and time passing.
After every step the two must agree on each subscription's status, period and end, every
balance and every charge; no (subscription, period) is ever paid twice; `paybot admin check`'s
invariants hold; access is granted exactly when the model says so; money is conserved.

The model's rules, stated once (ledger/sql/subscriptions.sql is the implementation):
- period k ends at anchor + ((k - anchor_index + 1) * months + extra_months) calendar months;
- the job takes due subscriptions (period end <= now; past due ones only when their retry time
  or the grace's end has come) in (end, id) order: cancelled at the period's end if asked,
  expired once past due beyond the grace, else the next period is charged from the balance
  (short: past due, grace = period end + grace, tried again 6 hours later), one period a time;
- access: trialing or active, or past due before the grace ends.

A database of its own: the job renews everything due at the clock it is given."""

from __future__ import annotations

import asyncio
import collections
import itertools
import math
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import errors
from ledger.accounts import adjust_balance, balance
from ledger.invariants import check_invariants
from ledger.migrate import upgrade
from ledger.payments import pay_from_balance
from ledger.plans import create_plan
from ledger.postgres import make_engine, throwaway_database
from ledger.subscriptions import (
    DEFAULT_GRACE,
    Subscription,
    add_months,
    cancel_subscription,
    change_plan,
    extend_subscription,
    get_subscription,
    has_access,
    renew_due,
    subscribe,
)
from ledger.users import ensure_user
from tests.conftest import run_sql

GRACE = DEFAULT_GRACE
RETRY = timedelta(hours=6)  # a past-due subscription's balance is tried again this often
LIVE = ("incomplete", "trialing", "active", "past_due")
SEEN: collections.Counter[str] = collections.Counter()  # what the run exercised (-s shows)
_tg = itertools.count(secrets.randbelow(10**9) * 1000 + 700_000_000_000)

# Three plans of one seller: two to change between, one with a trial.
PLANS = {
    "basic": ({1: 300, 3: 800}, 0),
    "pro": ({1: 500, 3: 1300, 12: 4500}, 0),
    "trial": ({1: 400}, 7),
}


@dataclass
class Sub:
    """The model of one subscription."""

    public_id: str
    id: int
    plan: str
    user: int
    months: int
    amount: int
    status: str
    anchor: datetime
    anchor_index: int
    invoice: str | None = None  # the first period's, while incomplete
    extra: int = 0
    k: int = 0
    start: datetime | None = None
    end: datetime | None = None
    grace_until: datetime | None = None
    retry_at: datetime | None = None  # past due: when the balance is tried again
    cancel_at_end: bool = False
    charged: set[int] = field(default_factory=set)  # periods paid

    def period_end(self, k: int) -> datetime:
        return add_months(self.anchor, (k - self.anchor_index + 1) * self.months + self.extra)

    def period_start(self, k: int) -> datetime:
        return self.anchor if k == self.anchor_index else self.period_end(k - 1)

    def entitled(self, now: datetime) -> bool:
        if self.status in ("trialing", "active"):
            return True
        return self.status == "past_due" and self.grace_until is not None \
            and self.grace_until > now


@pytest.fixture(scope="module")
async def model_url(server_url: str) -> AsyncIterator[str]:
    async with throwaway_database(server_url, "paybot_sub_model") as url:
        await upgrade(url)
        yield url


async def run_job(db: AsyncEngine, now: datetime) -> None:
    """The renewal job run until it makes no more progress (each run renews one period of a
    subscription; a job that was down catches up run after run)."""
    while True:
        report = await renew_due(db, now)
        if report.renewed + report.cancelled + report.expired == 0:
            return


def test_subscriptions_agree_with_a_simple_model(model_url: str) -> None:
    loop = asyncio.new_event_loop()
    engine = make_engine(model_url, pool_size=2)  # lives on this test's own event loop
    run = loop.run_until_complete

    class SubscriptionModel(RuleBasedStateMachine):
        users = Bundle("users")
        subs = Bundle("subs")

        @initialize(target=users)
        def setup(self) -> object:
            self.now = datetime.now(UTC)
            self.balances: dict[int, int] = {}
            self.funded = 0
            self.subs: dict[str, Sub] = {}
            self.trial_used: set[tuple[str, int]] = set()
            self.seller = self._new_user(0)
            self.plans: dict[str, str] = {}  # name -> public id
            for name, (prices, trial) in PLANS.items():
                plan = run(create_plan(engine, seller_id=self.seller, name=name, prices=prices,
                                       trial_days=trial))
                self.plans[name] = plan.public_id
            return multiple(self._new_user(2000), self._new_user(500), self._new_user(0))

        def _new_user(self, funding: int) -> int:
            user = run(ensure_user(engine, next(_tg)))
            self.balances[user.id] = 0
            if funding:
                self._fund(user.id, funding)
            return user.id

        def _fund(self, user: int, amount: int) -> None:
            run(adjust_balance(engine, user, amount, "LIQ", "model funding"))
            self.balances[user] += amount
            self.funded += amount

        def _live(self, plan: str, user: int) -> Sub | None:
            return next((s for s in self.subs.values()
                         if s.plan == plan and s.user == user and s.status in LIVE), None)

        def _charge(self, s: Sub, k: int) -> None:
            assert k not in s.charged
            s.charged.add(k)
            self.balances[s.user] -= s.amount
            self.balances[self.seller] += s.amount

        # --- rules ----------------------------------------------------------------------

        @rule(target=users, funding=st.sampled_from([0, 300, 500, 1000, 5000]))
        def add_user(self, funding: int) -> int:
            return self._new_user(funding)

        @rule(user=users, amount=st.sampled_from([100, 300, 500, 2000]))
        def top_up(self, user: int, amount: int) -> None:
            self._fund(user, amount)

        @rule(target=subs, user=users, plan=st.sampled_from(list(PLANS)),
              months=st.sampled_from([1, 1, 1, 3, 3, 6, 12]), pay=st.booleans())
        def subscribe(self, user: int, plan: str, months: int, pay: bool) -> object:
            # `pay`: the subscriber pays the first invoice at once (as most do)
            prices, trial = PLANS[plan]
            live = self._live(plan, user)
            expected: type[Exception] | None = None
            if user == self.seller:
                expected = errors.OwnPlan
            elif months not in prices:
                expected = errors.PeriodNotOffered
            elif live is not None and not (live.status == "incomplete" and live.months == months):
                expected = errors.AlreadySubscribed
            try:
                got = run(subscribe(engine, self.plans[plan], user, months))
            except errors.LedgerError as exc:
                assert expected is not None and isinstance(exc, expected), (exc, expected)
                SEEN[f"subscribe: {exc.code}"] += 1
                return multiple()
            assert expected is None, f"expected {expected}"
            sub = got.subscription
            if live is not None:  # the same request again: the same subscription
                assert got.replayed and sub.public_id == live.public_id
                assert got.invoice == live.invoice
                return multiple()
            assert not got.replayed
            SEEN["subscribe"] += 1
            # one trial per plan and subscriber, ever — also after changing away from it
            # (test_a_trial_is_had_once_per_plan_even_after_a_change_of_plan)
            trialing = trial > 0 and (plan, user) not in self.trial_used
            if trialing:
                self.trial_used.add((plan, user))
                assert got.invoice is None and sub.status == "trialing"
                assert sub.trial_end == sub.current_period_end == sub.anchor_at
                assert sub.anchor_at - sub.created_at == timedelta(days=trial)
                m = Sub(sub.public_id, sub.id, plan, user, months, prices[months], "trialing",
                        sub.anchor_at, 1, start=sub.current_period_start, end=sub.anchor_at)
            else:
                assert got.invoice is not None and sub.status == "incomplete"
                m = Sub(sub.public_id, sub.id, plan, user, months, prices[months], "incomplete",
                        sub.anchor_at, 0, invoice=got.invoice, start=sub.anchor_at)
                m.end = m.period_end(0)
            self.subs[m.public_id] = m
            if pay:
                self.pay_first_invoice(m.public_id)
            return m.public_id

        @rule(sub=subs)
        def pay_first_invoice(self, sub: str) -> None:
            m = self.subs.get(sub)
            if m is None or m.invoice is None:
                return
            expected: type[Exception] | None = None
            if m.status != "incomplete":
                expected = errors.InvoiceAlreadyPaid if 0 in m.charged else errors.LedgerError
            elif self.balances[m.user] < m.amount:
                expected = errors.InsufficientFunds
            try:
                run(pay_from_balance(engine, m.invoice, m.user, None))
            except errors.LedgerError as exc:
                assert expected is not None and isinstance(exc, expected), (exc, expected)
                return
            assert expected is None, f"expected {expected}"
            self._charge(m, 0)
            SEEN["first invoice paid"] += 1
            m.status, m.k, m.start, m.end = "active", 0, m.period_start(0), m.period_end(0)

        @rule(user=users)
        def spend_everything(self, user: int) -> None:
            # The balance goes elsewhere (an operator's debit here): the next renewal falls short.
            if self.balances[user] > 0:
                run(adjust_balance(engine, user, -self.balances[user], "LIQ", "model spend"))
                self.funded -= self.balances[user]
                self.balances[user] = 0

        @rule(days=st.sampled_from([0.05, 1, 2, 3, 4, 10, 29, 31, 92]))
        def time_passes(self, days: float) -> None:
            self.now += timedelta(days=days)

        @rule(sub=subs, after=st.sampled_from([timedelta(seconds=1), timedelta(days=2),
                                               timedelta(days=3, seconds=1),
                                               timedelta(days=5)]))
        def until_the_period_ends(self, sub: str, after: timedelta) -> None:
            m = self.subs.get(sub)
            if m is not None and m.end is not None:
                self.now = max(self.now, m.end + after)

        @rule()
        def renewal_job(self) -> None:
            run(run_job(engine, self.now))
            self._simulate_job()

        @rule(sub=subs, after=st.sampled_from([timedelta(seconds=1), timedelta(hours=7),
                                               timedelta(days=3, seconds=1)]))
        def the_job_runs_after_the_period_ends(self, sub: str, after: timedelta) -> None:
            self.until_the_period_ends(sub, after)
            self.renewal_job()

        @rule(sub=subs)
        def past_due_subscriber_tops_up(self, sub: str) -> None:
            # Money arrives during the grace; the job's next try (6 hours on) takes it.
            m = self.subs.get(sub)
            if m is None or m.status != "past_due":
                return
            assert m.retry_at is not None
            self._fund(m.user, m.amount)
            self.now = max(self.now, m.retry_at)
            self.renewal_job()

        def _simulate_job(self) -> None:
            """What the job must have done: one action at a time, in (end, id) order."""
            now = self.now
            while True:
                due = sorted((s for s in self.subs.values()
                              if s.status in ("trialing", "active", "past_due")
                              and s.end is not None and s.end <= now
                              and (s.status != "past_due" or s.retry_at is None
                                   or s.retry_at <= now or s.grace_until is None
                                   or s.grace_until <= now)),
                             key=lambda s: (s.end, s.id))
                for s in due:
                    if s.cancel_at_end:
                        s.status = "cancelled"
                        SEEN["job: cancelled at the period's end"] += 1
                    elif s.status == "past_due" and s.grace_until is not None \
                            and s.grace_until <= now:
                        s.status = "expired"
                        SEEN["job: expired after the grace"] += 1
                    elif self.balances[s.user] >= s.amount:
                        SEEN[f"job: renewed from {s.status}"] += 1
                        self._charge(s, s.k + 1)
                        s.k += 1
                        s.status, s.start, s.end = "active", s.period_start(s.k), \
                            s.period_end(s.k)
                        s.grace_until = None
                    else:
                        if s.status != "past_due":
                            assert s.end is not None
                            s.status, s.grace_until = "past_due", s.end + GRACE
                        s.retry_at = now + RETRY
                        SEEN["job: balance short"] += 1
                    break  # something happened: look again from the start
                else:
                    return

        @rule(sub=subs, by_seller=st.booleans(), at_period_end=st.booleans())
        def cancel(self, sub: str, by_seller: bool, at_period_end: bool) -> None:
            m = self.subs.get(sub)
            if m is None:
                return
            actor = self.seller if by_seller else m.user
            try:
                run(cancel_subscription(engine, sub, actor_id=actor,
                                        at_period_end=at_period_end))
            except errors.SubscriptionEnded:
                assert m.status in ("cancelled", "expired")
                return
            assert m.status in LIVE
            SEEN[f"cancel {'at the end' if at_period_end else 'now'} when {m.status}"] += 1
            if at_period_end and m.status != "incomplete":
                m.cancel_at_end = True
            else:
                m.status = "cancelled"

        @rule(sub=subs, months=st.integers(1, 3))
        def seller_extends(self, sub: str, months: int) -> None:
            m = self.subs.get(sub)
            if m is None:
                return
            try:
                got = run(extend_subscription(engine, sub, seller_id=self.seller,
                                              months=months, reason="goodwill"))
            except errors.SubscriptionEnded:
                assert m.status not in ("trialing", "active", "past_due")
                return
            assert m.status in ("trialing", "active", "past_due")
            SEEN[f"extended when {m.status}"] += 1
            assert m.end is not None
            old_end = m.end
            if m.status == "trialing":
                m.anchor = add_months(m.anchor, months)
                m.end = add_months(m.end, months)
            else:
                m.extra += months
                m.end = m.period_end(m.k)
                m.status, m.grace_until = "active", None
            assert got.current_period_end == m.end > old_end

        @rule(sub=subs, plan=st.sampled_from(list(PLANS)), months=st.sampled_from([1, 1, 3, 12]))
        def change(self, sub: str, plan: str, months: int) -> None:
            m = self.subs.get(sub)
            if m is None:
                return
            prices, _ = PLANS[plan]
            t1 = datetime.now(UTC)
            if m.status == "active" and m.start is not None and m.start > t1:
                # Proration reads the database's clock, which the model's may be ahead of: a
                # period that starts in the (real) future is not one a subscriber can be in.
                SEEN["change: skipped, period starts later"] += 1
                return
            other = self._live(plan, m.user)
            expected: type[Exception] | None = None
            if m.status in ("cancelled", "expired"):
                expected = errors.SubscriptionEnded
            elif m.status not in ("active", "trialing"):
                expected = errors.SubscriptionNotCurrent  # unpaid: pay what is due first
            elif months not in prices:
                expected = errors.PeriodNotOffered
            elif plan == m.plan and months == m.months:
                expected = errors.SamePlan
            elif plan != m.plan and other is not None:
                expected = errors.AlreadySubscribed
            low = high = 0  # the difference charged, at the latest and earliest instant
            if expected is None and m.status == "active":
                assert m.start is not None and m.end is not None
                t2 = t1 + timedelta(seconds=30)  # generous: the call takes milliseconds
                high = self._diff(m, prices[months], t1)
                low = self._diff(m, prices[months], t2)
            before = self.balances[m.user]
            try:
                got = run(change_plan(engine, sub, m.user, self.plans[plan], months))
            except errors.InsufficientFunds:
                # the subscriber short of a charge, or the seller short of a downgrade's
                # credit (it comes from the seller's balance, never below zero)
                seller_short = low < 0 and self.balances[self.seller] < -low
                assert expected is None and (before < high or seller_short), (before, low, high)
                SEEN["change: insufficient_funds"] += 1
                return
            except errors.LedgerError as exc:
                assert expected is not None and isinstance(exc, expected), (exc, expected)
                SEEN[f"change: {exc.code}"] += 1
                return
            assert expected is None, f"expected {expected}"
            how = "charged" if got.charged else "credited" if got.credited else "even"
            SEEN[f"change: {how}"] += 1
            diff = got.charged - got.credited
            assert low <= diff <= high and diff <= before, (low, diff, high, before)
            assert got.charged == 0 or got.credited == 0
            self.balances[m.user] -= diff
            self.balances[self.seller] += diff
            if months != m.months:  # a new period length re-anchors at the period's end
                assert m.end is not None
                m.anchor, m.anchor_index, m.extra = m.end, m.k + 1, 0
            m.plan, m.months, m.amount = plan, months, prices[months]
            assert got.subscription.current_period_end == m.end  # the period's end stays

        @staticmethod
        def _diff(m: Sub, new_amount: int, at: datetime) -> int:
            assert m.start is not None and m.end is not None
            total = Fraction((m.end - m.start) // timedelta(microseconds=1))
            unused = Fraction(max(0, (m.end - at) // timedelta(microseconds=1))) / total
            return math.ceil(new_amount * unused) - math.floor(m.amount * unused)

        # --- invariants -----------------------------------------------------------------

        @invariant()
        def subscriptions_agree(self) -> None:
            for m in self.subs.values():
                got = run(get_subscription(engine, m.public_id))
                assert (got.status, got.period_index, got.months, got.amount) == \
                    (m.status, m.k, m.months, m.amount), (m, got)
                if m.status not in ("cancelled", "expired"):
                    assert got.current_period_end == m.end, (m, got)
                    assert got.current_period_start == m.start, (m, got)
                    assert got.cancel_at_period_end == m.cancel_at_end
                    assert got.grace_until == m.grace_until, (m, got)
                assert got.entitled(self.now) == m.entitled(self.now)

        @invariant()
        def access_is_granted_exactly_when_the_model_says(self) -> None:
            pairs = {(m.plan, m.user) for m in self.subs.values()}
            for plan, user in pairs:
                entitled = any(m.entitled(self.now) for m in self.subs.values()
                               if (m.plan, m.user) == (plan, user))
                got = run(has_access(engine, self.plans[plan], user, self.now))
                assert (got is not None) == entitled, (plan, user, got)

        @invariant()
        def each_period_is_charged_once_as_the_model_says(self) -> None:
            if not self.subs:
                return
            rows = run(run_sql(
                engine,
                "SELECT s.public_id AS sub, sp.period_index AS k, count(p.id) AS n "
                "  FROM subscription_periods sp JOIN subscriptions s ON s.id = sp.subscription_id"
                "  JOIN payments p ON p.invoice_id = sp.invoice_id "
                " WHERE s.public_id = ANY(:ids) GROUP BY 1, 2",
                ids=list(self.subs)))
            paid = {(r["sub"], r["k"]): r["n"] for r in rows}
            assert set(paid.values()) <= {1}, paid
            assert set(paid) == {(m.public_id, k) for m in self.subs.values()
                                 for k in m.charged}

        @invariant()
        def balances_agree_and_money_is_conserved(self) -> None:
            for user, expected in self.balances.items():
                got = run(balance(engine, user))
                assert got == expected, (user, got, expected)
                assert got >= 0
            assert sum(self.balances.values()) == self.funded

        @invariant()
        def the_ledgers_invariants_hold(self) -> None:
            assert run(check_invariants(engine)) == []

    try:
        run_state_machine_as_test(
            SubscriptionModel,
            settings=settings(max_examples=100, stateful_step_count=40, deadline=None,
                              suppress_health_check=list(HealthCheck)),
        )
    finally:
        run(engine.dispose())
        loop.close()
    print(dict(SEEN))



async def test_a_trial_is_had_once_per_plan_even_after_a_change_of_plan(model_url: str) -> None:
    """The ledger grants a plan's trial once per subscriber (subscribing again after cancelling
    starts no new trial). Changing a trialing subscription to another plan and subscribing to
    the first plan again must not open a second free trial either."""
    engine = make_engine(model_url, pool_size=2)
    try:
        seller = await ensure_user(engine, next(_tg))
        buyer = await ensure_user(engine, next(_tg))
        await adjust_balance(engine, buyer.id, 5000, "LIQ", "test funding")
        trial = await create_plan(engine, seller_id=seller.id, name="Trial", prices={1: 400},
                                  trial_days=7)
        other = await create_plan(engine, seller_id=seller.id, name="Other", prices={1: 300})
        first = await subscribe(engine, trial.public_id, buyer.id, 1)
        assert first.subscription.status == "trialing"
        await change_plan(engine, first.subscription.public_id, buyer.id, other.public_id, 1)
        again = await subscribe(engine, trial.public_id, buyer.id, 1)
        assert again.subscription.status == "incomplete" and again.invoice is not None
    finally:
        await engine.dispose()


async def _paid_monthly(engine: AsyncEngine, funding: int) -> tuple[int, Subscription]:
    """A seller's monthly plan of 300 and a subscriber who paid its first period."""
    seller = await ensure_user(engine, next(_tg))
    buyer = await ensure_user(engine, next(_tg))
    await adjust_balance(engine, buyer.id, funding, "LIQ", "test funding")
    plan = await create_plan(engine, seller_id=seller.id, name="Monthly", prices={1: 300})
    got = await subscribe(engine, plan.public_id, buyer.id, 1)
    assert got.invoice is not None
    await pay_from_balance(engine, got.invoice, buyer.id, None)
    return seller.id, await get_subscription(engine, got.subscription.public_id)


async def period_invoices(engine: AsyncEngine, public_id: str) -> list[dict[str, object]]:
    return await run_sql(
        engine, "SELECT sp.period_index AS k, sp.status, i.public_id AS invoice, "
                "i.status AS invoice_status, (SELECT count(*) FROM payments p "
                "WHERE p.invoice_id = i.id) AS payments "
                "FROM subscription_periods sp JOIN subscriptions s ON s.id = sp.subscription_id "
                "LEFT JOIN invoices i ON i.id = sp.invoice_id WHERE s.public_id = :id "
                "ORDER BY sp.period_index", id=public_id)


async def test_past_due_then_money_arrives_the_next_try_renews_it(model_url: str) -> None:
    """Short at the renewal: past due, access kept through the grace; money arrives and the
    job's next try pays the same period's invoice, once."""
    engine = make_engine(model_url, pool_size=2)
    try:
        _, sub = await _paid_monthly(engine, 300)
        end = sub.current_period_end
        pid = sub.public_id
        await run_job(engine, end + timedelta(seconds=1))
        late = await get_subscription(engine, pid)
        assert late.status == "past_due" and late.grace_until == end + GRACE
        assert late.entitled(end + GRACE - timedelta(seconds=1))
        assert not late.entitled(end + GRACE)
        await adjust_balance(engine, late.subscriber_id, 300, "LIQ", "top up")
        await run_job(engine, end + RETRY + timedelta(minutes=1))
        renewed = await get_subscription(engine, pid)
        assert (renewed.status, renewed.period_index, renewed.grace_until) == ("active", 1, None)
        assert renewed.current_period_end == add_months(sub.anchor_at, 2)
        assert await balance(engine, late.subscriber_id) == 0
        rows = await period_invoices(engine, pid)
        assert [(r["k"], r["status"], r["payments"]) for r in rows] == \
            [(0, "paid", 1), (1, "paid", 1)]
    finally:
        await engine.dispose()


async def test_the_seller_extends_a_past_due_subscription(model_url: str) -> None:
    """The seller gives a month: the subscription is current again until the old end + 1 month
    (from the anchor), the unpaid period's invoice is void (nobody can pay it twice), and the
    next renewal charges that period once, with a new invoice."""
    engine = make_engine(model_url, pool_size=2)
    try:
        seller, sub = await _paid_monthly(engine, 300)
        end = sub.current_period_end
        pid = sub.public_id
        await run_job(engine, end + timedelta(seconds=1))
        assert (await get_subscription(engine, pid)).status == "past_due"
        [_, unpaid] = await period_invoices(engine, pid)
        got = await extend_subscription(engine, pid, seller_id=seller, months=1,
                                        reason="outage apology")
        assert (got.status, got.grace_until, got.period_index) == ("active", None, 0)
        assert got.current_period_end == add_months(sub.anchor_at, 2)
        with pytest.raises(errors.LedgerError):
            await pay_from_balance(engine, str(unpaid["invoice"]), got.subscriber_id, None)
        await adjust_balance(engine, got.subscriber_id, 300, "LIQ", "top up")
        await run_job(engine, got.current_period_end + timedelta(seconds=1))
        after = await get_subscription(engine, pid)
        assert (after.status, after.period_index) == ("active", 1)
        assert after.current_period_end == add_months(sub.anchor_at, 3)
        rows = await period_invoices(engine, pid)
        assert [(r["k"], r["status"], r["payments"]) for r in rows] == \
            [(0, "paid", 1), (1, "paid", 1)]
        assert rows[1]["invoice"] != unpaid["invoice"]
    finally:
        await engine.dispose()
