"""Every failure of the seller API as `{"error": {"code", "message"}}` with a 4xx status.

Ledger errors keep their stable codes; HTTP-level ones (no route, wrong method, bad JSON, too
large, too many) get their own. Unreadable input and a database outage are answered as
bot/http_errors.py decides for the whole app (400; 503 with Retry-After, logged once per
outage). Anything else is logged and answered 500 `internal_error` — the OpenAPI fuzz test
(tests/api) and tests/test_hostile_inputs.py check that no input gets there.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bot.http_errors import classify, ledger_status
from ledger.errors import AmountShortfall, Kind, LedgerError

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, *,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.extra = extra


def rate_limited(retry_after: str) -> ApiError:
    return ApiError(429, "rate_limited", f"Too many requests; retry in {retry_after} s.",
                    headers={"Retry-After": retry_after})


def invalid(message: str) -> ApiError:
    """A request that does not match the documented schema."""
    return ApiError(422, "invalid_request", message)


def from_ledger(exc: LedgerError) -> ApiError:
    exc = exc.public()
    message = exc.message
    if exc.detail and exc.kind is Kind.INVALID and not exc.detail.startswith("{"):
        message = f"{message} {exc.detail[:300]}"
    extra: dict[str, Any] = {}
    if isinstance(exc, AmountShortfall):
        extra = {k: v for k, v in (("needed", exc.needed), ("available", exc.available))
                 if v is not None}
    return ApiError(ledger_status(exc), exc.code, message, **extra)


def error_response(err: ApiError, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        {"error": {"code": err.code, "message": err.message, **err.extra}},
        status=err.status, headers={"Cache-Control": "no-store", **(headers or {})},
    )


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 408: "request_timeout",
               413: "request_too_large", 415: "unsupported_media_type"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_answer(exc: Exception, request: web.Request) -> web.Response:
    """The JSON answer for what a handler raised (re-raises a non-error HTTPException)."""
    if isinstance(exc, ApiError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else exc.headers
        return error_response(exc, headers)
    if isinstance(exc, LedgerError):
        return error_response(from_ledger(exc))
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        code = _HTTP_CODES.get(exc.status, "bad_request" if exc.status < 500 else "server_error")
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return error_response(ApiError(exc.status, code, exc.reason), headers)
    failure = classify(exc, request)
    if failure is not None:
        return error_response(ApiError(failure.status, failure.code, failure.message),
                              failure.headers)
    log.error("seller API: unexpected error on %s %s", request.method, request.path,
              exc_info=exc)
    return error_response(ApiError(500, "internal_error", "Something went wrong on our "
                                                           "side; the request may be retried."))
