"""Bearer tokens: `Authorization: Bearer pbk_...` on every route but the OpenAPI document.

A token that checked out is remembered for `cache_seconds` (API_TOKEN_CACHE_SECONDS), so a
busy integration costs one database round trip per request instead of two; a revoked token
therefore stops working within that many seconds (0: at once, every request asks the
database)."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.api.errors import ApiError, Handler
from ledger.sellers import ApiPrincipal, authenticate

PRINCIPAL = web.RequestKey("principal", ApiPrincipal)
PUBLIC_ROUTES = frozenset({"openapi"})  # route names reachable without a token


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


def auth_middleware(engine: AsyncEngine, cache: TokenCache):  # type: ignore[no-untyped-def]
    async def ask(token: str) -> ApiPrincipal | None:
        return await authenticate(engine, token)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route
        if request.match_info.http_exception is not None or route.name in PUBLIC_ROUTES:
            return await handler(request)  # 404/405 need no token; the schema is public
        token = bearer_token(request.headers.get("Authorization"))
        if token is None:
            raise ApiError(401, "unauthorized",
                           "Send your API token as `Authorization: Bearer <token>`.")
        principal = cache.get(token) or await cache.lookup(token, ask)
        if principal is None:
            raise ApiError(401, "invalid_token", "This API token is not valid or was revoked.")
        request[PRINCIPAL] = principal
        return await handler(request)

    return middleware
