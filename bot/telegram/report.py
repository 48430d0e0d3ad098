"""/report: the seller's revenue of the last 12 months as a bar chart (bot/charts.py), with the
figures in its caption: total, best month, this month against the last. `/report dark` draws it
for a dark theme (a bot cannot see the user's theme)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Final

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import BufferedInputFile, Message
from babel.dates import format_date
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.charts import RevenueChart, month_label, revenue_png
from bot.telegram.i18n import N_, Translator
from bot.telegram.render import CAPTION_LIMIT, fit, money
from ledger.db import Executor, fetch_all
from ledger.models import User

router: Final[Router] = Router(name=__name__)

MONTHS: Final = 12
DYNAMIC: Final = (N_("cmd.report"),)  # the command's description (runtime.py builds the key)


def _now() -> datetime:
    return datetime.now(UTC)


def _month_starts(today: date, months: int) -> list[date]:
    """The first days of the `months` months ending with today's, oldest first (UTC)."""
    index = today.year * 12 + today.month - 1
    return [date(i // 12, i % 12 + 1, 1) for i in range(index - months + 1, index + 1)]


# Moves to ledger/reports.py (read from its monthly rollups) once that lands; until then it
# reads the payments themselves.
async def monthly_revenue(db: Executor, seller_id: int, months: int = MONTHS, *,
                          today: date | None = None) -> list[tuple[date, str, int]]:
    """(month start, currency, net amount in minor units) for each month of the last `months`
    (UTC) with any payment to `seller_id`'s invoices, oldest first. A reversed payment (a
    manual one undone, a Stars refund) counts against the month of its reversal: the months
    already reported do not change."""
    starts = _month_starts(today or _now().date(), months)
    last = starts[-1]
    after_last = date(last.year + last.month // 12, last.month % 12 + 1, 1)
    rows = await fetch_all(
        db,
        """
        SELECT month, currency, sum(amount)::bigint AS amount FROM (
            SELECT date_trunc('month', p.created_at AT TIME ZONE 'UTC')::date AS month,
                   p.currency, p.amount
              FROM payments p JOIN invoices i ON i.id = p.invoice_id
             WHERE i.seller_id = :seller
               AND p.created_at >= :since AND p.created_at < :until
            UNION ALL
            SELECT date_trunc('month', r.created_at AT TIME ZONE 'UTC')::date,
                   p.currency, -p.amount
              FROM payment_reversals r JOIN payments p ON p.id = r.payment_id
              JOIN invoices i ON i.id = p.invoice_id
             WHERE i.seller_id = :seller
               AND r.created_at >= :since AND r.created_at < :until
        ) moved
         GROUP BY month, currency
         ORDER BY month, currency
        """,
        seller=seller_id,
        since=datetime.combine(starts[0], datetime.min.time(), UTC),
        until=datetime.combine(after_last, datetime.min.time(), UTC),
    )
    return [(r["month"], r["currency"], int(r["amount"])) for r in rows]


def _series(rows: list[tuple[date, str, int]], months: list[date]
            ) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Per currency with any movement, one amount per month (0 where nothing happened)."""
    by_currency: dict[str, dict[date, int]] = {}
    for month, currency, amount in rows:
        by_currency.setdefault(currency, {})[month] = amount
    return tuple((currency, tuple(found.get(m, 0) for m in months))
                 for currency, found in sorted(by_currency.items())
                 if any(found.values()))


def _caption(tr: Translator, months: list[date],
             series: tuple[tuple[str, tuple[int, ...]], ...]) -> str:
    lines = [tr("report.title", first=month_label(months[0], tr.lang),
                last=month_label(months[-1], tr.lang))]
    for currency, amounts in series:
        if len(lines) > 1:
            lines.append("")
        lines.append(tr("report.total", amount=money(sum(amounts), currency)))
        best = max(range(len(amounts)), key=lambda i: (amounts[i], i))  # ties: the latest
        if amounts[best] > 0:
            lines.append(tr("report.best", month=format_date(months[best], "LLLL y",
                                                              locale=tr.lang),
                            amount=money(amounts[best], currency)))
        lines.append(tr("report.this_month", this=money(amounts[-1], currency),
                        last=money(amounts[-2], currency)))
    return fit("\n".join(lines), CAPTION_LIMIT)


@router.message(Command("report"))
async def cmd_report(message: Message, command: CommandObject, user: User, tr: Translator,
                     engine: AsyncEngine, clock: Callable[[], datetime] = _now) -> None:
    today = clock().astimezone(UTC).date()
    months = _month_starts(today, MONTHS)
    series = _series(await monthly_revenue(engine, user.id, MONTHS, today=today), months)
    if not series:
        await message.answer(tr("report.empty"))
        return
    dark = (command.args or "").strip().lower() in ("dark", "тёмный", "темный")
    chart = RevenueChart(months=tuple(months), series=series, title=tr("report.chart_title"),
                         lang=tr.lang, dark=dark)
    # Drawing is CPU work: off the event loop. Cached by what is drawn, so a repeated /report
    # the same day costs one query, and a new payment shows at once.
    png = await asyncio.to_thread(revenue_png, chart)
    await message.answer_photo(BufferedInputFile(png, "report.png"),
                               caption=_caption(tr, months, series))
