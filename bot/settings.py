"""Configuration from the environment (and an optional .env), one group per prefix.
Read once at the composition root (bot/app.py) and passed down as plain values."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, env_file=".env", extra="ignore")


class DatabaseSettings(BaseSettings):
    """DATABASE_URL, or an embedded PostgreSQL kept in PAYBOT_DATA_DIR."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: SecretStr | None = Field(default=None, alias="DATABASE_URL")
    data_dir: Path = Field(default=Path(".data"), alias="PAYBOT_DATA_DIR")


class LedgerSettings(BaseSettings):
    model_config = _config("LEDGER_")

    currency: str = "LIQ"
    # Liquid $ per 1 TON: locks each invoice's TON quote at creation.
    ton_rate: Decimal = Decimal("5.00")
    invoice_expiry_hours: int = 24 * 7


class TelegramSettings(BaseSettings):
    model_config = _config("TELEGRAM_")

    bot_token: SecretStr | None = None
    api_url: str | None = None  # a self-hosted Bot API server (also how tests reach a stand-in)
    webhook_url: str | None = None  # public URL; unset means long polling
    webhook_secret: SecretStr | None = None
    bot_username: str = "paybot"
    # An invoice card (/start pay_<id>) may reuse a read of the invoice this many seconds old:
    # a link posted in a big channel costs one query per second, not one per person. Paying
    # and cancelling always read the database. 0 turns it off.
    card_cache_seconds: float = Field(default=1.0, ge=0, le=60)


class WebSettings(BaseSettings):
    model_config = _config("WEB_")

    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = "http://127.0.0.1:8080"
    # Mini App init data older than this (seconds since its auth_date) is refused with 401.
    init_data_max_age: int = Field(default=3600, ge=10, le=7 * 24 * 3600)
    # Signs the pay page's guest cookie; unset: derived from the bot token (or per process).
    cookie_secret: SecretStr | None = None
    # The pay page (HTML, QR) may show an invoice read this many seconds ago: a link shared in
    # a big channel is then one query per second, not one per visitor. 0 turns it off. The
    # status API and payments always read the database.
    page_cache_seconds: float = Field(default=1.0, ge=0, le=60)


class TonSettings(BaseSettings):
    model_config = _config("TON_")

    destination_address: str | None = None
    network: str = "mainnet"  # or testnet
    source: str = "liteserver"  # liteserver | http
    api_url: str | None = None  # toncenter v2 compatible, for source=http
    api_key: SecretStr | None = None
    global_config: str | None = None  # path or URL of the liteserver global config
    poll_seconds: float = 5.0
    # With no cursor yet, settle only transactions after this lt (0: the account's whole
    # history). For a wallet that already has a history, set it to its last transaction's lt.
    start_lt: int = Field(default=0, ge=0)
    # pytoniq trust level: 0-1 check liteservers' proofs, 2 trusts them blindly.
    liteserver_trust_level: int = Field(default=1, ge=0, le=2)


class JobSettings(BaseSettings):
    model_config = _config("JOBS_")

    expire_seconds: float = 30.0
    apply_credits_seconds: float = 5.0
    # Telegram notifications (outbox topic 'telegram'); payments made in the bot also kick it.
    notify_seconds: float = 2.0


class ApiSettings(BaseSettings):
    """Seller HTTP API (/api/v1) and the signed callbacks sent to sellers' backends."""

    model_config = _config("API_")

    # Let callbacks reach private, loopback and link-local addresses (tests, same-host shops).
    allow_private_callbacks: bool = False
    # Seconds either side of now a receiver should accept a callback's timestamp (told to
    # sellers in GET /api/v1/webhook; the README's verification snippet uses it).
    replay_window_seconds: int = Field(default=300, ge=10, le=3600)
    # A checked token is trusted this long without asking the database again, so a revoked
    # token stops working within this many seconds (0: every request asks).
    token_cache_seconds: float = Field(default=2.0, ge=0, le=60)
    callback_poll_seconds: float = 2.0
    callback_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    callback_max_response_bytes: int = Field(default=64 * 1024, ge=0)
    callback_concurrency: int = Field(default=50, ge=1, le=500)
    callback_batch: int = Field(default=100, ge=1, le=1000)
    # An event claimed by a worker that died is sent again after this many seconds.
    callback_lease_seconds: float = Field(default=120.0, ge=1)


class Settings:
    """All groups together, read from the environment once."""

    def __init__(self) -> None:
        self.database = DatabaseSettings()
        self.ledger = LedgerSettings()
        self.telegram = TelegramSettings()
        self.web = WebSettings()
        self.ton = TonSettings()
        self.jobs = JobSettings()
        self.api = ApiSettings()
