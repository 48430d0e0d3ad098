"""Signed callbacks: what is sent, how it is verified, retried, failed and sent again."""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ledger.core import Ledger
from ledger.invoices import expire_due_invoices
from ledger.payments import pay_from_balance, settle_external_payment
from tests.api.conftest import LoopbackOnlySender, deliver
from tests.conftest import run_sql
from watchers.callbacks import (
    RETRY_DELAYS,
    BlockedUrl,
    CallbackSender,
    GuardedResolver,
    InvalidSignature,
    check_url,
    retry_delay,
    sign,
    verify_signature,
)

BASE = "/api/v1"
README = Path(__file__).resolve().parents[2] / "README.md"


async def new_invoice(api, seller, **fields: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    resp = await api.post(f"{BASE}/invoices", headers=seller.auth,
                          json={"title": "Item", "amount": "1.50", **fields})
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def events_of(engine, invoice_id: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return await run_sql(
        engine, "SELECT * FROM outbox WHERE topic = 'callback' AND payload ->> 'invoice' = :i "
                "ORDER BY id", i=invoice_id)


# --- signatures -------------------------------------------------------------------------------

def test_signature_verifies_and_rejects_tampering_and_replays() -> None:
    secret, body, now = "whsec_" + "a" * 64, b'{"id":"x"}', 1_800_000_000
    sig = sign(secret, now, body)
    assert re.fullmatch(r"v1=[0-9a-f]{64}", sig)
    verify_signature(secret, body, str(now), sig, now=now + 299)
    verify_signature(secret, body, str(now), f"v1=deadbeef, {sig}", now=now)  # rotation
    cases = [
        (secret, body + b" ", str(now), sig, now, "mismatch"),
        ("whsec_" + "b" * 64, body, str(now), sig, now, "mismatch"),
        (secret, body, str(now + 1), sig, now, "mismatch"),  # timestamp is signed too
        (secret, body, str(now), sig, now + 301, "replay window"),  # an old callback replayed
        (secret, body, str(now), sig, now - 301, "replay window"),
        (secret, body, "yesterday", sig, now, "malformed"),
        (secret, body, None, sig, now, "missing"),
        (secret, body, str(now), None, now, "missing"),
        (secret, body, str(now), "v1=é" + sig[4:], now, "mismatch"),  # not even ASCII
    ]
    for key, data, ts, signature, at, reason in cases:
        with pytest.raises(InvalidSignature, match=reason):
            verify_signature(key, data, ts, signature, now=at)


def test_retry_schedule_backs_off_for_about_three_days() -> None:
    assert list(RETRY_DELAYS) == sorted(RETRY_DELAYS)
    assert RETRY_DELAYS[0] <= 60
    total_days = sum(RETRY_DELAYS) / 86400
    assert 2.5 <= total_days <= 3.5
    assert [retry_delay(n) for n in range(1, len(RETRY_DELAYS) + 1)] == list(RETRY_DELAYS)
    assert retry_delay(len(RETRY_DELAYS) + 1) is None


# --- delivery ---------------------------------------------------------------------------------

async def test_paid_invoice_is_called_back_signed_once(api, engine, make_seller, make_user,
                                                       receiver, sender) -> None:
    seller = await make_seller()
    buyer = await make_user(balance=1000, username="sword_fan")
    inv = await new_invoice(api, seller, callback_url=receiver.url, item_id="sword")
    await pay_from_balance(engine, inv["id"], buyer.id, "cb-1")
    await deliver(engine, sender)
    assert len(receiver.received) == 1
    got = receiver.received[0]
    secret = (await (await api.get(f"{BASE}/webhook", headers=seller.auth)).json())["secret"]
    verify_signature(secret, got.body, got.headers["X-Paybot-Timestamp"],
                     got.headers["X-Paybot-Signature"])
    event = json.loads(got.body)
    assert set(event) == {"id", "type", "created_at", "invoice", "payment"}
    assert event["type"] == "invoice_paid" and got.headers["X-Paybot-Event-Type"] == "invoice_paid"
    assert event["id"] == got.headers["X-Paybot-Event-Id"]
    assert event["invoice"]["id"] == inv["id"] and event["invoice"]["status"] == "paid"
    assert event["invoice"]["item_id"] == "sword" and event["payment"]["method"] == "internal"
    assert event["invoice"]["paid_by"]["telegram_id"] == buyer.telegram_id  # who paid
    assert event["invoice"]["paid_by"]["username"] == "sword_fan"
    [row] = await events_of(engine, inv["id"])
    assert str(row["event_id"]) == event["id"]
    assert row["delivered_at"] is not None and row["attempts"] == 1
    await deliver(engine, sender)
    assert len(receiver.received) == 1  # delivered means done
    listed = await (await api.get(f"{BASE}/callbacks", headers=seller.auth,
                                  params={"status": "delivered"})).json()
    assert [c["id"] for c in listed["items"]] == [event["id"]]


async def test_default_webhook_url_gets_paid_cancelled_and_expired(
    api, engine, make_seller, make_user, receiver, sender
) -> None:
    seller = await make_seller()
    buyer = await make_user(balance=1000)
    default = receiver.url + "/default"
    resp = await api.put(f"{BASE}/webhook", headers=seller.auth, json={"url": default})
    assert resp.status == 200 and (await resp.json())["url"] == default
    paid = await new_invoice(api, seller)
    cancelled = await new_invoice(api, seller)
    expiring = await new_invoice(api, seller, expires_in=60)
    own = await new_invoice(api, seller, callback_url=receiver.url + "/own")
    by_guest = await new_invoice(api, seller)
    await pay_from_balance(engine, paid["id"], buyer.id, "d-1")
    await settle_external_payment(engine, by_guest["id"], method="manual", reference="d-ext")
    await pay_from_balance(engine, own["id"], buyer.id, "d-2")
    await api.post(f"{BASE}/invoices/{cancelled['id']}/cancel", headers=seller.auth)
    await run_sql(engine, "UPDATE invoices SET expires_at = now() - interval '1 second' "
                          "WHERE public_id = :id", id=expiring["id"])
    await expire_due_invoices(engine)
    await deliver(engine, sender)
    by_invoice = {}
    for got in receiver.received:
        event = json.loads(got.body)
        by_invoice[event["invoice"]["id"]] = (event["type"], got.headers["Host"], got)
    assert {k: v[0] for k, v in by_invoice.items()} == {
        paid["id"]: "invoice_paid", cancelled["id"]: "invoice_cancelled",
        expiring["id"]: "invoice_expired", own["id"]: "invoice_paid",
        by_guest["id"]: "invoice_paid",
    }
    assert len(receiver.received) == 5  # the invoice with its own URL is not sent twice
    for invoice_id in (paid["id"], cancelled["id"], expiring["id"], own["id"], by_guest["id"]):
        [row] = await events_of(engine, invoice_id)
        assert row["delivered_at"] is not None


async def test_no_url_anywhere_queues_no_callback(api, engine, make_seller, make_user) -> None:
    seller = await make_seller()
    buyer = await make_user(balance=1000)
    inv = await new_invoice(api, seller)
    await pay_from_balance(engine, inv["id"], buyer.id, "n-1")
    assert await events_of(engine, inv["id"]) == []


async def test_failures_back_off_then_fail_and_can_be_sent_again(
    api, engine, make_seller, make_user, receiver, sender
) -> None:
    seller = await make_seller()
    buyer = await make_user(balance=1000)
    inv = await new_invoice(api, seller, callback_url=receiver.url)
    await pay_from_balance(engine, inv["id"], buyer.id, "r-1")
    receiver.statuses = [500, 503]

    async def row() -> dict[str, Any]:
        [r] = await events_of(engine, inv["id"])
        r["wait"] = (r["available_at"] - datetime.now(UTC)).total_seconds()
        return r

    await deliver(engine, sender)
    first = await row()
    assert first["attempts"] == 1 and "HTTP 500" in first["last_error"]
    assert RETRY_DELAYS[0] - 5 < first["wait"] <= RETRY_DELAYS[0]
    await deliver(engine, sender)
    assert len(receiver.received) == 1  # not due yet
    # the clock moves on: make it due now, as the backoff would after RETRY_DELAYS[0] s
    await run_sql(engine, "UPDATE outbox SET available_at = now() WHERE id = :id", id=first["id"])
    await deliver(engine, sender)
    second = await row()
    assert second["attempts"] == 2 and "HTTP 503" in second["last_error"]
    assert RETRY_DELAYS[1] - 5 < second["wait"] <= RETRY_DELAYS[1]
    # ...and on: every earlier attempt failed, this is the last one
    receiver.statuses = [500]
    await run_sql(engine, "UPDATE outbox SET available_at = now(), attempts = :n WHERE id = :id",
                  id=first["id"], n=len(RETRY_DELAYS))
    await deliver(engine, sender)
    failed = await row()
    assert failed["failed_at"] is not None and failed["delivered_at"] is None
    assert f"gave up after {len(RETRY_DELAYS) + 1} attempts" in failed["last_error"]
    # the seller sees it and sends it again; the receiver is back up
    listed = await (await api.get(f"{BASE}/callbacks", headers=seller.auth,
                                  params={"status": "failed"})).json()
    [item] = listed["items"]
    assert item["status"] == "failed" and "HTTP 500" in item["last_error"]
    resp = await api.post(f"{BASE}/callbacks/{item['id']}/redeliver", headers=seller.auth)
    assert resp.status == 202 and (await resp.json())["status"] == "pending"
    await deliver(engine, sender)
    done = await row()
    assert done["delivered_at"] is not None and done["attempts"] == 1
    ids = {json.loads(r.body)["id"] for r in receiver.received}
    assert ids == {item["id"]} and len(receiver.received) == 4  # one event, four tries


async def test_redeliver_is_for_the_seller_own_events(api, engine, make_seller) -> None:
    seller = await make_seller()
    for path in ("/callbacks/not-a-uuid/redeliver",
                 "/callbacks/8c5a3f0e-58a5-4b8b-9d3e-1a0c7f6c2b11/redeliver"):
        resp = await api.post(BASE + path, headers=seller.auth)
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "callback_not_found"


# --- where callbacks may go -------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "ftp://files.example.com/x", "file:///etc/passwd", "javascript:alert(1)", "http://",
    "http://127.0.0.1/hook", "http://127.1.2.3:8080/", "http://10.0.0.1/", "http://192.168.1.1/",
    "http://172.16.0.1/", "http://169.254.169.254/latest/meta-data", "http://0.0.0.0/",
    "http://100.64.0.1/", "http://[::1]/", "http://[fe80::1]/", "http://[fc00::1]/",
    "http://[::ffff:127.0.0.1]/", "http://localhost:8080/", "http://api.localhost/",
    "http://user:pass@shop.example.com/", "http://shop.example.com:99999/",
])
def test_blocked_callback_urls(url: str) -> None:
    with pytest.raises(BlockedUrl):
        check_url(url, allow_private=False)


