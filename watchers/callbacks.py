"""Signed callbacks to sellers' backends, delivered from the outbox at least once.

The ledger queues a 'callback' event in the same transaction as the payment (or the cancel or
expiry). This worker claims due events with a lease, POSTs `{id, type, created_at, invoice}`
signed with the seller's webhook secret, and marks each delivered, retried later (backoff for
about three days) or failed. Claims are fair across endpoints and sellers, each endpoint has a
concurrency cap and a circuit breaker, and an endpoint that is backing off is skipped, so one
seller's dead endpoint does not hold up anyone else's callbacks. Leases are short and renewed
while a delivery is in flight: a worker killed mid-delivery leaves its events leased for
seconds, then another worker (or the restarted one) claims and sends them again. Receivers
de-duplicate by the event id.

Signature: `X-Paybot-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>` with
the Unix time in `X-Paybot-Timestamp`; receivers reject timestamps outside their replay window
(verify_signature below; the README has a standalone snippet).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.core import Ledger
from ledger.invoice_reads import invoices_by_public_id
from ledger.models import Invoice, iso
from ledger.money import format_amount
from ledger.outbox import (
    OutboxEvent,
    claim_callbacks,
    defer,
    defer_endpoint,
    endpoint_failed,
    endpoint_recovered,
    mark_failed,
    mark_retry,
    renew_leases,
)
from ledger.purchases import Payer, payers_of_payments
from ledger.webhooks import WebhookSettings, webhooks_of
from watchers.callback_urls import (  # noqa: F401 - check_url: the API's acceptance check
    BlockedUrl,
    address_allowed,
    canonical_target,
    check_url,
)
from watchers.wakeup import Waker

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


# The seller-facing JSON of an invoice and its payer (the seller API's own view), handed in
# by the composition root: delivery knows no URLs.
RenderInvoice = Callable[[Invoice, Payer | None], dict[str, Any]]
# The seller-facing JSON of subscriptions, by public id, read at delivery (the API's view and
# its reads), handed in the same way: `subscription_*` events carry a subscription, no invoice.
RenderSubscriptions = Callable[[Iterable[str]], Awaitable[Mapping[str, dict[str, Any]]]]
SUBSCRIPTION_EVENT_PREFIX = "subscription_"


def is_subscription_event(event: OutboxEvent) -> bool:
    return event.event_type.startswith(SUBSCRIPTION_EVENT_PREFIX)


def subscription_event_body(event: OutboxEvent, subscription: dict[str, Any]) -> bytes:
    """`{id, type, created_at, subscription}`: created, renewed, past_due, cancelled,
    expired (openapi.json, SubscriptionEvent)."""
    doc = {"id": str(event.event_id), "type": event.event_type,
           "created_at": iso(event.created_at), "subscription": subscription}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def event_body(event: OutboxEvent, invoice: Invoice, render: RenderInvoice,
               payer: Payer | None = None) -> bytes:
    """The signed document; `payer` (of this event's payment) fills `invoice.paid_by`. Each
    type adds what the invoice alone does not say (openapi.json, CallbackEvent)."""
    doc: dict[str, Any] = {
        "id": str(event.event_id),
        "type": event.event_type,
        "created_at": iso(event.created_at),
        "invoice": render(invoice, payer),
    }
    extra = event.payload
    kind = event.event_type
    if kind == "invoice_paid":  # which payment (multi-use invoices take many)
        doc["payment"] = {"id": extra.get("payment_id"),
                          "method": extra.get("method"),
                          # Settled at or after the expiry (sent before it): the event is
                          # written in the payment's own transaction, so its time is the
                          # settlement's. The invoice then stays expired (ledger/sql/payments.sql).
                          "paid_late": event.created_at >= invoice.expires_at}
    elif kind in ("invoice_payment_recorded", "invoice_payment_reversed"):
        amount = extra.get("amount")
        payment: dict[str, Any] = {
            "id": extra.get("payment_id"),
            "amount": format_amount(amount, invoice.currency) if isinstance(amount, int)
            else None,
            "amount_minor": amount,
        }
        if kind == "invoice_payment_recorded":
            payment["reference"] = extra.get("reference")
        else:
            doc["reason"] = extra.get("reason")
        doc["payment"] = payment
    elif kind in ("invoice_voided", "invoice_uncollectible"):
        doc["reason"] = extra.get("reason")
    elif kind == "invoice_sent":  # to a Telegram user, or shared as a link
        doc["channel"] = extra.get("channel")
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(slots=True)
class Bodies:
    """What one batch's events are about (read once for the batch) and how each is written."""

    render: RenderInvoice
    invoices: Mapping[str, Invoice]
    subscriptions: Mapping[str, dict[str, Any]]

    def of(self, event: OutboxEvent, payer: Payer | None) -> bytes | None:
        """The signed document, or None when the event names nothing known."""
        if is_subscription_event(event):
            view = self.subscriptions.get(str(event.payload.get("subscription")))
            return None if view is None else subscription_event_body(event, view)
        invoice = self.invoices.get(str(event.payload.get("invoice")))
        return None if invoice is None else event_body(event, invoice, self.render, payer)


# --- where callbacks may go (watchers/callback_urls.py) ----------------------------------------

class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default (the one lookup per connection) and returns only public
    addresses, so that a name pointing at 127.0.0.1 or 10.x (or re-pointed there later) is
    never connected to: aiohttp connects to exactly the addresses returned here."""

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
            raise BlockedUrl("the host has no public address")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def guarded_socket(addr_info: tuple[Any, ...]) -> socket.socket:
    """aiohttp's socket factory, refusing non-public addresses: the last gate before connect,
    which literal IPs reach without the resolver."""
    family, type_, proto, _, address = addr_info
    if not address_allowed(str(address[0])):
        raise BlockedUrl("the host is not a public address")
    return socket.socket(family=family, type=type_, proto=proto)


# --- sending ----------------------------------------------------------------------------------

TIMED_OUT = "timed out"
CONNECTION_FAILED = "connection failed"


def endpoint_trouble(error: str) -> bool:
    """Whether a failed attempt counts against the endpoint's breaker: it could not be reached
    (such attempts hold a slot up to the timeout). An endpoint that answers, even 5xx, is
    quick to ask again."""
    return error in (TIMED_OUT, CONNECTION_FAILED)


class CallbackSender:
    """One HTTP client for all callbacks: bounded time, bounded response, no redirects, no
    proxies from the environment, only allowed addresses, the URL exactly as checked. Errors
    are only "timed out", "connection failed", "HTTP <code>" or "blocked: <why>": no ports,
    addresses or OS errors reach the seller (a refused port and a filtered one look alike)."""

    def __init__(
        self, *, allow_private: bool = False, timeout: float = 10.0,
        max_response_bytes: int = 64 * 1024, concurrency: int = 50, per_endpoint: int = 16,
    ) -> None:
        self.allow_private = allow_private
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.concurrency = concurrency
        self.endpoints = EndpointLimits(min(per_endpoint, concurrency))
        self._session: aiohttp.ClientSession | None = None
        # Requests wait here, not in the connection pool, so the timeout counts only the
        # request itself.
        self._slots = asyncio.Semaphore(concurrency)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=GuardedResolver(self.allow_private), limit=self.concurrency,
                socket_factory=None if self.allow_private else guarded_socket,
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
            target = canonical_target(url, allow_private=self.allow_private)
            async with self._client().post(
                target.url, data=body, headers=dict(headers), allow_redirects=False
            ) as resp:
                # Read at most max_response_bytes; the rest is never downloaded.
                await resp.content.read(self.max_response_bytes)
                if 200 <= resp.status < 300:
                    return None
                return f"HTTP {resp.status}"
        except BlockedUrl as exc:
            return f"blocked: {exc}"
        except TimeoutError:
            return TIMED_OUT
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, BlockedUrl):
                return f"blocked: {exc.os_error}"
            return CONNECTION_FAILED
        except (aiohttp.ClientError, ValueError, OSError):
            return CONNECTION_FAILED

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class EndpointLimits:
    """Per endpoint (scheme, host, port): at most `per_endpoint` requests at once from this
    process, and the circuit breaker's policy (its state is callback_endpoints, shared by all
    workers; claims skip an endpoint while it is open)."""

    def __init__(self, per_endpoint: int, *, threshold: int = 3, base_seconds: float = 5.0,
                 max_seconds: float = 600.0) -> None:
        self.per_endpoint = per_endpoint
        self.threshold = threshold
        self.base_seconds = base_seconds
        self.max_seconds = max_seconds
        self._slots: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}  # sem, [users]

    @contextlib.asynccontextmanager
    async def slot(self, endpoint: str) -> AsyncIterator[None]:
        if endpoint not in self._slots:
            self._slots[endpoint] = (asyncio.Semaphore(self.per_endpoint), [0])
        sem, users = self._slots[endpoint]
        users[0] += 1
        try:
            async with sem:
                yield
        finally:
            users[0] -= 1
            if not users[0]:  # nobody holds or waits: forget it (bounded memory)
                del self._slots[endpoint]


@dataclass(slots=True)
class BatchBreakers:
    """What one batch learnt of its endpoints' breakers: which failed (a success then closes
    the breaker) and until when an endpoint is open (its waiting events are given back)."""

    failed: dict[str, datetime | None] = field(default_factory=dict)

    def open_until(self, endpoint: str) -> datetime | None:
        until = self.failed.get(endpoint)
        return until if until is not None and until > datetime.now(UTC) else None


# --- the worker -------------------------------------------------------------------------------

LEASE_SECONDS = 10.0  # a crashed worker's callbacks are due again this soon


@dataclass(slots=True)
class DeliveryStats:
    claimed: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    deferred: int = 0  # given back untried: the endpoint is backing off

    def add(self, other: DeliveryStats) -> None:
        self.claimed += other.claimed
        self.delivered += other.delivered
        self.retried += other.retried
        self.failed += other.failed
        self.deferred += other.deferred


async def deliver_due(
    ledger: Ledger, sender: CallbackSender, render: RenderInvoice, *, limit: int = 100,
    lease_seconds: float = LEASE_SECONDS, subscriptions: RenderSubscriptions | None = None,
) -> DeliveryStats:
    """Claim up to `limit` due callback events (fairly across endpoints and sellers, skipping
    endpoints that are backing off) and try each once, concurrently. The lease is renewed
    while any of them is in flight, so a live worker keeps its events and a dead one's are due
    again within `lease_seconds`."""
    limits = sender.endpoints
    events = await claim_callbacks(ledger.engine, limit=limit, lease_seconds=lease_seconds,
                                   breaker_threshold=limits.threshold)
    stats = DeliveryStats(claimed=len(events))
    if not events:
        return stats
    in_flight = {e.id for e in events}
    breakers = BatchBreakers()
    renewing = asyncio.create_task(_keep_leases(ledger.engine, events[0].claim, in_flight,
                                                lease_seconds))
    try:
        invoices = await invoices_by_public_id(
            ledger.engine, (str(e.payload.get("invoice")) for e in events
                            if not is_subscription_event(e)))
        bodies = Bodies(render, invoices, subscriptions={})
        wanted = [str(e.payload.get("subscription")) for e in events if is_subscription_event(e)]
        if wanted and subscriptions is not None:
            bodies.subscriptions = await subscriptions(wanted)
        sellers = {int(e.payload["seller_id"]) for e in events if e.payload.get("seller_id")}
        webhooks = await webhooks_of(ledger.engine, sellers)
        payers = await payers_of_payments(ledger.engine, (
            int(e.payload["payment_id"]) for e in events
            if e.event_type == "invoice_paid" and str(e.payload.get("payment_id", "")).isdigit()))
        outcomes = await asyncio.gather(*(
            _deliver_one(ledger, sender, bodies, e, webhooks, payers, in_flight, breakers)
            for e in events
        ))
    finally:
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing
    for outcome in outcomes:
        setattr(stats, outcome, getattr(stats, outcome) + 1)
    return stats


async def _keep_leases(
    engine: AsyncEngine, claim: UUID | None, in_flight: set[int], lease_seconds: float
) -> None:
    if claim is None:
        return
    while in_flight:
        await asyncio.sleep(lease_seconds / 3)
        try:
            await renew_leases(engine, claim, sorted(in_flight), lease_seconds)
        except Exception:  # the database may be briefly away; try again next time
            log.warning("renewing callback leases failed", exc_info=True)


async def _deliver_one(
    ledger: Ledger, sender: CallbackSender, bodies: Bodies, event: OutboxEvent,
    webhooks: Mapping[int, WebhookSettings], payers: Mapping[int, Payer], in_flight: set[int],
    breakers: BatchBreakers,
) -> str:
    try:
        return await _attempt(ledger, sender, bodies, event, webhooks, payers, breakers)
    finally:
        in_flight.discard(event.id)


async def _attempt(
    ledger: Ledger, sender: CallbackSender, bodies: Bodies, event: OutboxEvent,
    webhooks: Mapping[int, WebhookSettings], payers: Mapping[int, Payer],
    breakers: BatchBreakers,
) -> str:
    webhook = webhooks.get(int(event.payload.get("seller_id") or 0))
    url = event.payload.get("url") or (webhook.url if webhook else None)
    payment_id = str(event.payload.get("payment_id", ""))
    body = bodies.of(event, payers.get(int(payment_id)) if payment_id.isdigit() else None)
    if body is None or webhook is None:
        what = "subscription" if is_subscription_event(event) else "invoice"
        await mark_failed(ledger.engine, event.id, f"the event names no known {what} or seller")
        return "failed"
    if not url:
        await mark_failed(ledger.engine, event.id, "no callback URL: the invoice has none and the "
                                            "seller's default webhook URL is not set")
        return "failed"
    try:
        target = canonical_target(url, allow_private=sender.allow_private)
    except BlockedUrl as exc:  # a fixed property of the URL: retrying cannot help
        await mark_failed(ledger.engine, event.id, f"blocked: {exc}")
        return "failed"
    limits = sender.endpoints
    endpoint = event.endpoint or target.endpoint  # the breaker's key, as claims compute it
    async with limits.slot(target.endpoint):
        until = breakers.open_until(endpoint)
        if until is not None and event.claim is not None:
            await defer(ledger.engine, event.claim, [event.id], until)
            return "deferred"
        error = await sender.post(url, body,
                                  signed_headers(event, webhook.secret, body, time.time()))
        if error is not None and endpoint_trouble(error):
            # Counted before the slot is released, so the next event waiting for it already
            # sees the breaker open and is given back untried.
            was_open = breakers.open_until(endpoint) is not None
            until = breakers.failed[endpoint] = await endpoint_failed(
                ledger.engine, endpoint, threshold=limits.threshold,
                base_seconds=limits.base_seconds, max_seconds=limits.max_seconds)
            if until is not None and not was_open:  # just opened: the backlog waits it out
                try:
                    await defer_endpoint(ledger.engine, endpoint, until)
                except Exception:  # only spares later claims some reading; they skip it anyway
                    log.warning("deferring the callbacks of a backed-off endpoint failed",
                                exc_info=True)
    if error is None:
        await ledger.mark_delivered(event.id)
        if event.endpoint_failures or endpoint in breakers.failed:
            await endpoint_recovered(ledger.engine, endpoint)
            breakers.failed.pop(endpoint, None)
        return "delivered"
    delay = retry_delay(event.attempts)
    if delay is None:
        await mark_failed(ledger.engine, event.id,
                          f"gave up after {event.attempts} attempts: {error}")
        log.warning("callback %s failed for good: %s", event.event_id, error)
        return "failed"
    await mark_retry(ledger.engine, event.id, f"attempt {event.attempts}: {error}", delay)
    return "retried"


async def deliver_all_due(
    ledger: Ledger, sender: CallbackSender, render: RenderInvoice, *, batch: int = 100,
    lease_seconds: float = LEASE_SECONDS, max_batches: int = 50,
    subscriptions: RenderSubscriptions | None = None,
) -> DeliveryStats:
    """Drain what is due now, batch after batch (bounded, so one tick cannot run forever)."""
    total = DeliveryStats()
    for _ in range(max_batches):
        stats = await deliver_due(ledger, sender, render, limit=batch, lease_seconds=lease_seconds,
                                  subscriptions=subscriptions)
        total.add(stats)
        if stats.claimed < batch:
            break
    return total


async def callback_delivery_job(
    ledger: Ledger, sender: CallbackSender, render: RenderInvoice, batch: int,
    lease_seconds: float, subscriptions: RenderSubscriptions | None = None,
) -> None:
    try:
        stats = await deliver_all_due(ledger, sender, render, batch=batch,
                                      lease_seconds=lease_seconds, subscriptions=subscriptions)
    except Exception:  # the database may be briefly away; the next tick tries again
        log.exception("callback delivery pass failed")
        return
    if stats.claimed:
        log.info("callbacks: %d delivered, %d to retry, %d failed",
                 stats.delivered, stats.retried, stats.failed)


def schedule_callback_delivery(
    scheduler: AsyncIOScheduler, ledger: Ledger, sender: CallbackSender, render: RenderInvoice,
    *, seconds: float, batch: int = 100, lease_seconds: float = LEASE_SECONDS,
    subscriptions: RenderSubscriptions | None = None,
) -> Waker:
    """Poll every `seconds`, and return the Waker that delivers at once (the outbox listener
    kicks it after every commit that queued a callback)."""
    # The lease is short and renewed while a batch is in flight (deliver_due), so a live worker
    # keeps its events however long a batch takes; coalesce + max_instances=1 as for the
    # ledger jobs. A kicked pass and a polled one claim different events (leases).
    args = (ledger, sender, render, batch, lease_seconds, subscriptions)
    scheduler.add_job(
        callback_delivery_job, trigger="interval", seconds=seconds, coalesce=True,
        max_instances=1, id="deliver_callbacks", args=list(args),
    )
    return Waker("callbacks", lambda: callback_delivery_job(*args))
