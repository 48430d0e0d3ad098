"""Plain values the bot needs, taken from Settings once (handlers never read the environment)."""

from __future__ import annotations

from dataclasses import dataclass, field
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
    usdt_master: str | None = None  # the USDT jetton master (TON_JETTONS), with a destination
    # Telegram Payments: currency -> (provider, BotFather's provider token), only currencies
    # that also have a rate; Stars ("XTR") are offered when `rail_rates` has them.
    card_providers: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False)
    rail_rates: dict[str, Decimal] = field(default_factory=dict)  # provider units per 1 LIQ
    quote_seconds: int = 1800  # how long a card/Stars price stays locked
    # a successful_payment whose settlement fails (the database is down) is retried this long
    settle_retry_seconds: float = 120.0

    @property
    def stars_enabled(self) -> bool:
        return "XTR" in self.rail_rates

    @property
    def bot_username(self) -> str:  # for t.me deep links
        return self.links.bot_username

    @classmethod
    def from_settings(cls, settings: Settings, links: Links | None = None) -> BotConfig:
        dest = settings.ton.destination_address
        payments = settings.payments
        return cls(
            public_url=settings.web.public_url.rstrip("/"),
            links=links or links_from_settings(settings),
            currency=settings.ledger.currency,
            ton_rate=settings.ledger.ton_rate,
            invoice_expiry=timedelta(hours=settings.ledger.invoice_expiry_hours),
            ton_destination=friendly_address(dest) if dest else None,
            usdt_master=settings.ton.jettons.get("USDT") if dest else None,
            card_providers={currency: (card.provider, card.token.get_secret_value())
                            for currency, card in sorted(payments.telegram_card.items())
                            if currency in payments.rates and currency != "XTR"},
            rail_rates=dict(payments.rates),
            quote_seconds=payments.quote_minutes * 60,
        )
