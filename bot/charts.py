"""Charts people look at, drawn with matplotlib (in-process: no browser, no service; chosen
over pygal, whose PNGs go through SVG and a rasteriser). Month names from Babel in the reader's
language.

- `revenue_png`: /report's picture in the chat. Square 1080 px, large type; light and dark.
- `revenue_svg`, `methods_svg`: the Mini App's seller view, in the page's own colours (the
  Telegram theme's, `Palette`), drawn 340 pt wide because the page shows them 100 % wide in a
  card of a 390 px phone: one SVG point is one CSS pixel there, so a 12 pt label reads as 12 px.
  `svg.fonttype` is "path": every glyph is written as an outline, so the chart looks the same
  in any browser whether or not it has our font (DejaVu Sans, Cyrillic included) and labels
  never reflow out of their place; the words stay in the file as XML comments beside their
  glyphs, and the figures are in the SVG's <title>/<desc> and the page's alt text, for people
  who cannot see the picture. "none" (real <text>) would depend on the phone's fonts.

Drawing takes ~100 ms of CPU: callers `await draw(revenue_png, chart)`, which runs it on the
charts' own thread, one drawing at a time (matplotlib's caches have no locks), never on the
event loop nor in the default executor other work (PDFs, exports) shares. At most
`MAX_WAITING` drawings wait for it; past that `ChartsBusy` (a 503 "try again"): someone asking
for many charts at once (a colour per request) cannot hold the others' charts or the CPU. The
same chart is drawn once (cached by everything drawn on it)."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache
from typing import Final, TypeVar

from babel.dates import format_date
from babel.numbers import format_decimal

from ledger.money import DECIMALS, SYMBOLS, format_amount

SIZE_PX: Final = 1080
_DPI: Final = 150

# Telegram's own palette, so the picture sits in the chat without a glare or a hole.
_THEMES: Final = {
    False: {"bg": "#ffffff", "text": "#1f2328", "muted": "#6e7781", "grid": "#d8dee4",
            "bar": "#2481cc", "now": "#f2994a"},
    True: {"bg": "#17212b", "text": "#e8edf2", "muted": "#8b98a5", "grid": "#2b3a4a",
           "bar": "#5ea9e6", "now": "#f2b36b"},
}
# matplotlib keeps font and text caches without locks: one drawing at a time.
_drawing = threading.Lock()


@dataclass(frozen=True, slots=True)
class RevenueChart:
    """Everything drawn, hashable (the cache key): months oldest first, and per currency one
    amount in minor units per month."""

    months: tuple[date, ...]
    series: tuple[tuple[str, tuple[int, ...]], ...]
    title: str
    lang: str
    dark: bool = False


MAX_WAITING: Final = 8  # drawings queued for the charts' thread before ChartsBusy
_lane = ThreadPoolExecutor(max_workers=1, thread_name_prefix="charts")
_waiting = 0
C = TypeVar("C")


class ChartsBusy(Exception):
    """Too many drawings are waiting: ask again in a moment."""


async def draw(fn: Callable[[C], bytes], chart: C) -> bytes:
    """`fn(chart)` on the charts' thread; ChartsBusy when MAX_WAITING drawings already wait."""
    global _waiting
    if _waiting >= MAX_WAITING:
        raise ChartsBusy
    _waiting += 1
    try:
        return await asyncio.get_running_loop().run_in_executor(_lane, fn, chart)
    finally:
        _waiting -= 1


def month_label(month: date, lang: str) -> str:
    """"Nov 2026" / "нояб. 2026" (the chart's description, the caption)."""
    return f"{format_date(month, 'LLL', locale=lang)} {month.year}"


def description(chart: RevenueChart) -> str:
    """The chart as text, stored in the PNG (its alt text): one line per currency,
    "Dec 2025: 0.00; Jan 2026: 12.50; …"."""
    lines = [chart.title]
    for currency, amounts in chart.series:
        lines.append("; ".join(f"{month_label(m, chart.lang)}: {format_amount(a, currency)}"
                               for m, a in zip(chart.months, amounts, strict=True)))
    return "\n".join(lines)


