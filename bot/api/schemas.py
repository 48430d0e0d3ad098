"""Request parsing for the seller API: strict, schema-shaped, never trusting the client.

Bodies are pydantic models in strict mode (no "5" for 5) that forbid unknown fields; query
strings are parsed by hand. Text must be valid UTF-8 without NUL (PostgreSQL refuses both).
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from bot.api.errors import ApiError, invalid
from bot.http_limits import BodyTimeout
from bot.http_limits import read_body as read_limited


def _clean_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


Text = Annotated[str, AfterValidator(_clean_text)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


URL_PATTERN = r"^https?://[^\s/?#]+"  # the rest is checked by check_webhook_url / check_url


MONEY_PATTERN = r"^[0-9]{1,16}(\.[0-9]{1,9})?$"  # the currency's decimals: parse_amount
Money = Annotated[Text, Field(pattern=MONEY_PATTERN)]
_QUANTITY = re.compile(r"[0-9]{1,7}(\.[0-9]{1,3})?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _quantity(value: str) -> str:
    # A pattern error would quote the regex; a seller deserves the rule in words.
    if not _QUANTITY.fullmatch(value):
        raise ValueError("must be a decimal number with at most 3 decimal places, like \"1.5\"")
    return value


def _date(value: str) -> str:
    try:
        if _DATE.fullmatch(value):
            date.fromisoformat(value)
            return value
    except ValueError:
        pass
    raise ValueError("must be a date as YYYY-MM-DD")


Quantity = Annotated[str, AfterValidator(_quantity)]
DateText = Annotated[str, AfterValidator(_date)]


class PercentOff(_Strict):
    percent: Annotated[str, Field(pattern=r"^[0-9]{1,3}(\.[0-9]{1,2})?$")]


class AmountOff(_Strict):
    amount: Money


Discount = PercentOff | AmountOff


class TaxRateIn(_Strict):
    name: Annotated[Text, Field(min_length=1, max_length=64)]
    percent: Annotated[str, Field(pattern=r"^[0-9]{1,3}(\.[0-9]{1,4})?$")]
    inclusive: bool = False


class LineIn(_Strict):
    description: Annotated[Text, Field(min_length=1, max_length=500)]
    quantity: Quantity
    unit_price: Money
    item_id: Annotated[Text, Field(max_length=512)] | None = None
    discount: Discount | None = None
    tax_rate: Annotated[Text, Field(min_length=1, max_length=64)] | None = None


class BuyerIn(_Strict):
    name: Annotated[Text, Field(max_length=200)] | None = None
    company: Annotated[Text, Field(max_length=200)] | None = None
    tax_id: Annotated[Text, Field(max_length=200)] | None = None
    address: Annotated[Text, Field(max_length=500)] | None = None


# Fields a plain (title + amount) request leaves out: its fingerprint stays what it was before
# they existed, so an Idempotency-Key used then still replays.
_DOCUMENT_FIELDS = ("lines", "discount", "tax_rates", "buyer", "memo", "due_date", "due_at",
                    "draft")


class InvoiceCreate(_Strict):
    """POST /invoices and PUT /invoices/{id}: a plain invoice (title + amount) or a document
    (lines; the amount is their total)."""

    title: Annotated[Text, Field(min_length=1, max_length=128)] | None = None
    amount: Money | None = None
    currency: Literal["LIQ", "TON"] = "LIQ"
    description: Annotated[Text, Field(max_length=1024)] | None = None
    kind: Literal["one_time", "multi_use"] = "one_time"
    max_uses: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    expires_in: Annotated[int, Field(ge=60, le=366 * 24 * 3600)] | None = None
    item_id: Annotated[Text, Field(max_length=512)] | None = None
    achievement_id: Annotated[Text, Field(max_length=512)] | None = None
    callback_url: Annotated[Text, Field(max_length=512, pattern=URL_PATTERN)] | None = None
    lines: Annotated[list[LineIn], Field(min_length=1, max_length=100)] | None = None
    discount: Discount | None = None
    tax_rates: Annotated[list[TaxRateIn], Field(max_length=20)] | None = None
    buyer: BuyerIn | None = None
    memo: Annotated[Text, Field(max_length=1000)] | None = None
    due_date: DateText | None = None
    due_at: Annotated[Text, Field(max_length=64)] | None = None
    draft: bool = False

    @model_validator(mode="after")
    def _amount_or_lines(self) -> InvoiceCreate:
        if self.lines is None:
            if self.amount is None:
                raise ValueError("give amount (with title), or lines")
            if self.title is None:
                raise ValueError("title is required without lines")
            if self.discount is not None or self.tax_rates:
                raise ValueError("discount and tax_rates apply to lines: give lines")
        elif self.amount is not None:
            raise ValueError("amount is the total of the lines: leave it out")
        if self.due_date is not None and self.due_at is not None:
            raise ValueError("give due_date or due_at, not both")
        return self

    @property
    def plain(self) -> bool:
        """Today's quick invoice: no document fields at all."""
        return (self.lines is None and self.buyer is None and self.memo is None
                and self.due_date is None and self.due_at is None and not self.draft)

    def due(self) -> datetime | None:
        """due_date is the end of that day in UTC; due_at a moment."""
        if self.due_date is not None:
            return datetime.combine(date.fromisoformat(self.due_date), time(23, 59, 59), UTC)
        return parse_datetime(self.due_at) if self.due_at is not None else None

    def fingerprint(self) -> bytes:
        """What makes two requests "the same" for an Idempotency-Key."""
        unset = {f for f in _DOCUMENT_FIELDS if getattr(self, f) in (None, False)}
        return hashlib.sha256(self.model_dump_json(exclude=unset).encode()).digest()


