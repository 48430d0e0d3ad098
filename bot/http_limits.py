"""Limits of the HTTP server: body size and read deadlines, open connections, a lane for reads.

- Headers: aiohttp closes a connection whose next request has not fully arrived within its
  keep-alive timeout, counted from the connection's start or its last answer; trickled bytes do
  not extend it. `runner_options` sets that to WEB_HEADER_TIMEOUT_SECONDS (slow-loris).
- Bodies: `read_body` reads at most `client_max_size` bytes (the app's limit, 413 beyond it,
  checked against Content-Length before reading) within WEB_BODY_TIMEOUT_SECONDS (408).
- Connections: `LimitedRunner` holds at most WEB_MAX_CONNECTIONS (below the descriptor limit),
  so a flood can never run the process out of file descriptors (the database pool and the bot
  need theirs): past it the oldest idle connection, else the new one, is closed at once.
- Memory: bodies are bounded, and once a flood of connections has receded the freed heap is
  handed back to the system (glibc keeps it otherwise).
- Reads: `ReadLane` lets a bounded number of cheap, unauthenticated reads (page, status, QR)
  run and wait; beyond that they are shed with 503 at once. Payments do not pass through it,
  so a flood of reads cannot take the database pool the pay path needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import resource
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger("paybot.http")

# Descriptors kept free: asyncio accepts up to a listen backlog (128) of sockets per loop turn,
# and their protocols start a turn later, before a closing one is released; plus the database
# pool, the bot, callbacks, logs. (Measured: 256 still let accept() hit the limit.)
FD_HEADROOM = 384
TRIM_EVERY = 5.0  # seconds between checks whether a flood of connections has receded
TRIM_AFTER_DROP = 100  # ...by at least this many connections: then memory goes back


def _malloc_trim() -> Callable[[], object] | None:
    """glibc's malloc_trim(0): hands freed heap back to the system. Python frees a flood's
    buffers, but glibc keeps the pages (measured: 210 MB before a flood of 500 slow 1 MB
    uploads + 2,000 idle connections, 292 MB after it; 225 MB with a trim). None elsewhere."""
    with contextlib.suppress(OSError, AttributeError):
        trim = ctypes.CDLL("libc.so.6").malloc_trim
        return lambda: trim(0)
    return None


class BodyTimeout(Exception):
    """The client did not send its body within the deadline."""


async def read_body(request: web.BaseRequest, deadline: float) -> bytes:
    """The whole body, bounded by the app's client_max_size and by `deadline` seconds.

    Raises web.HTTPRequestEntityTooLarge (also straight from Content-Length, before reading
    anything) and BodyTimeout."""
    limit = request._client_max_size  # the app's limit; aiohttp exposes no public getter
    length = request.content_length
    if limit and length is not None and length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=length)
    if request.content.is_eof():  # a small body arrives with its headers: nothing to wait for
        return await request.read()
    try:
        async with asyncio.timeout(deadline):
            return await request.read()
    except TimeoutError:
        raise BodyTimeout from None


def max_connections(wanted: int) -> int:
    """`wanted`, but never more than the file descriptors this process may open allow."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(16, min(wanted, soft - FD_HEADROOM))


class _CappedServer(web.Server):
    """aiohttp's low-level server holding at most `cap` connections. Past it, the oldest
    connection with no request in progress (idle keep-alive, or headers still trickling in)
    is closed to make room, so half-open floods cannot lock real clients out; when every
    connection is busy, the new one is closed instead."""

    cap: int
    open: int
    peak: int
    refused: int

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self.open += 1
        if self.open > self.peak:
            self.peak = self.open
        if self.open <= self.cap:
            return
        victim = next((h for h in self._connections
                       if h is not handler and not getattr(h, "_request_in_progress", True)
                       and not getattr(h, "_force_close", False)), handler)
        self.refused += 1
        if self.refused == 1 or self.refused % 1000 == 0:
            log.warning("connection limit %d reached: closing idle or new connections "
                        "(%d so far)", self.cap, self.refused)
        if victim is handler:
            # Not from inside connection_made: aiohttp starts this handler's task right after.
            self._loop.call_soon(handler.force_close)
        else:
            victim.force_close()  # marks it at once: the next arrival picks another one

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        self.open -= 1
        super().connection_lost(handler, exc)


class LimitedRunner(web.AppRunner):
    """AppRunner whose server holds at most `max_connections` open connections."""

    def __init__(self, app: web.Application, *, max_connections: int, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.max_connections = max_connections
        self._trim = _malloc_trim()
        self._trim_timer: asyncio.TimerHandle | None = None

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # Application builds the Server itself and offers no hook: adopt it as the capped kind.
        server.__class__ = _CappedServer
        capped: _CappedServer = server  # type: ignore[assignment]
        capped.cap, capped.open, capped.peak, capped.refused = self.max_connections, 0, 0, 0
        if self._trim is not None:
            self._trim_timer = asyncio.get_running_loop().call_later(TRIM_EVERY, self._check)
        return server

    def _check(self) -> None:
        """After a flood of connections has receded, give its memory back."""
        server = self.server
        if isinstance(server, _CappedServer) and self._trim is not None:
            if server.peak - server.open >= TRIM_AFTER_DROP:
                self._trim()
                server.peak = server.open
            self._trim_timer = asyncio.get_running_loop().call_later(TRIM_EVERY, self._check)

    async def cleanup(self) -> None:
        if self._trim_timer is not None:
            self._trim_timer.cancel()
            self._trim_timer = None
        await super().cleanup()

    @property
    def open_connections(self) -> int:
        server = self.server
        return server.open if isinstance(server, _CappedServer) else 0


def runner_options(header_timeout: float) -> dict[str, Any]:
    """RequestHandler options for the AppRunner: the header deadline and bounded headers."""
    return {"keepalive_timeout": header_timeout, "max_line_size": 8190,
            "max_field_size": 8190}


class ReadLane:
    """At most `concurrency` requests inside, `queue` more waiting; the rest are refused
    (the caller answers 503) instead of piling up on the database pool."""

    def __init__(self, concurrency: int, queue: int) -> None:
        self._inside = asyncio.Semaphore(concurrency)
        self._capacity = concurrency + queue
        self._holders = 0  # inside plus waiting

    def try_enter(self) -> bool:
        if self._holders >= self._capacity:
            return False
        self._holders += 1
        return True

    async def acquire(self) -> None:
        try:
            await self._inside.acquire()
        except BaseException:
            self._holders -= 1
            raise

    def release(self) -> None:
        self._inside.release()
        self._holders -= 1
