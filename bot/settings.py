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


class WebSettings(BaseSettings):
    model_config = _config("WEB_")

    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = "http://127.0.0.1:8080"


class TonSettings(BaseSettings):
    model_config = _config("TON_")

    destination_address: str | None = None
    network: str = "mainnet"  # or testnet
    source: str = "liteserver"  # liteserver | http
    api_url: str | None = None  # toncenter v2 compatible, for source=http
    api_key: SecretStr | None = None
    global_config: str | None = None  # path or URL of the liteserver global config
    poll_seconds: float = 5.0


class JobSettings(BaseSettings):
    model_config = _config("JOBS_")

    expire_seconds: float = 30.0
    apply_credits_seconds: float = 5.0


class Settings:
    """All groups together, read from the environment once."""

    def __init__(self) -> None:
        self.database = DatabaseSettings()
        self.ledger = LedgerSettings()
        self.telegram = TelegramSettings()
        self.web = WebSettings()
        self.ton = TonSettings()
        self.jobs = JobSettings()