class SendInvoice(_Strict):
    """Neither: send it "as a link" (the answer carries the links to share)."""

    telegram_id: Annotated[int, Field(ge=1, le=2**52 - 1)] | None = None
    username: Annotated[Text, Field(pattern=r"^@?[A-Za-z0-9_]{5,32}$")] | None = None

    @model_validator(mode="after")
    def _one(self) -> SendInvoice:
        if self.telegram_id is not None and self.username is not None:
            raise ValueError("give telegram_id or username, not both")
        return self


class Reason(_Strict):
    reason: Annotated[Text, Field(min_length=1, max_length=500)] | None = None


class ReverseBody(_Strict):
    reason: Annotated[Text, Field(min_length=1, max_length=500)]


class ManualPaymentIn(_Strict):
    amount: Money
    received_on: DateText
    reference: Annotated[Text, Field(min_length=1, max_length=200)]
    note: Annotated[Text, Field(max_length=1000)] | None = None


class WebhookUpdate(_Strict):
    url: Annotated[Text, Field(max_length=512, pattern=URL_PATTERN)] | None


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


M = TypeVar("M", bound=BaseModel)


BODY_TIMEOUT = 10.0  # seconds for the whole body to arrive (WEB_BODY_TIMEOUT_SECONDS)


async def read_body(request: web.Request, model: type[M],
                    deadline: float = BODY_TIMEOUT) -> M:
    """The body as `model`: at most the app's client_max_size bytes (413), sent within
    `deadline` seconds (408), JSON (400; nested past the parser's recursion limit, or a lone
    surrogate escape, is not), then the schema (422)."""
    return parse_body(await _raw_body(request, deadline), model)


async def read_optional_body(request: web.Request, model: type[M],
                             deadline: float = BODY_TIMEOUT) -> M:
    """As read_body, but no body at all means every field's default."""
    raw = await _raw_body(request, deadline)
    return model() if not raw.strip() else parse_body(raw, model)


async def _raw_body(request: web.Request, deadline: float) -> bytes:
    try:
        return await read_limited(request, deadline)
    except BodyTimeout:
        raise ApiError(408, "request_timeout", "The body did not arrive in time.") from None


def parse_body(raw: bytes, model: type[M]) -> M:
    try:
        # pydantic's own parser, straight from the bytes: one pass, no dict in between
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors()
        if errors and errors[0]["type"] == "json_invalid":  # also bad UTF-8, nesting too deep
            raise ApiError(400, "invalid_json", "The body is not valid JSON.") from None
        if errors and not errors[0]["loc"] and errors[0]["type"] == "model_type":
            raise invalid("The body must be a JSON object.") from None
        raise invalid(_describe(exc)) from None


