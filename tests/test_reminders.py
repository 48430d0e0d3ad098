"""Payment reminders (R1–R4): 7 days and 1 day before the due date and when overdue the buyer an
invoice was sent to gets one Telegram message per kind — with two replicas racing, across
restarts, after downtime — and never after payment, void, write-off or opt-out; the seller gets
one overdue digest a day. Time is passed in (`now`), never slept through.

These run on a database of their own: moving the clock weeks ahead would remind the invoices
of every other test in the run, whose outbox they watch."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.accounts import adjust_balance
from ledger.core import Ledger
from ledger.invoices import new_invoice
from ledger.migrate import upgrade
from ledger.models import Invoice, User
from ledger.postgres import make_engine, throwaway_database
from ledger.reminders import queue_due_reminders, queue_overdue_digests
from ledger.users import ensure_user
from tests.conftest import run_sql
from watchers.reminders import reminders_job

DAY = timedelta(days=1)
T0 = datetime.now(UTC).replace(microsecond=0)
_telegram_ids = itertools.count(secrets.randbelow(10**9) * 1000 + 1)


@pytest.fixture(scope="module")
async def reminders_url(server_url: str) -> AsyncIterator[str]:
    async with throwaway_database(server_url, "paybot_reminders") as url:
        await upgrade(url)
        yield url


@pytest.fixture(scope="module")
async def db(reminders_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(reminders_url, pool_size=4)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="module")
def ledger(db: AsyncEngine) -> Ledger:
    return Ledger(db)


async def user(db: AsyncEngine, balance: int = 0) -> User:
    made = await ensure_user(db, next(_telegram_ids))
    if balance:
        await adjust_balance(db, made.id, balance, "LIQ", reason="test funding")
    return made


async def invoice(ledger: Ledger, seller: User, buyer: User | None, *, due_in: timedelta,
                  amount: int = 1000) -> Invoice:
    """Issued at T0 (about now), due `due_in` later, sent to `buyer` (None: only issued)."""
    issued, _ = await ledger.issue_invoice(new_invoice(
        seller_id=seller.id, title="Consulting", amount=amount, due_at=T0 + due_in,
        expires_in=timedelta(days=90)))
    if buyer is not None:
        await ledger.send_invoice(seller.id, issued.public_id, buyer.telegram_id)
    return issued


async def reminders(db: AsyncEngine, inv: Invoice) -> list[str]:
    """The kinds of reminder queued for the invoice, in order."""
    rows = await run_sql(db, "SELECT payload->>'kind' AS kind FROM outbox "
                             "WHERE event_type = 'invoice.reminder' AND payload->>'invoice' = :id "
                             "ORDER BY id", id=inv.public_id)
    return [str(r["kind"]) for r in rows]


async def digests(db: AsyncEngine, seller: User) -> list[dict[str, object]]:
    rows = await run_sql(db, "SELECT payload FROM outbox WHERE event_type = "
                             "'seller.overdue_digest' AND (payload->>'recipient')::bigint = :s "
                             "ORDER BY id", s=seller.id)
    return [r["payload"] for r in rows]  # type: ignore[misc]


async def test_seven_and_one_day_reminders_each_go_out_once(db, ledger) -> None:
    seller, buyer = await user(db), await user(db)
    inv = await invoice(ledger, seller, buyer, due_in=10 * DAY)
    for at, expected in [(T0, []), (T0 + 2 * DAY, []),                 # 8 days before: none
                         (T0 + 3.5 * DAY, ["before_7"]), (T0 + 4 * DAY, ["before_7"]),
                         (T0 + 9.5 * DAY, ["before_7", "before_1"]),
                         (T0 + 9.9 * DAY, ["before_7", "before_1"]),
                         (T0 + 10.5 * DAY, ["before_7", "before_1", "overdue"]),
                         (T0 + 12 * DAY, ["before_7", "before_1", "overdue"])]:
        await queue_due_reminders(db, at)
        assert await reminders(db, inv) == expected, at - T0
    [payload] = [r["payload"] for r in await run_sql(
        db, "SELECT payload FROM outbox WHERE event_type = 'invoice.reminder' "
            "AND payload->>'invoice' = :id AND payload->>'kind' = 'before_1'", id=inv.public_id)]
    assert payload["recipient"] == buyer.id and payload["seller_id"] == seller.id  # type: ignore[index]
    assert datetime.fromisoformat(payload["due_at"]) == T0 + 10 * DAY  # type: ignore[index]


async def test_two_workers_racing_send_each_reminder_once(db, ledger, reminders_url) -> None:
    seller, buyer = await user(db), await user(db)
    invoices = [await invoice(ledger, seller, buyer, due_in=30 * DAY) for _ in range(40)]
    other = make_engine(reminders_url, pool_size=2)  # a second replica: its own connections
    try:
        for days_before in (6.5, 0.5, -1):  # before_7, before_1, overdue
            at = T0 + (30 - days_before) * DAY
            # small batches: each worker runs several statements, interleaved with the other's
            await asyncio.gather(queue_due_reminders(db, at, batch=7),
                                 queue_due_reminders(other, at, batch=7))
    finally:
        await other.dispose()
    for inv in invoices:
        assert await reminders(db, inv) == ["before_7", "before_1", "overdue"], inv.public_id


async def test_a_restarted_job_sends_nothing_new(db, ledger, reminders_url) -> None:
    seller, buyer = await user(db), await user(db)
    inv = await invoice(ledger, seller, buyer, due_in=5 * DAY)
    at = T0 + 4.5 * DAY
    await reminders_job(db, digest_hour=0, now=at)
    assert await reminders(db, inv) == ["before_1"]
    restarted = make_engine(reminders_url, pool_size=1)  # a new process, same database
    try:
        await reminders_job(restarted, digest_hour=0, now=at)
        await reminders_job(restarted, digest_hour=0, now=at + DAY / 4)
    finally:
        await restarted.dispose()
    assert await reminders(db, inv) == ["before_1"]


async def test_never_after_payment_void_write_off_opt_out_or_when_sent_to_no_one(
        db, ledger) -> None:
    seller, buyer = await user(db), await user(db, balance=10_000)
    paid, voided, written_off, opted_out, reminded = [
        await invoice(ledger, seller, buyer, due_in=10 * DAY) for _ in range(5)]
    not_sent = await invoice(ledger, seller, None, due_in=10 * DAY)
    await queue_due_reminders(db, T0 + 3.5 * DAY)
    for inv in (paid, voided, written_off, opted_out, reminded):
        assert await reminders(db, inv) == ["before_7"]

    await ledger.pay_from_balance(paid.public_id, buyer.id, None)
    await ledger.void_invoice(seller.id, voided.public_id, "sent by mistake")
    await ledger.mark_uncollectible(seller.id, written_off.public_id, "client went bust")
    await ledger.stop_reminders(opted_out.public_id, buyer.id)
    for at in (T0 + 9.5 * DAY, T0 + 11 * DAY):
        await queue_due_reminders(db, at)
    for inv in (paid, voided, written_off, opted_out):
        assert await reminders(db, inv) == ["before_7"], inv.public_id
    assert await reminders(db, not_sent) == []
    assert await reminders(db, reminded) == ["before_7", "before_1", "overdue"]


async def test_issued_two_days_before_due_gets_only_the_one_day_reminder(db, ledger) -> None:
    seller, buyer = await user(db), await user(db)
    inv = await invoice(ledger, seller, buyer, due_in=2 * DAY)
    await queue_due_reminders(db, T0 + DAY / 2)  # inside the 7-day window, issued within it
    assert await reminders(db, inv) == []
    await queue_due_reminders(db, T0 + 1.5 * DAY)
    assert await reminders(db, inv) == ["before_1"]


async def test_after_ten_days_of_downtime_only_overdue_goes_out_once(db, ledger) -> None:
    seller, buyer = await user(db), await user(db)
    inv = await invoice(ledger, seller, buyer, due_in=10 * DAY)
    await queue_due_reminders(db, T0 + 10.5 * DAY)  # the first run since issuing
    await queue_due_reminders(db, T0 + 11 * DAY)
    assert await reminders(db, inv) == ["overdue"]
    late = await invoice(ledger, seller, buyer, due_in=20 * DAY)
    await queue_due_reminders(db, T0 + 19.5 * DAY)  # down through the 7-day one: the latest
    assert await reminders(db, late) == ["before_1"]


async def test_the_sellers_schedule_decides_which_go_out(db, ledger) -> None:
    seller, buyer = await user(db), await user(db)
    await ledger.save_seller_settings(seller.id, reminder_days=[3], remind_overdue=False)
    inv = await invoice(ledger, seller, buyer, due_in=10 * DAY)
    for at, expected in [(T0 + 3.5 * DAY, []), (T0 + 7.5 * DAY, ["before_3"]),
                         (T0 + 9.5 * DAY, ["before_3"]), (T0 + 11 * DAY, ["before_3"])]:
        await queue_due_reminders(db, at)
        assert await reminders(db, inv) == expected, at - T0


async def test_overdue_digest_once_per_seller_per_day(db, ledger) -> None:
    seller, buyer, quiet = await user(db), await user(db, balance=10_000), await user(db)
    await ledger.save_seller_settings(quiet.id, overdue_digest=False)
    later = await invoice(ledger, seller, None, due_in=5 * DAY)
    oldest = await invoice(ledger, seller, buyer, due_in=3 * DAY)
    await invoice(ledger, seller, buyer, due_in=30 * DAY)  # not overdue yet
    paid = await invoice(ledger, seller, buyer, due_in=2 * DAY)
    await ledger.pay_from_balance(paid.public_id, buyer.id, None)
    await invoice(ledger, quiet, buyer, due_in=2 * DAY)

    at = (T0 + 10 * DAY).replace(hour=8, minute=0, second=0)
    assert (await reminders_job(db, digest_hour=9, now=at))[1] == 0  # before the digest hour
    assert await digests(db, seller) == []
    await reminders_job(db, digest_hour=9, now=at + timedelta(hours=1))
    await reminders_job(db, digest_hour=9, now=at + timedelta(hours=5))  # same day: once
    day = at.date()
    assert await digests(db, seller) == [{
        "recipient": seller.id, "invoices": [oldest.public_id, later.public_id], "count": 2,
        "day": day.isoformat()}]
    assert await digests(db, quiet) == []
    assert await queue_overdue_digests(db, day + DAY, at + DAY) >= 1  # the next day: again
    assert [d["day"] for d in await digests(db, seller)] == [
        day.isoformat(), (day + DAY).isoformat()]
