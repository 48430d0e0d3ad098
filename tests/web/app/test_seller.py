"""The seller's tab of the Mini App (/app/api/seller/…): the period's figures after real
payments and a reversal, charts drawn in the page's colours and language, the invoice list
with filters, search and pages, and exports through short-lived signed links — each refusal
one sentence in the viewer's language, a buyer refused outright."""

from __future__ import annotations

import csv
import io
import time
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from babel.dates import format_date

from bot.web.app.seller import ExportLinks
from ledger.core import Ledger
from ledger.invoices import new_invoice
from ledger.reports import PAYMENT_COLUMNS
from tests.conftest import run_sql
from tests.web.conftest import sign_init_data, tg_user, tma

TODAY = datetime.now(UTC).date()


async def _get(client: Any, user: Any, path: str, lang: str = "en", **query: str) -> Any:
    """As the page asks (app.js): init data in the header, its language in ?lang=."""
    return await client.get(path, headers=tma(sign_init_data(tg_user(user, lang))),
                            params={**query, "lang": lang})


async def _issue(ledger: Ledger, seller: Any, amount: int, title: str = "Audit",
                 **kw: Any) -> Any:
    invoice, _ = await ledger.issue_invoice(
        new_invoice(seller_id=seller.id, amount=amount, title=title, **kw))
    return invoice


@pytest.fixture
async def shop(ledger, make_user):  # type: ignore[no-untyped-def]
    """A seller with a payment from the balance, a kept manual payment and a reversed one,
    and an open invoice: 25.00 + 40.00 received, 60.00 + 7.00 still due."""
    seller = await make_user(username="shop_owner")
    buyer = await make_user(balance=50_000, username="alice_buys")
    by_balance = await _issue(ledger, seller, 2_500, "Coffee beans")
    await ledger.pay_from_balance(by_balance.public_id, buyer.id, "k1")
    by_bank = await _issue(ledger, seller, 10_000, "Consulting")
    await ledger.record_manual_payment(by_bank.public_id, seller_id=seller.id, amount=4_000,
                                       received_on=TODAY, reference="B-1")
    undone = await ledger.record_manual_payment(by_bank.public_id, seller_id=seller.id,
                                                amount=6_000, received_on=TODAY,
                                                reference="B-2")
    await ledger.reverse_manual_payment(undone.payment_id, seller_id=seller.id,
                                        reason="bounced")
    await _issue(ledger, seller, 700, "Tea", due_at=datetime.now(UTC) + timedelta(days=3))
    return seller, buyer


async def test_figures_follow_the_payments_and_the_reversal(client, shop) -> None:
    seller, _buyer = shop
    r = await _get(client, seller, "/app/api/seller/dashboard")
    assert r.status == 200
    d = await r.json()
    money = [(a["currency"], a["amount"], a["amount_minor"]) for a in d["revenue"]]
    assert money == [("LIQ", "65.00 Liquid $", 6_500)]  # 25.00 + 40.00; the 60.00 reversed
    assert [a["amount_minor"] for a in d["this_month"]["amounts"]] == [6_500]
    # Every month of the last twelve, the empty ones too, this month last.
    assert len(d["months"]) == 12 and d["months"][-1]["month"] == TODAY.strftime("%Y-%m")
    assert [m["amounts"][0]["amount_minor"] for m in d["months"]] == [0] * 11 + [6_500]
    assert [(m["name"], m["amount"]) for m in d["methods"]] == [
        ("Manual", "40.00 Liquid $"), ("Liquid $ balance", "25.00 Liquid $")]
    out = d["outstanding"]
    assert [(s["amount"], s["invoices"]) for s in out["open"]] == [("67.00 Liquid $", 2)]
    assert (out["open_count"], out["overdue_count"], out["overdue"]) == (2, 0, [])
    assert d["conversion"] == {"issued": 3, "paid": 1, "rate": 0.3333, "percent": "33%"}
    assert [(i["item"], i["amount_minor"]) for i in d["top_items"]] == [
        ("Consulting", 4_000), ("Coffee beans", 2_500)]
    assert d["subscriptions"] == []  # no subscriptions: no MRR, no churn
    assert d["charts"]["revenue"]["url"].startswith("/app/api/seller/charts/revenue.svg?")
    assert "65.00 Liquid $" in d["charts"]["revenue"]["alt"]
    assert "Manual: 40.00 Liquid $" in d["charts"]["methods"]["alt"]

    ru = await (await _get(client, seller, "/app/api/seller/dashboard", "ru")).json()
    assert [m["name"] for m in ru["methods"]] == ["Вручную", "Баланс Liquid $"]