# --- query strings and headers ----------------------------------------------------------------

_DIGITS = re.compile(r"[0-9]{1,18}")  # used with fullmatch: "$" would allow a final "\n"


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw) or not lo <= int(raw) <= hi:
        raise invalid(f"{name} must be an integer from {lo} to {hi}")
    return int(raw)


def query_choice(request: web.Request, name: str, choices: tuple[str, ...]) -> str | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if raw not in choices:
        raise invalid(f"{name} must be one of: {', '.join(choices)}")
    return raw


def query_cursor(request: web.Request) -> int | None:
    raw = request.query.get("cursor")
    if raw is None:
        return None
    if not _DIGITS.fullmatch(raw):
        raise invalid("cursor must be a value of next_cursor from an earlier page")
    return int(raw)


_INVOICE_CURSOR = re.compile(r"[0-9A-HJKMNP-TV-Z]{13}")


def query_invoice_cursor(request: web.Request) -> str | None:
    """An invoice list's `next_cursor` (opaque to clients: the public id of the last invoice
    of the previous page)."""
    raw = request.query.get("cursor")
    if raw is None:
        return None
    if not _INVOICE_CURSOR.fullmatch(raw):
        raise invalid("cursor must be a value of next_cursor from an earlier page")
    return raw


def parse_datetime(raw: str) -> datetime:
    """RFC 3339 date-time (a naive one is taken as UTC)."""
    try:
        at = datetime.fromisoformat(raw.strip().upper().replace("Z", "+00:00"))
    except ValueError:
        raise invalid(f"{raw[:40]!r} is not an RFC 3339 date-time") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    try:
        return at.astimezone(UTC)
    except OverflowError:
        raise invalid(f"{raw[:40]!r} is out of range") from None


def query_datetime(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    return None if raw is None else parse_datetime(raw)


_KEY = re.compile(r"[\x21-\x7e]{1,200}")  # visible ASCII, as a header value safely is


def idempotency_key(request: web.Request) -> str | None:
    raw = request.headers.get("Idempotency-Key")
    if raw is None:
        return None
    if not _KEY.fullmatch(raw):
        raise invalid("Idempotency-Key must be 1 to 200 visible ASCII characters")
    return raw


def path_uuid(request: web.Request, name: str, not_found: ApiError) -> UUID:
    try:
        return UUID(request.match_info[name])
    except ValueError:
        raise not_found from None


def dump(value: Any) -> Any:
    """JSON-safe form of ledger values (UUIDs and datetimes as text)."""
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


# --- plans and subscriptions (bot/api/subscriptions.py) ---------------------------------------

Months = Literal[1, 3, 6, 12]  # the periods a plan may offer (plan_prices)
TelegramId = Annotated[int, Field(ge=1, le=2**52 - 1)]
PublicId = Annotated[Text, Field(min_length=1, max_length=64)]


class PlanPriceIn(_Strict):
    months: Months
    amount: Money


class PlanCreate(_Strict):
    """POST /plans. A channel is attached in the bot, where the bot's admin rights in it can
    be checked (openapi.json says so)."""

    name: Annotated[Text, Field(min_length=1, max_length=128)]
    currency: Literal["LIQ", "TON"] = "LIQ"
    prices: Annotated[list[PlanPriceIn], Field(min_length=1, max_length=4)]
    trial_days: Annotated[int, Field(ge=0, le=365)] = 0
    item_id: Annotated[Text, Field(min_length=1, max_length=512)] | None = None
    achievement_id: Annotated[Text, Field(min_length=1, max_length=512)] | None = None

    @model_validator(mode="after")
    def _one_price_per_period(self) -> PlanCreate:
        months = [p.months for p in self.prices]
        if len(set(months)) != len(months):
            raise ValueError("prices: each period (months) at most once")
        return self


class SubscribeIn(_Strict):
    plan_id: PublicId
    telegram_id: TelegramId
    months: Months


class CancelSubscriptionIn(_Strict):
    at_period_end: bool = True


class ExtendSubscriptionIn(_Strict):
    months: Annotated[int, Field(ge=1, le=120)]
    reason: Annotated[Text, Field(min_length=1, max_length=500)]
