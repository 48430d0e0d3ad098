"""`GET /metrics` in the Prometheus text format (prometheus-client).

Everything is read at scrape time, cheaply: one statement of counts that each use an index
(`outbox_due`, `outbox_callback_failed`, `ton_holds_one_open`, the payments' primary key),
shared by scrapes that arrive together and waited for at most `timeout` seconds. A database
that fails or does not answer costs no 500: the database's gauges are left out and
`paybot_up{part="database"}` is 0. The process's own figures (pool, watcher) are always there.

`paybot_payments_last_hour{method}` counts the payments of the last hour among the newest
PAYMENTS_SCAN ones (walked back on the primary key: payments.created_at has no index, and
`count(*)` over all of history grows with it); above that many payments an hour it saturates.

`paybot_payment_seconds{kind}` is a histogram of how long the ledger's payment use cases took
in this process (kind: balance, manual, stars, card:<provider>), observed by the `Ledger` itself
through the callable the composition root gives it (`PaymentLatency.observe`: one
perf_counter difference and one histogram observe per payment).

`paybot_ton_settle_delay_seconds{quantile}` is the delay from a TON transfer's block time
(ton_transfers.utime) to its settlement in the ledger, over the transfers settled in the last
hour, read at scrape time like the payments above (the newest PAYMENTS_SCAN transfers, walked
back on the primary key): it is the same on every replica, survives restarts, and needs nothing
from the watcher; `paybot_ton_settled_last_hour` counts them.

Access: `Authorization: Bearer <METRICS_TOKEN>`; with no token set, loopback clients only (the
proxy's address header, when one is configured, names the client).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.http_errors import OUTAGES
from bot.ratelimit import client_address
from ledger.db import fetch_one

SCRAPE_TIMEOUT = 2.0  # seconds a scrape waits for the database
PAYMENTS_SCAN = 50_000

_COUNTS = """
SELECT (SELECT count(*) FROM outbox WHERE topic = 'callback'
           AND delivered_at IS NULL AND failed_at IS NULL) AS callbacks_pending,
       (SELECT count(*) FROM outbox WHERE topic = 'callback'
           AND failed_at IS NOT NULL) AS callbacks_failed,
       (SELECT count(*) FROM outbox WHERE topic = 'telegram'
           AND delivered_at IS NULL AND failed_at IS NULL) AS notices_pending,
       (SELECT coalesce(jsonb_object_agg(asset, jsonb_build_array(n, total)), '{}')
          FROM (SELECT asset, count(*) AS n, sum(amount_nano) AS total FROM ton_holds
                 WHERE released_at IS NULL GROUP BY asset) h) AS holds,
       (SELECT coalesce(jsonb_object_agg(method, n), '{}')
          FROM (SELECT method, count(*) AS n
                  FROM (SELECT method, created_at FROM payments
                         ORDER BY id DESC LIMIT :scan) newest
                 WHERE created_at > now() - interval '1 hour' GROUP BY method) p) AS payments,
       (SELECT jsonb_build_object(
                   'n', count(*),
                   '0.5', percentile_cont(0.5) WITHIN GROUP (ORDER BY delay),
                   '0.95', percentile_cont(0.95) WITHIN GROUP (ORDER BY delay),
                   '1', max(delay))
          FROM (SELECT greatest(extract(epoch FROM created_at - utime), 0)::float8 AS delay
                  FROM (SELECT created_at, utime, incoming, outcome FROM ton_transfers
                         ORDER BY id DESC LIMIT :scan) newest
                 WHERE created_at > now() - interval '1 hour' AND incoming
                   AND outcome <> 'ignored') t) AS ton_delay
