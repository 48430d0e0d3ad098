"""What the pay pages let through before a handler runs, and what they answer when it fails.

- Reads (page, status, QR; no sign-in) are limited per client address and pass through one
  bounded ReadLane: a flood of them is answered 429/503 at once instead of queueing on the
  database pool that payments need.
- Paying is limited per Telegram user (valid init data) or, without it, per address; it never
  waits in the read lane. Its body is read here, bounded in size and time, before the handler.
- Failures: a too large or too slow body (413/408), unreadable input (400) and a database
  outage (503 + Retry-After) get the page's usual shape — `{"error": {"code", "message"}}` on
  JSON routes, a short text otherwise; anything else is logged and a plain 500.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from bot.http_errors import RETRY_AFTER_SECONDS, classify
from bot.http_limits import BodyTimeout, ReadLane, read_body
from bot.ratelimit import Rate, RateLimiter, client_address, limiter
from bot.settings import WebSettings
from bot.web.auth import AuthError, init_data_from_header, validate_init_data
from bot.web.i18n import request_language, t

log = logging.getLogger("bot.web.routes")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_CODES = {400: "bad_request", 408: "request_timeout", 413: "request_too_large",
          429: "rate_limited", 503: "service_unavailable"}
_TEXT_KEYS = {400: "err_unreadable", 408: "err_too_slow", 413: "err_too_large",
              429: "err_rate_limited", 503: "err_busy"}  # bot/web/i18n.py


def _answer(request: web.Request, json_api: bool, status: int,
            retry_after: str | None = None, message: str | None = None) -> web.Response:
    lang = request_language(request)
    text = message or t(lang, _TEXT_KEYS[status])
    headers = {"Cache-Control": "no-store"}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    if json_api:
        return web.json_response({"error": {"code": _CODES[status], "message": text}},
                                 status=status, headers=headers)
    return web.Response(text=text, status=status, headers=headers)


@dataclass
class PageGuard:
    lane: ReadLane | None
    per_address: RateLimiter | None
    pay_per_user: RateLimiter | None
    address_header: str | None
    body_timeout: float
    bot_token: str | None
    init_data_max_age: int

    @classmethod
    def from_settings(cls, web_settings: WebSettings, bot_token: str | None) -> PageGuard:
        return cls(
            lane=ReadLane(web_settings.read_concurrency, web_settings.read_queue),
            per_address=limiter(Rate.parse(web_settings.rate_per_address)),
            pay_per_user=limiter(Rate.parse(web_settings.rate_pay_per_user)),
            address_header=web_settings.client_address_header,
            body_timeout=web_settings.body_timeout_seconds,
            bot_token=bot_token, init_data_max_age=web_settings.init_data_max_age,
        )

    def _address_wait(self, request: web.Request) -> float:
        if self.per_address is None:
            return 0.0
        return self.per_address.hit(client_address(request, self.address_header))

    def _payer_wait(self, request: web.Request) -> float:
        """Per Telegram user when the init data is valid (the handler checks it again and
        answers the 401s); per address otherwise, so forged init data buys nothing."""
        try:
            init_data = init_data_from_header(request.headers.get("Authorization"))
            user = (validate_init_data(self.bot_token, init_data, self.init_data_max_age)
                    if init_data is not None else None)
        except AuthError:
            user = None
        if user is None or self.pay_per_user is None:
            return self._address_wait(request)
        return self.pay_per_user.hit(user.telegram_id)

    def wrap(self, handler: Handler, *, json_api: bool, kind: str) -> Handler:
        """`kind` is "read" (lane + address limit) or "pay" (user limit, body read here)."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            wait = self._payer_wait(request) if kind == "pay" else self._address_wait(request)
            if wait:
                return _answer(request, json_api, 429, RateLimiter.retry_after(wait))
            if kind == "pay":
                try:
                    await read_body(request, self.body_timeout)  # cached for request.json()
                except BodyTimeout:
                    return _answer(request, json_api, 408)
                except web.HTTPRequestEntityTooLarge:
                    return _answer(request, json_api, 413)
                return await safely(handler, request, json_api)
            lane = self.lane
            if lane is None:
                return await safely(handler, request, json_api)
            if not lane.try_enter():
                return _answer(request, json_api, 503, str(RETRY_AFTER_SECONDS))
            await lane.acquire()
            try:
                return await safely(handler, request, json_api)
            finally:
                lane.release()

        return guarded


async def safely(handler: Handler, request: web.Request, json_api: bool) -> web.StreamResponse:
    """Run the handler; map what escapes it (see the module docstring)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if json_api and exc.status in (400, 408, 413):
            return _answer(request, json_api, exc.status)
        raise
    except Exception as exc:
        failure = classify(exc, request)
        if failure is not None:
            return _answer(request, json_api, failure.status,
                           failure.headers.get("Retry-After"))
        log.exception("pay page failed: %s %s", request.method, request.path)
        lang = request_language(request)
        if json_api:
            return web.json_response(
                {"error": {"code": "internal", "message": t(lang, "err_generic")}},
                status=500)
        return web.Response(text=t(lang, "err_generic"), status=500)
