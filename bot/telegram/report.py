"""/report: the seller's revenue of the last 12 months as a bar chart (bot/charts.py), with the
figures in its caption: total, best month, this month against the last. `/report dark` draws it
for a dark theme (a bot cannot see the user's theme). Under the chart: the Mini App's seller
dashboard (when the public URL can be a Web App button) and the weekly summary's on/off
switch; the weekly summary itself (watchers/weekly_summary.py) is written here too."""

from __future__ import annotations

import contextlib
import html
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Literal

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    WebAppInfo,
)
from babel.dates import format_date
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.charts import ChartsBusy, RevenueChart, draw, month_label, revenue_png
from bot.telegram.config import BotConfig
from bot.telegram.i18n import N_, Translator
from bot.telegram.links import usable_in_button
from bot.telegram.render import CAPTION_LIMIT, fit, money
from ledger.core import Ledger
from ledger.db import Executor
from ledger.models import User
from ledger.reports import dashboard

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
    (UTC) with any payment to `seller_id`'s invoices, oldest first: the dashboard's rollups
    (ledger/reports.py), so /report, the Mini App and the API show the same figures — a
    reversed payment is taken out of its payment's month — and its cost does not grow with
    history."""
    starts = _month_starts(today or _now().date(), months)
    last = starts[-1]
    end = date(last.year + last.month // 12, last.month % 12 + 1, 1) - timedelta(days=1)
    d = await dashboard(db, seller_id, starts[0], end)
    return [(date.fromisoformat(m.month + "-01"), m.currency, m.amount) for m in d.by_month
            if m.amount or m.payments]


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
                     engine: AsyncEngine, ledger: Ledger, cfg: BotConfig,
                     clock: Callable[[], datetime] = _now) -> None:
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
    try:
        png = await draw(revenue_png, chart)
    except ChartsBusy:  # many charts asked for at once: this one is not queued behind them
        await message.answer(tr("report.busy"))
        return
    weekly = (await ledger.seller_settings(user.id)).weekly_summary
    await message.answer_photo(BufferedInputFile(png, "report.png"),
                               caption=_caption(tr, months, series),
                               reply_markup=report_keyboard(tr, cfg, weekly=weekly))


# --- under the chart: the dashboard and the weekly summary's switch -------------------------

class WeeklyCb(CallbackData, prefix="wkly"):
    on: bool  # what the tap asks for (a double tap sets it twice, never flips it back)
    src: Literal["report", "settings"]  # which message's buttons to redraw


def dashboard_url(cfg: BotConfig) -> str | None:
    """The Mini App's seller view, when the public URL can be a Web App button (https)."""
    url = f"{cfg.public_url}/app?view=seller"
    return url if usable_in_button(url) else None


def dashboard_button(tr: Translator, cfg: BotConfig) -> InlineKeyboardButton | None:
    url = dashboard_url(cfg)
    return None if url is None else InlineKeyboardButton(text=tr("report.btn.dashboard"),
                                                         web_app=WebAppInfo(url=url))


def weekly_button(tr: Translator, on: bool,
                  src: Literal["report", "settings"]) -> InlineKeyboardButton:
    return InlineKeyboardButton(
        text=tr("report.btn.weekly", state=tr("settings.on") if on else tr("settings.off")),
        callback_data=WeeklyCb(on=not on, src=src).pack())


def report_keyboard(tr: Translator, cfg: BotConfig, *, weekly: bool) -> InlineKeyboardMarkup:
    dashboard = dashboard_button(tr, cfg)
    rows = [[dashboard]] if dashboard is not None else []
    rows.append([weekly_button(tr, weekly, "report")])
    return InlineKeyboardMarkup(inline_keyboard=rows)


@router.callback_query(WeeklyCb.filter(F.src == "report"))
async def weekly_toggled(cb: CallbackQuery, callback_data: WeeklyCb, user: User,
                         tr: Translator, ledger: Ledger, cfg: BotConfig) -> None:
    saved = await ledger.save_seller_settings(user.id, weekly_summary=callback_data.on)
    await cb.answer(tr("report.weekly_on") if saved.weekly_summary else tr("report.weekly_off"))
    if isinstance(cb.message, Message):
        # The chart stays; only its buttons change (a message that cannot be edited any more
        # keeps its old buttons: the setting is saved either way, and the answer says so).
        with contextlib.suppress(TelegramBadRequest):
            await cb.message.edit_reply_markup(
                reply_markup=report_keyboard(tr, cfg, weekly=saved.weekly_summary))


# --- the weekly summary (the event of watchers/weekly_summary.py) ----------------------------

def _change(tr: Translator, amount: int, previous: int, currency: str) -> str:
    if previous <= 0:
        return tr("summary.first") if amount > 0 else ""
    if amount == previous:
        return tr("summary.same")
    percent = round(abs(amount - previous) * 100 / previous)
    if amount > previous:
        return tr("summary.up", percent=percent, previous=money(previous, currency))
    return tr("summary.down", percent=percent, previous=money(previous, currency))


def _days(tr: Translator, p: dict[str, Any]) -> tuple[str, str]:
    start, end = date.fromisoformat(p["start"]), date.fromisoformat(p["end"])
    return (format_date(start, "d MMM", locale=tr.lang),
            format_date(end, "d MMM y", locale=tr.lang))


def weekly_summary_text(tr: Translator, p: dict[str, Any]) -> str:
    """The seller's week in their language, from the figures the event carries."""
    start, end = _days(tr, p)
    received = [r for r in p["revenue"] if r["amount"]]
    if received:
        lines = [tr("summary.title", start=start, end=end)]
        for r in p["revenue"]:
            lines.append(" ".join(filter(None, (
                tr("summary.revenue", amount=money(r["amount"], r["currency"])),
                _change(tr, int(r["amount"]), int(r["previous"]), r["currency"])))))
        lines.append(tr.n("summary.payments", int(p["payments"]), n=int(p["payments"])))
    else:
        lines = [tr("summary.quiet", start=start, end=end)]
    for s in p["open"]:
        lines.append(tr.n("summary.open", int(s["count"]), n=int(s["count"]),
                          amount=money(int(s["amount"]), s["currency"])))
    for s in p["overdue"]:
        lines.append(tr.n("summary.overdue", int(s["count"]), n=int(s["count"]),
                          amount=money(int(s["amount"]), s["currency"])))
    if received:
        for t in p["top"][:2]:
            lines.append(tr("summary.top", item=html.escape(str(t["item"])[:60]),
                            amount=money(int(t["amount"]), t["currency"]),
                            month=format_date(date.fromisoformat(t["month"]), "LLLL",
                                              locale=tr.lang)))
    return "\n".join(lines)


def weekly_summary_markup(tr: Translator, cfg: BotConfig | None) -> InlineKeyboardMarkup | None:
    button = dashboard_button(tr, cfg) if cfg is not None else None
    return None if button is None else InlineKeyboardMarkup(inline_keyboard=[[button]])
