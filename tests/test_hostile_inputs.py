"""Hostile input on every route of the web app: never a 5xx, never a traceback in the log.

The app is the one `paybot run` serves (bot.app.build_web_app: pay pages, Mini App API, seller
API, health), its routes enumerated from its router (sub-apps included), so a route added
later is covered without touching this file. Limits are off here so every request reaches
its handler (tests/test_limits.py covers them).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web_urldispatcher import PrefixedSubAppResource
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import build_web_app
from bot.settings import ApiSettings, Settings, WebSettings
from ledger.api_tokens import issue_token
from ledger.core import Ledger
from ledger.invoices import create_invoice
from tests.web.conftest import MAX_AGE, TON_RATE, make_settings, sign_init_data

HUGE_ID = 10**20  # past bigint


def hostile_settings() -> Settings:
    settings = make_settings()
    settings.web = WebSettings(
        public_url="https://pay.example.com", init_data_max_age=MAX_AGE,
        cookie_secret="test-cookie-secret",
        rate_per_address="0", rate_pay_per_user="0", read_concurrency=64, read_queue=10_000,
    )
    settings.api = ApiSettings(rate_per_token="0", rate_create_per_token="0",
                               token_cache_seconds=0)
    return settings


@pytest.fixture
async def app_client(engine: AsyncEngine) -> AsyncIterator[TestClient]:
    client = TestClient(TestServer(build_web_app(hostile_settings(), Ledger(engine))))
    await client.start_server()
    yield client
    await client.close()


def routes(app: web.Application) -> list[tuple[str, str]]:
    """(method, path template) of every route, sub-apps included (their resources already
    carry the prefix)."""
    found = []
    for resource in app.router.resources():
        if isinstance(resource, PrefixedSubAppResource):
            found += routes(resource.get_info()["app"])
            continue
        for route in resource:
            if route.method != "HEAD":
                found.append((route.method, resource.canonical))
    return found


PATH_VALUES = [
    "%00", "..%2F..%2Fetc%2Fpasswd", "%C3%A9%F0%9F%92%A5", "%FF%FE", "x" * 3000,
    "99999999999999999999999", "-1", "1e999", "%20", "NaN", "INV-%00",
    "00000000-0000-0000-0000-000000000000",
]
QUERIES = [
    "lang=%FF%FE", "limit=99999999999999999999999", "limit=-1", "cursor=%00",
    "cursor=99999999999999999999", "status=%C3%A9", "from=99999-01-01", "to=0000-00-00",
    "created_from=9999-12-31T23:59:59-23:59", "created_to=0001-01-01T00:00:00+23:59",
    "x=" + "%5B" * 1000, "a=1&a=2&a=3",
]
BODIES: list[bytes] = [
    b"[" * 2000,  # nested past the JSON parser's recursion limit
    b'{"a":' * 1000 + b"1" + b"}" * 1000,
    b"\xff\xfe\x00garbage",
    b'{"idempotency_key": "\\u0000", "title": "\\ud800", "amount": "1"}',
    b'{"title": "x", "amount": 1e999, "expires_in": 99999999999999999999999}',
    b'{"url": "http://\\u2460\\u2461.0.0.1/"}',
    b"null", b"", b"1" * 5000,
    b" " * (70 * 1024),  # past the body limit
]


def hostile_headers(init_huge: str) -> list[dict[str, str]]:
    return [
        {"Authorization": "Bearer pbk_" + "é" * 40},
        {"Authorization": "Bearer " + "x" * 6000},
        {"Authorization": f"tma {init_huge}"},
        {"Authorization": "tma " + "%" * 3000},
        {"Authorization": "Basic Zm9vOmJhcg=="},
        {"Cookie": "pb_guest=1.x.é"},
        {"Cookie": "pb_guest=١٢٣٤.nonce.00000000000000000000000000000000"},
        {"Cookie": "pb_guest=" + "9" * 99},
        {"Accept-Language": "é" * 300 + ";q=NaN, *;q=-1"},
        {"If-None-Match": "W/\"" + "é" * 3000},
        {"Idempotency-Key": "é" * 10},
        {"Content-Type": "application/json; charset=klingon"},
        {"X-Real-IP": "é"},
    ]


def is_json_route(path: str) -> bool:
    return path.startswith("/api/") or path.endswith(("/status", "/pay")) or path == "/healthz"


def assert_error_shape(path: str, status: int, text: str) -> None:
    if status < 400 or not is_json_route(path):
        return
    body = json.loads(text)
    assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str)


async def test_nested_json_is_a_400_not_a_500(app_client, engine, make_user, caplog) -> None:
    seller = await make_user()
    token, _ = await issue_token(engine, seller.id)
    invoice = await create_invoice(engine, seller_id=seller.id, title="x", amount=100,
                                   ton_rate=TON_RATE, expires_in=timedelta(days=1))
    buyer = await make_user(balance=1000)
    init = sign_init_data({"id": buyer.telegram_id, "first_name": "B"})
    with caplog.at_level(logging.INFO):
        api = await app_client.post("/api/v1/invoices", data=b"[" * 2000,
                                    headers={"Authorization": f"Bearer {token}"})
        page = await app_client.post(f"/pay/{invoice.public_id}/pay", data=b"[" * 2000,
                                     headers={"Authorization": f"tma {init}"})
    assert api.status == 400 and (await api.json())["error"]["code"] == "invalid_json"
    assert page.status == 400 and "error" in await page.json()
    assert not [r for r in caplog.records if r.exc_info], "no traceback for bad input"


async def test_a_non_ascii_guest_cookie_is_ignored(app_client, engine, make_user, caplog) -> None:
    seller = await make_user()
    invoice = await create_invoice(engine, seller_id=seller.id, title="x", amount=100,
                                   ton_rate=TON_RATE, expires_in=timedelta(days=1))
    for path in (f"/pay/{invoice.public_id}", f"/pay/{invoice.public_id}/status"):
        resp = await app_client.get(path, headers={"Cookie": "pb_guest=1.x.é"})
        assert resp.status == 200, path
    assert not [r for r in caplog.records if r.exc_info]


async def test_signed_init_data_with_an_impossible_user_id_is_401(app_client, engine,
                                                                  make_user, caplog) -> None:
    seller = await make_user()
    invoice = await create_invoice(engine, seller_id=seller.id, title="x", amount=100,
                                   ton_rate=TON_RATE, expires_in=timedelta(days=1))
    init = sign_init_data({"id": HUGE_ID, "first_name": "Big"})
    for method, path in (("POST", f"/pay/{invoice.public_id}/pay"),
                         ("GET", f"/pay/{invoice.public_id}/status")):
        resp = await app_client.request(method, path, json={"idempotency_key": "k1"},
                                        headers={"Authorization": f"tma {init}"})
        assert resp.status == 401, (path, await resp.text())
        assert (await resp.json())["error"]["code"] == "invalid_init_data"
    assert not [r for r in caplog.records if r.exc_info]


async def test_every_route_survives_the_catalogue(app_client, engine, make_user,
                                                  caplog) -> None:
    seller = await make_user()
    token, _ = await issue_token(engine, seller.id)
    invoice = await create_invoice(engine, seller_id=seller.id, title="x", amount=100,
                                   ton_rate=TON_RATE, expires_in=timedelta(days=1))
    init_huge = sign_init_data({"id": HUGE_ID, "first_name": "Big"})
    table = routes(app_client.server.app)
    assert ("POST", "/pay/{invoice_id}/pay") in table
    assert ("POST", "/api/v1/invoices") in table
    authed = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []

    async def send(method: str, path: str, **kw: Any) -> None:
        resp = await app_client.request(method, path, allow_redirects=False, **kw)
        text = (await resp.read()).decode("utf-8", "replace")
        if resp.status >= 500:
            failures.append(f"{method} {path} {kw.get('headers')} -> {resp.status} {text[:200]}")
            return
        try:
            assert_error_shape(path, resp.status, text)
        except (ValueError, KeyError, TypeError, AssertionError):
            failures.append(f"{method} {path} -> {resp.status}: not the JSON error shape")

    with caplog.at_level(logging.WARNING):
        for method, template in table:
            real = template.format(invoice_id=invoice.public_id, event_id=invoice.public_id,
                                   name="pay.js", payment_id="1", plan_id=invoice.public_id,
                                   subscription_id=invoice.public_id, tx_hash="0" * 64,
                                   payout_id="1")
            for value in PATH_VALUES:
                path = template.format(invoice_id=value, event_id=value, name=value,
                                       payment_id=value, plan_id=value, subscription_id=value,
                                       tx_hash=value, payout_id=value)
                await send(method, path, headers=authed)
            for query in QUERIES:
                await send(method, f"{real}?{query}", headers=authed)
            for headers in hostile_headers(init_huge):
                await send(method, real, headers=headers)
            if method in ("POST", "PUT"):
                for body in BODIES:
                    for auth in (authed, {"Authorization": f"tma {init_huge}"}):
                        await send(method, real, data=body,
                                   headers={**auth, "Content-Type": "application/json"})
    assert not failures, "\n".join(failures[:20])
    assert not [r for r in caplog.records if r.exc_info], [
        r.getMessage() for r in caplog.records if r.exc_info][:5]

