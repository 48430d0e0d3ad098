"""Signed callbacks to sellers' backends, delivered from the outbox at least once.

The ledger queues a 'callback' event in the same transaction as the payment (or the cancel or
expiry). This worker claims due events with a lease, POSTs `{id, type, created_at, invoice}`
signed with the seller's webhook secret, and marks each delivered, retried later (backoff for
about three days) or failed. A worker killed mid-delivery leaves its events leased; once the
lease runs out another worker (or the restarted one) claims and sends them again. Receivers
de-duplicate by the event id.

Signature: `X-Paybot-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>` with
the Unix time in `X-Paybot-Timestamp`; receivers reject timestamps outside their replay window
(verify_signature below; the README has a standalone snippet).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.models import Invoice
from ledger.outbox import OutboxEvent, claim_due, mark_delivered, mark_failed, mark_retry
from ledger.sellers import (
    Links,
    WebhookSettings,
    invoice_view,
    invoices_by_public_id,
    iso,
    webhooks_of,
)

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Paybot-Signature"
TIMESTAMP_HEADER = "X-Paybot-Timestamp"
EVENT_ID_HEADER = "X-Paybot-Event-Id"
EVENT_TYPE_HEADER = "X-Paybot-Event-Type"
DEFAULT_REPLAY_WINDOW = 300  # seconds a receiver should accept a timestamp either side of now

# Seconds to wait after the n-th failed attempt; after the last one the event is failed.
# 15 attempts over ~3.2 days: quick retries for blips, then twice a day for long outages.
RETRY_DELAYS: tuple[int, ...] = (
    10, 60, 5 * 60, 15 * 60, 30 * 60, 3600, 2 * 3600, 4 * 3600, 8 * 3600,
    12 * 3600, 12 * 3600, 12 * 3600, 12 * 3600, 12 * 3600,
)


def retry_delay(attempts: int) -> int | None:
    """Delay before the next attempt after `attempts` failed ones; None means give up."""
    if attempts < 1:
        return RETRY_DELAYS[0]
    return RETRY_DELAYS[attempts - 1] if attempts <= len(RETRY_DELAYS) else None


# --- signatures -------------------------------------------------------------------------------

def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


class InvalidSignature(Exception):
    """The callback is not authentic, or is too old (a replay)."""


def verify_signature(
    secret: str, body: bytes, timestamp: str | None, signature: str | None, *,
    replay_window: int = DEFAULT_REPLAY_WINDOW, now: float | None = None,
) -> None:
    """What a receiver does with a callback (raises InvalidSignature): the timestamp must be
    within `replay_window` seconds of now and one `v1=` signature must match."""
    if not timestamp or not signature:
        raise InvalidSignature("missing signature headers")
    try:
        ts = int(timestamp)
    except ValueError:
        raise InvalidSignature("malformed timestamp") from None
    if abs((time.time() if now is None else now) - ts) > replay_window:
        raise InvalidSignature("timestamp outside the replay window")
    expected = sign(secret, ts, body).encode()
    # A list is accepted (several signatures while a secret is being replaced); bytes, since
    # compare_digest refuses non-ASCII text and a header may carry anything.
    candidates = [part.strip().encode("utf-8", "surrogateescape")
                  for part in signature.split(",")]
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise InvalidSignature("signature mismatch")


def signed_headers(event: OutboxEvent, secret: str, body: bytes, now: float) -> dict[str, str]:
    ts = int(now)
    return {
        "Content-Type": "application/json",
        "User-Agent": "paybot-callbacks/1",
        EVENT_ID_HEADER: str(event.event_id),
        EVENT_TYPE_HEADER: event.event_type,
        TIMESTAMP_HEADER: str(ts),
        SIGNATURE_HEADER: sign(secret, ts, body),
    }


def event_body(event: OutboxEvent, invoice: Invoice, links: Links) -> bytes:
    doc: dict[str, Any] = {
        "id": str(event.event_id),
        "type": event.event_type,
        "created_at": iso(event.created_at),
        "invoice": invoice_view(invoice, links),
    }
    if event.event_type == "invoice_paid":  # which payment (multi-use invoices take many)
        doc["payment"] = {"id": event.payload.get("payment_id"),
                          "method": event.payload.get("method")}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


# --- where callbacks may go -------------------------------------------------------------------

class BlockedUrl(OSError):
    """The URL may not be called (scheme, or a private/loopback/link-local address). An
    OSError so that aiohttp reports it from the resolver as a connection error."""


def address_allowed(address: str) -> bool:
    """Only globally routable unicast addresses (no private, loopback, link-local, CGNAT,
    multicast, reserved or unspecified ones, including IPv4 inside IPv6)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str, *, allow_private: bool) -> None:
    """Static checks of a callback URL (raises BlockedUrl). Host names are checked again
    when resolved, on the addresses actually connected to (GuardedResolver)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise BlockedUrl(f"not a valid URL: {url[:100]!r}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise BlockedUrl("only http(s) URLs with a host can receive callbacks")
    if parts.username or parts.password:
        raise BlockedUrl("credentials in callback URLs are not allowed")
    if allow_private:
        return
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        if host.rstrip(".").lower() == "localhost" or host.endswith(".localhost"):
            raise BlockedUrl(f"{host} is a loopback name") from None
        return  # a name: checked when resolved
    if not address_allowed(host):
        raise BlockedUrl(f"{host} is not a public address")


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default and drops every non-public address, so that a name
    pointing at 127.0.0.1 or 10.x (or re-pointed there later) is never connected to."""

    def __init__(self, allow_private: bool) -> None:
        self._inner = ThreadedResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if self._allow_private:
            return found
        allowed = [r for r in found if address_allowed(r["host"])]
        if not allowed:
            raise BlockedUrl(f"{host} resolves only to non-public addresses")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


