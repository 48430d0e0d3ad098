"""Texts built from ledger values (shared by the handlers and the notifier)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from html import escape
from typing import Any

from bot.telegram.config import BotConfig
from bot.telegram.i18n import Translator
from bot.telegram.links import deposit_links
from ledger.models import Invoice, User
from ledger.money import SYMBOLS
from ledger.money import display_amount as money

TEXT_LIMIT = 4096  # Telegram's limit for a message text
CAPTION_LIMIT = 1024  # ... and for a photo caption


def ton_suffix(invoice: Invoice) -> str:
    if invoice.currency == "TON" or not invoice.ton_amount:
        return ""
    return f" (≈ {money(invoice.ton_amount, 'TON')})"


def when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def day(moment: datetime) -> str:
    """A due date as the bot writes it: the UTC day, '2026-12-31'."""
    return moment.astimezone(UTC).date().isoformat()


def person(user: User | None) -> str:
    """How a person is named to others: the @username, else their Telegram name (a link that
    opens their profile), and only when Telegram never told us a name, their id."""
    if user is None:
        return "—"
    if user.username:
        return f"@{escape(user.username)}"
    label = escape(user.full_name) if user.full_name else f"#{user.telegram_id}"
    return f'<a href="tg://user?id={user.telegram_id}">{label}</a>'


def granted_items(tr: Translator, payload: dict[str, Any]) -> list[str]:
    items = []
    if payload.get("item_id"):
        items.append(tr("grant.item", id=escape(str(payload["item_id"]))))
    if payload.get("achievement_id"):
        items.append(tr("grant.achievement", id=escape(str(payload["achievement_id"]))))
    return items


def granted_line(tr: Translator, payload: dict[str, Any]) -> str:
    items = granted_items(tr, payload)
    return tr("pay.granted", items=", ".join(items)) if items else ""


def top_up_text(tr: Translator, cfg: BotConfig, user: User, rate: Decimal) -> str:
    comment = f"DEP-{user.deposit_code}"
    links = deposit_links(cfg, comment)
    if links is None:
        return tr("top_up.unavailable", comment=comment)
    rate_line = "" if cfg.currency == "TON" else tr(
        "top_up.rate", rate=format(rate, "f"), symbol=SYMBOLS.get(cfg.currency, cfg.currency))
    return tr("top_up", address=cfg.ton_destination, comment=comment, rate=rate_line,
              link=escape(links[0]))


def fit(text: str, limit: int = TEXT_LIMIT) -> str:
    """Telegram rejects over-long texts outright; cut at a line break and mark the cut."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 2]
    if "\n" in cut:
        cut = cut[: cut.rindex("\n")]
    return cut + "\n…"
