"""Configuration from the environment (and an optional .env), one group per prefix.
Read once at the composition root (bot/app.py) and passed down as plain values."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.ratelimit import Rate
from ledger.rails import CURRENCY_EXP


def _rate(text: str) -> str:
    Rate.parse(text)  # refuse a malformed limit at start-up, not at the first request
    return text


# "<count>/<s|m|h>[:<burst>]", e.g. "20/s:60"; "0" switches the limit off.
RateText = Annotated[str, AfterValidator(_rate)]


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, env_file=".env", extra="ignore")


class DatabaseSettings(BaseSettings):
    """DATABASE_URL, or an embedded PostgreSQL kept in PAYBOT_DATA_DIR."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: SecretStr | None = Field(default=None, alias="DATABASE_URL")
    data_dir: Path = Field(default=Path(".data"), alias="PAYBOT_DATA_DIR")
    # Deadlines towards PostgreSQL, well below any client's (Telegram waits 60 s, browsers and
    # seller backends about 30 s): a frozen or unreachable database costs a request this long,
    # then it is a 503 with Retry-After. Opening a connection; one statement (a ledger call is
    # one statement); waiting for a free pooled connection.
    connect_timeout: float = Field(default=3.0, gt=0, le=60, alias="DATABASE_CONNECT_TIMEOUT")
    command_timeout: float = Field(default=10.0, gt=0, le=600, alias="DATABASE_COMMAND_TIMEOUT")
    pool_timeout: float = Field(default=5.0, gt=0, le=60, alias="DATABASE_POOL_TIMEOUT")


class LedgerSettings(BaseSettings):
    model_config = _config("LEDGER_")

    currency: str = "LIQ"
    # Liquid $ per 1 TON: locks each invoice's TON quote at creation.
    ton_rate: Decimal = Decimal("5.00")
    invoice_expiry_hours: int = 24 * 7
    # What is only shown (a pay page, its QR, a bot card) may come from a read of the invoice
    # this many seconds old: a link shared in a big channel is one query per second, not one
    # per visitor. Payments, cancellations and the status API always read the database, and a
    # change made by this process drops the cached read at once. 0 turns it off.
    invoice_cache_seconds: float = Field(default=1.0, ge=0, le=60)
    # A subscription whose renewal the balance could not pay stays past due (access kept, the
    # balance tried again every few hours) this many days, then ends.
    subscription_grace_days: int = Field(default=3, ge=0, le=60)


class TelegramSettings(BaseSettings):
    model_config = _config("TELEGRAM_")

    bot_token: SecretStr | None = None
    api_url: str | None = None  # a self-hosted Bot API server (also how tests reach a stand-in)
    webhook_url: str | None = None  # public URL; unset means long polling
    webhook_secret: SecretStr | None = None
    bot_username: str = "paybot"
    # Per Telegram user: paying, confirming and /invoice (one sentence back when exceeded).
    rate_per_user: RateText = "1/s:5"


class WebSettings(BaseSettings):
    model_config = _config("WEB_")

    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = "http://127.0.0.1:8080"
    # Mini App init data older than this (seconds since its auth_date) is refused with 401.
    init_data_max_age: int = Field(default=3600, ge=10, le=7 * 24 * 3600)
    # Signs the pay page's guest cookie; unset: derived from the bot token (or per process).
    cookie_secret: SecretStr | None = None
    # --- limits (see bot/http_limits.py, bot/ratelimit.py; deploy/nginx.conf for the proxy)
    # Largest request body on any route (413 beyond it); JSON bodies here are well under 4 KiB.
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    # A request's headers must arrive within this many seconds of the connection opening or of
    # the previous answer (slow-loris), and its body within body_timeout_seconds (408).
    header_timeout_seconds: float = Field(default=15.0, gt=0, le=600)
    body_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    # Open connections at most (capped below the process's file descriptor limit); the rest
    # are closed on arrival.
    max_connections: int = Field(default=1000, ge=16)
    # Unauthenticated reads (pay page, status, QR) running at once and waiting; the rest get 503
    # at once. Payments never wait here: a flood of reads cannot take their database pool.
    read_concurrency: int = Field(default=8, ge=1, le=1000)
    read_queue: int = Field(default=200, ge=0, le=100_000)
    # Per client address on unauthenticated routes, and per Telegram user for Mini App payments.
    rate_per_address: RateText = "30/s:90"
    rate_pay_per_user: RateText = "2/s:10"
    # Behind a reverse proxy: the header carrying the client's address (e.g. X-Real-IP, set by
    # the proxy). Unset: the peer address of the connection. Never trust it without a proxy.
    client_address_header: str | None = None


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
    # Jettons taken, symbol -> master address (USDT's mainnet master by default; set the
    # testnet one on testnet). A notification counts only from OUR jetton wallet of a master
    # (its get_wallet_address(destination), computed once and stored).
    jettons: dict[str, str] = {"USDT": "EQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_sDs"}


class PayoutSettings(BaseSettings):
    """Money out: refunds of held transfers and withdrawals, sent by one hot wallet."""
    model_config = _config("PAYOUTS_")
    # The hot wallet's 24 words. Unset: no payouts are sent (orders wait; the operator is told).
    hot_wallet_mnemonic: SecretStr | None = None
    hot_wallet_version: Literal["v4r2", "v5r1"] = "v4r2"
    # Per user and UTC day, in the asset's minor units: withdrawals beyond it are refused.
    daily_limit: dict[str, int] = {"TON": 100 * 10**9, "USDT": 500 * 10**6}
    # A withdrawal above this waits for the operator's approval (paybot admin payouts approve).
    approval_above: dict[str, int] = {"TON": 20 * 10**9, "USDT": 100 * 10**6}
    # How long a signed message may land (valid_until = now + this); a message not landed by
    # then can never land, and only then is the order signed again.
    valid_seconds: int = Field(default=120, ge=30, le=3600)
    poll_seconds: float = Field(default=5.0, gt=0, le=600)


