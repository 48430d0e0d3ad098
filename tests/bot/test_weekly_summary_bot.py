"""The weekly summary in the bot: the seller turns it on and off under /report's chart (and in
/settings), and gets their week in their language, with the dashboard a tap away."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from aiogram import Bot
from babel.dates import format_date

from bot.telegram import Notifier
from bot.telegram.notifier import Backoff
from ledger.core import Ledger
from ledger.invoices import create_invoice
from ledger.payments import pay_from_balance
from ledger.seller_settings import get_seller_settings
from watchers.weekly_summary import WeeklySummaries, monday

THIS_WEEK = monday(datetime.now(UTC).date())
NEXT_MONDAY = datetime.combine(THIS_WEEK + timedelta(days=7), time(10), UTC)
DASHBOARD = "https://pay.example.com/app?view=seller"


@pytest.fixture
async def notices(engine, bot: Bot, cfg) -> Notifier:  # type: ignore[no-untyped-def]
    n = Notifier(Ledger(engine), bot, backoff=Backoff(base=30.0), cfg=cfg)
    await n.deliver_due()  # events left by other tests are not this test's business
    return n


async def _sold(engine, seller, buyer, *amounts: int) -> None:  # type: ignore[no-untyped-def]
    for amount in amounts:
        invoice = await create_invoice(engine, seller_id=seller.user.id, title="Beans",
                                       amount=amount, ton_rate=Decimal(5))
        await pay_from_balance(engine, invoice.public_id, buyer.user.id, f"k-{invoice.public_id}")


async def test_report_switches_the_weekly_summary_on_and_off(person, engine) -> None:
    seller, buyer = await person(), await person(balance=10_000)
    await _sold(engine, seller, buyer, 1250)

    [report] = await seller.send("/report")

    assert report.photo is not None
    assert report.button("Open dashboard")["web_app"] == {"url": DASHBOARD}
    assert report.button("Weekly summary")["text"] == "📬 Weekly summary: off"

    tap = await seller.tap(report, "Weekly summary")

    assert tap.answer_text == "Weekly summary on: last week's figures every week."
    assert tap.edited == [report] and tap.sent == []
    assert report.button("Weekly summary")["text"] == "📬 Weekly summary: on"
    assert report.photo is not None  # the chart stays
    assert (await get_seller_settings(engine, seller.user.id)).weekly_summary is True

    await seller.tap(report, "Weekly summary")
    assert report.button("Weekly summary")["text"] == "📬 Weekly summary: off"
    assert (await get_seller_settings(engine, seller.user.id)).weekly_summary is False


async def test_settings_has_the_same_switch(person, engine) -> None:
    seller = await person(language="ru")

    [screen] = await seller.send("/settings")
    assert screen.button("Сводка за неделю")["text"] == "📬 Сводка за неделю: выкл"

    await seller.tap(screen, "Сводка за неделю")

    assert screen.button("Сводка за неделю")["text"] == "📬 Сводка за неделю: вкл"
    assert (await get_seller_settings(engine, seller.user.id)).weekly_summary is True


def _days(lang: str) -> tuple[str, str]:
    end = THIS_WEEK + timedelta(days=6)
    return (format_date(THIS_WEEK, "d MMM", locale=lang),
            format_date(end, "d MMM y", locale=lang))


async def test_the_seller_gets_their_week(person, engine, bot_api, notices) -> None:
    seller, buyer = await person(), await person(balance=10_000)
    await _sold(engine, seller, buyer, 2500, 500)
    [report] = await seller.send("/report")
    await seller.tap(report, "Weekly summary")
    await notices.deliver_due()  # the payments' own notices
    before = len(bot_api.messages(seller.id))

    await WeeklySummaries(engine).run(NEXT_MONDAY)
    await notices.deliver_due()

    [summary] = bot_api.messages(seller.id)[before:]
    start, end = _days("en")
    month = format_date(THIS_WEEK + timedelta(days=6), "LLLL", locale="en")
    assert summary.plain == "\n".join([
        f"📬 Your week, {start} – {end}",
        "Revenue: 30.00 Liquid $ — nothing the week before",
        "2 payments",
        f"🏆 Top item in {month}: Beans, 30.00 Liquid $",
    ])
    assert summary.button("Open dashboard")["web_app"] == {"url": DASHBOARD}

    # Again, another process, the same week: nothing more.
    await WeeklySummaries(engine).run(NEXT_MONDAY + timedelta(hours=3))
    await notices.deliver_due()
    assert len(bot_api.messages(seller.id)) == before + 1


async def test_a_russian_seller_and_a_quiet_week(person, engine, bot_api, notices) -> None:
    seller, buyer = await person(language="ru"), await person(balance=10_000)
    await _sold(engine, seller, buyer, 1250)
    await create_invoice(engine, seller_id=seller.user.id, title="Чай", amount=700,
                         ton_rate=Decimal(5))
    [screen] = await seller.send("/settings")
    await seller.tap(screen, "Сводка за неделю")
    await notices.deliver_due()  # the payment's own notice
    before = len(bot_api.messages(seller.id))

    await WeeklySummaries(engine).run(NEXT_MONDAY)
    await WeeklySummaries(engine).run(NEXT_MONDAY + timedelta(days=7))  # nothing paid then
    await notices.deliver_due()

    busy, quiet = bot_api.messages(seller.id)[before:]
    start, end = _days("ru")
    assert busy.plain.splitlines()[:4] == [
        f"📬 Ваша неделя, {start} – {end}",
        "Выручка: 12.50 Liquid $ — неделей раньше не было ничего",
        "1 оплата",
        "Ждут оплаты: 7.00 Liquid $ по 1 счёту",
    ]
    assert quiet.plain.splitlines() == [
        quiet.plain.splitlines()[0],
        "Ждут оплаты: 7.00 Liquid $ по 1 счёту",
    ]
    assert quiet.plain.startswith("📬 Тихая неделя, ") and quiet.plain.splitlines()[0].endswith(
        ": оплат не было.")
