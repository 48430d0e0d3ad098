"""A database that stops answering: /healthz says so within its deadline, requests get a 503
with Retry-After instead of hanging, the log gets one line per outage, and all of it recovers.

The engine reaches the test database through a TCP relay in this process; "freezing" the
relay stops every byte in both directions (what a SIGSTOPped or partitioned server looks like
to a client) without touching the shared PostgreSQL server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import http_errors
from bot.app import build_web_app
from ledger.api_tokens import issue_token
from ledger.core import Ledger
from ledger.invoices import create_invoice
from ledger.postgres import libpq_url, make_engine
from tests.test_limits import limited_settings
from tests.web.conftest import TON_RATE


class FreezableRelay:
    """Forwards TCP connections to PostgreSQL's socket; `freeze()` holds every byte."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(self.socket_path)
        for a, b in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(self._pump(a, b))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                await self.flowing.wait()
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()

    def freeze(self) -> None:
        self.flowing.clear()

    def thaw(self) -> None:
        self.flowing.set()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


@pytest.fixture
async def relay(database_url: str) -> AsyncIterator[tuple[FreezableRelay, str]]:
    url = make_url(libpq_url(database_url))
    host = url.query.get("host")
    if not isinstance(host, str) or not host.startswith("/"):
        pytest.skip("the relay needs the test server's Unix socket")
    relay = FreezableRelay(f"{host}/.s.PGSQL.{url.port or 5432}")
    port = await relay.start()
    relayed = url.set(host="127.0.0.1", port=port, query={})
    yield relay, relayed.render_as_string(hide_password=False)
    relay.thaw()
    await relay.close()


@pytest.fixture
async def outage_app(relay) -> AsyncIterator[tuple[FreezableRelay, AsyncEngine, TestClient]]:
    the_relay, url = relay
    # Production shape, short deadlines: a frozen server costs each request about a second.
    engine = make_engine(url, pool_size=2, connect_timeout=1.0, command_timeout=1.0,
                         pool_timeout=1.0)
    client = TestClient(TestServer(build_web_app(limited_settings(), Ledger(engine))))
    await client.start_server()
    yield the_relay, engine, client
    the_relay.thaw()
    await client.close()
    await engine.dispose()


def outage_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "database unavailable" in r.getMessage()]


async def test_a_frozen_database_is_503_with_one_log_line_and_recovers(
    outage_app, engine, make_user, caplog, monkeypatch,
) -> None:
    relay, _relayed_engine, client = outage_app
    monkeypatch.setattr(http_errors.OUTAGES, "_last", -1e18)  # no outage before this test
    seller = await make_user()
    token, _ = await issue_token(engine, seller.id)
    invoice = await create_invoice(engine, seller_id=seller.id, title="x", amount=100,
                                   ton_rate=TON_RATE, expires_in=timedelta(days=1))
    auth = {"Authorization": f"Bearer {token}"}
    ok = await client.get("/healthz")
    assert ok.status == 200 and (await ok.json()) == {"ok": True, "database": "up"}

    relay.freeze()
    with caplog.at_level(logging.INFO):
        async with asyncio.timeout(60):  # a guard against hanging, not a measurement
            health = await client.get("/healthz")
            answers = [await client.get("/api/v1/balance", headers=auth),
                       await client.get(f"/pay/{invoice.public_id}/status"),
                       await client.get("/api/v1/invoices", headers=auth)]
            live = await client.get("/livez")
    assert health.status == 503
    assert await health.json() == {"ok": False, "database": "down"}
    assert int(health.headers["Retry-After"]) >= 1
    assert live.status == 200  # the process itself is fine
    for resp in answers:
        assert resp.status == 503, (resp.url, await resp.text())
        assert int(resp.headers["Retry-After"]) >= 1
        body = await resp.json()
        assert body["error"]["code"] == "service_unavailable" and body["error"]["message"]
    assert len(outage_lines(caplog)) == 1, [r.getMessage() for r in outage_lines(caplog)]
    assert not [r for r in caplog.records if r.exc_info], "no traceback per request"

    relay.thaw()  # recovers by itself: no restart, no stale connection served
    async with asyncio.timeout(60):
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/api/v1/balance", headers=auth)).status == 200
        assert (await client.get(f"/pay/{invoice.public_id}/status")).status == 200
