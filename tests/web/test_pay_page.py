"""GET /pay/<id>: the page for every invoice state, languages, escaping, the guest cookie."""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.web import setup_pay_pages
from ledger.core import Ledger
from ledger.errors import InvoiceNotFound
from ledger.invoice_reads import InvoiceReader, RecentInvoices
from ledger.invoices import cancel_invoice, expire_due_invoices
from ledger.payments import pay_from_balance
from tests.conftest import run_sql
from tests.web.conftest import BOT_USERNAME, DEST, make_settings, sign_init_data, tg_user, tma


def page_data(body: str) -> dict:
    match = re.search(r'<script type="application/json" id="pay-data">(.*?)</script>', body, re.S)
    assert match, "the page carries its data for the script"
    return json.loads(match.group(1))


async def test_pending_invoice_page_shows_everything_a_guest_needs(client, make_invoice):
    invoice = await make_invoice()
    # The shared page writes nothing (a crawler or a link preview costs no row); its script's
    # first status call gives the browser its tag and the invoice-bound cookie.
    shared = await client.get(f"/pay/{invoice.public_id}")
    assert shared.status == 200 and "pb_guest" not in shared.cookies
    assert page_data(await shared.text())["payer"] is None
    first = await client.get(f"/pay/{invoice.public_id}/status", params={"guest": "new"})
    cookie = first.cookies["pb_guest"]
    assert (await first.json())["payer"]["tag"]
    resp = await client.get(f"/pay/{invoice.public_id}",
                            cookies={"pb_guest": cookie.value})  # the reload sends it
    assert resp.status == 200
    assert resp.content_type == "text/html"
    body = await resp.text()
    assert "Coffee beans" in body
    assert '<div class="amount-main" id="amount">12.50 Liquid $</div>' in body
    assert "2.5 TON" in body  # the locked TON quote (2_500_000_000 nanotons at 5 LIQ/TON)
    assert "Awaiting payment" in body and 'data-status="pending"' in body
    assert "@coffee_shop" in body
    data = page_data(body)
    tag = data["payer"]["tag"]  # this browser's own payer tag (tests/web/test_guest_claims.py)
    assert f'<code id="comment">INV-{invoice.public_id}-{tag}</code>' in body
    assert f'src="/pay/{invoice.public_id}/qr.svg?tag={tag}"' in body
    assert html.escape(f"https://t.me/{BOT_USERNAME}?start=pay_{invoice.public_id}") in body
    assert DEST["non_bounceable"] in body  # the receiving address, friendly form
    assert html.escape(f"ton://transfer/{DEST['non_bounceable']}?amount=2500000000"
                       f"&text=INV-{invoice.public_id}-{tag}") in body
    assert "app.tonkeeper.com/transfer/" in body
    assert data["invoice"]["ton"]["minor"] == 2_500_000_000
    assert data["invoice"]["amount"]["minor"] == 1250
    assert data["claim"] is None
    # A guest browser gets the invoice-bound cookie holding its secret key and tag.
    assert cookie["path"] == f"/pay/{invoice.public_id}"
    assert cookie["httponly"] and cookie["secure"]
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert "telegram.org" not in body.split("<script", 1)[0]  # nothing external in <head>


async def test_paid_invoice_page(client, make_invoice, make_user, engine):
    invoice = await make_invoice()
    buyer = await make_user(balance=5000)
    await pay_from_balance(engine, invoice.public_id, buyer.id, "k1")
    resp = await client.get(f"/pay/{invoice.public_id}")
    assert resp.status == 200
    body = await resp.text()
    assert 'data-status="paid"' in body and ">Paid<" in body
    assert '<section id="ton" class="ton" hidden>' in body  # nothing left to pay
    assert "pb_guest" not in resp.cookies


async def test_cancelled_invoice_gets_a_clear_410_page(client, make_invoice, engine):
    invoice = await make_invoice()
    await cancel_invoice(engine, invoice.public_id, invoice.seller_id)
    resp = await client.get(f"/pay/{invoice.public_id}")
    assert resp.status == 410
    body = await resp.text()
    assert "Coffee beans" in body and "The seller cancelled this invoice" in body
    assert "Traceback" not in body


async def test_expired_invoice_gets_a_clear_410_page(client, make_invoice, engine):
    invoice = await make_invoice(expires_in=timedelta(minutes=1))
    await run_sql(engine, "UPDATE invoices SET expires_at = now() - interval '1 second' "
                          "WHERE id = :id", id=invoice.id)
    # Past its expiry but not yet marked by the job: already shown as expired.
    resp = await client.get(f"/pay/{invoice.public_id}")
    assert resp.status == 410
    assert "This invoice has expired" in await resp.text()
    await expire_due_invoices(engine)
    resp = await client.get(f"/pay/{invoice.public_id}")
    assert resp.status == 410
    assert 'data-status="expired"' in await resp.text()


async def test_unknown_and_malformed_ids_get_a_404_page(client):
    for path in ("/pay/0000000000000", "/pay/abc", "/pay/" + "x" * 500, "/pay/%00%ff",
                 "/pay/INV-ABC", "/pay/..%2f..%2fetc"):
        resp = await client.get(path)
        assert resp.status == 404, path
        body = await resp.text()
        assert "Invoice not found" in body, path
        assert "Traceback" not in body


async def test_non_canonical_id_redirects_to_the_canonical_page(client, make_invoice):
    invoice = await make_invoice()
    resp = await client.get(f"/pay/{invoice.public_id.lower()}?lang=ru", allow_redirects=False)
    assert resp.status == 301
    assert resp.headers["Location"] == f"/pay/{invoice.public_id}?lang=ru"


