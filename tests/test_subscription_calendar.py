"""The billing calendar (issue 13, "Calendar"): periods in calendar months from the anchor, in
UTC, like Stripe's billing-cycle anchor. 31 January + 1 month is the last day of February, and
the period after it is back on the 31st, because every end is computed from the anchor, never
from the previous end. Python (`ledger.subscriptions.add_months`) and SQL (`paybot_add_months`)
must give the same instant, whatever the session's time zone."""

from __future__ import annotations

import calendar
import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.subscriptions import add_months
from tests.conftest import run_sql


def utc(y: int, m: int, d: int, hh: int = 12, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, ss, tzinfo=UTC)


def expected(anchor: datetime, n: int) -> datetime:
    """The rule, stated once: the month moves by n, the day is clamped to that month's last."""
    index = anchor.year * 12 + anchor.month - 1 + n
    year, month = divmod(index, 12)
    day = min(anchor.day, calendar.monthrange(year, month + 1)[1])
    return anchor.replace(year=year, month=month + 1, day=day)


async def sql_add_months(engine: AsyncEngine, anchor: datetime, n: int,
                         zone: str = "UTC") -> datetime:
    # The session's zone must not matter: the calendar is UTC's (a replica configured for
    # Moscow or New York must bill on the same instant).
    async with engine.connect() as conn:
        await conn.execute(text(f"SET TIME ZONE '{zone}'"))
        try:
            result = await conn.execute(text("SELECT paybot_add_months(:a, :n) AS t"),
                                        {"a": anchor, "n": n})
            value = result.scalar_one()
        finally:
            await conn.execute(text("RESET TIME ZONE"))
            await conn.commit()
    return value.astimezone(UTC)


CASES = [
    # (anchor, months, end)
    (utc(2027, 1, 31), 1, utc(2027, 2, 28)),
    (utc(2028, 1, 31), 1, utc(2028, 2, 29)),  # leap year
    (utc(2027, 1, 31), 2, utc(2027, 3, 31)),  # back on the 31st: from the anchor, no drift
    (utc(2027, 1, 31), 3, utc(2027, 4, 30)),
    (utc(2028, 2, 29), 12, utc(2029, 2, 28)),
    (utc(2028, 2, 29), 48, utc(2032, 2, 29)),
    (utc(2026, 11, 30), 3, utc(2027, 2, 28)),
    (utc(2027, 11, 30), 3, utc(2028, 2, 29)),
    (utc(2026, 12, 31), 1, utc(2027, 1, 31)),  # across the year
    (utc(2026, 8, 31), 6, utc(2027, 2, 28)),
    (utc(2027, 3, 31, 23, 59, 59), 1, utc(2027, 4, 30, 23, 59, 59)),  # time of day kept
    (utc(2027, 1, 15), 0, utc(2027, 1, 15)),
]


@pytest.mark.parametrize(("anchor", "months", "end"), CASES)
async def test_month_ends_and_leap_years(engine: AsyncEngine, anchor: datetime, months: int,
                                         end: datetime) -> None:
    assert add_months(anchor, months) == end
    assert await sql_add_months(engine, anchor, months) == end


@pytest.mark.parametrize("zone", ["Europe/Moscow", "America/New_York", "Pacific/Chatham"])
async def test_the_calendar_is_utc_whatever_the_sessions_zone(engine: AsyncEngine,
                                                              zone: str) -> None:
    # 1 March 02:00 UTC is still 28 February in New York: a local-calendar month would end on
    # 28/29 March instead of 1 April.
    anchor = utc(2027, 3, 1, 2, 0)
    assert await sql_add_months(engine, anchor, 1, zone) == utc(2027, 4, 1, 2, 0)
    anchor = utc(2027, 1, 31, 22, 30)  # already 1 February in Moscow and Chatham
    assert await sql_add_months(engine, anchor, 1, zone) == utc(2027, 2, 28, 22, 30)


async def test_periods_computed_from_the_anchor_never_drift(engine: AsyncEngine) -> None:
    """Two years of monthly periods anchored on 31 January: each month that has a 31st ends on
    it, whereas adding a month to each previous end would have stuck on the 28th forever."""
    anchor = utc(2027, 1, 31, 9, 15)
    ends = [add_months(anchor, k) for k in range(1, 25)]
    rows = await run_sql(engine, "SELECT k, paybot_add_months(:a, k) AS t "
                                 "FROM generate_series(1, 24) k ORDER BY k", a=anchor)
    assert [r["t"].astimezone(UTC) for r in rows] == ends
    for end in ends:
        last = calendar.monthrange(end.year, end.month)[1]
        assert end.day == min(31, last)
        assert (end.hour, end.minute) == (9, 15)
    assert all(a < b for a, b in itertools.pairwise(ends))  # strictly increasing
    chained = anchor
    for _ in range(24):
        chained = add_months(chained, 1)
    assert chained.day == 28 and ends[-1].day == 31  # the drift the anchor avoids


anchors = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 12, 31),
                       timezones=st.just(UTC)).map(lambda t: t.replace(microsecond=0))
month_counts = st.integers(0, 12 * 20)


@given(anchor=anchors, n=month_counts)
@settings(max_examples=400, deadline=None)
def test_add_months_keeps_the_anchor_day_clamped_to_the_month(anchor: datetime, n: int) -> None:
    end = add_months(anchor, n)
    months_moved = (end.year * 12 + end.month) - (anchor.year * 12 + anchor.month)
    assert months_moved == n
    assert end.day == min(anchor.day, calendar.monthrange(end.year, end.month)[1])
    assert end.time() == anchor.time() and end.utcoffset() == timedelta(0)
    assert end == expected(anchor, n)


async def test_sql_agrees_with_python_on_many_anchors(engine: AsyncEngine) -> None:
    """The same property for the SQL function: Hypothesis draws the cases, one query checks
    them all (a database round trip per example would make this slow, not stronger)."""
    cases: list[tuple[datetime, int]] = []

    @given(anchor=anchors, n=month_counts)
    @settings(max_examples=400, deadline=None, database=None)
    def collect(anchor: datetime, n: int) -> None:
        cases.append((anchor, n))

    collect()
    # Month ends and leap days, which random draws rarely hit, always included.
    for year in (2027, 2028, 2100):
        for month in range(1, 13):
            last = calendar.monthrange(year, month)[1]
            cases += [(utc(year, month, last, 23, 59, 59), n) for n in (1, 2, 3, 6, 12, 13, 48)]
    rows = await run_sql(
        engine,
        "SELECT ord, paybot_add_months(a, n) AS t "
        "FROM unnest(CAST(:anchors AS timestamptz[]), CAST(:ns AS int[])) "
        "WITH ORDINALITY AS c(a, n, ord) ORDER BY ord",
        anchors=[a for a, _ in cases], ns=[n for _, n in cases],
    )
    got = [r["t"].astimezone(UTC) for r in rows]
    want = [expected(a, n) for a, n in cases]
    mismatches = [(a, n, g, w) for (a, n), g, w in zip(cases, got, want, strict=True) if g != w]
    assert not mismatches, mismatches[:5]
    assert [add_months(a, n) for a, n in cases] == want
