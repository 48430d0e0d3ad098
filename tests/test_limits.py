"""Limits of the HTTP edge: rates (429 + Retry-After), body size and read deadlines, open
connections, the read lane that keeps payments their share, and what answers give away."""

from __future__ import annotations

import asyncio
import resource
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import build_web_app
from bot.http_limits import LimitedRunner, max_connections, runner_options
from bot.settings import ApiSettings, Settings, WebSettings
from ledger.api_tokens import issue_token
from ledger.core import Ledger
from ledger.invoices import create_invoice
from ledger.models import Invoice, User
from tests.web.conftest import MAX_AGE, TON_RATE, make_settings, sign_init_data, tg_user

OFF = {"rate_per_address": "0", "rate_pay_per_user": "0"}


def limited_settings(web_kw: dict[str, Any] | None = None,
                     api_kw: dict[str, Any] | None = None) -> Settings:
    settings = make_settings()
    settings.web = WebSettings(public_url="https://pay.example.com", init_data_max_age=MAX_AGE,
                               cookie_secret="test-cookie-secret",
                               **{**OFF, **(web_kw or {})})
    settings.api = ApiSettings(token_cache_seconds=0, **{
        "rate_per_token": "0", "rate_create_per_token": "0", **(api_kw or {})})
    return settings


MakeClient = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def client_with(engine: AsyncEngine) -> AsyncIterator[MakeClient]:
    clients: list[TestClient] = []

    async def _make(web_kw: dict[str, Any] | None = None,
                    api_kw: dict[str, Any] | None = None) -> TestClient:
        app = build_web_app(limited_settings(web_kw, api_kw), Ledger(engine))
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield _make
    for client in clients:
        await client.close()


async def invoice_of(engine: AsyncEngine, seller: User, amount: int = 100) -> Invoice:
    return await create_invoice(engine, seller_id=seller.id, title="Tea", amount=amount,
                                ton_rate=TON_RATE, expires_in=timedelta(days=1))


def assert_limited(resp: Any, body: dict[str, Any]) -> None:
    assert resp.status == 429
    assert int(resp.headers["Retry-After"]) >= 1
    assert body["error"]["code"] == "rate_limited" and body["error"]["message"]


# --- rates ---

async def test_one_token_cannot_flood_invoice_creation(client_with, engine, make_user) -> None:
    client = await client_with(api_kw={"rate_create_per_token": "1/m:3"})
    greedy, other = await make_user(), await make_user()
    greedy_token, _ = await issue_token(engine, greedy.id)
    other_token, _ = await issue_token(engine, other.id)

    async def create(token: str) -> Any:
        return await client.post("/api/v1/invoices", json={"title": "x", "amount": "1"},
                                 headers={"Authorization": f"Bearer {token}"})

    assert [(await create(greedy_token)).status for _ in range(3)] == [201, 201, 201]
    refused = await create(greedy_token)
    assert_limited(refused, await refused.json())
    # Reading still works for the same token, and another seller is not affected.
    assert (await client.get("/api/v1/invoices",
                             headers={"Authorization": f"Bearer {greedy_token}"})).status == 200
    assert (await create(other_token)).status == 201


async def test_guessing_tokens_is_limited_per_address(client_with) -> None:
    client = await client_with(web_kw={"rate_per_address": "1/m:3"})
    statuses = []
    for n in range(4):
        resp = await client.get("/api/v1/balance", headers={"Authorization": f"Bearer bad{n}"})
        statuses.append(resp.status)
    assert statuses == [401, 401, 401, 429]


async def test_a_valid_token_is_not_charged_to_its_address(client_with, engine,
                                                          make_user) -> None:
    client = await client_with(web_kw={"rate_per_address": "1/m:2"})  # token cache off too
    token, _ = await issue_token(engine, (await make_user()).id)
    statuses = [(await client.get("/api/v1/balance",
                                  headers={"Authorization": f"Bearer {token}"})).status
                for _ in range(5)]
    assert statuses == [200] * 5


async def test_status_reads_are_limited_per_address(client_with, engine, make_user) -> None:
    client = await client_with(web_kw={"rate_per_address": "1/m:2"})
    invoice = await invoice_of(engine, await make_user())
    url = f"/pay/{invoice.public_id}/status"
    assert [(await client.get(url)).status for _ in range(2)] == [200, 200]
    refused = await client.get(url)
    assert_limited(refused, await refused.json())


async def test_mini_app_payments_are_limited_per_user(client_with, engine, make_user) -> None:
    client = await client_with(web_kw={"rate_pay_per_user": "1/m:1"})
    seller = await make_user()
    first, second = await invoice_of(engine, seller), await invoice_of(engine, seller)
    buyer, other = await make_user(balance=1000), await make_user(balance=1000)

    async def pay(invoice: Invoice, user: User, key: str) -> Any:
        return await client.post(f"/pay/{invoice.public_id}/pay", json={"idempotency_key": key},
                                 headers={"Authorization": f"tma {sign_init_data(tg_user(user))}"})

    assert (await pay(first, buyer, "a")).status == 200
    refused = await pay(second, buyer, "b")
    assert_limited(refused, await refused.json())
    assert (await pay(second, other, "c")).status == 200  # someone else pays meanwhile


# --- bodies, deadlines, connections ---------------------------------------------------------------