def test_allowed_callback_urls() -> None:
    check_url("https://shop.example.com/paid?order=1", allow_private=False)
    check_url("http://93.184.215.14:8080/hook", allow_private=False)
    check_url("http://127.0.0.1:9000/hook", allow_private=True)


async def test_names_resolving_to_private_addresses_are_refused() -> None:
    resolver = GuardedResolver(allow_private=False)
    with pytest.raises(BlockedUrl):
        await resolver.resolve("localhost", 80)
    assert await GuardedResolver(allow_private=True).resolve("localhost", 80)


async def test_private_target_fails_without_a_request_when_not_allowed(
    api, engine, make_seller, make_user, receiver
) -> None:
    seller = await make_seller()
    buyer = await make_user(balance=1000)
    inv = await new_invoice(api, seller, callback_url=receiver.url)  # the test API allows it
    await pay_from_balance(engine, inv["id"], buyer.id, "p-1")
    strict = LoopbackOnlySender(allow_private=False, timeout=5.0)
    try:
        await deliver(engine, strict)
    finally:
        await strict.close()
    [row] = await events_of(engine, inv["id"])
    assert row["failed_at"] is not None and "blocked" in row["last_error"]
    assert receiver.received == []


async def test_api_refuses_private_urls_when_not_allowed(engine, api_config, make_seller) -> None:
    from dataclasses import replace

    from aiohttp.test_utils import TestClient

    from bot.api import mount_api

    app = web.Application()
    mount_api(app, Ledger(engine), replace(api_config, allow_private_callbacks=False))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        seller = await make_seller()
        resp = await client.put(f"{BASE}/webhook", headers=seller.auth,
                                json={"url": "http://127.0.0.1:9/x"})
        assert resp.status == 422
        assert (await resp.json())["error"]["code"] == "invalid_webhook_url"
        resp = await client.post(f"{BASE}/invoices", headers=seller.auth, json={
            "title": "x", "amount": "1", "callback_url": "http://169.254.169.254/"})
        assert resp.status == 422
        assert (await resp.json())["error"]["code"] == "invalid_invoice"
        resp = await client.put(f"{BASE}/webhook", headers=seller.auth,
                                json={"url": "https://shop.example.com/hook"})
        assert resp.status == 200


