"""Webhook settings over the API: the default URL and the signing secret."""

from __future__ import annotations

import json

import pytest

from ledger.payments import pay_from_balance
from tests.api.conftest import deliver
from watchers.callbacks import verify_signature

BASE = "/api/v1"


async def test_secret_is_made_once_rotated_on_request(api, make_seller) -> None:
    seller, other = await make_seller(), await make_seller()
    first = await (await api.get(f"{BASE}/webhook", headers=seller.auth)).json()
    assert first["url"] is None and first["secret"].startswith("whsec_")
    assert len(first["secret"]) >= 64 and first["replay_window_seconds"] == 300
    again = await (await api.get(f"{BASE}/webhook", headers=seller.auth)).json()
    assert again["secret"] == first["secret"]
    theirs = await (await api.get(f"{BASE}/webhook", headers=other.auth)).json()
    assert theirs["secret"] != first["secret"]
    rotated = await (await api.post(f"{BASE}/webhook/secret", headers=seller.auth)).json()
    assert rotated["secret"] != first["secret"]
    assert (await (await api.get(f"{BASE}/webhook", headers=seller.auth)).json()) == rotated


async def test_set_and_clear_the_default_url(api, make_seller) -> None:
    seller = await make_seller()
    url = "https://shop.example.com/paybot"
    resp = await api.put(f"{BASE}/webhook", headers=seller.auth, json={"url": url})
    assert resp.status == 200 and (await resp.json())["url"] == url
    resp = await api.put(f"{BASE}/webhook", headers=seller.auth, json={"url": None})
    assert resp.status == 200 and (await resp.json())["url"] is None


@pytest.mark.parametrize("body", [
    {"url": "ftp://shop.example.com/"}, {"url": "not a url"}, {"url": ""},
    {"url": "https://x.example/" + "a" * 600}, {"url": 5}, {}, {"url": "https://x", "y": 1},
    {"url": "http://shop.example.com:99999/"},
])
async def test_bad_webhook_url_is_refused_and_kept(api, make_seller, body) -> None:
    seller = await make_seller()
    url = "https://shop.example.com/kept"
    await api.put(f"{BASE}/webhook", headers=seller.auth, json={"url": url})
    resp = await api.put(f"{BASE}/webhook", headers=seller.auth, json=body)
    assert resp.status == 422, await resp.text()
    assert (await resp.json())["error"]["code"] in ("invalid_request", "invalid_webhook_url")
    assert (await (await api.get(f"{BASE}/webhook", headers=seller.auth)).json())["url"] == url


async def test_callbacks_are_signed_with_the_current_secret(api, engine, make_seller,
                                                            make_user, receiver, sender) -> None:
    seller = await make_seller()
    buyer = await make_user(balance=1000)
    await api.put(f"{BASE}/webhook", headers=seller.auth, json={"url": receiver.url})
    new = await (await api.post(f"{BASE}/webhook/secret", headers=seller.auth)).json()
    inv = await (await api.post(f"{BASE}/invoices", headers=seller.auth,
                                json={"title": "x", "amount": "1"})).json()
    await pay_from_balance(engine, inv["id"], buyer.id, "w-1")
    await deliver(engine, sender)
    [got] = receiver.received
    verify_signature(new["secret"], got.body, got.headers["X-Paybot-Timestamp"],
                     got.headers["X-Paybot-Signature"])
    assert json.loads(got.body)["invoice"]["id"] == inv["id"]
