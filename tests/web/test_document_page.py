"""The pay page of an invoice as a document: its lines, discount, taxes, totals, what was paid
and what is due, with exactly the figures of its PDF; drafts, void and written-off invoices
cannot be paid; the first look by someone other than the seller is recorded as "viewed"."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import BytesIO

import pytest
from pypdf import PdfReader

from ledger.core import Ledger
from ledger.documents import Buyer
from ledger.totals import Line, PercentOff, TaxRate
from tests.conftest import run_sql
from tests.web.cdp import chromium_page
from tests.web.conftest import sign_init_data, tg_user, tma
from tests.web.test_browser import (  # served: the browser tests' fixture
    BLOCK,
    VISIBLE_JS,
    served,  # noqa: F401
    shots_dir,
)

LINES = [Line("Consulting", Decimal("1.5"), 12_000, PercentOff(Decimal(10)), "VAT 20 %"),
         Line("Code review", Decimal(2), 5_000, tax_rate="VAT 20 %"),
         Line("Hosting", Decimal(1), 3_000, tax_rate="VAT 10 %")]
RATES = [TaxRate("VAT 20 %", Decimal(20)), TaxRate("VAT 10 %", Decimal(10), True)]
DUE = datetime(2026, 12, 11, 12, tzinfo=UTC)


@pytest.fixture
def make_document(make_invoice):  # type: ignore[no-untyped-def]
    def _make(seller=None, **kw):  # type: ignore[no-untyped-def]
        kw.setdefault("lines", LINES)
        kw.setdefault("tax_rates", RATES)
        kw.setdefault("discount", PercentOff(Decimal(5)))
        kw.setdefault("buyer", Buyer(name="Jane Smith"))
        kw.setdefault("due_at", DUE)
        kw.setdefault("expires_in", timedelta(days=60))
        return make_invoice(seller, title=None, amount=None, **kw)

    return _make


def _pdf_text(body: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(BytesIO(body)).pages)


def _shown(body: str, element_id: str) -> bool:
    """Whether the element with this id is rendered without the hidden attribute."""
    match = re.search(rf'<[^>]*\bid="{element_id}"[^>]*>', body)
    assert match, element_id
    return " hidden" not in match.group(0)


async def _viewed_at(engine, invoice) -> datetime | None:  # type: ignore[no-untyped-def]
    return (await Ledger(engine).invoice(invoice.public_id)).invoice.viewed_at


@pytest.mark.parametrize("lang", ["en", "ru"])
async def test_the_page_and_its_api_show_the_figures_of_the_pdf(
    client, make_document, lang: str
) -> None:
    invoice = await make_document()
    headers = {"Accept-Language": lang}
    body = await (await client.get(f"/pay/{invoice.public_id}", headers=headers)).text()
    status = await (await client.get(f"/pay/{invoice.public_id}/status",
                                     headers=headers)).json()
    pdf = _pdf_text(await (await client.get(f"/pay/{invoice.public_id}/invoice.pdf",
                                            headers=headers)).read())
    figures = status["invoice"]["document"]
    assert [line["description"] for line in figures["lines"]] == [
        "Consulting", "Code review", "Hosting"]
    keys = [row["key"] for row in figures["totals"]]
    assert keys == ["subtotal", "discount", "tax", "tax", "total"]
    total = figures["totals"][-1]
    assert total["minor"] == invoice.amount and total["strong"]
    assert _shown(body, "lines") and _shown(body, "totals")
    for line in figures["lines"]:
        for value in (line["description"], line["amount"], line["discount"], line["tax"]):
            assert html.escape(value) in body and value in pdf, (lang, value)
        assert html.escape(f'{line["quantity"]} × {line["unit_price"]}') in body
    for row in figures["totals"]:  # the same words and the same figures, page and paper
        assert f"<th scope=\"row\">{html.escape(row['label'])}</th>" \
               f"<td>{html.escape(row['amount'])}</td>" in body, (lang, row)
        assert row["label"] in pdf and row["amount"] in pdf, (lang, row)
    assert ("incl. VAT 10 %" if lang == "en" else "в т. ч. VAT 10 %") in pdf
    due = "December 11, 2026" if lang == "en" else "11 декабря 2026"
    assert due in body and due in pdf
    assert status["invoice"]["due_at"] == "2026-12-11T12:00:00Z"
    assert status["invoice"]["amount_due"]["minor"] == invoice.amount


async def test_a_plain_invoice_page_stays_plain(client, make_invoice) -> None:
    invoice = await make_invoice()
    body = await (await client.get(f"/pay/{invoice.public_id}")).text()
    assert not _shown(body, "lines") and not _shown(body, "totals")
    assert not _shown(body, "due-row")
    assert f'href="/pay/{invoice.public_id}/invoice.pdf"' in body


async def test_a_partly_paid_invoice_shows_what_was_paid_and_what_is_left(
    client, make_document, engine
) -> None:
    invoice = await make_document()
    paid = await Ledger(engine).record_manual_payment(
        invoice.public_id, seller_id=invoice.seller_id, amount=10_000,
        received_on=datetime.now(UTC).date(), reference="BANK-7")
    due = paid.invoice.amount_due
    assert due == invoice.amount - 10_000
    body = await (await client.get(f"/pay/{invoice.public_id}")).text()
    due_text = f"{due // 100}.{due % 100:02d} Liquid $"
    # The big figure is what is left to pay; the totals say how it came about.
    assert f'<div class="amount-main" id="amount">{html.escape(due_text)}</div>' in body
    assert '<th scope="row">Paid</th><td>−100.00 Liquid $</td>' in body
    assert f'<tr class="due strong"><th scope="row">Amount due</th><td>{html.escape(due_text)}' \
           in body
    status = await (await client.get(f"/pay/{invoice.public_id}/status",
                                     params={"guest": "new"})).json()
    assert status["invoice"]["amount_paid"]["minor"] == 10_000
    assert status["invoice"]["amount_due"]["minor"] == due
    # In TON too only what is left: the quote's share still due, rounded up (what the
    # watcher settles against), in the figure, the wallet link and the PDF.
    nano = -(-invoice.ton_amount * due // invoice.amount)
    assert nano < invoice.ton_amount
    assert status["invoice"]["ton"]["minor"] == nano
    assert f"amount={nano}&" in status["invoice"]["pay_ton"]["ton"]
    pdf = _pdf_text(await (await client.get(f"/pay/{invoice.public_id}/invoice.pdf")).read())
    assert status["invoice"]["ton"]["display"] in pdf


async def test_a_draft_is_not_issued_yet_for_everyone(
    client, make_document, make_user
) -> None:
    seller = await make_user(username="draft_seller")
    draft = await make_document(seller, draft=True)
    buyer = await make_user(balance=100_000)
    body = await (await client.get(f"/pay/{draft.public_id}")).text()
    assert 'data-status="draft"' in body and "Not issued yet" in body
    assert _shown(body, "draft") and "it can be paid once they do" in body
    for pay_section in ("login", "ton", "contact", "ton-unavailable"):
        assert not _shown(body, pay_section), pay_section
    assert _shown(body, "lines") and _shown(body, "totals")
    # Nobody gets a way to pay: not a guest's tag, not a Mini App user, not the seller.
    guest = await (await client.get(f"/pay/{draft.public_id}/status",
                                    params={"guest": "new"})).json()
    assert "payer" not in guest and guest["invoice"]["pay_ton"] is None
    for user in (buyer, seller):
        view = await (await client.get(f"/pay/{draft.public_id}/status",
                                       headers=tma(sign_init_data(tg_user(user))))).json()
        assert view["invoice"]["status"] == "draft" and view["invoice"]["pay_ton"] is None
    resp = await client.post(f"/pay/{draft.public_id}/pay", json={"idempotency_key": "d-1"},
                             headers=tma(sign_init_data(tg_user(buyer))))
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "invoice_draft"
    ru = await (await client.get(f"/pay/{draft.public_id}",
                                 headers={"Accept-Language": "ru"})).text()
    assert "Ещё не выставлен" in ru


async def test_void_and_written_off_invoices_say_so(client, make_document, engine) -> None:
    ledger = Ledger(engine)
    void, written_off = await make_document(), await make_document()
    await ledger.void_invoice(void.seller_id, void.public_id, "duplicate")
    await ledger.mark_uncollectible(written_off.seller_id, written_off.public_id, "gone")
    resp = await client.get(f"/pay/{void.public_id}")
    assert resp.status == 410
    body = await resp.text()
    assert "The seller voided this invoice" in body and 'data-status="void"' in body
    resp = await client.get(f"/pay/{written_off.public_id}", headers={"Accept-Language": "ru"})
    assert resp.status == 410
    assert "Продавец списал этот счёт" in await resp.text()
    status = await (await client.get(f"/pay/{written_off.public_id}/status")).json()
    assert status["invoice"]["status"] == "uncollectible"
    assert status["invoice"]["pay_ton"] is None


async def test_viewed_is_recorded_once_by_a_person_not_by_a_preview_or_the_seller(
    client, make_invoice, make_user, engine
) -> None:
    seller = await make_user(username="viewed_seller")
    invoice = await make_invoice(seller, payload={"callback_url": "https://shop.example/cb"})
    # A link preview or a crawler fetches the page (and the Mini App loads it first): no mark.
    assert (await client.get(f"/pay/{invoice.public_id}")).status == 200
    assert (await client.get(f"/pay/{invoice.public_id}/status")).status == 200  # a poll
    assert await _viewed_at(engine, invoice) is None
    # The seller opening their own invoice in the Mini App is no view.
    seller_view = tma(sign_init_data(tg_user(seller)))
    resp = await client.get(f"/pay/{invoice.public_id}/status", params={"view": "1"},
                            headers=seller_view)
    assert resp.status == 200 and await _viewed_at(engine, invoice) is None
    # A buyer's Mini App opening it is.
    buyer = await make_user()
    resp = await client.get(f"/pay/{invoice.public_id}/status", params={"view": "1"},
                            headers=tma(sign_init_data(tg_user(buyer))))
    assert resp.status == 200
    first = await _viewed_at(engine, invoice)
    assert first is not None
    await client.get(f"/pay/{invoice.public_id}/status", params={"view": "1"})
    assert await _viewed_at(engine, invoice) == first  # once
    events = await run_sql(engine, "SELECT count(*) AS n FROM outbox WHERE event_type = "
                                   "'invoice_viewed' AND payload ->> 'invoice' = :id",
                           id=invoice.public_id)
    assert events[0]["n"] == 1  # the seller's backend is told once


async def test_a_guest_browser_opening_the_page_is_a_view(client, make_invoice, engine) -> None:
    invoice = await make_invoice()
    resp = await client.get(f"/pay/{invoice.public_id}/status",
                            params={"guest": "new", "view": "1"})
    assert resp.status == 200
    assert await _viewed_at(engine, invoice) is not None


async def test_recording_the_view_never_fails_the_page(
    client, make_invoice, engine, monkeypatch, caplog
) -> None:
    async def broken(self, public_id, viewer_user_id):  # type: ignore[no-untyped-def]
        raise RuntimeError("the outbox is full")

    monkeypatch.setattr(Ledger, "mark_viewed", broken)
    invoice = await make_invoice()
    resp = await client.get(f"/pay/{invoice.public_id}/status", params={"view": "1"})
    assert resp.status == 200 and (await resp.json())["invoice"]["status"] == "pending"
    assert "could not mark invoice" in caplog.text
    assert await _viewed_at(engine, invoice) is None


async def test_in_a_phone_browser_the_document_fits_and_opening_it_is_a_view(
    chromium, served, make_document, engine  # noqa: F811
) -> None:
    base, requested = served
    invoice = await make_document(lines=[*LINES, *LINES, *LINES])
    shots = shots_dir()
    async with chromium_page(chromium, block=BLOCK) as page:
        await page.goto(f"{base}/pay/{invoice.public_id}")
        await page.wait_for("document.body.getAttribute('data-status') === 'pending'"
                            " && !document.getElementById('ton').hidden")
        seen = await page.evaluate(VISIBLE_JS % ["lines", "totals", "due", "pdf-link"])
        await page.screenshot(shots / "document-full.png", full_page=True)
        print(f"\nscreenshots: {shots}")
    for element in ("lines", "totals", "due", "pdf-link"):
        assert seen[element]["visible"] and seen[element]["inside"], (element, seen[element])
    assert "Total due" in seen["totals"]["text"]
    # The page's script asked once with view=1: the ledger recorded the view.
    assert sum("/status" in path for path in requested) >= 1
    assert await _viewed_at(engine, invoice) is not None
