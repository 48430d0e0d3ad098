"""Liveness (`/livez`: the process answers) and readiness (`/healthz`: and its database too).

`/healthz` answers within `timeout` seconds whatever the database does: one probe
(`SELECT 1`) runs at a time and every caller waits for that same probe at most `timeout`, so a
frozen server costs neither a hung request nor a pile of connection attempts. The probe itself
ends by the engine's own connect and command deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.http_errors import OUTAGES, RETRY_AFTER_SECONDS

HEALTH_TIMEOUT = 1.0


class HealthProbe:
    def __init__(self, engine: AsyncEngine, timeout: float = HEALTH_TIMEOUT) -> None:
        self.engine = engine
        self.timeout = timeout
        self._probe: asyncio.Task[None] | None = None

    async def _select_one(self) -> None:
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def database_up(self) -> bool:
        probe = self._probe
        if probe is None or probe.done():
            probe = self._probe = asyncio.ensure_future(self._select_one())
            # A probe nobody waits for any more still has its exception retrieved.
            probe.add_done_callback(lambda t: t.cancelled() or t.exception())
        done, _ = await asyncio.wait({probe}, timeout=self.timeout)
        if not done:
            OUTAGES.failed(TimeoutError(f"no answer within {self.timeout:g} s"), "/healthz")
            return False
        exc = probe.exception() if not probe.cancelled() else asyncio.CancelledError()
        if exc is not None:
            OUTAGES.failed(exc, "/healthz")
            return False
        return True

    async def healthz(self, request: web.Request) -> web.Response:
        up = await self.database_up()
        body = {"ok": up, "database": "up" if up else "down"}
        headers = {"Cache-Control": "no-store"}
        if not up:
            headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return web.json_response(body, status=200 if up else 503, headers=headers)

    async def close(self) -> None:
        if self._probe is not None and not self._probe.done():
            self._probe.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._probe


async def livez(request: web.Request) -> web.Response:
    return web.json_response({"ok": True}, headers={"Cache-Control": "no-store"})
