"""The seller API's invoice routes against the real ledger."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from ledger.invoices import expire_due_invoices
from ledger.payments import pay_from_balance
from tests.conftest import run_sql

BASE = "/api/v1"


async def invoice_count(engine, seller_id: int) -> int:  # type: ignore[no-untyped-def]
    rows = await run_sql(engine, "SELECT count(*) AS n FROM invoices WHERE seller_id = :s",
                         s=seller_id)
    return int(rows[0]["n"])


async def test_create_returns_the_invoice_with_links(api, make_seller) -> None:
    seller = await make_seller()
    resp = await api.post(f"{BASE}/invoices", headers=seller.auth, json={
        "title": "Magic sword", "amount": "12.50", "description": "+5 damage",
        "item_id": "sword-1", "callback_url": "https://shop.example.com/paid",
        "expires_in": 3600,
    })
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert body["status"] == "pending" and body["currency"] == "LIQ"
    assert body["amount"] == "12.50" and body["amount_minor"] == 1250
    assert body["ton_amount_nano"] == 2_500_000_000  # 12.50 at 5.00 per TON
    assert body["pay_url"].endswith(f"/pay/{body['id']}")
    assert body["bot_url"].endswith(f"?start=pay_{body['id']}")
    assert body["ton_comment"] == f"INV-{body['id']}"
    assert body["item_id"] == "sword-1"
    assert body["callback_url"] == "https://shop.example.com/paid"
    expires = datetime.fromisoformat(body["expires_at"])
    created = datetime.fromisoformat(body["created_at"])
    assert abs((expires - created) - timedelta(hours=1)) < timedelta(seconds=5)
    assert "Idempotent-Replayed" not in resp.headers


async def test_idempotency_key_returns_the_first_invoice(api, make_seller, engine) -> None:
    seller = await make_seller()
    headers = {**seller.auth, "Idempotency-Key": "order-17"}
    body = {"title": "Potion", "amount": "1.00"}
    first = await api.post(f"{BASE}/invoices", headers=headers, json=body)
    again = await api.post(f"{BASE}/invoices", headers=headers, json=body)
    assert first.status == again.status == 201
    assert (await first.json())["id"] == (await again.json())["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    # the same key with another request is refused, and creates nothing
    other = await api.post(f"{BASE}/invoices", headers=headers,
                           json={"title": "Potion", "amount": "2.00"})
    assert other.status == 422
    assert (await other.json())["error"]["code"] == "idempotency_key_reused"
    assert await invoice_count(engine, seller.user.id) == 1
    # keys are per seller
    someone = await make_seller()
    theirs = await api.post(f"{BASE}/invoices", json=body,
                            headers={**someone.auth, "Idempotency-Key": "order-17"})
    assert theirs.status == 201
    assert (await theirs.json())["id"] != (await first.json())["id"]


async def test_concurrent_requests_with_one_key_create_one_invoice(api, make_seller,
                                                                   engine) -> None:
    seller = await make_seller()
    headers = {**seller.auth, "Idempotency-Key": "burst"}
    responses = await asyncio.gather(*(
        api.post(f"{BASE}/invoices", headers=headers, json={"title": "T", "amount": "3.00"})
        for _ in range(8)
    ))
    ids = {(await r.json())["id"] for r in responses}
    assert [r.status for r in responses] == [201] * 8
    assert len(ids) == 1
    assert await invoice_count(engine, seller.user.id) == 1


@pytest.mark.parametrize(("body", "code"), [
    ({"title": "x", "amount": "abc"}, "invalid_request"),
    ({"title": "x", "amount": "-5"}, "invalid_request"),
    ({"title": "x", "amount": "1e9999"}, "invalid_request"),
    ({"title": "x", "amount": 5}, "invalid_request"),  # money is text, never a float
    ({"title": "x", "amount": "0"}, "invalid_amount"),
    ({"title": "x", "amount": "1.001"}, "invalid_amount"),  # LIQ has 2 decimals
    ({"title": "x", "amount": "99999999999999"}, "invalid_amount"),
    ({"title": "x", "amount": "9999999999999999", "currency": "TON"}, "invalid_amount"),
    ({"title": "   ", "amount": "1"}, "invalid_invoice"),
    ({"title": "x" * 129, "amount": "1"}, "invalid_request"),
    ({"title": "nul\x00", "amount": "1"}, "invalid_request"),
    ({"title": "x", "amount": "1", "currency": "USD"}, "invalid_request"),
    ({"title": "x", "amount": "1", "kind": "one_time", "max_uses": 3}, "invalid_invoice"),
    ({"title": "x", "amount": "1", "max_uses": "3"}, "invalid_request"),
    ({"title": "x", "amount": "1", "expires_in": 5}, "invalid_request"),
    ({"title": "x", "amount": "1", "callback_url": "ftp://x.example"}, "invalid_request"),
    ({"title": "x", "amount": "1", "surprise": True}, "invalid_request"),
    ({"amount": "1"}, "invalid_request"),
])
async def test_bad_invoice_is_refused_and_nothing_is_created(api, make_seller, engine,
                                                             body, code) -> None:
    seller = await make_seller()
    resp = await api.post(f"{BASE}/invoices", headers=seller.auth, json=body)
    assert resp.status == 422, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == code and error["message"]
    assert await invoice_count(engine, seller.user.id) == 0


@pytest.mark.parametrize("raw", [b"", b"{", b"[1, 2]", b"\xff\xfe", b'"text"'])
async def test_body_that_is_not_a_json_object(api, make_seller, raw: bytes) -> None:
    seller = await make_seller()
    resp = await api.post(f"{BASE}/invoices", data=raw,
                          headers={**seller.auth, "Content-Type": "application/json"})
    assert resp.status in (400, 422)
    assert (await resp.json())["error"]["code"] in ("invalid_json", "invalid_request")


async def test_bad_idempotency_key_is_refused(api, make_seller) -> None:
    seller = await make_seller()
    resp = await api.post(f"{BASE}/invoices", json={"title": "x", "amount": "1"},
                          headers={**seller.auth, "Idempotency-Key": "k" * 201})
    assert resp.status == 422


async def test_get_is_case_insensitive_and_private_to_the_seller(api, make_seller) -> None:
    seller, other = await make_seller(), await make_seller()
    created = await (await api.post(f"{BASE}/invoices", headers=seller.auth,
                                    json={"title": "Hat", "amount": "2"})).json()
    resp = await api.get(f"{BASE}/invoices/{created['id'].lower()}", headers=seller.auth)
    assert resp.status == 200 and (await resp.json())["id"] == created["id"]
    for path, who in ((created["id"], other), ("not-an-id", seller), ("0" * 13, seller)):
        resp = await api.get(f"{BASE}/invoices/{path}", headers=who.auth)
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "invoice_not_found"


async def test_list_filters_and_pages(api, make_seller, engine) -> None:
    seller = await make_seller()
    ids = []
    for n in range(5):
        body = await (await api.post(f"{BASE}/invoices", headers=seller.auth,
                                     json={"title": f"n{n}", "amount": "1"})).json()
        ids.append(body["id"])
    await api.post(f"{BASE}/invoices/{ids[0]}/cancel", headers=seller.auth)
    seen, cursor = [], None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = await (await api.get(f"{BASE}/invoices", headers=seller.auth,
                                    params=params)).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    cancelled = await (await api.get(f"{BASE}/invoices", headers=seller.auth,
                                     params={"status": "cancelled"})).json()
    assert [i["id"] for i in cancelled["items"]] == [ids[0]]
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    empty = await (await api.get(f"{BASE}/invoices", headers=seller.auth,
                                 params={"created_from": future})).json()
    assert empty == {"items": [], "next_cursor": None}
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    some = await (await api.get(f"{BASE}/invoices", headers=seller.auth,
                                params={"created_from": past, "created_to": future})).json()
    assert len(some["items"]) == 5


@pytest.mark.parametrize("params", [
    {"limit": "0"}, {"limit": "101"}, {"limit": "ten"}, {"limit": "5\n"}, {"status": "lost"},
    {"cursor": "abc"}, {"created_from": "yesterday"}, {"created_to": "2026-13-01T00:00:00Z"},
])
async def test_list_rejects_bad_query(api, make_seller, params) -> None:
    seller = await make_seller()
    resp = await api.get(f"{BASE}/invoices", headers=seller.auth, params=params)
    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "invalid_request"


async def test_cancel(api, make_seller, make_user, engine) -> None:
    seller, other = await make_seller(), await make_seller()
    inv = await (await api.post(f"{BASE}/invoices", headers=seller.auth,
                                json={"title": "x", "amount": "1"})).json()
    resp = await api.post(f"{BASE}/invoices/{inv['id']}/cancel", headers=other.auth)
    assert resp.status == 404  # someone else's invoice is not even there for them
    resp = await api.post(f"{BASE}/invoices/{inv['id']}/cancel", headers=seller.auth)
    assert resp.status == 200 and (await resp.json())["status"] == "cancelled"
    again = await api.post(f"{BASE}/invoices/{inv['id']}/cancel", headers=seller.auth)
    assert again.status == 200  # a no-op
    paid = await (await api.post(f"{BASE}/invoices", headers=seller.auth,
                                 json={"title": "y", "amount": "1"})).json()
    buyer = await make_user(balance=500)
    await pay_from_balance(engine, paid["id"], buyer.id, "k1")
    resp = await api.post(f"{BASE}/invoices/{paid['id']}/cancel", headers=seller.auth)
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "invoice_already_paid"


async def test_balance_and_stats(api, make_seller, make_user, engine) -> None:
    seller = await make_seller()
    buyer = await make_user(balance=10_000)
    made = []
    for amount in ("10.00", "2.50", "1.00"):
        made.append(await (await api.post(f"{BASE}/invoices", headers=seller.auth,
                                           json={"title": "x", "amount": amount})).json())
    await pay_from_balance(engine, made[0]["id"], buyer.id, "s1")
    await pay_from_balance(engine, made[1]["id"], buyer.id, "s2")
    balance = await (await api.get(f"{BASE}/balance", headers=seller.auth)).json()
    assert {"currency": "LIQ", "amount": "12.50", "amount_minor": 1250} in balance["balances"]
    stats = await (await api.get(f"{BASE}/stats", headers=seller.auth)).json()
    assert stats["created"] == 3 and stats["paid"] == 2
    assert stats["conversion"] == pytest.approx(0.6667)
    assert stats["by_status"] == {"pending": 1, "paid": 2, "cancelled": 0, "expired": 0}
    assert stats["volume"] == [{"currency": "LIQ", "amount": "12.50", "amount_minor": 1250,
                                "payments": 2}]
    old = await (await api.get(f"{BASE}/stats", headers=seller.auth, params={
        "from": "2020-01-01T00:00:00Z", "to": "2020-02-01T00:00:00Z"})).json()
    assert old["created"] == 0 and old["conversion"] == 0 and old["volume"] == []
    for params in ({"from": "2020-02-01T00:00:00Z", "to": "2020-01-01T00:00:00Z"},
                   {"to": "0001-01-02T00:00:00Z"}, {"from": "soon"}):
        resp = await api.get(f"{BASE}/stats", headers=seller.auth, params=params)
        assert resp.status == 422, params


async def test_me(api, make_seller) -> None:
    seller = await make_seller(username="shopkeeper")
    me = await (await api.get(f"{BASE}/me", headers=seller.auth)).json()
    assert me == {"seller": {"telegram_id": seller.user.telegram_id, "username": "shopkeeper"},
                  "token_id": seller.token_id}


async def test_unknown_route_and_method_answer_json(api, make_seller) -> None:
    seller = await make_seller()
    resp = await api.get(f"{BASE}/nothing-here", headers=seller.auth)
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    resp = await api.delete(f"{BASE}/invoices", headers=seller.auth)
    assert resp.status == 405 and "GET" in resp.headers["Allow"]
    assert (await resp.json())["error"]["code"] == "method_not_allowed"


async def test_refused_request_frees_its_idempotency_key(api, make_seller) -> None:
    seller = await make_seller()
    headers = {**seller.auth, "Idempotency-Key": "fix-and-retry"}
    bad = await api.post(f"{BASE}/invoices", headers=headers, json={"title": " ", "amount": "1"})
    assert bad.status == 422
    good = await api.post(f"{BASE}/invoices", headers=headers, json={"title": "ok", "amount": "1"})
    assert good.status == 201 and "Idempotent-Replayed" not in good.headers


async def test_key_claimed_by_a_request_that_died_is_completed(api, make_seller, engine) -> None:
    from bot.api.schemas import InvoiceCreate
    from ledger.ids import new_invoice_id

    seller = await make_seller()
    body = {"title": "Half done", "amount": "4.00"}
    claimed = new_invoice_id()  # the first request claimed this id, then its process died
    await run_sql(engine, "INSERT INTO api_idempotency (user_id, key, request_hash, public_id) "
                          "VALUES (:u, 'crashed', :h, :p)", u=seller.user.id,
                  h=InvoiceCreate.model_validate(body).fingerprint(), p=claimed)
    resp = await api.post(f"{BASE}/invoices", json=body,
                          headers={**seller.auth, "Idempotency-Key": "crashed"})
    assert resp.status == 201
    assert (await resp.json())["id"] == claimed
    assert await invoice_count(engine, seller.user.id) == 1


async def test_get_shows_each_change_of_state_at_once(api, make_seller, make_user,
                                                      engine) -> None:
    seller = await make_seller()
    body = {"title": "Pass", "amount": "1", "kind": "multi_use", "max_uses": 2}
    inv = await (await api.post(f"{BASE}/invoices", headers=seller.auth, json=body)).json()
    url = f"{BASE}/invoices/{inv['id']}"

    async def seen() -> tuple[str, int, str | None]:
        got = await (await api.get(url, headers=seller.auth)).json()
        return got["status"], got["uses"], got["paid_at"]

    assert await seen() == ("pending", 0, None)
    assert await seen() == ("pending", 0, None)  # asked again: same answer
    buyer = await make_user(balance=500)
    await pay_from_balance(engine, inv["id"], buyer.id, "first")
    assert await seen() == ("pending", 1, None)
    await pay_from_balance(engine, inv["id"], buyer.id, "second")
    status, uses, paid_at = await seen()
    assert (status, uses) == ("paid", 2) and paid_at is not None


async def test_titles_and_descriptions_cannot_spoof_what_buyers_see(api, make_seller,
                                                                     engine) -> None:
    seller = await make_seller()
    for invisible in ("\u200b\u200b", "\u202e\u2066", "\x01\x1f\x7f\x9f", "\u3164 \u2800"):
        resp = await api.post(f"{BASE}/invoices", headers=seller.auth,
                              json={"title": invisible, "amount": "1.00"})
        assert resp.status == 422, invisible
        assert "title is empty" in (await resp.json())["error"]["message"]
    assert await invoice_count(engine, seller.user.id) == 0

    resp = await api.post(f"{BASE}/invoices", headers=seller.auth, json={
        "title": "Invoice\u202e fdp.exe\u202c \u2067x\u2069\x1b[31m",
        "description": "Line one\u200f\x07\r\nLine two\u2028 \U0001f468\u200d\U0001f469",
        "amount": "1.00",
    })
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert body["title"] == "Invoice fdp.exe x[31m"
    # line breaks stay, controls and marks go; the emoji family keeps its joiner
    assert body["description"] == "Line one\nLine two \U0001f468\u200d\U0001f469"


async def test_an_expired_invoice_is_gone_for_the_api_as_for_the_pay_page(
    api, make_seller, engine
) -> None:
    """The same refusal gets the same status on every HTTP route (tests/test_errors.py): an
    expired invoice is 410 `invoice_expired` here, as paying it is on the pay page."""
    seller = await make_seller()
    inv = await (await api.post(f"{BASE}/invoices", headers=seller.auth,
                                json={"title": "x", "amount": "1"})).json()
    await run_sql(engine, "UPDATE invoices SET expires_at = now() - interval '1 minute' "
                          "WHERE public_id = :id", id=inv["id"])
    await expire_due_invoices(engine)  # the expiry job ran
    resp = await api.post(f"{BASE}/invoices/{inv['id']}/cancel", headers=seller.auth)
    assert resp.status == 410
    assert (await resp.json())["error"]["code"] == "invoice_expired"
    got = await (await api.get(f"{BASE}/invoices/{inv['id']}", headers=seller.auth)).json()
    assert got["status"] == "expired"  # the refused cancel changed nothing else


async def test_the_seller_gets_the_invoice_as_a_pdf(api, make_seller) -> None:
    from io import BytesIO

    from pypdf import PdfReader

    seller, other = await make_seller(), await make_seller()
    inv = await (await api.post(f"{BASE}/invoices", headers=seller.auth,
                                json={"title": "Magic sword", "amount": "12.50"})).json()
    resp = await api.get(f"{BASE}/invoices/{inv['id']}/pdf?lang=ru", headers=seller.auth)
    assert resp.status == 200 and resp.content_type == "application/pdf"
    text = PdfReader(BytesIO(await resp.read())).pages[0].extract_text()
    assert inv["number"] in text and "Magic sword" in text and "12.50 Liquid $" in text
    assert "Итого к оплате" in text and inv["pay_url"] in text
    # Another seller's invoice is not there for them; an unknown language is a clear 422.
    assert (await api.get(f"{BASE}/invoices/{inv['id']}/pdf", headers=other.auth)).status == 404
    bad = await api.get(f"{BASE}/invoices/{inv['id']}/pdf?lang=de", headers=seller.auth)
    assert bad.status == 422 and (await bad.json())["error"]["code"] == "invalid_request"
