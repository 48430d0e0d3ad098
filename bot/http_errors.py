"""What every HTTP route answers when the request or the database is at fault.

One table for the whole app (seller API, pay pages, /healthz): hostile input the parsers choke
on (JSON nested past the recursion limit, undecodable text, numbers out of range) is the
client's fault, a 4xx; a database that cannot be reached or does not answer in time is a 503
with `Retry-After`, logged once per outage instead of a traceback per request. The routes'
own error shapes (`{"error": {"code", "message"}}`) stay theirs: this module only decides.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import asyncpg
from aiohttp import web
from sqlalchemy import exc as sa_exc

from ledger.errors import Kind, LedgerError

log = logging.getLogger("paybot.http")

RETRY_AFTER_SECONDS = 5  # what a 503 asks the client to wait
OUTAGE_QUIET_SECONDS = 30.0  # failures this far apart are two outages, each logged once


@dataclass(frozen=True, slots=True)
class HttpFailure:
    status: int
    code: str
    message: str
    retry_after: int | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}


UNAVAILABLE = HttpFailure(503, "service_unavailable",
                          "The service is briefly unavailable; retry in a few seconds.",
                          RETRY_AFTER_SECONDS)
BAD_INPUT = HttpFailure(400, "bad_request", "The request could not be read.")

# A ledger refusal's status on every HTTP route (seller API, pay pages): by its kind.
STATUS_OF_KIND: dict[Kind, int] = {
    Kind.NOT_FOUND: 404,
    Kind.CONFLICT: 409,
    Kind.GONE: 410,
    Kind.PAYMENT_REQUIRED: 402,
    Kind.FORBIDDEN: 403,
    Kind.INVALID: 422,
}


def ledger_status(exc: LedgerError) -> int:
    return STATUS_OF_KIND[exc.kind]


def is_database_outage(exc: BaseException) -> bool:
    """The database cannot be reached or did not answer within its deadline (nothing we can
    blame on the request): pool timeouts, refused or dropped connections, command timeouts."""
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        # SQLAlchemy wraps asyncpg's exception (kept as the adapted error's __cause__).
        orig = exc.orig
        cause = getattr(orig, "__cause__", None) or orig
        return cause is not None and cause is not exc and is_database_outage(cause)
    return isinstance(exc, (
        sa_exc.TimeoutError,  # pool checkout deadline
        TimeoutError,  # connect / command deadline
        ConnectionError, OSError,  # refused, reset, unreachable
        asyncpg.exceptions.ConnectionDoesNotExistError,
        asyncpg.exceptions.CannotConnectNowError,  # starting up / shutting down
        asyncpg.exceptions.TooManyConnectionsError,
        asyncpg.exceptions.AdminShutdownError,
        asyncpg.exceptions.InterfaceError,
    ))


def is_hostile_input(exc: BaseException) -> bool:
    """Errors that only a malformed request makes our parsers raise."""
    return isinstance(exc, (RecursionError, UnicodeError, OverflowError))


class OutageLog:
    """One warning when the database goes away, not one traceback per refused request: a
    failure more than `quiet` seconds after the previous one starts a new outage."""

    def __init__(self, quiet: float = OUTAGE_QUIET_SECONDS) -> None:
        self.quiet = quiet
        self._last = -1e18
        self.refused = 0

    def failed(self, exc: BaseException, where: str) -> None:
        now = time.monotonic()
        if now - self._last > self.quiet:
            log.warning("database unavailable (%s: %s) at %s; answering 503 until it is back",
                        type(exc).__name__, str(exc)[:200] or "no detail", where)
            self.refused = 0
        self._last = now
        self.refused += 1


OUTAGES = OutageLog()  # one per process: an outage is the database's, not a route's


def classify(exc: BaseException, request: web.BaseRequest) -> HttpFailure | None:
    """The answer for an unexpected exception, or None when it is a genuine bug (500)."""
    if is_database_outage(exc):
        OUTAGES.failed(exc, f"{request.method} {request.path}")
        return UNAVAILABLE
    if is_hostile_input(exc):
        log.info("refused unreadable input on %s %s: %s", request.method, request.path,
                 type(exc).__name__)
        return BAD_INPUT
    return None


# --- headers every answer carries ----------------------------------------------------------

SERVER_NAME = "paybot"  # never aiohttp's "Python/3.x aiohttp/3.x": versions help attackers


async def security_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """on_response_prepare hook: no version in `Server`, and no content sniffing (a JSON or
    text answer echoing user input must never be run as HTML or script)."""
    headers = response.headers
    headers["Server"] = SERVER_NAME
    headers["X-Content-Type-Options"] = "nosniff"


def install_security_headers(app: web.Application) -> None:
    app.on_response_prepare.append(security_headers)
