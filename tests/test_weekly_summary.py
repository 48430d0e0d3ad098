"""The weekly summary job: a seller who turned the summary on gets last week's figures once per
ISO week — however often the job runs, after a restart, with two processes running it at once
— and a seller who did not gets nothing. The figures are the rollups' (revenue per currency
against the week before, payments, what is open, the month's top item)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import text

from ledger.invoices import new_invoice
from ledger.seller_settings import save_seller_settings
from tests.conftest import run_sql
from watchers.weekly_summary import (
    WeeklySummaries,
    monday,
    queue_summaries,
    summary_payload,
    week_due,
    week_key,
)

TODAY = datetime.now(UTC).date()
THIS_WEEK = monday(TODAY)
# The job as it runs next Monday at 10:00 UTC: this week is "last week" then.
NEXT_MONDAY = datetime.combine(THIS_WEEK + timedelta(days=7), time(10), UTC)


async def _invoice(ledger, seller, amount: int, title: str = "Beans"):  # type: ignore[no-untyped-def]
    invoice, _ = await ledger.issue_invoice(new_invoice(seller_id=seller.id, amount=amount,
                                                        title=title))
    return invoice


async def _summaries(engine, seller_id: int | None = None) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    rows = await run_sql(engine, """SELECT payload FROM outbox
                                     WHERE event_type = 'seller.weekly_summary' ORDER BY id""")
    return [r["payload"] for r in rows  # type: ignore[misc]
            if seller_id is None or r["payload"]["recipient"] == seller_id]  # type: ignore[index]


async def _move_rollup(engine, seller_id: int, method: str, days: int) -> None:  # type: ignore[no-untyped-def]
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE revenue_daily SET day = day + CAST(:n AS int) "
                                "WHERE seller_id = :s AND method = :m"),
                           {"s": seller_id, "m": method, "n": days})


def test_the_week_is_due_from_its_send_time_on() -> None:
    monday_9 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    assert week_due(monday_9 - timedelta(minutes=1)) is None
    assert week_due(monday_9) == date(2026, 11, 16)
    assert week_due(monday_9 + timedelta(days=6, hours=14)) == date(2026, 11, 16)  # Sunday
    assert week_due(monday_9, weekday=2, hour=9) is None  # sent on Wednesdays
    assert week_key(date(2026, 11, 16)) == "2026-W47"


async def test_an_opted_in_seller_gets_one_summary_a_week(ledger, make_user) -> None:
    seller, quiet, buyer = await make_user(), await make_user(), await make_user(balance=10_000)
    await save_seller_settings(ledger.engine, seller.id, weekly_summary=True)
    await save_seller_settings(ledger.engine, quiet.id, weekly_summary=False)
    paid = await _invoice(ledger, seller, 1_500)
    await ledger.pay_from_balance(paid.public_id, buyer.id, "w1")
    sold_by_quiet = await _invoice(ledger, quiet, 900)
    await ledger.pay_from_balance(sold_by_quiet.public_id, buyer.id, "w2")

    job = WeeklySummaries(ledger.engine)
    await job.run(NEXT_MONDAY)
    await job.run(NEXT_MONDAY + timedelta(hours=1))
    restarted = WeeklySummaries(ledger.engine)  # a new process: it remembers nothing
    await restarted.run(NEXT_MONDAY + timedelta(hours=2))
    # Two more replicas, both fresh, running the same week: still once.
    one, two = WeeklySummaries(ledger.engine), WeeklySummaries(ledger.engine)
    await asyncio.gather(one.run(NEXT_MONDAY), two.run(NEXT_MONDAY))

    [summary] = await _summaries(ledger.engine, seller.id)
    assert summary["week"] == week_key(THIS_WEEK)
    assert await _summaries(ledger.engine, quiet.id) == []

    # The week after: one more, of that week (nothing paid in it: a quiet week).
    await restarted.run(NEXT_MONDAY + timedelta(days=7))
    weeks = [s["week"] for s in await _summaries(ledger.engine, seller.id)]
    assert weeks == [week_key(THIS_WEEK), week_key(THIS_WEEK + timedelta(days=7))]
    later = (await _summaries(ledger.engine, seller.id))[-1]
    assert later["revenue"] == [{"currency": "LIQ", "amount": 0, "previous": 1_500}]
    assert later["payments"] == 0


async def test_two_processes_racing_queue_it_once(ledger, make_user) -> None:
    sellers = [await make_user() for _ in range(3)]
    for seller in sellers:
        await save_seller_settings(ledger.engine, seller.id, weekly_summary=True)
    one, two = WeeklySummaries(ledger.engine), WeeklySummaries(ledger.engine)

    await asyncio.gather(one.run(NEXT_MONDAY), two.run(NEXT_MONDAY))

    ids = {s.id for s in sellers}
    assert sorted(s["recipient"] for s in await _summaries(ledger.engine)
                  if s["recipient"] in ids) == sorted(ids)
    # However late the second one comes: the statement itself queues nothing twice.
    again = [await summary_payload(ledger.engine, s.id, THIS_WEEK) for s in sellers]
    assert await queue_summaries(ledger.engine, again) == 0


async def test_not_before_the_send_time(ledger, make_user) -> None:
    seller = await make_user()
    await save_seller_settings(ledger.engine, seller.id, weekly_summary=True)
    job = WeeklySummaries(ledger.engine, weekday=0, hour=11)
    await job.run(NEXT_MONDAY)  # 10:00, sent from 11:00
    assert await _summaries(ledger.engine, seller.id) == []
    await job.run(NEXT_MONDAY + timedelta(hours=1))
    assert len(await _summaries(ledger.engine, seller.id)) == 1


async def test_the_figures_compare_the_week_with_the_one_before(ledger, make_user) -> None:
    seller, buyer = await make_user(), await make_user(balance=10_000)
    await save_seller_settings(ledger.engine, seller.id, weekly_summary=True)
    for n, amount in enumerate((2_500, 500)):
        invoice = await _invoice(ledger, seller, amount)
        await ledger.pay_from_balance(invoice.public_id, buyer.id, f"f{n}")
    by_bank = await _invoice(ledger, seller, 2_000, title="Consulting")
    await ledger.record_manual_payment(by_bank.public_id, seller_id=seller.id, amount=2_000,
                                       received_on=TODAY, reference="B-1")
    await _invoice(ledger, seller, 700, title="Open")
    # History: the bank payment as if received a week earlier. A payment's time is the
    # database's clock, and the summary reads only the rollups: the row is moved back for the
    # run and put back after it, so the rollup again equals the payments (admin check).
    await _move_rollup(ledger.engine, seller.id, "manual", -7)  # 20.00 the week before
    try:
        await WeeklySummaries(ledger.engine).run(NEXT_MONDAY)
    finally:
        await _move_rollup(ledger.engine, seller.id, "manual", 7)

    [s] = await _summaries(ledger.engine, seller.id)
    assert (s["start"], s["end"]) == (THIS_WEEK.isoformat(),
                                      (THIS_WEEK + timedelta(days=6)).isoformat())
    assert s["revenue"] == [{"currency": "LIQ", "amount": 3_000, "previous": 2_000}]
    assert s["payments"] == 2
    assert s["open"] == [{"currency": "LIQ", "amount": 700, "count": 1}]
    assert s["overdue"] == []
    assert [(t["item"], t["amount"]) for t in s["top"]] == [("Beans", 3_000)]