async def test_bodies_past_the_limit_are_413_in_the_json_shape(client_with, engine,
                                                               make_user) -> None:
    client = await client_with()
    seller = await make_user()
    token, _ = await issue_token(engine, seller.id)
    invoice = await invoice_of(engine, seller)
    big = b'{"title": "' + b"x" * (70 * 1024) + b'", "amount": "1"}'
    api = await client.post("/api/v1/invoices", data=big,
                            headers={"Authorization": f"Bearer {token}",
                                     "Content-Type": "application/json"})
    assert api.status == 413 and (await api.json())["error"]["code"] == "request_too_large"
    buyer = await make_user(balance=1000)
    page = await client.post(f"/pay/{invoice.public_id}/pay", data=big,
                             headers={"Authorization": f"tma {sign_init_data(tg_user(buyer))}",
                                      "Content-Type": "application/json"})
    assert page.status == 413 and (await page.json())["error"]["code"] == "request_too_large"


@pytest.fixture
async def real_server(engine: AsyncEngine) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """The app behind the runner `paybot run` uses (LimitedRunner) on a real port."""
    runners: list[LimitedRunner] = []

    async def _start(*, header_timeout: float = 15.0, cap: int = 1000,
                     web_kw: dict[str, Any] | None = None) -> tuple[LimitedRunner, int]:
        app = build_web_app(limited_settings(web_kw), Ledger(engine))
        runner = LimitedRunner(app, max_connections=cap, **runner_options(header_timeout))
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner, runner.addresses[0][1]

    yield _start
    for runner in runners:
        await runner.cleanup()


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes (a guard, not a measurement: a server that
    never closes fails the test instead of hanging it)."""
    async with asyncio.timeout(30):
        return await reader.read()


async def test_a_body_that_never_arrives_is_408(real_server, engine, make_user) -> None:
    _runner, port = await real_server(web_kw={"body_timeout_seconds": 0.3})
    seller = await make_user()
    token, _ = await issue_token(engine, seller.id)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"POST /api/v1/invoices HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                 "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"ti".encode())
    await writer.drain()
    async with asyncio.timeout(30):
        status_line = await reader.readline()
    writer.close()
    assert status_line.split()[1] == b"408"


async def test_headers_that_never_finish_get_the_connection_closed(real_server) -> None:
    _runner, port = await real_server(header_timeout=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and nothing more, ever
    await writer.drain()
    assert await closed_by_server(reader) == b""
    writer.close()


async def test_past_the_cap_idle_connections_make_room_for_a_request(real_server) -> None:
    runner, port = await real_server(cap=3)
    # Three connections that never send a request (half-open flood) fill the cap...
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
    # ...and a real client still gets its answer: the oldest idle one is closed for it.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await writer.drain()
    assert (await closed_by_server(reader)).split(b"\r\n", 1)[0].split()[1] == b"200"
    oldest_reader, _ = idle[0]
    assert await closed_by_server(oldest_reader) == b""
    for _, w in idle:
        w.close()
    writer.close()
    assert runner.open_connections <= 3


def test_the_connection_cap_stays_below_the_descriptor_limit() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY:
        assert max_connections(10**9) < soft


# --- payments keep their share ---

async def test_a_flood_of_reads_cannot_starve_a_payment(client_with, engine, make_user) -> None:
    client = await client_with(web_kw={"read_concurrency": 1, "read_queue": 1})
    invoice = await invoice_of(engine, await make_user())
    buyer = await make_user(balance=1000)
    url = f"/pay/{invoice.public_id}/status"

    async def read() -> int:
        async with client.get(url) as resp:
            await resp.read()
            return resp.status

    flood = [asyncio.ensure_future(read()) for _ in range(200)]
    paid = await client.post(f"/pay/{invoice.public_id}/pay",
                             json={"idempotency_key": "during-the-flood"},
                             headers={"Authorization": f"tma {sign_init_data(tg_user(buyer))}"})
    statuses = await asyncio.gather(*flood)
    assert paid.status == 200
    assert (await paid.json())["payment"]["invoice_status"] == "paid"
    assert set(statuses) <= {200, 503} and 503 in statuses, sorted(set(statuses))


# --- what answers give away ---

async def test_no_versions_in_server_and_no_sniffing(client_with, engine, make_user) -> None:
    client = await client_with()
    invoice = await invoice_of(engine, await make_user())
    for path in ("/healthz", "/api/v1/me", f"/pay/{invoice.public_id}/status",
                 f"/pay/{invoice.public_id}", "/nowhere"):
        resp = await client.get(path)
        assert "aiohttp" not in resp.headers.get("Server", "").lower(), path
        assert "python" not in resp.headers.get("Server", "").lower(), path
        assert resp.headers.get("X-Content-Type-Options") == "nosniff", path


async def test_the_invoice_list_cursor_is_opaque_and_per_seller(client_with, engine,
                                                               make_user) -> None:
    client = await client_with()
    seller, other = await make_user(), await make_user()
    token, _ = await issue_token(engine, seller.id)
    other_token, _ = await issue_token(engine, other.id)
    for _ in range(3):
        await invoice_of(engine, seller)
    first = await (await client.get("/api/v1/invoices", params={"limit": "1"},
                                    headers={"Authorization": f"Bearer {token}"})).json()
    cursor = first["next_cursor"]
    assert cursor is not None and not cursor.isdigit()  # no global sequence number
    second = await (await client.get("/api/v1/invoices", params={"limit": "1", "cursor": cursor},
                                     headers={"Authorization": f"Bearer {token}"})).json()
    assert second["items"][0]["id"] != first["items"][0]["id"]
    foreign = await client.get("/api/v1/invoices", params={"cursor": cursor},
                               headers={"Authorization": f"Bearer {other_token}"})
    assert foreign.status == 422
    assert (await foreign.json())["error"]["code"] == "invalid_request"


async def test_the_limited_runner_serves_normally(real_server) -> None:
    _runner, port = await real_server(cap=50)
    async with ClientSession() as http, http.get(f"http://127.0.0.1:{port}/livez") as resp:
        assert resp.status == 200 and resp.headers["Server"] == "paybot"
