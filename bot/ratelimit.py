"""Rate limits per API token, per Telegram user and per client address: token buckets.

A bucket holds up to `burst` requests and refills at `per_second`; a request takes one or is
refused with the seconds until one is back (the 429's `Retry-After`). Buckets live in this
process's memory (a bounded LRU of keys), so a limit holds per process: behind N replicas a
client gets up to N times the rate. That is deliberate: the check costs no round trip on the
hot path, and a limit only has to stop one client from crowding out the others, which a
per-process bucket does on each process. A hard cross-replica cap belongs in the reverse
proxy (deploy/nginx.conf) or a shared store.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from aiohttp.web import BaseRequest


@dataclass(frozen=True, slots=True)
class Rate:
    per_second: float
    burst: int

    @classmethod
    def parse(cls, text: str) -> Rate | None:
        """`"20/s:100"` (20 a second, bursts of 100); `"0"` or `""` switches the limit off."""
        text = text.strip()
        if text in ("", "0", "off"):
            return None
        rate, _, burst = text.partition(":")
        count, _, unit = rate.partition("/")
        seconds = {"s": 1, "m": 60, "h": 3600}[unit.strip() or "s"]
        per_second = float(count) / seconds
        if per_second <= 0:
            return None
        return cls(per_second, int(burst) if burst else max(1, math.ceil(per_second)))


class RateLimiter:
    """Token buckets for many keys; the least recently seen are forgotten past `max_keys`
    (a forgotten key starts again with a full bucket, which only ever errs towards allowing)."""

    def __init__(self, rate: Rate, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[Hashable, list[float]] = OrderedDict()  # key: [tokens, at]

    def blocked(self, key: Hashable) -> float:
        """Seconds until `key` may go ahead (0: now), taking nothing."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        tokens = min(self.rate.burst, bucket[0] + (self.clock() - bucket[1]) * self.rate.per_second)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate.per_second

    def hit(self, key: Hashable) -> float:
        """0 when the request may go ahead (one token taken), else seconds to wait."""
        now = self.clock()
        rate = self.rate
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = [float(rate.burst), now]
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket[0] = min(rate.burst, bucket[0] + (now - bucket[1]) * rate.per_second)
            bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return 0.0
        return (1.0 - bucket[0]) / rate.per_second

    @staticmethod
    def retry_after(wait: float) -> str:
        """Retry-After is whole seconds; round up so a client that obeys it gets through."""
        return str(max(1, math.ceil(wait)))


def limiter(rate: Rate | None) -> RateLimiter | None:
    return None if rate is None else RateLimiter(rate)


def client_address(request: BaseRequest, header: str | None) -> str:
    """Who is asking, for per-address limits: the proxy's header when one is configured (the
    proxy overwrites it, so clients cannot pick their own), else the connection's peer."""
    if header:
        value = request.headers.get(header)
        if value:
            return value.rsplit(",", 1)[-1].strip()[:64]
    return request.remote or "?"
