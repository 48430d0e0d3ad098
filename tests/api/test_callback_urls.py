"""Callback URLs are checked in the form the HTTP client uses (yarl's parse, IDNA UTS-46), every
form delivery would refuse is refused at acceptance (422), and delivery connects only to the
addresses it checked. What a seller sees of a failed delivery carries no network details."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import watchers.callbacks as callbacks
from bot.api import mount_api
from ledger.core import Ledger
from ledger.payments import pay_from_balance
from tests.api.conftest import deliver
from tests.conftest import run_sql
from watchers.callbacks import BlockedUrl, CallbackSender, check_url

BASE = "/api/v1"

# Each of these would be refused by delivery (or read by the client differently from how it
# looks), whatever addresses are allowed: numeric forms the C resolver reads as an address,
# trailing dots, IPv6 that embeds IPv4, control characters, and what yarl cannot parse.
BAD_FORMS = [
    "http://127.1/",
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://0x7f.0.0.1/",
    "http://0/",
    "http://shop.example.com./",
    "http://127.0.0.1./",
    "http://[::127.0.0.1]/",  # IPv4-compatible
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped
    "http://[::ffff:93.184.215.14]/",
    "http://[64:ff9b::7f00:1]/",  # NAT64
    "http://[2002:7f00:1::1]/",  # 6to4
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",  # Teredo
    "http://[fe80::1%25eth0]/",
    "http://shop.example.com/\x00",
    "http://shop.exa\tmple.com/",
    "http://shop.example.com/a\nb",
    "http://shop.example.com\u00ad/",  # soft hyphen: IDNA drops it
    "http://evil.example\\@127.0.0.1/",
    "http://%31%32%37.0.0.1/",
    "http://shop.example.com:0/",
]
# Unicode look-alikes that yarl (IDNA UTS-46) turns into non-public IPv4 literals: a check of
# the raw text sees a name.
LOOKALIKES = [
    "http://127。0。0。1/hook",  # full-width dots
    "http://①②⑦.0.0.1/hook",  # enclosed digits
    "http://１２７.０.０.１/hook",  # full-width digits
    "http://169。254。169。254/latest/meta-data",
    "http://１０.0.0.1/",
]
REFUSED = BAD_FORMS + LOOKALIKES


@pytest.mark.parametrize("url", REFUSED)
def test_lookalike_and_ambiguous_hosts_are_refused(url: str) -> None:
    with pytest.raises(BlockedUrl):
        check_url(url, allow_private=False)


@pytest.mark.parametrize("url", [*BAD_FORMS, "http://127.1:9000/", "http://localhost./"])
def test_forms_are_refused_even_when_private_targets_are_allowed(url: str) -> None:
    with pytest.raises(BlockedUrl):
        check_url(url, allow_private=True)


@pytest.mark.parametrize("url", [
    "https://shop.example.com/paid?order=1", "https://bücher.example/hook",
    "http://93.184.215.14:8080/hook", "http://[2606:4700:4700::1111]/hook",
    "HTTPS://Shop.Example.COM/x",
])
def test_public_urls_are_accepted(url: str) -> None:
    check_url(url, allow_private=False)


def test_private_allowed_keeps_loopback_receivers_working() -> None:
    check_url("http://127.0.0.1:9000/hook", allow_private=True)
    check_url("http://[::1]:9000/hook", allow_private=True)
    check_url("http://localhost:9000/hook", allow_private=True)


async def test_api_refuses_every_form_delivery_would_refuse(engine, api_config,
                                                            make_seller) -> None:
    app = web.Application()
    mount_api(app, Ledger(engine), replace(api_config, allow_private_callbacks=False))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        seller = await make_seller()
        for url in REFUSED:
            resp = await client.put(f"{BASE}/webhook", headers=seller.auth, json={"url": url})
            assert resp.status == 422, url
            # (the request schema already refuses some, e.g. whitespace in the host)
            assert (await resp.json())["error"]["code"] in ("invalid_webhook_url",
                                                             "invalid_request"), url
            resp = await client.post(f"{BASE}/invoices", headers=seller.auth, json={
                "title": "x", "amount": "1", "callback_url": url})
            assert resp.status == 422, url
            assert (await resp.json())["error"]["code"] in ("invalid_invoice",
                                                             "invalid_request"), url
        # nothing changed: no webhook URL was stored, no invoice was created
        webhook = await (await client.get(f"{BASE}/webhook", headers=seller.auth)).json()
        assert webhook["url"] is None
        listed = await (await client.get(f"{BASE}/invoices", headers=seller.auth)).json()
        assert listed["items"] == []


async def test_a_lookalike_queued_earlier_is_never_delivered(
    api, engine, make_seller, make_user, receiver
) -> None:
    """An event whose URL was accepted before (a look-alike of the receiver's loopback address)
    is failed at delivery without a request, whatever the client would have made of it."""
    seller = await make_seller()
    buyer = await make_user(balance=1000)
    port = receiver.url.split(":")[2].split("/")[0]
    lookalike = f"http://127。0。0。1:{port}/hook"
    resp = await api.post(f"{BASE}/invoices", headers=seller.auth,
                          json={"title": "x", "amount": "1", "callback_url": receiver.url})
    invoice = (await resp.json())["id"]
    await pay_from_balance(engine, invoice, buyer.id, "lookalike-1")
    await run_sql(engine, "UPDATE outbox SET payload = jsonb_set(payload, '{url}', "
                          "to_jsonb(CAST(:u AS text))) WHERE topic = 'callback' "
                          "AND payload ->> 'invoice' = :i", u=lookalike, i=invoice)
    strict = CallbackSender(allow_private=False, timeout=5.0)
    try:
        await deliver(engine, strict)
    finally:
        await strict.close()
    [row] = await run_sql(engine, "SELECT * FROM outbox WHERE topic = 'callback' "
                                  "AND payload ->> 'invoice' = :i", i=invoice)
    assert row["failed_at"] is not None and row["last_error"].startswith("blocked")
    assert receiver.received == []


async def test_literal_addresses_pass_the_connect_guard_too(monkeypatch) -> None:
    """Even a URL that slipped past the static check is not connected to: the socket factory
    refuses every non-public address (the resolver never sees a literal)."""
    async def ok(request: web.Request) -> web.Response:
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", ok)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    lenient = callbacks.canonical_target  # the static check, told to let loopback through
    monkeypatch.setattr(callbacks, "canonical_target",
                        lambda url, allow_private: lenient(url, allow_private=True))
    sender = CallbackSender(allow_private=False, timeout=5.0)
    try:
        error = await sender.post(str(server.make_url("/hook")), b"{}", {})
    finally:
        await sender.close()
        await server.close()
    assert error is not None and error.startswith("blocked")


async def test_last_error_says_what_happened_not_where(engine) -> None:
    """A closed port, a port that never answers and an HTTP error read "connection failed",
    "timed out" and "HTTP <code>": no ports, addresses or OS errors (no port scanner)."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    silent = socket.socket()  # accepts the connection, never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen()

    async def unauthorized(request: web.Request) -> web.Response:
        return web.Response(status=401)

    app = web.Application()
    app.router.add_post("/hook", unauthorized)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    sender = CallbackSender(allow_private=True, timeout=0.5)
    try:
        errors = await asyncio.gather(
            sender.post(f"http://127.0.0.1:{closed_port}/hook", b"{}", {}),
            sender.post(f"http://127.0.0.1:{silent.getsockname()[1]}/hook", b"{}", {}),
            sender.post(str(server.make_url("/hook")), b"{}", {}),
        )
    finally:
        await sender.close()
        await server.close()
        silent.close()
    assert errors == ["connection failed", "timed out", "HTTP 401"]


async def test_errors_stored_before_are_shown_without_network_details(
    api, engine, make_seller, make_user, receiver
) -> None:
    seller = await make_seller()
    buyer = await make_user(balance=1000)
    resp = await api.post(f"{BASE}/invoices", headers=seller.auth,
                          json={"title": "x", "amount": "1", "callback_url": receiver.url})
    invoice = (await resp.json())["id"]
    await pay_from_balance(engine, invoice, buyer.id, "old-error-1")
    await run_sql(engine, "UPDATE outbox SET failed_at = now(), last_error = :e "
                          "WHERE topic = 'callback' AND payload ->> 'invoice' = :i",
                  i=invoice, e="gave up after 15 attempts: connection failed: Cannot connect "
                               "to host 10.0.0.7:6379 ssl:default [Connect call failed]")
    listed = await (await api.get(f"{BASE}/callbacks", headers=seller.auth,
                                  params={"status": "failed"})).json()
    assert [c["last_error"] for c in listed["items"]] == [
        "gave up after 15 attempts: connection failed"]
