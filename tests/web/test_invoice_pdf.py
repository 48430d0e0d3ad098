"""GET /pay/<id>/invoice.pdf: the invoice as a document anyone with the link can keep or send
to their accountant, in the page's language: its lines, discounts, taxes and totals, the
seller as their settings describe them, how to pay, and a stamp for its state."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import BytesIO

import pytest
from pypdf import PdfReader

from ledger.core import Ledger
from ledger.documents import Buyer
from ledger.invoices import cancel_invoice, new_invoice
from ledger.payments import pay_from_balance
from ledger.totals import Line, PercentOff, TaxRate
from tests.web.conftest import DEST

RU = {"Accept-Language": "ru-RU,ru;q=0.9"}
# 1.5 × 120.00 − 10 % and 2 × 50.00 at VAT 20 %, 1 × 30.00 without tax:
# subtotal 310.00, discount 18.00, VAT (162.00 + 100.00) × 20 % = 52.40, total 344.40.
LINES = [Line("Consulting", Decimal("1.5"), 12_000, PercentOff(Decimal(10)), "VAT 20 %"),
         Line("Code review", Decimal(2), 5_000, tax_rate="VAT 20 %"),
         Line("Hosting", Decimal(1), 3_000)]
VAT = [TaxRate("VAT 20 %", Decimal(20))]
DUE = datetime(2026, 12, 11, 12, tzinfo=UTC)


def _text(body: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(BytesIO(body)).pages)


async def _pdf(client, invoice, headers: dict[str, str] | None = None) -> bytes:  # type: ignore[no-untyped-def]
    resp = await client.get(f"/pay/{invoice.public_id}/invoice.pdf", headers=headers or {})
    assert resp.status == 200 and resp.content_type == "application/pdf"
    return await resp.read()


@pytest.fixture
def make_document(make_invoice):  # type: ignore[no-untyped-def]
    """The 3-line invoice above: a line discount, VAT 20 %, a company buyer, a due date."""

    def _make(**kw):  # type: ignore[no-untyped-def]
        kw.setdefault("lines", LINES)
        kw.setdefault("tax_rates", VAT)
        kw.setdefault("buyer", Buyer(name="Jane Smith", company="Globex Corporation",
                                     tax_id="DE811234567", address="1 Main St, Springfield"))
        kw.setdefault("due_at", DUE)
        kw.setdefault("expires_in", timedelta(days=60))
        return make_invoice(title=None, amount=None, **kw)

    return _make


async def test_the_pdf_of_a_plain_invoice(client, make_invoice) -> None:
    invoice = await make_invoice(title="Coffee beans 1 kg")
    resp = await client.get(f"/pay/{invoice.public_id.lower()}/invoice.pdf")
    assert resp.status == 200 and resp.content_type == "application/pdf"
    assert f'filename="{invoice.number}.pdf"' in resp.headers["Content-Disposition"]
    body = await resp.read()
    text = _text(body)
    for shown in (invoice.number, "Coffee beans 1 kg", "12.50 Liquid $", "Total due",
                  f"https://pay.example.com/pay/{invoice.public_id}", "@coffee_shop",
                  # TON on paper: the address and the bare comment (a guest's payment)
                  DEST["non_bounceable"], f"INV-{invoice.public_id}", "2.5 TON"):
        assert shown in text, shown
    assert "PAID" not in text and "Subtotal" not in text  # one line, its total: no more
    again = await client.get(f"/pay/{invoice.public_id}/invoice.pdf")
    assert await again.read() == body  # same version, same bytes
    cached = await client.get(f"/pay/{invoice.public_id}/invoice.pdf",
                              headers={"If-None-Match": resp.headers["ETag"]})
    assert cached.status == 304


@pytest.mark.parametrize(("lang", "words"), [
    ("en", ["Subtotal", "Discount", "Total due", "BILL TO", "Tax ID: DE811234567",
            "Due date", "December 11, 2026"]),
    ("ru", ["Сумма по позициям", "Скидка", "Итого к оплате", "ПОКУПАТЕЛЬ",
            "ИНН: DE811234567", "Оплатить до", "11 декабря 2026"]),
])
async def test_the_pdf_shows_lines_discount_tax_and_totals(
    client, make_document, lang: str, words: list[str]
) -> None:
    invoice = await make_document()
    assert invoice.amount == 34_440
    text = _text(await _pdf(client, invoice, RU if lang == "ru" else None))
    for shown in [*words, invoice.number, "Consulting", "Code review", "Hosting",
                  "1.5", "120.00", "180.00", "−18.00 (10 %)", "50.00", "100.00", "30.00",
                  "310.00 Liquid $", "−18.00 Liquid $", "VAT 20 %", "52.40 Liquid $",
                  "344.40 Liquid $", "Jane Smith", "Globex Corporation",
                  "1 Main St, Springfield"]:
        assert shown in text, (lang, shown)


async def test_a_partly_paid_invoice_says_what_was_paid_and_what_is_due(
    client, make_document, engine
) -> None:
    invoice = await make_document()
    before = await _pdf(client, invoice)
    await Ledger(engine).record_manual_payment(
        invoice.public_id, seller_id=invoice.seller_id, amount=10_000,
        received_on=datetime.now(UTC).date(), reference="BANK-1")
    after = await _pdf(client, invoice)
    assert after != before  # what was paid is part of the version
    text = _text(after)
    for shown in ("Total", "344.40 Liquid $", "Paid", "−100.00 Liquid $", "Amount due",
                  "244.40 Liquid $"):
        assert shown in text, shown
    assert "Total due" not in text
    text = _text(await _pdf(client, invoice, RU))
    assert "Оплачено" in text and "Остаток к оплате" in text and "244.40 Liquid $" in text


async def test_the_sellers_settings_make_the_seller_block_and_bank_details(
    client, make_document, engine
) -> None:
    invoice = await make_document()
    assert "@coffee_shop" in _text(await _pdf(client, invoice))
    await Ledger(engine).save_seller_settings(
        invoice.seller_id, legal_name="Acme Studio Ltd",
        legal_details="Company no. 01234567, VAT GB123456789\n1 High Street, London",
        bank_details="IBAN GB33 BUKB 2020 1555 5555 55\nBIC BUKBGB22")
    text = _text(await _pdf(client, invoice))  # new settings: a new document at once
    for shown in ("Acme Studio Ltd", "VAT GB123456789", "1 High Street, London",
                  "BANK TRANSFER", "IBAN GB33 BUKB 2020 1555 5555 55", "BIC BUKBGB22"):
        assert shown in text, shown
    assert "@coffee_shop" not in text


async def test_a_draft_says_draft_and_a_new_version_is_a_new_document(
    client, make_document, engine
) -> None:
    draft = await make_document(draft=True)
    resp = await client.get(f"/pay/{draft.public_id}/invoice.pdf")
    assert f'filename="invoice-{draft.public_id}.pdf"' in resp.headers["Content-Disposition"]
    first = await resp.read()
    text = _text(first)
    assert "DRAFT" in text and "No." not in text and "344.40 Liquid $" in text
    assert "ЧЕРНОВИК" in _text(await _pdf(client, draft, RU))
    assert await _pdf(client, draft) == first  # the same version: the same bytes
    # PUT: a new version of the draft is a new document.
    lines = [*LINES[:2], Line("Hosting", Decimal(2), 3_000)]
    await Ledger(engine).update_draft(draft.seller_id, draft.public_id, new_invoice(
        seller_id=draft.seller_id, lines=lines, tax_rates=VAT, due_at=DUE, draft=True))
    second = await _pdf(client, draft)
    assert second != first and "374.40 Liquid $" in _text(second)
    issued = await Ledger(engine).finalize_invoice(draft.seller_id, draft.public_id)
    text = _text(await _pdf(client, draft))
    assert "DRAFT" not in text and f"No. {issued.number}" in text


async def test_stamped_paid_void_or_written_off(
    client, make_invoice, make_document, make_user, engine
) -> None:
    ledger = Ledger(engine)
    paid, cancelled, void, written_off = (await make_invoice(), await make_invoice(),
                                          await make_document(), await make_document())
    buyer = await make_user(balance=5000)
    await pay_from_balance(engine, paid.public_id, buyer.id, "pdf-1")
    await cancel_invoice(engine, cancelled.public_id, cancelled.seller_id)
    await ledger.void_invoice(void.seller_id, void.public_id, "sent twice")
    await ledger.mark_uncollectible(written_off.seller_id, written_off.public_id, "gone")
    text = _text(await _pdf(client, paid, RU))
    assert "Счёт" in text and "ОПЛАЧЕН" in text and "Как оплатить" not in text
    assert "PAID" in _text(await _pdf(client, paid))
    assert "VOID" in _text(await _pdf(client, cancelled))
    assert "VOID" in _text(await _pdf(client, void))
    text = _text(await _pdf(client, written_off))
    assert "UNCOLLECTIBLE" in text and "How to pay" not in text
    assert "СПИСАН" in _text(await _pdf(client, written_off, RU))


async def test_an_unknown_invoice_has_no_pdf(client) -> None:
    for raw in ("0000000000000", "not-an-id", "%00"):
        assert (await client.get(f"/pay/{raw}/invoice.pdf")).status == 404


async def test_a_crowd_opening_one_pdf_renders_it_once(client, make_invoice, monkeypatch) -> None:
    import bot.documents.of_invoice as of_invoice

    renders = []
    real = of_invoice.render_pdf

    def counting(doc):  # type: ignore[no-untyped-def]
        renders.append(doc.number)
        return real(doc)

    monkeypatch.setattr(of_invoice, "render_pdf", counting)
    invoice = await make_invoice()
    answers = await asyncio.gather(*(client.get(f"/pay/{invoice.public_id}/invoice.pdf")
                                     for _ in range(8)))
    bodies = {await r.read() for r in answers}
    assert [r.status for r in answers] == [200] * 8 and len(bodies) == 1
    assert renders == [invoice.number]
