"""What a seller's own backend works with: API tokens, webhook settings, idempotent invoice
creation, listings, stats and the callbacks sent to them. No HTTP here: the seller API
(bot/api) and the callback worker (watchers/callbacks.py) call these.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.coalesce import coalescer_for
from ledger.db import Executor, fetch_all, fetch_one
from ledger.errors import InvoiceNotFound, LedgerError
from ledger.ids import parse_invoice_id
from ledger.invoice_batches import InvoiceReader
from ledger.invoices import issue_invoice, new_invoice
from ledger.models import Invoice
from ledger.money import DECIMALS, format_amount
from ledger.purchases import Payer, payers_of_invoices

TOKEN_PREFIX = "pbk_"
_TOKEN_RE = re.compile(r"pbk_[A-Za-z0-9_-]{43}")
MAX_ACTIVE_TOKENS = 20
WEBHOOK_URL_MAX = 512


class InvalidWebhookUrl(LedgerError):
    code = "invalid_webhook_url"
    message = "The webhook URL is not valid."


class TooManyTokens(LedgerError):
    code = "too_many_tokens"
    message = f"A seller may hold at most {MAX_ACTIVE_TOKENS} active API tokens; revoke one."


# --- tokens -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ApiToken:
    id: int
    user_id: int
    hint: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class ApiPrincipal:
    """Who is calling: the token and the seller it belongs to."""

    token_id: int
    user_id: int


def hash_token(token: str) -> bytes:
    # Tokens carry 256 random bits, so a plain SHA-256 is enough (no slow KDF needed).
    return hashlib.sha256(token.encode()).digest()


async def issue_token(db: Executor, seller_user_id: int) -> tuple[str, int]:
    """A new API token for the seller: (plaintext, token id). The plaintext is not stored;
    show it once."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = await fetch_one(
        db,
        """
        INSERT INTO api_tokens (user_id, token_hash, hint)
        SELECT :user, :hash, :hint
         WHERE (SELECT count(*) FROM api_tokens
                 WHERE user_id = :user AND revoked_at IS NULL) < :max
        RETURNING id
        """,
        user=seller_user_id, hash=hash_token(token), hint=token[:8], max=MAX_ACTIVE_TOKENS,
    )
    if row is None:
        raise TooManyTokens()
    return token, int(row["id"])


async def revoke_token(db: Executor, seller_user_id: int, token_id: int) -> bool:
    """Revoke one of the seller's tokens at once. False when it is not theirs or not active."""
    row = await fetch_one(
        db,
        "UPDATE api_tokens SET revoked_at = now() "
        "WHERE id = :id AND user_id = :user AND revoked_at IS NULL RETURNING id",
        id=token_id, user=seller_user_id,
    )
    return row is not None


async def list_tokens(db: Executor, seller_user_id: int) -> list[ApiToken]:
    rows = await fetch_all(
        db,
        "SELECT id, user_id, hint, created_at, last_used_at, revoked_at FROM api_tokens "
        "WHERE user_id = :user ORDER BY id",
        user=seller_user_id,
    )
    return [ApiToken(**dict(r)) for r in rows]


async def authenticate(db: Executor, token: str) -> ApiPrincipal | None:
    """The principal for an active token, else None. One round trip; last_used_at is
    refreshed at most once a minute so that reads do not all become writes."""
    if not _TOKEN_RE.fullmatch(token):
        return None
    row = await fetch_one(
        db,
        """
        WITH t AS (SELECT id, user_id, last_used_at FROM api_tokens
                    WHERE token_hash = :hash AND revoked_at IS NULL),
             touch AS (UPDATE api_tokens a SET last_used_at = now() FROM t
                        WHERE a.id = t.id AND (t.last_used_at IS NULL
                                               OR t.last_used_at < now() - interval '1 minute')
                       RETURNING a.id)
        SELECT t.id, t.user_id, (SELECT count(*) FROM touch) AS touched FROM t
        """,
        hash=hash_token(token),
    )
    return ApiPrincipal(int(row["id"]), int(row["user_id"])) if row else None


