"""/report: a seller's last 12 months of revenue as a bar chart PNG, the figures in its caption
(total, best month, this month against last), months with nothing as 0, English and Russian,
light and dark; a seller with nothing yet gets one sentence and no empty chart."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from PIL import Image

from ledger.invoices import create_invoice
from ledger.manual_payments import record_manual_payment, reverse_manual_payment
from ledger.payments import pay_from_balance
from tests.bot.botapi import ChatMessage

EN_MONTHS = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}
RU_MONTHS = {"янв.", "февр.", "март", "апр.", "май", "июнь", "июль", "авг.", "сент.", "окт.",
             "нояб.", "дек."}


async def _sold(engine, seller, buyer, *amounts: int) -> None:  # type: ignore[no-untyped-def]
    for amount in amounts:
        invoice = await create_invoice(engine, seller_id=seller.user.id, title="Beans",
                                       amount=amount, ton_rate=Decimal(5))
        await pay_from_balance(engine, invoice.public_id, buyer.user.id, f"k-{invoice.public_id}")


def _drawn(message: ChatMessage) -> list[tuple[str, str]]:
    """The chart's bars as the PNG describes them: [(month label, amount)], oldest first."""
    assert message.photo is not None
    image = Image.open(io.BytesIO(message.photo))
    described = image.info["Description"]
    bars = [part.rsplit(": ", 1) for part in described.split("\n")[1].split("; ")]
    return [(label, amount) for label, amount in bars]


def _corner(message: ChatMessage) -> int:
    """How light the picture's background is (0 black … 255 white)."""
    assert message.photo is not None
    image = Image.open(io.BytesIO(message.photo)).convert("L")
    return int(image.getpixel((5, 5)))  # type: ignore[arg-type]


async def test_report_is_a_chart_of_the_payments_with_their_figures(person, engine) -> None:
    seller = await person()
    buyer = await person(balance=10_000)
    await _sold(engine, seller, buyer, 1250, 2500)

    [report] = await seller.send("/report")

    assert report.photo is not None and report.photo.startswith(b"\x89PNG")
    image = Image.open(io.BytesIO(report.photo))
    assert image.size == (1080, 1080)  # a phone's width, square
    assert _corner(report) > 200  # light by default
    this_month = datetime.now(UTC).strftime("%B %Y")
    assert report.plain.splitlines()[1:] == [
        "Total: 37.50 Liquid $",
        f"Best month: {this_month}, 37.50 Liquid $",
        "This month: 37.50 Liquid $ · last month: 0.00 Liquid $",
    ]
    bars = _drawn(report)
    assert len(bars) == 12
    assert {label.split(" ")[0] for label, _ in bars} == EN_MONTHS
    assert bars[-1] == (datetime.now(UTC).strftime("%b %Y"), "37.50")
    assert [amount for _, amount in bars[:-1]] == ["0.00"] * 11  # nothing sold: drawn as 0


async def test_next_month_compares_this_month_with_the_last(person, engine, dp) -> None:
    seller = await person()
    buyer = await person(balance=10_000)
    await _sold(engine, seller, buyer, 990)
    now = datetime.now(UTC)
    dp["clock"] = lambda: (now.replace(day=1) + timedelta(days=40)).replace(day=3)

    [report] = await seller.send("/report")

    assert report.plain.splitlines()[-1] == (
        "This month: 0.00 Liquid $ · last month: 9.90 Liquid $")
    bars = _drawn(report)
    assert [amount for _, amount in bars[-2:]] == ["9.90", "0.00"]
    assert bars[-2][0] == now.strftime("%b %Y")


async def test_a_reversed_payment_is_not_revenue(person, engine) -> None:
    seller = await person()
    buyer = await person(balance=10_000)
    await _sold(engine, seller, buyer, 1000)
    invoice = await create_invoice(engine, seller_id=seller.user.id, title="Cash",
                                   amount=4000, ton_rate=Decimal(5))
    paid = await record_manual_payment(engine, invoice.public_id, seller_id=seller.user.id,
                                       amount=4000, received_on=date.today(),
                                       reference="bank-1")
    await reverse_manual_payment(engine, paid.payment_id, seller_id=seller.user.id,
                                 reason="bounced")

    [report] = await seller.send("/report")

    assert report.plain.splitlines()[1] == "Total: 10.00 Liquid $"
    assert _drawn(report)[-1][1] == "10.00"


async def test_russian_labels_and_the_dark_variant(person, engine) -> None:
    seller = await person(language="ru")
    buyer = await person(balance=10_000)
    await _sold(engine, seller, buyer, 1250)

    [light] = await seller.send("/report")
    [dark] = await seller.send("/report dark")

    assert light.plain.splitlines()[1:3] == ["Всего: 12.50 Liquid $",
                                             f"Лучший месяц: {_ru_month()}, 12.50 Liquid $"]
    assert {label.split(" ")[0] for label, _ in _drawn(light)} == RU_MONTHS
    assert dark.photo != light.photo and _corner(dark) < 80 < 200 < _corner(light)
    assert dark.plain == light.plain


async def test_a_seller_with_nothing_yet_gets_one_sentence(person) -> None:
    seller = await person()

    [answer] = await seller.send("/report")

    assert answer.photo is None
    assert answer.plain == ("📊 No payments in the last 12 months yet: your chart will appear "
                            "here after the first one.")


def _ru_month() -> str:
    names = ("январь", "февраль", "март", "апрель", "май", "июнь", "июль", "август",
             "сентябрь", "октябрь", "ноябрь", "декабрь")
    now = datetime.now(UTC)
    return f"{names[now.month - 1]} {now.year}"


async def test_charts_queued_past_the_limit_are_refused_until_the_lane_frees(
        person, engine) -> None:
    """One drawing at a time on the charts' own thread, at most MAX_WAITING waiting: someone
    asking for many charts at once gets "try again" instead of holding everyone's."""
    import asyncio
    import threading

    from bot import charts

    seller = await person()
    buyer = await person(balance=10_000)
    await _sold(engine, seller, buyer, 1250)
    gate = threading.Event()

    def slow(_: object) -> bytes:
        gate.wait(30)
        return b""

    held = [asyncio.create_task(charts.draw(slow, n)) for n in range(charts.MAX_WAITING)]
    await asyncio.sleep(0)  # one turn of the loop: each task has started and queued
    assert charts._waiting == charts.MAX_WAITING
    try:
        [busy] = await seller.send("/report")
        assert busy.photo is None and "/report" in busy.plain
    finally:
        gate.set()
        await asyncio.gather(*held)
    [report] = await seller.send("/report")
    assert report.photo is not None
