"""Bearer tokens: `Authorization: Bearer pbk_...` on every route but the OpenAPI document.

A token that checked out is remembered for `cache_seconds` (API_TOKEN_CACHE_SECONDS), so a
busy integration costs one database round trip per request instead of two; a revoked token
therefore stops working within that many seconds (0: at once, every request asks the
database).

Limits (bot/ratelimit.py, 429 with Retry-After): per token on every request and once more on
invoice creation; per client address for requests without a valid token, and an address over
that rate is refused before its token is looked up, so guessing tokens cannot make every
request a database round trip."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.api.errors import ApiError, Handler, error_answer, rate_limited
from bot.ratelimit import RateLimiter, client_address, limiter
from ledger.api_tokens import ApiPrincipal, authenticate

if TYPE_CHECKING:
    from bot.api.routes import ApiConfig

PRINCIPAL = web.RequestKey("principal", ApiPrincipal)
PUBLIC_ROUTES = frozenset({"openapi"})  # route names reachable without a token
CREATE_ROUTE = "create_invoice"  # limited per token once more: invoices are never deleted


@dataclass(frozen=True, slots=True)
class ApiLimits:
    per_token: RateLimiter | None = None
    create_per_token: RateLimiter | None = None
    per_address: RateLimiter | None = None
    address_header: str | None = None

    @classmethod
    def from_config(cls, cfg: ApiConfig) -> ApiLimits:
        return cls(limiter(cfg.rate_per_token), limiter(cfg.rate_create_per_token),
                   limiter(cfg.rate_per_address), cfg.client_address_header)

    def check_address(self, request: web.Request, *, take: bool = True) -> None:
        """Per client address, for requests without a valid token. `take=False` only refuses
        an address already over its rate (before asking the database about a token) and
        charges nothing, so a seller's own busy integration is never limited by it."""
        if self.per_address is not None:
            address = client_address(request, self.address_header)
            limiter = self.per_address
            wait = limiter.hit(address) if take else limiter.blocked(address)
            if wait:
                raise rate_limited(RateLimiter.retry_after(wait))

    def check_token(self, principal: ApiPrincipal, route_name: str | None) -> None:
        if self.per_token is not None:
            wait = self.per_token.hit(principal.token_id)
            if wait:
                raise rate_limited(RateLimiter.retry_after(wait))
        if self.create_per_token is not None and route_name == CREATE_ROUTE:
            wait = self.create_per_token.hit(principal.token_id)
            if wait:
                raise rate_limited(RateLimiter.retry_after(wait))


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class TokenCache:
    """Recently authenticated tokens (only valid ones), bounded in size and age."""

    def __init__(self, ttl: float, max_size: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, ApiPrincipal]] = OrderedDict()
        self._asking: dict[str, asyncio.Future[ApiPrincipal | None]] = {}

    def get(self, token: str) -> ApiPrincipal | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        if entry[0] <= self.clock():
            del self._entries[token]
            return None
        return entry[1]

    def put(self, token: str, principal: ApiPrincipal) -> None:
        if self.ttl <= 0:
            return
        self._entries[token] = (self.clock() + self.ttl, principal)
        self._entries.move_to_end(token)
        while len(self._entries) > self.max_size:
            self._entries.popitem(last=False)

    async def lookup(self, token: str,
                     ask: Callable[[str], Awaitable[ApiPrincipal | None]]) -> ApiPrincipal | None:
        """The cached principal, else `ask` the database: once per token however many
        requests miss at the same moment (a busy integration's requests all miss together
        when the entry expires)."""
        found = self.get(token)
        if found is not None:
            return found
        asking = self._asking.get(token)
        if asking is None:
            asking = self._asking[token] = asyncio.ensure_future(ask(token))
            asking.add_done_callback(lambda _: self._asking.pop(token, None))
        principal = await asyncio.shield(asking)  # one caller giving up stops no one else
        if principal is not None:
            self.put(token, principal)
        return principal


def api_middleware(engine: AsyncEngine, cache: TokenCache,  # type: ignore[no-untyped-def]
                   limits: ApiLimits | None = None):
    """The API's one middleware: the token, the limits, and every failure as JSON
    (bot/api/errors.py). One layer instead of two: this runs on every request."""
    limits = limits or ApiLimits()

    async def ask(token: str) -> ApiPrincipal | None:
        return await authenticate(engine, token)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            match = request.match_info
            route_name = match.route.name
            if match.http_exception is not None or route_name in PUBLIC_ROUTES:
                limits.check_address(request)
                return await handler(request)  # 404/405 need no token; the schema is public
            token = bearer_token(request.headers.get("Authorization"))
            if token is None:
                limits.check_address(request)
                raise ApiError(401, "unauthorized",
                               "Send your API token as `Authorization: Bearer <token>`.")
            principal = cache.get(token)
            if principal is None:
                # An unknown token costs a database round trip: an address that keeps sending
                # bad ones is refused before asking.
                limits.check_address(request, take=False)
                principal = await cache.lookup(token, ask)
            if principal is None:
                limits.check_address(request)
                raise ApiError(401, "invalid_token",
                               "This API token is not valid or was revoked.")
            limits.check_token(principal, route_name)
            request[PRINCIPAL] = principal
            return await handler(request)
        except Exception as exc:
            return error_answer(exc, request)

    return middleware
