"""Invoices as documents over the seller API: lines, discounts, taxes, drafts, the lifecycle
(finalize, send, void, uncollectible) and manual payments — and every bad input refused with
a clear 4xx and nothing changed (issue 12)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.api.conftest import deliver
from tests.conftest import run_sql
from watchers.callbacks import verify_signature

BASE = "/api/v1"
VAT = {"name": "VAT 20 %", "percent": "20", "inclusive": False}
DUE = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()


def document(**extra: Any) -> dict[str, Any]:
    """Two lines, a line discount, an invoice discount and a VAT rate (figures below)."""
    return {
        "lines": [
            {"description": "Design", "quantity": "1.5", "unit_price": "40.00",
             "tax_rate": "VAT 20 %"},
            {"description": "Hosting", "quantity": "1", "unit_price": "10.00",
             "discount": {"percent": "10"}},
        ],
        "discount": {"amount": "5.00"},
        "tax_rates": [VAT],
        "buyer": {"name": "Ann Lee", "company": "Lee & Co", "tax_id": "GB123",
                  "address": "1 High St\nLondon"},
        "memo": "Thank you!",
        "due_date": DUE,
        **extra,
    }


async def create(api, seller, body: dict[str, Any], status: int = 201) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    resp = await api.post(f"{BASE}/invoices", headers=seller.auth, json=body)
    assert resp.status == status, await resp.text()
    return await resp.json()


async def get(api, seller, invoice_id: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    resp = await api.get(f"{BASE}/invoices/{invoice_id}", headers=seller.auth)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def post(api, seller, path: str, body: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
    return await api.post(f"{BASE}/invoices/{path}", headers=seller.auth,
                          **({} if body is None else {"json": body}))


async def refused(resp, status: int, code: str) -> str:  # type: ignore[no-untyped-def]
    assert resp.status == status, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == code and error["message"]
    return str(error["message"])


async def invoice_count(engine, seller_id: int) -> int:  # type: ignore[no-untyped-def]
    rows = await run_sql(engine, "SELECT count(*) AS n FROM invoices WHERE seller_id = :s",
                         s=seller_id)
    return int(rows[0]["n"])


# --- lines, discounts, taxes ------------------------------------------------------------------

async def test_an_invoice_with_lines_answers_its_exact_figures(api, make_seller) -> None:
    seller = await make_seller()
    inv = await create(api, seller, document())
    # Design: 1.5 × 40.00 = 60.00; Hosting 10.00 − 10 % = 9.00. The 5.00 invoice discount is
    # shared 60:9 by largest remainder (4.35 and 0.65); VAT 20 % of 55.65 = 11.13.
    design, hosting = inv["lines"]
    assert design == {
        "description": "Design", "quantity": "1.5", "unit_price": "40.00",
        "unit_price_minor": 4000, "item_id": None, "tax_rate": "VAT 20 %", "discount": None,
        "amount": "60.00", "amount_minor": 6000, "discount_amount": "4.35",
        "discount_amount_minor": 435, "tax": "11.13", "tax_minor": 1113,
    }
    assert hosting["discount"] == {"percent": "10"}
    assert (hosting["amount_minor"], hosting["discount_amount_minor"]) == (1000, 165)
    assert inv["discount"] == {"amount": "5.00", "amount_minor": 500}
    assert inv["tax_rates"] == [VAT]
    assert inv["taxes"] == [{"name": "VAT 20 %", "percent": "20", "inclusive": False,
                             "base": "55.65", "base_minor": 5565,
                             "amount": "11.13", "amount_minor": 1113}]
    assert (inv["subtotal"], inv["discount_amount"], inv["tax"], inv["total"]) == (
        "70.00", "6.00", "11.13", "75.13")
    assert inv["total_minor"] == inv["amount_minor"] == 7513 and inv["amount"] == "75.13"
    assert (inv["amount_paid"], inv["amount_due"], inv["amount_due_minor"]) == (
        "0.00", "75.13", 7513)
    assert inv["title"] == "Design +1"  # named after its first line
    assert inv["status"] == "pending" and inv["number"] and inv["issued_at"]
    assert inv["due_at"] == f"{DUE}T23:59:59Z" and inv["overdue"] is False
    assert inv["buyer"] == {"name": "Ann Lee", "company": "Lee & Co", "tax_id": "GB123",
                            "address": "1 High St\nLondon"}
    assert inv["memo"] == "Thank you!" and inv["version"] == 1
    assert (inv["sent_at"], inv["viewed_at"]) == (None, None)
    assert await get(api, seller, inv["id"]) == inv  # the same body on every read


async def test_a_plain_invoice_reads_as_one_line(api, make_seller) -> None:
    seller = await make_seller()
    inv = await create(api, seller, {"title": "Magic sword", "amount": "12.50"})
    assert [(line["description"], line["quantity"], line["unit_price"], line["amount"])
            for line in inv["lines"]] == [("Magic sword", "1", "12.50", "12.50")]
    assert (inv["subtotal"], inv["total"], inv["tax"], inv["taxes"]) == (
        "12.50", "12.50", "0.00", [])
    assert inv["discount"] is None and inv["buyer"] is None and inv["due_at"] is None
    assert inv["amount_due_minor"] == 1250 and inv["overdue"] is False


@pytest.mark.parametrize(("change", "code", "says"), [
    ({"quantity": "0"}, "invalid_invoice", "greater than zero"),
    ({"quantity": "-1"}, "invalid_request", "3 decimal places"),
    ({"quantity": "1.2345"}, "invalid_request", "3 decimal places"),
    ({"quantity": 2}, "invalid_request", "quantity"),
    ({"discount": {"amount": "10.01"}}, "invalid_invoice", "larger than"),
    ({"discount": {"percent": "101"}}, "invalid_invoice", "discount"),
    ({"discount": {"percent": "5", "amount": "1"}}, "invalid_request", "discount"),
    ({"unit_price": "1.001"}, "invalid_invoice", "decimal places"),
    ({"tax_rate": "Sales tax"}, "invalid_invoice", "unknown tax rate"),
])
async def test_a_bad_line_is_refused_and_nothing_is_created(api, make_seller, engine,
                                                             change, code, says) -> None:
    seller = await make_seller()
    line = {"description": "Hosting", "quantity": "1", "unit_price": "10.00", **change}
    resp = await api.post(f"{BASE}/invoices", headers=seller.auth,
                          json={"lines": [line], "tax_rates": [VAT]})
    assert says in await refused(resp, 422, code)
    assert await invoice_count(engine, seller.user.id) == 0


@pytest.mark.parametrize(("body", "code", "says"), [
    (document(tax_rates=[{**VAT, "percent": "101"}]), "invalid_invoice", "between 0 and 100"),
    (document(tax_rates=[{**VAT, "percent": "-1"}]), "invalid_request", "percent"),
    (document(tax_rates=[]), "invalid_invoice", "unknown tax rate"),
    (document(discount={"amount": "70.00"}), "invalid_invoice", "larger than"),
    (document(amount="75.13"), "invalid_request", "amount"),
    (document(due_date="2027-02-30"), "invalid_request", "YYYY-MM-DD"),
    (document(due_date="2020-01-01"), "invalid_invoice", "in the past"),
    (document(due_at=f"{DUE}T12:00:00Z"), "invalid_request", "not both"),
    (document(lines=[]), "invalid_request", "lines"),
    ({"title": "x", "amount": "1", "discount": {"percent": "5"}}, "invalid_request", "lines"),
])
async def test_a_bad_document_is_refused_and_nothing_is_created(api, make_seller, engine,
                                                                 body, code, says) -> None:
    seller = await make_seller()
    resp = await api.post(f"{BASE}/invoices", headers=seller.auth, json=body)
    assert says in await refused(resp, 422, code)
    assert await invoice_count(engine, seller.user.id) == 0


# --- drafts -----------------------------------------------------------------------------------

async def test_a_draft_is_replaced_then_finalized_and_then_frozen(api, make_seller,
                                                                 make_user, engine) -> None:
    seller = await make_seller()
    draft = await create(api, seller, document(draft=True))
    assert draft["status"] == "draft" and draft["number"] is None
    assert draft["issued_at"] is None and draft["version"] == 1
    buyer = await make_user(balance=100_000)
    from ledger.errors import InvoiceDraft
    from ledger.payments import pay_from_balance
    with pytest.raises(InvoiceDraft):  # not payable until issued
        await pay_from_balance(engine, draft["id"], buyer.id, "too-early")

    body = {"lines": [{"description": "Logo", "quantity": "2", "unit_price": "15.00"}],
            "memo": "v2", "draft": True}
    resp = await api.put(f"{BASE}/invoices/{draft['id']}", headers=seller.auth, json=body)
    assert resp.status == 200, await resp.text()
    replaced = await resp.json()
    assert (replaced["id"], replaced["status"], replaced["version"]) == (draft["id"], "draft", 2)
    assert replaced["total"] == "30.00" and replaced["memo"] == "v2"
    assert [line["description"] for line in replaced["lines"]] == ["Logo"]
    # a bad replacement changes nothing
    bad = {**body, "lines": [{"description": "Logo", "quantity": "0", "unit_price": "1"}]}
    resp = await api.put(f"{BASE}/invoices/{draft['id']}", headers=seller.auth, json=bad)
    await refused(resp, 422, "invalid_invoice")
    assert await get(api, seller, draft["id"]) == replaced

    resp = await post(api, seller, f"{draft['id']}/finalize")
    assert resp.status == 200, await resp.text()
    issued = await resp.json()
    assert issued["status"] == "pending" and issued["number"] and issued["issued_at"]
    again = await post(api, seller, f"{draft['id']}/finalize")  # idempotent
    assert again.status == 200 and (await again.json())["number"] == issued["number"]

    resp = await api.put(f"{BASE}/invoices/{draft['id']}", headers=seller.auth, json=body)
    await refused(resp, 409, "invoice_not_draft")
    assert await get(api, seller, draft["id"]) == issued  # nothing changed


async def test_only_the_seller_reaches_the_lifecycle_routes(api, make_seller) -> None:
    seller, other = await make_seller(), await make_seller()
    draft = await create(api, seller, document(draft=True))
    payment = {"amount": "1.00", "received_on": "2026-11-20", "reference": "R"}
    for path, body in (("finalize", None), ("send", None), ("void", None),
                       ("uncollectible", None), ("payments", payment)):
        resp = await post(api, other, f"{draft['id']}/{path}", body)
        await refused(resp, 404, "invoice_not_found")
    resp = await api.put(f"{BASE}/invoices/{draft['id']}", headers=other.auth, json=document())
    await refused(resp, 404, "invoice_not_found")
    resp = await api.get(f"{BASE}/invoices/{draft['id']}/payments", headers=other.auth)
    await refused(resp, 404, "invoice_not_found")
    assert (await get(api, seller, draft["id"]))["status"] == "draft"


# --- send, void, uncollectible ----------------------------------------------------------------

async def test_send_to_a_telegram_user_or_as_a_link(api, make_seller, make_user) -> None:
    seller = await make_seller()
    buyer = await make_user(username="ann_lee")
    draft = await create(api, seller, document(draft=True))
    resp = await post(api, seller, f"{draft['id']}/send", {"username": "@Ann_Lee"})
    assert resp.status == 200, await resp.text()
    sent = await resp.json()
    assert sent["recipient"] == {"telegram_id": buyer.telegram_id, "username": "ann_lee"}
    assert sent["invoice"]["status"] == "pending"  # sending issues a draft
    assert sent["invoice"]["sent_at"] is not None
    assert sent["pay_url"] == sent["invoice"]["pay_url"]

    by_id = await post(api, seller, f"{draft['id']}/send", {"telegram_id": buyer.telegram_id})
    assert by_id.status == 200 and (await by_id.json())["recipient"]["username"] == "ann_lee"

    link = await post(api, seller, f"{draft['id']}/send")
    assert link.status == 200
    shared = await link.json()
    assert shared["recipient"] is None
    assert shared["bot_url"].endswith(f"?start=pay_{draft['id']}")
    assert shared["share_url"].startswith("https://t.me/share/url?url=")

    unknown = await post(api, seller, f"{draft['id']}/send", {"username": "nobody_here"})
    await refused(unknown, 404, "recipient_not_found")
    both = await post(api, seller, f"{draft['id']}/send",
                      {"username": "ann_lee", "telegram_id": buyer.telegram_id})
    await refused(both, 422, "invalid_request")


async def test_void_and_uncollectible(api, make_seller, engine) -> None:
    seller = await make_seller()
    inv = await create(api, seller, {"title": "Consulting", "amount": "100.00"})
    resp = await post(api, seller, f"{inv['id']}/void", {"reason": "wrong client"})
    assert resp.status == 200, await resp.text()
    voided = await resp.json()
    assert voided["status"] == "void" and voided["amount_due"] == "100.00"
    again = await post(api, seller, f"{inv['id']}/void")  # no body, again: a no-op
    assert again.status == 200 and (await again.json())["status"] == "void"
    # nothing can be recorded on a void invoice
    pay = await post(api, seller, f"{inv['id']}/payments", {
        "amount": "10.00", "received_on": "2026-11-20", "reference": "BANK-1"})
    await refused(pay, 410, "invoice_void")
    assert await get(api, seller, inv["id"]) == voided
    listed = await (await api.get(f"{BASE}/invoices", headers=seller.auth,
                                  params={"status": "void"})).json()
    assert [i["id"] for i in listed["items"]] == [inv["id"]]

    other = await create(api, seller, {"title": "Old debt", "amount": "50.00"})
    resp = await post(api, seller, f"{other['id']}/uncollectible", {"reason": "gone"})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["status"] == "uncollectible"
    listed = await (await api.get(f"{BASE}/invoices", headers=seller.auth,
                                  params={"status": "uncollectible"})).json()
    assert [i["id"] for i in listed["items"]] == [other["id"]]


# --- manual payments --------------------------------------------------------------------------

async def test_manual_payments_partial_replayed_refused_reversed(api, make_seller,
                                                                  engine) -> None:
    seller = await make_seller()
    inv = await create(api, seller, {"title": "Consulting", "amount": "100.00"})
    first = {"amount": "40.00", "received_on": "2026-11-20", "reference": "BANK-1",
             "note": "first half"}
    resp = await post(api, seller, f"{inv['id']}/payments", first)
    assert resp.status == 201, await resp.text()
    made = await resp.json()
    assert made["payment"]["reference"] == "BANK-1" and made["payment"]["amount"] == "40.00"
    assert made["invoice"]["status"] == "pending"
    assert (made["invoice"]["amount_paid"], made["invoice"]["amount_due"]) == ("40.00", "60.00")
    # a wallet is asked for what is still due: the same share of the locked TON quote
    quote = made["invoice"]["ton_amount_nano"]
    assert quote and made["invoice"]["ton_due_nano"] == -(-quote * 60 // 100)

    replay = await post(api, seller, f"{inv['id']}/payments", first)
    assert replay.status == 200
    assert (await replay.json())["payment"]["id"] == made["payment"]["id"]

    state = await get(api, seller, inv["id"])
    reused = await post(api, seller, f"{inv['id']}/payments", {**first, "amount": "41.00"})
    await refused(reused, 409, "reference_reused")
    too_much = await post(api, seller, f"{inv['id']}/payments",
                          {**first, "reference": "BANK-2", "amount": "60.01"})
    await refused(too_much, 409, "manual_payment_too_large")
    for bad in ({**first, "amount": "0"}, {**first, "amount": "1.001"},
                {**first, "received_on": "20.11.2026"}, {**first, "reference": ""},
                {k: v for k, v in first.items() if k != "reference"}):
        resp = await post(api, seller, f"{inv['id']}/payments", bad)
        assert resp.status == 422, bad
    assert await get(api, seller, inv["id"]) == state  # none of that changed anything

    rest = await post(api, seller, f"{inv['id']}/payments",
                      {"amount": "60.00", "received_on": "2026-11-21", "reference": "BANK-2"})
    assert rest.status == 201
    paid = (await rest.json())["invoice"]
    assert paid["status"] == "paid" and paid["amount_due"] == "0.00"

    listed = await api.get(f"{BASE}/invoices/{inv['id']}/payments", headers=seller.auth)
    assert listed.status == 200
    items = (await listed.json())["items"]
    assert [(p["method"], p["amount"], p["reference"], p["received_on"], p["reversed"])
            for p in items] == [("manual", "40.00", "BANK-1", "2026-11-20", False),
                                ("manual", "60.00", "BANK-2", "2026-11-21", False)]
    assert items[0]["note"] == "first half"

    second = items[1]["id"]
    resp = await post(api, seller, f"{inv['id']}/payments/{second}/reverse",
                      {"reason": "the transfer bounced"})
    assert resp.status == 200, await resp.text()
    reopened = await resp.json()
    assert reopened["status"] == "pending" and reopened["amount_due"] == "60.00"
    again = await post(api, seller, f"{inv['id']}/payments/{second}/reverse",
                       {"reason": "the transfer bounced"})
    assert again.status == 200 and (await again.json())["amount_due"] == "60.00"
    items = (await (await api.get(f"{BASE}/invoices/{inv['id']}/payments",
                                  headers=seller.auth)).json())["items"]
    assert [p["reversed"] for p in items] == [False, True]
    assert items[1]["reversal_reason"] == "the transfer bounced"

    no_reason = await post(api, seller, f"{inv['id']}/payments/{items[0]['id']}/reverse", {})
    await refused(no_reason, 422, "invalid_request")
    for missing in ("999999999", "x1"):
        resp = await post(api, seller, f"{inv['id']}/payments/{missing}/reverse",
                          {"reason": "r"})
        await refused(resp, 404, "payment_not_found")
    # a payment of another invoice is not found under this one
    other = await create(api, seller, {"title": "Other", "amount": "5.00"})
    resp = await post(api, seller, f"{other['id']}/payments/{items[0]['id']}/reverse",
                      {"reason": "r"})
    await refused(resp, 404, "payment_not_found")
    assert (await get(api, seller, inv["id"]))["amount_paid"] == "40.00"


# --- callbacks --------------------------------------------------------------------------------

async def test_document_events_are_signed_callbacks(api, make_seller, engine, receiver,
                                                    sender) -> None:
    seller = await make_seller()
    inv = await create(api, seller, {"title": "Consulting", "amount": "100.00",
                                     "callback_url": receiver.url})
    resp = await post(api, seller, f"{inv['id']}/payments",
                      {"amount": "40.00", "received_on": "2026-11-20", "reference": "BANK-1"})
    payment = (await resp.json())["payment"]
    await post(api, seller, f"{inv['id']}/payments/{payment['id']}/reverse", {"reason": "oops"})
    await post(api, seller, f"{inv['id']}/void", {"reason": "wrong client"})
    await deliver(engine, sender)
    secret = (await (await api.get(f"{BASE}/webhook", headers=seller.auth)).json())["secret"]
    events = {}
    for got in receiver.received:
        verify_signature(secret, got.body, got.headers["X-Paybot-Timestamp"],
                         got.headers["X-Paybot-Signature"])
        event = json.loads(got.body)
        events[event["type"]] = event
    assert set(events) == {"invoice_payment_recorded", "invoice_payment_reversed",
                           "invoice_voided"}
    recorded = events["invoice_payment_recorded"]
    assert recorded["payment"] == {"id": payment["id"], "amount": "40.00", "amount_minor": 4000,
                                   "reference": "BANK-1"}
    assert recorded["invoice"]["id"] == inv["id"]
    reversed_ = events["invoice_payment_reversed"]
    assert reversed_["payment"]["id"] == payment["id"] and reversed_["reason"] == "oops"
    assert events["invoice_voided"]["invoice"]["status"] == "void"
    assert events["invoice_voided"]["reason"] == "wrong client"


async def test_sent_viewed_and_written_off_are_signed_callbacks(api, make_seller, engine,
                                                                receiver, sender) -> None:
    from ledger.core import Ledger

    seller = await make_seller()
    inv = await create(api, seller, {"title": "Consulting", "amount": "100.00",
                                     "callback_url": receiver.url})
    assert (await post(api, seller, f"{inv['id']}/send")).status == 200  # as a link
    assert await Ledger(engine).mark_viewed(inv["id"], None)  # a guest opened the page
    await post(api, seller, f"{inv['id']}/uncollectible", {"reason": "the client is gone"})
    await deliver(engine, sender)
    events = {e["type"]: e for e in (json.loads(got.body) for got in receiver.received)}
    assert set(events) == {"invoice_sent", "invoice_viewed", "invoice_uncollectible"}
    assert events["invoice_sent"]["channel"] == "link"
    assert events["invoice_viewed"]["invoice"]["viewed_at"] is not None
    written_off = events["invoice_uncollectible"]
    assert written_off["reason"] == "the client is gone"
    assert written_off["invoice"]["status"] == "uncollectible"
    assert written_off["invoice"]["amount_due"] == "100.00"