def revenue_png(chart: RevenueChart) -> bytes:
    """The bar chart as PNG bytes (blocking: call it in a thread)."""
    return _revenue_png(chart)


@lru_cache(maxsize=256)
def _revenue_png(chart: RevenueChart) -> bytes:
    with _drawing:
        return _draw(chart)


def _major(minor: int, currency: str) -> float:
    return float(Decimal(minor).scaleb(-DECIMALS[currency]))


def _scale(largest: int, currency: str) -> int:
    """1, 1000 or 1,000,000: what the axis counts in, so every bar's figure stays short enough
    to sit above it on a phone ("312", not "312 тыс.")."""
    major = _major(largest, currency)
    return 1_000_000 if major >= 10_000_000 else 1000 if major >= 10_000 else 1


def _axis_month(month: date, lang: str) -> str:
    """Three letters ("Nov", "ноя"): Babel's abbreviations run to five in Russian ("февр.") and
    would touch their neighbours under twelve bars."""
    return format_date(month, "LLLL", locale=lang)[:3]


def _draw(chart: RevenueChart) -> bytes:
    # Imported here: matplotlib costs ~0.5 s to import, paid by the first chart, not start-up.
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    theme = _THEMES[chart.dark]
    size = SIZE_PX / _DPI
    fig = Figure(figsize=(size, size), dpi=_DPI, facecolor=theme["bg"])
    axes = fig.subplots(len(chart.series), 1, sharex=True, squeeze=False)[:, 0]
    fig.suptitle(chart.title, color=theme["text"], fontsize=17, fontweight="bold",
                 x=0.04, ha="left")
    # January and the first bar carry their year: twelve months always span two.
    labels = [_axis_month(m, chart.lang) + (f"\n{m.year}" if i == 0 or m.month == 1 else "")
              for i, m in enumerate(chart.months)]
    positions = range(len(chart.months))
    for ax, (currency, amounts) in zip(axes, chart.series, strict=True):
        scale = _scale(max(abs(a) for a in amounts), currency)
        values = [_major(a, currency) / scale for a in amounts]
        compact = FuncFormatter(lambda value, _pos: format_decimal(
            round(value, 1), format="#,##0.#", locale=chart.lang))
        unit = SYMBOLS.get(currency, currency) + (f", ×{scale:,}".replace(",", "\u202f")
                                                  if scale > 1 else "")
        colors = [theme["bar"]] * (len(values) - 1) + [theme["now"]]  # this month stands out
        bars = ax.bar(positions, values, color=colors, width=0.72, zorder=2)
        ax.bar_label(bars, labels=[compact(v, 0) if v else "" for v in values],
                     padding=3, color=theme["text"], fontsize=11)
        ax.set_facecolor(theme["bg"])
        ax.set_ylabel(unit, color=theme["muted"], fontsize=13)
        ax.yaxis.set_major_formatter(compact)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=5, min_n_ticks=3))
        ax.set_ylim(bottom=min(0.0, *values), top=max(max(values) * 1.15, 1.0))
        ax.grid(axis="y", color=theme["grid"], linewidth=1, zorder=0)
        ax.tick_params(colors=theme["muted"], labelsize=12, length=0)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
        ax.spines["bottom"].set_color(theme["grid"])
    axes[-1].set_xticks(list(positions), labels)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 0.95), h_pad=2.0)
    out = io.BytesIO()
    fig.savefig(out, format="png", facecolor=theme["bg"],
                metadata={"Title": chart.title, "Description": description(chart),
                          "Software": None})
    return out.getvalue()


# --- the Mini App's charts (SVG, in the page's colours) -----------------------------------------

