"""The seller API says who paid (`paid_by`), to the invoice's seller only."""

from __future__ import annotations

from ledger.payments import pay_from_balance, settle_external_payment
from tests.conftest import legacy_contact

BASE = "/api/v1"


async def _issue(api, seller) -> str:  # type: ignore[no-untyped-def]
    resp = await api.post(f"{BASE}/invoices", headers=seller.auth,
                          json={"title": "Coffee beans", "amount": "12.50"})
    assert resp.status == 201
    body = await resp.json()
    assert body["paid_by"] is None  # nobody yet
    return str(body["id"])


async def test_paid_by_a_telegram_user(api, engine, make_seller, make_user) -> None:
    seller = await make_seller()
    buyer = await make_user(balance=5000, first_name="Alice", last_name="Smith")
    public_id = await _issue(api, seller)
    await pay_from_balance(engine, public_id, buyer.id, "k-api-paid-by")
    got = await (await api.get(f"{BASE}/invoices/{public_id}", headers=seller.auth)).json()
    assert got["paid_by"] == {"telegram_id": buyer.telegram_id, "username": None,
                              "name": "Alice Smith", "contact": None}
    listed = await (await api.get(f"{BASE}/invoices", headers=seller.auth)).json()
    assert [i["paid_by"] for i in listed["items"] if i["id"] == public_id] == [got["paid_by"]]

    other = await make_seller()  # another seller learns nothing, not even that it exists
    resp = await api.get(f"{BASE}/invoices/{public_id}", headers=other.auth)
    assert resp.status == 404


async def test_paid_by_a_guest_contact(api, engine, make_seller) -> None:
    seller = await make_seller()
    public_id = await _issue(api, seller)
    await legacy_contact(engine, public_id, telegram="@guest_handle")
    await settle_external_payment(engine, public_id, method="ton", reference=f"tx-{public_id}")
    got = await (await api.get(f"{BASE}/invoices/{public_id}", headers=seller.auth)).json()
    assert got["paid_by"] == {"telegram_id": None, "username": None, "name": None,
                              "contact": "@guest_handle"}
