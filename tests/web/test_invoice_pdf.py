"""GET /pay/<id>/invoice.pdf: the invoice as a document anyone with the link can keep or send
to their accountant, in the page's language, stamped once paid or cancelled."""

from __future__ import annotations

from io import BytesIO

from pypdf import PdfReader

from ledger.invoices import cancel_invoice
from ledger.payments import pay_from_balance


def _text(body: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(BytesIO(body)).pages)


async def test_the_invoice_pdf_shows_what_the_page_shows(client, make_invoice) -> None:
    invoice = await make_invoice(title="Coffee beans 1 kg")
    resp = await client.get(f"/pay/{invoice.public_id.lower()}/invoice.pdf")
    assert resp.status == 200 and resp.content_type == "application/pdf"
    assert f'filename="{invoice.number}.pdf"' in resp.headers["Content-Disposition"]
    body = await resp.read()
    text = _text(body)
    for shown in (invoice.number, "Coffee beans 1 kg", "12.50 Liquid $", "Total due",
                  f"https://pay.example.com/pay/{invoice.public_id}", "@coffee_shop"):
        assert shown in text, shown
    assert "PAID" not in text and "INV-" + invoice.public_id not in text  # no bare comment
    again = await client.get(f"/pay/{invoice.public_id}/invoice.pdf")
    assert await again.read() == body  # same version, same bytes
    cached = await client.get(f"/pay/{invoice.public_id}/invoice.pdf",
                              headers={"If-None-Match": resp.headers["ETag"]})
    assert cached.status == 304


async def test_in_russian_and_stamped_once_paid_or_cancelled(
    client, make_invoice, make_user, engine
) -> None:
    paid, cancelled = await make_invoice(), await make_invoice()
    buyer = await make_user(balance=5000)
    await pay_from_balance(engine, paid.public_id, buyer.id, "pdf-1")
    await cancel_invoice(engine, cancelled.public_id, cancelled.seller_id)
    ru = {"Accept-Language": "ru-RU,ru;q=0.9"}
    text = _text(await (await client.get(f"/pay/{paid.public_id}/invoice.pdf",
                                         headers=ru)).read())
    assert "Счёт" in text and "Итого к оплате" in text and "ОПЛАЧЕН" in text
    text = _text(await (await client.get(f"/pay/{cancelled.public_id}/invoice.pdf")).read())
    assert "VOID" in text


async def test_an_unknown_invoice_has_no_pdf(client) -> None:
    for raw in ("0000000000000", "not-an-id", "%00"):
        assert (await client.get(f"/pay/{raw}/invoice.pdf")).status == 404


async def test_a_crowd_opening_one_pdf_renders_it_once(client, make_invoice, monkeypatch) -> None:
    import asyncio

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