SVG_WIDTH_PT: Final = 340  # shown 100 % wide in a card on a 390 px phone: 1 pt ≈ 1 CSS px


@dataclass(frozen=True, slots=True)
class Palette:
    """The page's colours, each "#rrggbb" (checked by the caller)."""

    bg: str = "#ffffff"
    text: str = "#000000"
    hint: str = "#999999"
    accent: str = "#2481cc"


@dataclass(frozen=True, slots=True)
class MonthsChart:
    """Revenue per month (oldest first), per currency in minor units; `highlight` is the index
    of this month among `months` (None when the period does not hold it). Hashable: the key."""

    months: tuple[date, ...]
    series: tuple[tuple[str, tuple[int, ...]], ...]
    title: str
    lang: str
    palette: Palette
    highlight: int | None = None


@dataclass(frozen=True, slots=True)
class BarsChart:
    """Horizontal bars: per currency, (label, minor units) largest first."""

    series: tuple[tuple[str, tuple[tuple[str, int], ...]], ...]
    title: str
    lang: str
    palette: Palette


def _mix(a: str, b: str, share: float) -> str:
    """`share` of colour b over a, as #rrggbb (grid lines, dimmed bars in any theme)."""
    ca = [int(a[i:i + 2], 16) for i in (1, 3, 5)]
    cb = [int(b[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(x + (y - x) * share):02x}" for x, y in zip(ca, cb, strict=True))


def revenue_svg(chart: MonthsChart) -> bytes:
    """Bars per month, this month in the accent colour, one panel per currency (blocking)."""
    return _revenue_svg(chart)


def methods_svg(chart: BarsChart) -> bytes:
    """Horizontal bars of revenue by method, one panel per currency (blocking)."""
    return _methods_svg(chart)


@lru_cache(maxsize=256)
def _revenue_svg(chart: MonthsChart) -> bytes:
    with _drawing:
        return _draw_months(chart)


@lru_cache(maxsize=256)
def _methods_svg(chart: BarsChart) -> bytes:
    with _drawing:
        return _draw_bars(chart)


def _svg_description(lines: list[str]) -> str:
    return "\n".join(lines)


def _save_svg(fig, title: str, desc: str) -> bytes:  # type: ignore[no-untyped-def]
    from matplotlib import rc_context

    out = io.BytesIO()
    # Same chart, same bytes: fixed ids and no date in the file.
    with rc_context({"svg.fonttype": "path", "svg.hashsalt": "paybot"}):
        fig.savefig(out, format="svg", facecolor=fig.get_facecolor(),
                    metadata={"Title": title, "Description": desc, "Date": None,
                              "Creator": None})
    return out.getvalue()


def _style_axes(ax, p: Palette, grid: str, axis: str) -> None:  # type: ignore[no-untyped-def]
    ax.set_facecolor(p.bg)
    ax.grid(axis=axis, color=grid, linewidth=0.8, zorder=0)
    ax.tick_params(colors=p.hint, labelsize=11, length=0)
    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_visible(False)


def _draw_months(chart: MonthsChart) -> bytes:
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    p = chart.palette
    grid = _mix(p.bg, p.hint, 0.3)
    dim = _mix(p.bg, p.accent, 0.45)
    panels = len(chart.series)
    fig = Figure(figsize=(SVG_WIDTH_PT / 72, (44 + 180 * panels) / 72), dpi=72, facecolor=p.bg)
    axes = fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    n = len(chart.months)
    step = max(1, -(-n // 12))  # at most 12 month labels: they must not touch on a phone
    # The year under January, and under the first bar unless January is next to it (two
    # years side by side would run into each other).
    years = {i for i, m in enumerate(chart.months)
             if m.month == 1 or (i == 0 and m.month != 12)}
    labels = [(_axis_month(m, chart.lang) + (f"\n{m.year}" if i in years else ""))
              if i % step == 0 or i == chart.highlight else "" for i, m in enumerate(chart.months)]
    lines = [chart.title]
    for ax, (currency, amounts) in zip(axes, chart.series, strict=True):
        scale = _scale(max([abs(a) for a in amounts] or [0]), currency)
        values = [_major(a, currency) / scale for a in amounts]
        compact = FuncFormatter(lambda value, _pos: format_decimal(
            round(value, 1), format="#,##0.#", locale=chart.lang))
        unit = SYMBOLS.get(currency, currency) + (f", ×{scale:,}".replace(",", "\u202f")
                                                  if scale > 1 else "")
        colors = [p.accent if i == chart.highlight else dim for i in range(n)]
        bars = ax.bar(range(n), values, color=colors, width=0.72, zorder=2)
        # Only this month's figure over its bar: twelve would collide on a phone.
        ax.bar_label(bars, labels=[compact(v, 0) if i == chart.highlight and v else ""
                                   for i, v in enumerate(values)],
                     padding=2, color=p.text, fontsize=12, fontweight="bold")
        ax.set_title(unit, color=p.hint, fontsize=11, loc="left", pad=4)
        ax.yaxis.set_major_formatter(compact)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=4, min_n_ticks=2))
        ax.set_ylim(bottom=min(0.0, *values), top=max(max(values) * 1.18, 1.0))
        _style_axes(ax, p, grid, "y")
        ax.spines["bottom"].set_visible(True)
        ax.spines["bottom"].set_color(grid)
        lines.append(f"{SYMBOLS.get(currency, currency)}: " + "; ".join(
            f"{month_label(m, chart.lang)}: {format_amount(a, currency)}"
            for m, a in zip(chart.months, amounts, strict=True)))
    axes[-1].set_xticks(list(range(n)), labels)
    axes[-1].tick_params(axis="x", labelsize=10, colors=p.hint)  # 12 months side by side
    fig.tight_layout(pad=0.4, h_pad=1.0)
    return _save_svg(fig, chart.title, _svg_description(lines))


def _draw_bars(chart: BarsChart) -> bytes:
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    p = chart.palette
    grid = _mix(p.bg, p.hint, 0.3)
    series = chart.series or (("LIQ", ()),)  # nothing sold: an empty panel, not an error
    rows = [max(1, len(bars)) for _c, bars in series]
    height = 16 + sum(30 + 30 * r for r in rows)
    fig = Figure(figsize=(SVG_WIDTH_PT / 72, height / 72), dpi=72, facecolor=p.bg)
    axes = fig.subplots(len(rows), 1, squeeze=False,
                        gridspec_kw={"height_ratios": rows})[:, 0]
    lines = [chart.title]
    for ax, (currency, bars) in zip(axes, series, strict=True):
        values = [_major(a, currency) for _l, a in bars]
        compact = FuncFormatter(lambda value, _pos: format_decimal(
            value, format="#,##0.##", locale=chart.lang))
        positions = list(range(len(bars)))[::-1]  # largest on top
        drawn = ax.barh(positions, values, color=p.accent, height=0.6, zorder=2)
        ax.bar_label(drawn, labels=[compact(v, 0) for v in values], padding=3,
                     color=p.text, fontsize=12)
        _style_axes(ax, p, grid, "x")
        ax.set_yticks(positions, [label for label, _a in bars])
        ax.tick_params(axis="y", colors=p.text, labelsize=12)
        ax.set_title(SYMBOLS.get(currency, currency), color=p.hint, fontsize=11, loc="left",
                     pad=4)
        ax.set_xlim(left=0, right=max(max(values, default=0.0) * 1.3, 1.0))
        ax.xaxis.set_visible(False)
        lines.append(f"{SYMBOLS.get(currency, currency)}: " + "; ".join(
            f"{label}: {format_amount(a, currency)}" for label, a in bars))
    fig.tight_layout(pad=0.4, h_pad=1.0)
    return _save_svg(fig, chart.title, _svg_description(lines))