"""

# Seconds: a balance payment takes milliseconds; a provider's or an operator's a little more.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class PaymentLatency:
    """The histogram of the ledger's payment use cases; `observe` is what the Ledger calls."""

    def __init__(self) -> None:
        self.histogram = Histogram("paybot_payment_seconds",
                                   "Seconds a payment use case of the ledger took, by kind",
                                   labelnames=["kind"], buckets=LATENCY_BUCKETS, registry=None)

    def observe(self, kind: str, seconds: float) -> None:
        self.histogram.labels(kind).observe(seconds)



class WatcherView(Protocol):
    """What the TON watcher tells of its last poll (watchers/ton_watcher.py: TonWatcher)."""

    head: tuple[int, int] | None
    cursor_lt: int | None
    behind: int

    def lag_seconds(self, now: float | None = None) -> float | None: ...


@dataclass(frozen=True, slots=True)
class DatabaseCounts:
    callbacks_pending: int
    callbacks_failed: int
    notices_pending: int
    holds: dict[str, list[int]]  # asset -> [open holds, amount in minor units]
    payments: dict[str, int]  # method -> payments in the last hour
    ton_delay: dict[str, float | None]  # n, and the quantiles 0.5, 0.95, 1 (max) in seconds


async def read_counts(engine: AsyncEngine) -> DatabaseCounts:
    row = await fetch_one(engine, _COUNTS, scan=PAYMENTS_SCAN)
    return DatabaseCounts(**dict(row or {}))


@dataclass(eq=False)  # the registry keys collectors by identity
class PaybotCollector(Collector):
    """The families of one scrape, from what the route read just before."""

    engine: AsyncEngine
    watcher: WatcherView | None
    counts: DatabaseCounts | None = None

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily("paybot_up", "1 when the part answered this scrape",
                               labels=["part"])
        up.add_metric(["database"], 1 if self.counts is not None else 0)
        yield up
        yield from self._pool()
        yield from self._watcher()
        if self.counts is not None:
            yield from _database_families(self.counts)

    def _pool(self) -> Iterable[Any]:
        pool = self.engine.pool
        size, checked_out = getattr(pool, "size", None), getattr(pool, "checkedout", None)
        if size is None or checked_out is None:
            return
        yield GaugeMetricFamily("paybot_db_pool_size", "Connections the pool keeps",
                                value=size())
        yield GaugeMetricFamily("paybot_db_pool_checked_out", "Connections in use now",
                                value=checked_out())

    def _watcher(self) -> Iterable[Any]:
        watcher = self.watcher
        lag = watcher.lag_seconds() if watcher is not None else None
        if watcher is None or lag is None:
            return
        yield GaugeMetricFamily(
            "paybot_ton_watcher_lag_seconds",
            "Seconds since the watcher last had settled every transaction it saw", value=lag)
        yield GaugeMetricFamily(
            "paybot_ton_watcher_lag_transactions",
            "Transactions seen on the chain that the cursor has not passed",
            value=watcher.behind)
        if watcher.head is not None:
            yield GaugeMetricFamily("paybot_ton_watcher_head_lt",
                                    "Logical time of the newest transaction seen",
                                    value=watcher.head[0])
        if watcher.cursor_lt is not None:
            yield GaugeMetricFamily("paybot_ton_watcher_cursor_lt",
                                    "Logical time up to which every transaction is settled",
                                    value=watcher.cursor_lt)