async def test_russian_by_accept_language_and_english_fallback(client, make_invoice):
    invoice = await make_invoice()
    resp = await client.get(f"/pay/{invoice.public_id}",
                            headers={"Accept-Language": "de-DE,ru;q=0.8,en;q=0.5"})
    body = await resp.text()
    assert '<html lang="ru">' in body and "Ожидает оплаты" in body and "Войти и оплатить" in body
    resp = await client.get(f"/pay/{invoice.public_id}", headers={"Accept-Language": "de, fr"})
    assert "Awaiting payment" in await resp.text()
    resp = await client.get("/pay/0000000000000", headers={"Accept-Language": "ru-RU"})
    assert "Счёт не найден" in await resp.text()


async def test_user_text_is_escaped(client, make_invoice):
    invoice = await make_invoice(title='<script>alert("x")</script></script>',
                                 description="a & b <img src=x onerror=alert(1)>")
    body = await (await client.get(f"/pay/{invoice.public_id}")).text()
    assert "<script>alert" not in body and "<img src=x" not in body
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in body
    data = page_data(body)  # the embedded JSON cannot close its <script> element either
    assert data["invoice"]["title"] == '<script>alert("x")</script></script>'


async def test_multi_use_invoice_shows_its_uses(client, make_invoice, make_user, engine):
    invoice = await make_invoice(kind="multi_use", max_uses=3)
    buyer = await make_user(balance=5000)
    await pay_from_balance(engine, invoice.public_id, buyer.id, "m1")
    body = await (await client.get(f"/pay/{invoice.public_id}")).text()
    assert "Paid 1 time<" in body and 'data-status="pending"' in body  # one, not "1 times"


async def test_without_ton_address_the_page_says_ton_is_unavailable(client_for, make_invoice):
    client = await client_for(make_settings(address=None))
    invoice = await make_invoice()
    body = await (await client.get(f"/pay/{invoice.public_id}")).text()
    assert '<section id="ton" class="ton" hidden>' in body
    assert 'id="ton-unavailable" data-t="ton_unavailable">' in body  # shown (no hidden attr)
    assert "Log in and pay" in body


async def test_static_files_are_served_with_long_cache(client, make_invoice):
    invoice = await make_invoice()
    body = await (await client.get(f"/pay/{invoice.public_id}")).text()
    js = re.search(r'src="(/static/pay/pay\.js\?v=\w+)"', body).group(1)
    resp = await client.get(js)
    assert resp.status == 200 and "immutable" in resp.headers["Cache-Control"]
    assert "tgWebAppData" in await resp.text()
    texts = re.search(r'src="(/static/pay/texts\.js\?v=\w+)"', body).group(1)
    assert "Войти и оплатить" in await (await client.get(texts)).text()
    assert (await client.get("/static/pay/../conftest.py")).status == 404
    assert (await client.get("/static/pay/nope.js")).status == 404



class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_page_cache_serves_a_recent_read_and_status_stays_live(
    engine, make_invoice, make_user
):
    app = web.Application()
    ledger = Ledger(engine, invoice_cache_seconds=1.0)
    setup_pay_pages(app, ledger, make_settings())
    clock = ledger.recent.clock = FakeClock()
    invoice = await make_invoice()
    buyer = await make_user(balance=5000)
    async with TestClient(TestServer(app)) as client:
        page = f"/pay/{invoice.public_id}"
        assert 'data-status="pending"' in await (await client.get(page)).text()
        await pay_from_balance(engine, invoice.public_id, buyer.id, "cache-1")
        # Within the second: the page may still say pending; the status API never does.
        assert 'data-status="pending"' in await (await client.get(page)).text()
        status = await (await client.get(f"/pay/{invoice.public_id}/status")).json()
        assert status["invoice"]["status"] == "paid"
        clock.now += 1.0
        assert 'data-status="paid"' in await (await client.get(page)).text()

        # A payment made through this process's Mini App API shows at once.
        other = await make_invoice()
        page = f"/pay/{other.public_id}"
        assert 'data-status="pending"' in await (await client.get(page)).text()
        resp = await client.post(f"{page}/pay", json={"idempotency_key": "cache-2"},
                                 headers=tma(sign_init_data(tg_user(buyer))))
        assert resp.status == 200
        assert 'data-status="paid"' in await (await client.get(page)).text()


async def test_page_cache_is_bounded_and_forgets_on_payment(engine, make_invoice):
    recent = RecentInvoices(InvoiceReader(engine), ttl=60, size=2, clock=FakeClock())
    a, b, c = await make_invoice(), await make_invoice(), await make_invoice()
    for invoice in (a, b, c):
        await recent.get(invoice.public_id.lower())
    assert list(recent._items) == [b.public_id, c.public_id]  # oldest dropped
    assert (await recent.get(b.public_id)).invoice == b
    recent.forget(c.public_id)
    assert list(recent._items) == [b.public_id]
    with pytest.raises(InvoiceNotFound):
        await recent.get("0000000000000")
    assert list(recent._items) == [b.public_id]  # unknown ids are not remembered


async def test_the_composition_root_serves_the_pay_page(engine, make_invoice):
    from bot.app import build_web_app

    invoice = await make_invoice()
    async with TestClient(TestServer(build_web_app(make_settings(), Ledger(engine)))) as client:
        assert (await client.get("/healthz")).status == 200
        resp = await client.get(f"/pay/{invoice.public_id}")
        assert resp.status == 200 and "Coffee beans" in await resp.text()
        assert (await client.get(f"/pay/{invoice.public_id}/qr.png")).status == 200