class JobSettings(BaseSettings):
    model_config = _config("JOBS_")

    expire_seconds: float = 30.0
    apply_credits_seconds: float = 5.0
    # Telegram notifications (outbox topic 'telegram'); payments made in the bot also kick it.
    notify_seconds: float = 2.0
    # Payment reminders to buyers (7 and 1 days before due, overdue: each sent once) are
    # looked for this often; the sellers' overdue digest goes out once the UTC hour reaches
    # digest_hour_utc.
    reminder_interval_seconds: float = Field(default=300.0, ge=10, le=86400)
    digest_hour_utc: int = Field(default=9, ge=0, le=23)
    # The sellers' weekly summary (opt-in) of the last Monday-to-Sunday goes out once this UTC
    # weekday (0 = Monday … 6 = Sunday) and hour have come.
    weekly_summary_weekday: int = Field(default=0, ge=0, le=6)
    weekly_summary_hour_utc: int = Field(default=9, ge=0, le=23)
    # Subscription renewals (and their reminders, 3 days before) are looked for this often.
    renew_seconds: float = Field(default=60.0, ge=5, le=3600)
    # Telegram Stars: getStarTransactions read against the ledger (missed payments settled,
    # refunds in flight completed, mismatches told to the operator).
    stars_reconcile_seconds: float = Field(default=300.0, ge=10, le=86400)
    # Browser card checkouts (Stripe, YooKassa) whose webhook has not come: asked by id.
    card_sessions_seconds: float = Field(default=120.0, ge=10, le=86400)


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
    # Per API token: every request, and invoice creation on top (invoices are never deleted).
    rate_per_token: RateText = "100/s:300"
    rate_create_per_token: RateText = "20/s:100"
    callback_poll_seconds: float = 2.0
    callback_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    callback_max_response_bytes: int = Field(default=64 * 1024, ge=0)
    callback_concurrency: int = Field(default=50, ge=1, le=500)
    callback_batch: int = Field(default=100, ge=1, le=1000)
    # An event claimed by a worker that died is sent again after this many seconds (a live
    # worker renews the lease while a delivery is in flight).
    callback_lease_seconds: float = Field(default=10.0, ge=1)


class CardProvider(BaseModel):
    """A Telegram Payments provider (BotFather -> Payments) for one currency."""
    provider: str = Field(pattern=r"^[a-z0-9_]{1,32}$")  # becomes the method card:<provider>
    token: SecretStr


class PaymentSettings(BaseSettings):
    """Cards and Telegram Stars. Rates lock each quote when a card or Stars payment is offered."""
    model_config = _config("PAYMENTS_")
    # Telegram Payments, per currency: {"USD": {"provider": "stripe", "token": "..."}}.
    telegram_card: dict[str, CardProvider] = {}
    # Units of a provider currency per 1 Liquid $ (a TON invoice: times its locked TON rate).
    # "XTR" (Telegram Stars) present = Stars offered.
    rates: dict[str, Decimal] = {"XTR": Decimal("77"), "USD": Decimal("1")}
    quote_minutes: int = Field(default=30, ge=1, le=24 * 60)
    # Cards in a plain browser (the /pay page), per currency: {"USD": "stripe", "RUB": "yookassa"}.
    web_card: dict[str, Literal["stripe", "yookassa"]] = {}
    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_api_base: str | None = None  # tests point the SDK at a local stand-in
    yookassa_shop_id: str | None = None
    yookassa_secret_key: SecretStr | None = None
    yookassa_api_url: str | None = None  # tests point the SDK at a local stand-in
    # Refuse YooKassa notifications from addresses YooKassa does not publish. Off by default:
    # a notification is never trusted anyway (the payment is read back by id), and behind a
    # proxy the address is the proxy's unless WEB_CLIENT_ADDRESS_HEADER is set.
    yookassa_check_source: bool = False

    @field_validator("rates", "telegram_card", "web_card")
    @classmethod
    def _known_currencies(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Refused at start-up, not at a buyer's tap: a currency whose minor units we do not
        # know, or a rate that is not a positive number.
        for code, item in value.items():
            if code not in CURRENCY_EXP:
                raise ValueError(f"currency {code!r} is not one paybot knows the minor units of")
            if isinstance(item, Decimal) and not item > 0:
                raise ValueError(f"the rate of {code} must be positive")
        return value

    @property
    def stars_enabled(self) -> bool:
        return "XTR" in self.rates


class OperatorSettings(BaseSettings):
    """Who runs this paybot: told in Telegram about held payments and mismatches."""
    model_config = _config("OPERATOR_")
    telegram_ids: list[int] = []


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
        self.payments = PaymentSettings()
        self.payouts = PayoutSettings()
        self.operator = OperatorSettings()
        self.metrics = MetricsSettings()


class MetricsSettings(BaseSettings):
    """GET /metrics (bot/metrics.py) and the operators' alerts (watchers/alerts.py)."""
    model_config = _config("METRICS_")
    # Bearer token a Prometheus scrape must send. Unset: /metrics answers loopback only.
    token: SecretStr | None = None
    # The alerts job runs this often; the watcher lags "too much" past lag_alert_seconds.
    alert_seconds: float = Field(default=60.0, ge=5, le=3600)
    lag_alert_seconds: float = Field(default=300.0, ge=10, le=86400)
