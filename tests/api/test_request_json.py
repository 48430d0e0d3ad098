"""The seller API reads a request body as JSON text of Unicode: what is not is a 400."""

from __future__ import annotations

from tests.api.test_invoices_api import BASE, invoice_count


async def test_a_lone_surrogate_escape_is_invalid_json_and_creates_nothing(
    api, make_seller, engine
) -> None:
    """`"\\ud800"` names half a character: no text can hold it, so the body is not JSON a
    client meant (400 `invalid_json`, as for bad UTF-8), not a schema mismatch."""
    seller = await make_seller()
    resp = await api.post(f"{BASE}/invoices", data=b'{"title": "\\ud800", "amount": "1"}',
                          headers={**seller.auth, "Content-Type": "application/json"})
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"]["code"] == "invalid_json"
    assert await invoice_count(engine, seller.user.id) == 0


async def test_non_ascii_text_comes_back_as_sent(api, make_seller) -> None:
    seller = await make_seller()
    title = "Café ☕ \U0001f468\u200d\U0001f469 مرحبا"
    resp = await api.post(f"{BASE}/invoices", headers=seller.auth,
                          json={"title": title, "amount": "1"})
    assert resp.status == 201
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.headers["Cache-Control"] == "no-store"
    assert (await resp.json())["title"] == title
