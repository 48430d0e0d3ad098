"""Plain values the bot needs, taken from Settings once (handlers never read the environment)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from bot.links import Links, links_from_settings
from bot.settings import Settings
from watchers.ton_links import friendly_address


@dataclass(slots=True)
class BotConfig:
    public_url: str  # base of /pay/<id> links, no trailing slash
    links: Links  # shared with the web app; the bot sets its username from getMe
    currency: str  # currency of new invoices (LIQ)
    ton_rate: Decimal  # units of `currency` per 1 TON, locked into each invoice's TON quote
    invoice_expiry: timedelta  # default lifetime of a one-line /invoice
    ton_destination: str | None  # receiving wallet (friendly, non-bounceable) or None

    @property
    def bot_username(self) -> str:  # for t.me deep links
        return self.links.bot_username

    @classmethod
    def from_settings(cls, settings: Settings, links: Links | None = None) -> BotConfig:
        dest = settings.ton.destination_address
        return cls(
            public_url=settings.web.public_url.rstrip("/"),
            links=links or links_from_settings(settings),
            currency=settings.ledger.currency,
            ton_rate=settings.ledger.ton_rate,
            invoice_expiry=timedelta(hours=settings.ledger.invoice_expiry_hours),
            ton_destination=friendly_address(dest) if dest else None,
        )
