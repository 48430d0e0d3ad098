"""Charts people look at, drawn as PNG with matplotlib (Agg, in-process: no browser, no
service; chosen over pygal, whose PNGs go through SVG and a rasteriser). Square 1080 px, large
type, for a phone screen; light and dark; month names from Babel in the reader's language.

Drawing takes ~100 ms of CPU: callers run `revenue_png` in a thread (asyncio.to_thread). The
same chart is drawn once (cached by everything drawn on it)."""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache
from typing import Final

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