# --- webhook settings -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class WebhookSettings:
    user_id: int
    url: str | None  # the default callback URL for invoices without their own
    secret: str  # signs every callback to this seller


_ENSURE_WEBHOOKS = """
WITH ins AS (INSERT INTO seller_webhooks (user_id)
             SELECT u FROM unnest(CAST(:ids AS bigint[])) AS u
             ON CONFLICT (user_id) DO NOTHING
             RETURNING user_id, url, secret)
SELECT user_id, url, secret FROM ins
UNION ALL
SELECT user_id, url, secret FROM seller_webhooks WHERE user_id = ANY(CAST(:ids AS bigint[]))
"""


async def webhooks_of(db: Executor, seller_ids: Iterable[int]) -> dict[int, WebhookSettings]:
    """Webhook settings per seller, creating each missing seller's secret on first need."""
    ids = sorted(set(seller_ids))
    found: dict[int, WebhookSettings] = {}
    for _attempt in range(2):  # a row inserted concurrently is invisible to this snapshot once
        rows = await fetch_all(db, _ENSURE_WEBHOOKS, ids=[i for i in ids if i not in found])
        found.update({r["user_id"]: WebhookSettings(r["user_id"], r["url"], r["secret"])
                      for r in rows})
        if len(found) == len(ids):
            break
    return found


async def get_webhook(db: Executor, seller_user_id: int) -> WebhookSettings:
    return (await webhooks_of(db, [seller_user_id]))[seller_user_id]