# --- bounded time and size --------------------------------------------------------------------

async def serve(handler) -> TestServer:  # type: ignore[no-untyped-def]
    app = web.Application()
    app.router.add_post("/hook", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def test_endless_response_is_read_only_up_to_the_limit() -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        try:
            for _ in range(100_000):  # ~800 MB if anyone read it all
                await resp.write(b"x" * 8192)
        except (ConnectionError, RuntimeError):
            pass
        return resp

    server = await serve(endless)
    s = CallbackSender(allow_private=True, timeout=5.0, max_response_bytes=16 * 1024)
    try:
        assert await s.post(str(server.make_url("/hook")), b"{}", {}) is None
    finally:
        await s.close()
        await server.close()


async def test_slow_receiver_times_out_and_redirects_are_not_followed() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response()

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://127.0.0.1:9/elsewhere")

    slow_server, redirect_server = await serve(slow), await serve(redirect)
    s = CallbackSender(allow_private=True, timeout=0.5)
    try:
        error = await s.post(str(slow_server.make_url("/hook")), b"{}", {})
        assert error is not None and "timed out" in error
        error = await s.post(str(redirect_server.make_url("/hook")), b"{}", {})
        assert error is not None and "HTTP 302" in error
    finally:
        await s.close()
        await slow_server.close()
        await redirect_server.close()


# --- the README's snippet ---------------------------------------------------------------------

async def test_readme_snippet_verifies_a_real_callback(api, engine, make_seller, make_user,
                                                       receiver, sender) -> None:
    readme = README.read_text()
    [snippet] = re.findall(r"<!-- callback-verify -->\s*```python\n(.*?)```", readme, re.S)
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)
    verify = namespace["verify_paybot_callback"]
    seller = await make_seller()
    buyer = await make_user(balance=1000)
    inv = await new_invoice(api, seller, callback_url=receiver.url)
    await pay_from_balance(engine, inv["id"], buyer.id, "readme-1")
    await deliver(engine, sender)
    [got] = receiver.received
    secret = (await (await api.get(f"{BASE}/webhook", headers=seller.auth)).json())["secret"]
    assert verify(secret, got.body, got.headers) is True
    assert verify(secret, got.body.replace(b"paid", b"PAID"), got.headers) is False
    assert verify("whsec_wrong", got.body, got.headers) is False
    assert verify(secret, got.body, {**got.headers, "X-Paybot-Signature": "v1=ü"}) is False
    old = int(time.time()) - 3600  # a captured callback, replayed an hour later
    replayed = {**got.headers, "X-Paybot-Timestamp": str(old),
                "X-Paybot-Signature": sign(secret, old, got.body)}
    assert verify(secret, got.body, replayed) is False