# --- sending ----------------------------------------------------------------------------------

class CallbackSender:
    """One HTTP client for all callbacks: bounded time, bounded response, no redirects, no
    proxies from the environment, only allowed addresses."""

    def __init__(
        self, *, allow_private: bool = False, timeout: float = 10.0,
        max_response_bytes: int = 64 * 1024, concurrency: int = 50,
    ) -> None:
        self.allow_private = allow_private
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None
        # Requests wait here, not in the connection pool, so the timeout counts only the
        # request itself and a batch takes at most ceil(batch / concurrency) * timeout.
        self._slots = asyncio.Semaphore(concurrency)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=GuardedResolver(self.allow_private), limit=self.concurrency,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout,
                                              sock_connect=min(5.0, self.timeout)),
                trust_env=False,
            )
        return self._session

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> str | None:
        """None when the receiver answered 2xx; otherwise why not (for last_error)."""
        async with self._slots:
            return await self._post(url, body, headers)

    async def _post(self, url: str, body: bytes, headers: Mapping[str, str]) -> str | None:
        try:
            check_url(url, allow_private=self.allow_private)
            async with self._client().post(
                url, data=body, headers=dict(headers), allow_redirects=False
            ) as resp:
                # Read at most max_response_bytes; the rest is never downloaded.
                await resp.content.read(self.max_response_bytes)
                if 200 <= resp.status < 300:
                    return None
                return f"HTTP {resp.status} from the receiver"
        except BlockedUrl as exc:
            return f"blocked: {exc}"
        except TimeoutError:
            return f"timed out after {self.timeout:g}s"
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, BlockedUrl):
                return f"blocked: {exc.os_error}"
            return f"connection failed: {exc}"
        except (aiohttp.ClientError, aiohttp.InvalidURL, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}"[:500]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


# --- the worker -------------------------------------------------------------------------------

@dataclass(slots=True)
class DeliveryStats:
    claimed: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0

    def add(self, other: DeliveryStats) -> None:
        self.claimed += other.claimed
        self.delivered += other.delivered
        self.retried += other.retried
        self.failed += other.failed