def check_webhook_url(url: str) -> str:
    """The URL's syntax (http or https, a host, not too long); network checks happen when a
    callback is sent (watchers/callbacks.py)."""
    from urllib.parse import urlsplit

    url = url.strip()
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise InvalidWebhookUrl("it does not parse as a URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidWebhookUrl("it must be an http(s) URL with a host")
    if len(url) > WEBHOOK_URL_MAX:
        raise InvalidWebhookUrl(f"it is longer than {WEBHOOK_URL_MAX} characters")
    return url


async def set_webhook_url(db: Executor, seller_user_id: int, url: str | None) -> WebhookSettings:
    """Set (or, with None, clear) the seller's default callback URL."""
    clean = check_webhook_url(url) if url else None
    row = await fetch_one(
        db,
        """
        INSERT INTO seller_webhooks (user_id, url) VALUES (:user, :url)
        ON CONFLICT (user_id) DO UPDATE SET url = EXCLUDED.url, updated_at = now()
        RETURNING user_id, url, secret
        """,
        user=seller_user_id, url=clean,
    )
    assert row is not None
    return WebhookSettings(row["user_id"], row["url"], row["secret"])


async def rotate_webhook_secret(db: Executor, seller_user_id: int) -> WebhookSettings:
    """A new signing secret; callbacks sent from now on are signed with it."""
    row = await fetch_one(
        db,
        """
        INSERT INTO seller_webhooks (user_id) VALUES (:user)
        ON CONFLICT (user_id) DO UPDATE
           SET secret = paybot_new_webhook_secret(), updated_at = now()
        RETURNING user_id, url, secret
        """,
        user=seller_user_id,
    )
    assert row is not None
    return WebhookSettings(row["user_id"], row["url"], row["secret"])


# --- invoices as a seller sees them ----------------------------------------------------------

@dataclass(slots=True)
class Links:
    """Where an invoice is paid: the pay page's base URL and the bot's username.

    One instance per process, made at the composition root and shared by every edge (pay
    page, claims, seller API, callbacks, the bot): the bot sets `bot_username` from getMe, and
    every link made after that names the bot people really talk to."""

    public_url: str
    bot_username: str


def iso(at: datetime | None) -> str | None:
    if at is None:
        return None
    if at.tzinfo is not UTC:  # asyncpg already hands back UTC; convert anything else
        at = at.astimezone(UTC)
    return at.isoformat().replace("+00:00", "Z")


def payer_view(payer: Payer | None) -> dict[str, Any] | None:
    """Who paid, for the invoice's seller only: the Telegram user (id, @username, name), or
    a guest's contact (e-mail or @handle, as the guest typed it: unproven)."""
    if payer is None or not payer.known:
        return None
    user = payer.user
    return {
        "telegram_id": user.telegram_id if user else None,
        "username": user.username if user else None,
        "name": user.full_name if user else None,
        "contact": payer.contact,
    }


async def payers_for_views(db: Executor, invoices: Iterable[Invoice]) -> dict[int, Payer]:
    """The payers invoice_view shows, in one query; unpaid invoices cost nothing."""
    paid = [inv.id for inv in invoices if inv.uses]
    return await payers_of_invoices(db, paid) if paid else {}


def invoice_view(inv: Invoice, links: Links, payers: Mapping[int, Payer] | None = None
                 ) -> dict[str, Any]:
    """The seller-facing JSON form of an invoice (API responses and callback bodies).
    `payers` (from payers_for_views) fills `paid_by`: the payer of the latest payment."""
    return {
        "id": inv.public_id,
        "number": inv.number,
        "status": inv.status,
        "title": inv.title,
        "description": inv.description,
        "currency": inv.currency,
        "amount": format_amount(inv.amount, inv.currency),
        "amount_minor": inv.amount,
        "ton_amount": format_amount(inv.ton_amount, "TON") if inv.ton_amount else None,
        "ton_amount_nano": inv.ton_amount,
        "ton_comment": inv.comment,
        "kind": inv.kind,
        "max_uses": inv.max_uses,
        "uses": inv.uses,
        "item_id": inv.payload.get("item_id"),
        "achievement_id": inv.payload.get("achievement_id"),
        "callback_url": inv.payload.get("callback_url"),
        "pay_url": f"{links.public_url.rstrip('/')}/pay/{inv.public_id}",
        "bot_url": f"https://t.me/{links.bot_username}?start=pay_{inv.public_id}",
        "created_at": iso(inv.created_at),
        "expires_at": iso(inv.expires_at),
        "paid_at": iso(inv.paid_at),
        "closed_at": iso(inv.closed_at),
        "paid_by": payer_view(payers.get(inv.id)) if payers else None,
    }


async def seller_invoice(db: Executor, seller_user_id: int, public_id: str) -> Invoice:
    """One of the seller's invoices; another seller's looks exactly like a missing one.
    Through an engine, concurrent lookups share one query (ledger/invoice_batches.py)."""
    canonical = parse_invoice_id(public_id)
    invoice = None
    if canonical is not None:
        if isinstance(db, AsyncEngine):
            invoice = await coalescer_for(db, InvoiceReader).submit(canonical)
        else:
            row = await fetch_one(db, "SELECT * FROM invoices WHERE public_id = :id", id=canonical)
            invoice = Invoice.from_row(row) if row else None
    if invoice is None or invoice.seller_id != seller_user_id:
        raise InvoiceNotFound(public_id[:40])
    return invoice


async def create_invoice_once(
    engine: AsyncEngine, *, seller_id: int, idempotency_key: str | None, request_hash: bytes,
    **invoice: Any,
) -> tuple[Invoice, bool]:
    """create_invoice, at most once per (seller, key): the same key with the same request
    returns the first invoice (replayed=True); with a different request it is refused. The
    key and the invoice are written in one transaction (create_invoices in migration 0005)."""
    return await issue_invoice(engine, new_invoice(
        seller_id=seller_id, idempotency_key=idempotency_key, request_hash=request_hash,
        **invoice))


class InvalidCursor(LedgerError):
    code = "invalid_cursor"
    message = "The cursor is not a next_cursor of one of your earlier pages."


async def list_seller_invoices(
    db: Executor, seller_id: int, *, status: str | None = None,
    created_from: datetime | None = None, created_to: datetime | None = None,
    limit: int = 20, after: str | None = None,
) -> tuple[list[Invoice], str | None]:
    """Newest first; returns the page and the cursor of the next one (None at the end).

    The cursor is the public id of the page's last invoice: random, so it tells nothing of how
    many invoices anyone issued, and it only means something to the seller it belongs to
    (another seller's cursor is refused with InvalidCursor, like a made-up one)."""
    rows = await fetch_all(
        db,
        """
        SELECT * FROM invoices
         WHERE seller_id = :seller
           AND (CAST(:status AS text) IS NULL OR status = :status)
           AND (CAST(:since AS timestamptz) IS NULL OR created_at >= :since)
           AND (CAST(:until AS timestamptz) IS NULL OR created_at < :until)
           AND (CAST(:after AS text) IS NULL OR id < (
                SELECT a.id FROM invoices a WHERE a.public_id = :after AND a.seller_id = :seller))
         ORDER BY id DESC LIMIT :limit
        """,
        seller=seller_id, status=status, since=created_from, until=created_to,
        after=after, limit=limit + 1,
    )
    if after is not None and not rows:  # the last page, or a cursor that is not this seller's
        known = await fetch_one(
            db, "SELECT 1 AS ok FROM invoices WHERE public_id = :after AND seller_id = :seller",
            after=after, seller=seller_id)
        if known is None:
            raise InvalidCursor(after[:40])
    page = [Invoice.from_row(r) for r in rows[:limit]]
    return page, (page[-1].public_id if len(rows) > limit else None)


@dataclass(frozen=True, slots=True)
class Volume:
    currency: str
    amount: int
    payments: int


@dataclass(frozen=True, slots=True)
class SellerStats:
    since: datetime
    until: datetime
    created: int  # invoices created in the period
    paid: int  # ...of which at least one payment arrived (at any time)
    by_status: dict[str, int]
    volume: list[Volume]  # payments received in the period, per currency

    @property
    def conversion(self) -> float:
        return round(self.paid / self.created, 4) if self.created else 0.0


async def seller_stats(
    db: Executor, seller_id: int, since: datetime, until: datetime
) -> SellerStats:
    rows = await fetch_all(
        db,
        """
        SELECT 'status' AS kind, status AS key, count(*) AS n, count(*) FILTER (WHERE uses > 0)
               AS paid, 0::numeric AS amount
          FROM invoices
         WHERE seller_id = :seller AND created_at >= :since AND created_at < :until
         GROUP BY status
        UNION ALL
        SELECT 'volume', p.currency, count(*), 0, sum(p.amount)
          FROM invoices i JOIN payments p ON p.invoice_id = i.id
         WHERE i.seller_id = :seller AND p.created_at >= :since AND p.created_at < :until
         GROUP BY p.currency
        """,
        seller=seller_id, since=since, until=until,
    )
    by_status = dict.fromkeys(("pending", "paid", "cancelled", "expired"), 0)
    paid = 0
    volume: list[Volume] = []
    for r in rows:
        if r["kind"] == "status":
            by_status[r["key"]] = int(r["n"])
            paid += int(r["paid"])
        else:
            volume.append(Volume(r["key"], int(r["amount"]), int(r["n"])))
    volume.sort(key=lambda v: v.currency)
    return SellerStats(since, until, sum(by_status.values()), paid, by_status, volume)


async def balances(db: Executor, user_id: int) -> dict[str, int]:
    """Spendable balance per currency (applied plus pending credits), zero when none."""
    rows = await fetch_all(
        db,
        """
        SELECT a.currency, a.balance + coalesce((SELECT sum(e.amount) FROM entries e
                     WHERE e.account_id = a.id AND e.balance_after IS NULL), 0) AS total
          FROM accounts a WHERE a.user_id = :user
        """,
        user=user_id,
    )
    found = {r["currency"]: int(r["total"]) for r in rows}
    return {currency: found.get(currency, 0) for currency in sorted(DECIMALS)}


# --- callbacks as a seller (or the operator) sees them ----------------------------------------

@dataclass(frozen=True, slots=True)
class CallbackRecord:
    id: int
    event_id: UUID
    event_type: str
    seller_id: int
    invoice: str
    url: str | None  # None: the seller's default webhook URL at delivery time
    status: str  # pending | delivered | failed
    attempts: int
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    failed_at: datetime | None


_CALLBACK_COLUMNS = """
    id, event_id, event_type, (payload ->> 'seller_id')::bigint AS seller_id,
    payload ->> 'invoice' AS invoice, payload ->> 'url' AS url, attempts, last_error, created_at,
    available_at, delivered_at, failed_at
"""


# What a failed attempt may tell the seller: "connection failed", "timed out", "HTTP <code>",
# why a URL is refused, or why there is nothing to send; never ports, addresses or OS errors
# (those made last_error a port scanner). Errors stored before that rule are shown this way.
_ERROR_PREFIX = re.compile(r"(attempt \d+: |gave up after \d+ attempts: )?(.*)", re.S)
_HTTP_STATUS = re.compile(r"HTTP (\d{3})\b")
_KEPT = ("blocked: ", "no callback URL", "the event names")


def public_error(error: str | None) -> str | None:
    if error is None:
        return None
    prefix, rest = _ERROR_PREFIX.fullmatch(error).groups()  # type: ignore[union-attr]
    if status := _HTTP_STATUS.match(rest):
        rest = f"HTTP {status[1]}"
    elif rest.startswith("timed out"):
        rest = "timed out"
    elif not rest.startswith(_KEPT):
        rest = "connection failed"
    return (prefix or "") + rest


def _callback(row: Any) -> CallbackRecord:
    status = "delivered" if row["delivered_at"] else "failed" if row["failed_at"] else "pending"
    return CallbackRecord(
        id=row["id"], event_id=row["event_id"], event_type=row["event_type"],
        seller_id=row["seller_id"], invoice=row["invoice"], url=row["url"], status=status,
        attempts=row["attempts"], last_error=public_error(row["last_error"]),
        created_at=row["created_at"],
        next_attempt_at=row["available_at"] if status == "pending" else None,
        delivered_at=row["delivered_at"], failed_at=row["failed_at"],
    )


async def list_callbacks(
    db: Executor, *, seller_id: int | None, status: str | None = None, limit: int = 20,
    before_id: int | None = None,
) -> tuple[list[CallbackRecord], int | None]:
    """Callback events, newest first: one seller's, or everyone's (seller_id=None, for the
    operator). status: pending | delivered | failed."""
    rows = await fetch_all(
        db,
        f"""
        SELECT {_CALLBACK_COLUMNS} FROM outbox
         WHERE topic = 'callback'
           AND (CAST(:seller AS text) IS NULL OR payload ->> 'seller_id' = :seller)
           AND (CAST(:before AS bigint) IS NULL OR id < :before)
           AND CASE CAST(:status AS text)
                 WHEN 'delivered' THEN delivered_at IS NOT NULL
                 WHEN 'failed' THEN failed_at IS NOT NULL
                 WHEN 'pending' THEN delivered_at IS NULL AND failed_at IS NULL
                 ELSE true END
         ORDER BY id DESC LIMIT :limit
        """,
        seller=None if seller_id is None else str(seller_id), status=status,
        before=before_id, limit=limit + 1,
    )
    page = [_callback(r) for r in rows[:limit]]
    return page, (page[-1].id if len(rows) > limit else None)


async def redeliver_callback(
    db: Executor, event_id: UUID, *, seller_id: int | None
) -> CallbackRecord | None:
    """Queue a callback again now, with a fresh retry schedule (failed, delivered or pending
    alike). None when there is no such event (for this seller)."""
    row = await fetch_one(
        db,
        f"""
        UPDATE outbox SET delivered_at = NULL, failed_at = NULL, attempts = 0,
                          available_at = now()
         WHERE event_id = :event AND topic = 'callback'
           AND (CAST(:seller AS text) IS NULL OR payload ->> 'seller_id' = :seller)
        RETURNING {_CALLBACK_COLUMNS}
        """,
        event=event_id, seller=None if seller_id is None else str(seller_id),
    )
    return _callback(row) if row else None


async def invoices_by_public_id(db: Executor, public_ids: Iterable[str]) -> dict[str, Invoice]:
    rows = await fetch_all(
        db, "SELECT * FROM invoices WHERE public_id = ANY(CAST(:ids AS text[]))",
        ids=sorted(set(public_ids)),
    )
    return {r["public_id"]: Invoice.from_row(r) for r in rows}