def _database_families(c: DatabaseCounts) -> Iterable[Any]:
    payments = GaugeMetricFamily(
        "paybot_payments_last_hour", "Payments made in the last hour, by method",
        labels=["method"])
    for method, n in sorted(c.payments.items()):
        payments.add_metric([method], n)
    yield payments
    callbacks = GaugeMetricFamily("paybot_callbacks", "Seller callbacks by state",
                                  labels=["state"])
    callbacks.add_metric(["pending"], c.callbacks_pending)
    callbacks.add_metric(["failed"], c.callbacks_failed)
    yield callbacks
    yield GaugeMetricFamily("paybot_notices_pending", "Telegram notices waiting to be sent",
                            value=c.notices_pending)
    held = GaugeMetricFamily("paybot_held_transfers", "Open holds of chain transfers",
                             labels=["asset"])
    amount = GaugeMetricFamily("paybot_held_transfers_amount",
                               "What the open holds keep, in minor units of the asset",
                               labels=["asset"])
    for asset, (n, total) in sorted(c.holds.items()):
        held.add_metric([asset], n)
        amount.add_metric([asset], total)
    yield held
    yield amount
    settled = int(c.ton_delay.get("n") or 0)
    yield GaugeMetricFamily("paybot_ton_settled_last_hour",
                            "Incoming TON transfers the ledger recorded in the last hour",
                            value=settled)
    delay = GaugeMetricFamily(
        "paybot_ton_settle_delay_seconds",
        "Seconds from a TON transfer's block time to its settlement, last hour",
        labels=["quantile"])
    for q in ("0.5", "0.95", "1"):
        value = c.ton_delay.get(q)
        if settled and value is not None:
            delay.add_metric([q], float(value))
    yield delay


class Metrics:
    """The /metrics route: access check, one shared database read per burst of scrapes."""

    def __init__(self, engine: AsyncEngine, *, token: str | None,
                 address_header: str | None = None, watcher: WatcherView | None = None,
                 timeout: float = SCRAPE_TIMEOUT) -> None:
        self.engine = engine
        self.latency = PaymentLatency()
        self.watcher = watcher
        self.timeout = timeout
        self._token = token.encode() if token else None
        self._address_header = address_header
        self._read: asyncio.Task[DatabaseCounts] | None = None

    def allowed(self, request: web.Request) -> web.Response | None:
        """None when the caller may read; else the 401/403 to answer."""
        if self._token is not None:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                                  self._token):
                return None
            return _refused(401, "unauthorized", "Send the metrics token as a Bearer token.",
                            {"WWW-Authenticate": 'Bearer realm="metrics"'})
        try:
            loopback = ipaddress.ip_address(
                client_address(request, self._address_header)).is_loopback
        except ValueError:
            loopback = False
        if loopback:
            return None
        return _refused(403, "forbidden", "Metrics are served to this host only "
                                          "(set METRICS_TOKEN to scrape from elsewhere).", {})

    async def counts(self) -> DatabaseCounts | None:
        read = self._read
        if read is None or read.done():
            read = self._read = asyncio.ensure_future(read_counts(self.engine))
            read.add_done_callback(lambda t: t.cancelled() or t.exception())
        done, _ = await asyncio.wait({read}, timeout=self.timeout)
        if not done:
            OUTAGES.failed(TimeoutError(f"no answer within {self.timeout:g} s"), "/metrics")
            return None
        exc = read.exception() if not read.cancelled() else asyncio.CancelledError()
        if exc is not None:
            OUTAGES.failed(exc, "/metrics")
            return None
        return read.result()

    async def handle(self, request: web.Request) -> web.Response:
        refused = self.allowed(request)
        if refused is not None:
            return refused
        registry = CollectorRegistry(auto_describe=False)
        registry.register(PaybotCollector(self.engine, self.watcher, await self.counts()))
        registry.register(self.latency.histogram)
        return web.Response(body=generate_latest(registry),
                            headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4,  # every Prometheus
                                     "Cache-Control": "no-store"})

    async def close(self) -> None:
        if self._read is not None and not self._read.done():
            self._read.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._read


def _refused(status: int, code: str, message: str, headers: dict[str, str]) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status,
                             headers=headers)


METRICS = web.AppKey("metrics", Metrics)


def setup_metrics(app: web.Application, engine: AsyncEngine, *, token: str | None,
                  address_header: str | None = None,
                  watcher: WatcherView | None = None) -> Metrics:
    metrics = app[METRICS] = Metrics(engine, token=token, address_header=address_header,
                                     watcher=watcher)
    app.on_cleanup.append(lambda _app: metrics.close())
    app.router.add_get("/metrics", metrics.handle)
    return metrics