async def test_mrr_and_churn_appear_once_there_are_subscriptions(client, ledger,
                                                                 make_user) -> None:
    seller = await make_user(username="club_owner")
    plan = await ledger.create_plan(seller.id, "Club", {1: 900, 3: 2_400})
    for i, months in enumerate([1, 3]):
        buyer = await make_user(balance=10_000)
        sub = await ledger.subscribe(plan.public_id, buyer.id, months)
        await ledger.pay_from_balance(sub.invoice, buyer.id, f"sub-{i}")
    d = await (await _get(client, seller, "/app/api/seller/dashboard", "ru")).json()
    [summary] = d["subscriptions"]
    # 9.00 a month, and 24.00 for three months = 8.00 a month.
    assert summary["mrr"] == {"currency": "LIQ", "amount": "17.00 Liquid $", "value": "17.00",
                              "amount_minor": 1_700}
    assert (summary["active"], summary["churned"], summary["churn_percent"]) == (2, 0, "0%")


async def test_a_buyer_is_refused_with_a_sentence(client, make_user, shop) -> None:
    buyer = await make_user(username="only_buys")
    for path in ("/app/api/seller/dashboard", "/app/api/seller/invoices",
                 "/app/api/seller/charts/revenue.svg", "/app/api/seller/charts/methods.svg"):
        r = await _get(client, buyer, path)
        body = await r.json()
        assert (r.status, body["error"]["code"]) == (403, "not_a_seller"), path
        assert "/invoice" in body["error"]["message"]
    r = await client.post("/app/api/seller/exports", headers=tma(sign_init_data(tg_user(buyer))),
                          json={"kind": "payments", "format": "csv"})
    assert r.status == 403


@pytest.mark.parametrize("query, code", [
    ({"from": "2026-05-01", "to": "2026-04-30"}, "period_upside_down"),
    ({"from": "2019-01-01", "to": "2026-01-01"}, "period_too_long"),
    ({"from": "2026-13-01"}, "bad_date"),
    ({"to": "yesterday"}, "bad_date"),
    ({"from": "2026-01-01", "sort": "amount"}, "unknown_parameter"),
])
async def test_a_bad_period_is_422_with_a_sentence(client, shop, query, code) -> None:
    seller, _ = shop
    for path in ("/app/api/seller/dashboard", "/app/api/seller/charts/revenue.svg"):
        r = await _get(client, seller, path, "ru", **query)
        body = await r.json()
        assert (r.status, body["error"]["code"]) == (422, code), path
        assert body["error"]["message"].endswith(".") and any(
            "а" <= ch <= "я" for ch in body["error"]["message"].lower())  # in Russian


async def test_a_repeated_date_is_refused(client, shop) -> None:
    seller, _ = shop
    r = await client.get("/app/api/seller/dashboard?from=2026-01-01&from=2026-02-01",
                         headers=tma(sign_init_data(tg_user(seller))))
    assert r.status == 422 and (await r.json())["error"]["code"] == "repeated_parameter"


def _svg(body: bytes) -> ET.Element:
    return ET.fromstring(body)  # raises on anything that is not well-formed XML


async def test_revenue_chart_is_svg_in_the_pages_colours_and_language(client, shop) -> None:
    seller, _ = shop
    colours = {"bg": "#17212B", "text": "#f5f5f5", "hint": "#708499", "accent": "#5288c1"}
    r = await _get(client, seller, "/app/api/seller/charts/revenue.svg", "ru", **colours)
    assert r.status == 200 and r.content_type == "image/svg+xml"
    body = await r.read()
    root = _svg(body)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    text = body.decode()
    # Russian month names (the glyphs are outlines; the words stay beside them), this month's.
    this_month = format_date(TODAY, "LLLL", locale="ru")[:3]
    assert f"<!-- {this_month} -->" in text
    assert "Выручка по месяцам" in text and "65.00" in text  # title and the figures in <desc>
    assert "#17212b" in text and "#5288c1" in text  # the page's background and accent
    light = await (await _get(client, seller, "/app/api/seller/charts/revenue.svg")).read()
    assert "#17212b" not in light.decode() and "#ffffff" in light.decode()

    methods = await _get(client, seller, "/app/api/seller/charts/methods.svg", "ru", **colours)
    assert methods.status == 200
    m = (await methods.read()).decode()
    _svg(m.encode())
    assert "<!-- Вручную -->" in m and "Баланс Liquid $" in m