async def deliver_due(
    engine: AsyncEngine, sender: CallbackSender, links: Links, *, limit: int = 100,
    lease_seconds: float = 120.0,
) -> DeliveryStats:
    """Claim up to `limit` due callback events and try each once (concurrently)."""
    events = await claim_due(engine, "callback", limit=limit, lease_seconds=lease_seconds)
    stats = DeliveryStats(claimed=len(events))
    if not events:
        return stats
    invoices = await invoices_by_public_id(engine, (str(e.payload.get("invoice")) for e in events))
    sellers = {int(e.payload["seller_id"]) for e in events if e.payload.get("seller_id")}
    webhooks = await webhooks_of(engine, sellers)
    outcomes = await asyncio.gather(*(
        _deliver_one(engine, sender, links, e, invoices, webhooks) for e in events
    ))
    for outcome in outcomes:
        setattr(stats, outcome, getattr(stats, outcome) + 1)
    return stats


async def _deliver_one(
    engine: AsyncEngine, sender: CallbackSender, links: Links, event: OutboxEvent,
    invoices: Mapping[str, Invoice], webhooks: Mapping[int, WebhookSettings],
) -> str:
    invoice = invoices.get(str(event.payload.get("invoice")))
    webhook = webhooks.get(int(event.payload.get("seller_id") or 0))
    url = event.payload.get("url") or (webhook.url if webhook else None)
    if invoice is None or webhook is None:
        await mark_failed(engine, event.id, "the event names no known invoice or seller")
        return "failed"
    if not url:
        await mark_failed(engine, event.id, "no callback URL: the invoice has none and the "
                                            "seller's default webhook URL is not set")
        return "failed"
    try:
        check_url(url, allow_private=sender.allow_private)
    except BlockedUrl as exc:  # a fixed property of the URL: retrying cannot help
        await mark_failed(engine, event.id, f"blocked: {exc}")
        return "failed"
    body = event_body(event, invoice, links)
    error = await sender.post(url, body, signed_headers(event, webhook.secret, body, time.time()))
    if error is None:
        await mark_delivered(engine, event.id)
        return "delivered"
    delay = retry_delay(event.attempts)
    if delay is None:
        await mark_failed(engine, event.id, f"gave up after {event.attempts} attempts: {error}")
        log.warning("callback %s failed for good: %s", event.event_id, error)
        return "failed"
    await mark_retry(engine, event.id, f"attempt {event.attempts}: {error}", delay)
    return "retried"


async def deliver_all_due(
    engine: AsyncEngine, sender: CallbackSender, links: Links, *, batch: int = 100,
    lease_seconds: float = 120.0, max_batches: int = 50,
) -> DeliveryStats:
    """Drain what is due now, batch after batch (bounded, so one tick cannot run forever)."""
    total = DeliveryStats()
    for _ in range(max_batches):
        stats = await deliver_due(engine, sender, links, limit=batch, lease_seconds=lease_seconds)
        total.add(stats)
        if stats.claimed < batch:
            break
    return total


async def callback_delivery_job(
    engine: AsyncEngine, sender: CallbackSender, links: Links, batch: int, lease_seconds: float
) -> None:
    try:
        stats = await deliver_all_due(engine, sender, links, batch=batch,
                                      lease_seconds=lease_seconds)
    except Exception:  # the database may be briefly away; the next tick tries again
        log.exception("callback delivery pass failed")
        return
    if stats.claimed:
        log.info("callbacks: %d delivered, %d to retry, %d failed",
                 stats.delivered, stats.retried, stats.failed)


def schedule_callback_delivery(
    scheduler: AsyncIOScheduler, engine: AsyncEngine, sender: CallbackSender, links: Links, *,
    seconds: float, batch: int = 100, lease_seconds: float = 120.0,
) -> None:
    # The lease must outlast one batch's worst case (ceil(batch / concurrency) * timeout) so
    # that a live worker never has its events re-claimed; coalesce + max_instances=1 as for
    # the ledger jobs.
    scheduler.add_job(
        callback_delivery_job, trigger="interval", seconds=seconds, coalesce=True,
        max_instances=1, id="deliver_callbacks",
        args=[engine, sender, links, batch, lease_seconds],
    )