@pytest.mark.parametrize("colour", ["red", "#fff", "#12345g", "url(#x)", "#1234567"])
async def test_a_colour_not_written_as_rrggbb_is_refused(client, shop, colour) -> None:
    seller, _ = shop
    r = await _get(client, seller, "/app/api/seller/charts/revenue.svg", accent=colour)
    body = await r.json()
    assert (r.status, body["error"]["code"]) == (422, "bad_colour")
    assert "#rrggbb" in body["error"]["message"]


async def _list(client: Any, seller: Any, **query: str) -> tuple[int, dict[str, Any]]:
    r = await _get(client, seller, "/app/api/seller/invoices", **query)
    return r.status, await r.json()


async def test_invoices_filtered_searched_and_paged(client, ledger, make_user, engine) -> None:
    seller = await make_user(username="lister")
    bob = await make_user(username="Bob_Buyer")
    other = await make_user(username="other_seller")
    cotton = await _issue(ledger, seller, 1_000, "100% cotton")
    plain = await _issue(ledger, seller, 1_000, "100 cotton")
    snake = await _issue(ledger, seller, 1_000, "snake_case")
    await _issue(ledger, seller, 1_000, "snakeXcase")
    late = await _issue(ledger, seller, 2_000, "Late one",
                        due_at=datetime.now(UTC) + timedelta(days=2))
    await run_sql(engine, "UPDATE invoices SET due_at = now() - interval '1 day', sent_to = :b"
                  " WHERE id = :id", b=bob.id, id=late.id)
    paid = await ledger.record_manual_payment(plain.public_id, seller_id=seller.id,
                                              amount=1_000, received_on=TODAY, reference="P")
    assert paid.invoice.status == "paid"
    await _issue(ledger, other, 1_000, "100% cotton")

    status, page = await _list(client, seller)
    rows = page["invoices"]
    assert status == 200 and len(rows) == 5 and page["next_cursor"] is None
    assert rows[0]["id"] == late.public_id  # newest first
    assert rows[0] == {**rows[0], "buyer": "@Bob_Buyer", "overdue": True, "status": "pending",
                       "amount": "20.00 Liquid $", "amount_due": "20.00 Liquid $",
                       "url": f"/pay/{late.public_id}"}

    async def ids(**q: str) -> list[str]:
        status, page = await _list(client, seller, **q)
        assert status == 200, page
        return [i["id"] for i in page["invoices"]]

    assert await ids(status="paid") == [plain.public_id]
    assert await ids(overdue="1") == [late.public_id]
    assert await ids(q="100%") == [cotton.public_id]  # % is a character, not a wildcard
    assert await ids(q="snake_") == [snake.public_id]  # so is _
    assert await ids(q="COTTON") == [plain.public_id, cotton.public_id]
    assert await ids(q="@bob_b") == [late.public_id]
    assert await ids(q=cotton.number) == [cotton.public_id]
    assert await ids(q=f"INV-{snake.public_id}") == [snake.public_id]
    assert await ids(q="nothing like it") == []

    # Pages of two: every invoice once, in order, then the end.
    seen: list[str] = []
    cursor: str | None = None
    while True:
        q = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        status, page = await _list(client, seller, **q)
        seen += [i["id"] for i in page["invoices"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [i["id"] for i in rows]

    # Another seller's cursor is not a cursor here.
    _, theirs = await _list(client, other)
    status, body = await _list(client, seller, cursor=theirs["invoices"][0]["id"])
    assert (status, body["error"]["code"]) == (422, "invalid_cursor")


@pytest.mark.parametrize("query, code", [
    ({"status": "lost"}, "bad_status"),
    ({"overdue": "yes"}, "bad_overdue"),
    ({"q": "x" * 101}, "query_too_long"),
    ({"cursor": "not-a-cursor"}, "invalid_cursor"),
    ({"limit": "51"}, "bad_limit"),
    ({"limit": "0"}, "bad_limit"),
    ({"sort": "amount"}, "unknown_parameter"),
])
async def test_bad_list_parameters_are_422(client, shop, query, code) -> None:
    seller, _ = shop
    status, body = await _list(client, seller, **query)
    assert (status, body["error"]["code"]) == (422, code)
    assert body["error"]["message"]


async def _export_link(client: Any, seller: Any, **body: str) -> dict[str, str]:
    r = await client.post("/app/api/seller/exports",
                          headers=tma(sign_init_data(tg_user(seller))), json=body)
    assert r.status == 200, await r.text()
    return await r.json()


async def test_a_signed_link_streams_the_export(client, shop) -> None:
    seller, _ = shop
    link = await _export_link(client, seller, kind="payments", format="csv",
                              **{"from": TODAY.isoformat(), "to": TODAY.isoformat()})
    assert link["file_name"] == f"payments-{TODAY}-{TODAY}.csv"
    r = await client.get(link["url"])  # no init data: the link is the proof
    assert r.status == 200 and r.content_type == "text/csv"
    rows = list(csv.reader(io.StringIO((await r.read()).decode("utf-8-sig"))))
    assert tuple(rows[0]) == PAYMENT_COLUMNS and len(rows) == 4  # three payments

    xlsx = await _export_link(client, seller, kind="invoices", format="xlsx")
    r = await client.get(xlsx["url"])
    assert r.status == 200 and (await r.read())[:2] == b"PK"


async def test_an_empty_period_is_the_header_row(client, shop) -> None:
    seller, _ = shop
    link = await _export_link(client, seller, kind="payments", format="csv",
                              **{"from": "2020-01-01", "to": "2020-01-31"})
    r = await client.get(link["url"])
    text = (await r.read()).decode("utf-8-sig")
    assert r.status == 200 and text.strip() == ",".join(PAYMENT_COLUMNS)


def _with(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return f"{parts.path}?{urlencode(query)}"


async def test_a_tampered_expired_or_borrowed_link_is_403(client, shop, make_user,
                                                          ledger) -> None:
    seller, _ = shop
    other = await make_user(username="other_shop")
    await _issue(ledger, other, 500)
    link = (await _export_link(client, seller, kind="payments", format="csv"))["url"]
    query = dict(parse_qsl(urlsplit(link).query))
    theirs = (await _export_link(client, other, kind="payments", format="csv"))["url"]
    forged = [
        _with(link, sig="0" * 64),
        _with(link, sig=query["sig"][:-1] + ("0" if query["sig"][-1] != "0" else "1")),
        _with(link, seller=str(other.id)),  # my link for another seller's payments
        _with(theirs, seller=str(seller.id)),  # their link for mine
        _with(link, **{"from": "2000-01-01"}),  # another period
        _with(link, exp=str(int(query["exp"]) + 3600)),  # a longer life
        link.replace("/payments.csv", "/invoices.csv"),  # another kind
        _with(link, extra="1"),
    ]
    for url in forged:
        r = await client.get(url)
        assert r.status == 403, url
        assert "export" in (await r.text())
    # Signed by us, but ten minutes are over.
    links = ExportLinks(b"test-cookie-secret")
    old = links.url(seller.id, "payments", "csv", TODAY, TODAY, "ru", now=time.time() - 601)
    r = await client.get(old)
    assert r.status == 403 and "истёк" in await r.text()
    fresh = links.url(seller.id, "payments", "csv", TODAY, TODAY, "en")
    assert (await client.get(fresh)).status == 200


@pytest.mark.parametrize("body", [
    {"kind": "refunds", "format": "csv"},
    {"kind": "payments", "format": "pdf"},
    {"kind": "payments", "format": "csv", "seller": 1},
    {"kind": "payments", "format": "csv", "from": "2026-02-01", "to": "2026-01-01"},
    {"kind": "payments", "format": "csv", "from": 20260101},
])
async def test_a_bad_export_request_is_422(client, shop, body) -> None:
    seller, _ = shop
    r = await client.post("/app/api/seller/exports",
                          headers=tma(sign_init_data(tg_user(seller))), json=body)
    assert r.status == 422 and (await r.json())["error"]["message"]


def test_months_of_a_period_include_the_empty_ones() -> None:
    from bot.web.app.seller import _months
    assert _months(date(2025, 11, 15), date(2026, 2, 1)) == [
        date(2025, 11, 1), date(2025, 12, 1), date(2026, 1, 1), date(2026, 2, 1)]
