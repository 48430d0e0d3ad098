"""Invoice PDF benchmark: PDFs per second for the renderer paybot uses (typst,
`bot/documents/pdf.py`) and, in the same run on the same invoice in both languages (10 lines
with line discounts, two VAT rates, an invoice discount, partly paid, with its payment
instructions and QR; built by `invoice_document` as the pay page builds it), for
the alternatives tried: fpdf2 (`bench/pdf_fpdf2.py`, the same design) and weasyprint
(HTML and CSS, a simpler version of the design), each skipped when its package is missing
(`pip install paybot[pdf-bench]`). Each renderer is also checked to give the same bytes twice
for the same document.

    python -m bench.documents [--seconds 3] [--creation-seconds 6] [--database-url URL]

Prints one JSON object: per renderer `pdfs_per_second`, `ms_per_pdf`, `bytes` and
`byte_identical`, and `chosen`; under `creation`, invoices per second created with 10 lines
(lines, a discount, a tax rate) and with one, through `Ledger.issue_invoice`, and their ratio
(bench/invoice_creation.py)."""

from __future__ import annotations

import argparse
import html
import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from bench import invoice_creation
from bot.documents.labels import day, label
from bot.documents.model import InvoiceDocument
from bot.documents.of_invoice import invoice_document
from bot.documents.pdf import FONTS, render_pdf
from bot.qr import qr_svg
from ledger.documents import Buyer, make_document
from ledger.models import Invoice, User
from ledger.seller_settings import SellerSettings
from ledger.totals import AmountOff, PercentOff, TaxRate
from ledger.totals import Line as TotalsLine

Renderer = Callable[[InvoiceDocument], bytes]


SELLER = User(id=1, telegram_id=1000001, username="acme_studio", language="en",
              deposit_code="D1")
PAY_URL = "https://pay.example.com/pay/8F3A2C1E7B9D4"
TON_ADDRESS = "UQBvW8Z5huBkMJYdnfAEM5JqTNkuWX3diqYENkWsIL0XggGG"


def sample_invoice(lang: str = "en", *, lines: int = 10, status: str = "pending",
                   amount_paid: int = 0, plain: bool = False) -> Invoice:
    """A realistic invoice held in memory (as the ledger reads it): `lines` lines with
    discounts and two VAT rates, a 5 % invoice discount and a company buyer; or (`plain`) the
    quick one-line invoice."""
    ru = lang == "ru"
    names = (["Консультация по архитектуре", "Разработка модуля оплаты", "Код-ревью",
              "Настройка CI", "Документация API"] if ru else
             ["Architecture consulting", "Payment module development", "Code review",
              "CI setup", "API documentation"])
    vat, reduced = ("НДС 20 %", "НДС 10 %") if ru else ("VAT 20 %", "VAT 10 %")
    doc = make_document(
        [TotalsLine(f"{names[i % len(names)]} ({i + 1})", Decimal(f"{1 + i % 3}.5"),
                    12_000 + 2_500 * (i % 4),
                    discount=PercentOff(Decimal(10)) if i % 4 == 0 else
                    AmountOff(1_500) if i % 4 == 2 else None,
                    tax_rate=reduced if i % 3 == 2 else vat)
         for i in range(lines)],
        PercentOff(Decimal(5)), [TaxRate(vat, Decimal(20)), TaxRate(reduced, Decimal(10))],
        Buyer(name="Иван Петров" if ru else "Jane Smith",
              company="АО «Вектор»" if ru else "Globex Corporation",
              tax_id="7709876543" if ru else "DE811234567",
              address="125009, Москва, Тверская ул., 1" if ru else "1 Main St, Springfield"),
        "Спасибо за заказ!" if ru else "Thank you for your business.")
    at = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
    amount = 1250 if plain else doc.totals.total
    return Invoice(
        id=1, public_id="8F3A2C1E7B9D4", seller_id=SELLER.id,
        number=None if status == "draft" else "INV-2026-0042",
        title="Coffee beans 1 kg" if plain else doc.lines[0].description, description=None,
        currency="LIQ", amount=amount, ton_amount=amount * 200_000_000, kind="one_time",
        max_uses=None, uses=1 if status == "paid" else 0, status=status, payload={},
        ton_received=0, created_at=at, expires_at=at + timedelta(days=45),
        paid_at=at + timedelta(days=3) if status == "paid" else None, closed_at=None,
        due_at=at + timedelta(days=14), amount_paid=amount if status == "paid" else amount_paid,
        document=None if plain else doc.to_json(), version=1, updated_at=at,
        issued_at=None if status == "draft" else at, viewed_at=None, sent_at=None,
        sent_to=None, reminders_off=False)


def sample_settings(lang: str = "en", *, logo: bytes | None = None,
                    bank: bool = True) -> SellerSettings:
    ru = lang == "ru"
    return SellerSettings(
        user_id=SELLER.id, legal_name="ООО «Ромашка»" if ru else "Acme Studio Ltd",
        legal_details=("ИНН 7701234567, КПП 770101001\n123456, Москва, ул. Ленина, д. 1"
                       if ru else "Company no. 01234567, VAT GB123456789\n"
                       "1 High Street, London EC1A 1AA"),
        bank_details=("Р/с 40702810900000000001\nАО «Банк», БИК 044525225" if ru else
                      "IBAN GB33 BUKB 2020 1555 5555 55\nBIC BUKBGB22") if bank else None,
        logo=logo, logo_type="image/png" if logo else None,
        updated_at=datetime(2026, 11, 1, tzinfo=UTC))


def sample(lang: str = "en", *, status: str = "pending", logo: bytes | None = None,
           bank: bool = True, lines: int = 10, plain: bool = False,
           amount_paid: int = 0) -> InvoiceDocument:
    """The PDF's data for a sample invoice, built as the pay page builds it."""
    invoice = sample_invoice(lang, lines=lines, status=status, plain=plain,
                             amount_paid=amount_paid)
    return invoice_document(invoice, SELLER, sample_settings(lang, logo=logo, bank=bank), lang,
                            PAY_URL, TON_ADDRESS)


def _html(doc: InvoiceDocument) -> str:
    """The same design as HTML and CSS, for weasyprint."""
    t = lambda key: html.escape(label(doc.language, key))  # noqa: E731
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(x.description)}</td><td>{e(x.quantity)}</td><td>{e(x.unit_price)}</td>"
        f"<td>{e(x.discount)}</td><td>{e(x.tax)}</td><td>{e(x.amount)}</td></tr>"
        for x in doc.lines)
    totals = "".join(f"<tr class={'strong' if r.strong else ''}><td>{e(r.label)}</td>"
                     f"<td>{e(r.amount)}</td></tr>" for r in doc.totals)
    pay = doc.payment
    stamp = (f"<div class=stamp>{t('doc.stamp.' + doc.stamp)}</div>" if doc.stamp else "")
    qr = qr_svg(pay.pay_url).decode().split("\n", 1)[1]
    return f"""<html lang={doc.language}><head><style>
@font-face {{ font-family: D; src: url(file://{FONTS}/DejaVuSans.ttf); }}
@font-face {{ font-family: D; font-weight: bold; src: url(file://{FONTS}/DejaVuSans-Bold.ttf); }}
@page {{ size: A4; margin: 15mm; }}
body {{ font-family: D; font-size: 8.5pt; color: #212529; }}
h1 {{ text-align: right; font-size: 20pt; margin: 0; }}
.meta {{ text-align: right; }} .muted {{ color: #6c757d; }}
.parties {{ display: flex; gap: 10mm; margin: 6mm 0; border-top: 1px solid #dee2e6; }}
.parties div {{ flex: 1; }}
table {{ width: 100%; border-collapse: collapse; }}
td, th {{ padding: 1.5mm; border-bottom: 1px solid #dee2e6; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }} th {{ background: #f1f3f5; }}
.totals {{ width: 80mm; margin-left: auto; }} .strong {{ font-weight: bold; font-size: 11pt; }}
.pay {{ display: flex; gap: 8mm; margin-top: 8mm; }} .pay svg {{ width: 34mm; height: 34mm; }}
.stamp {{ position: fixed; top: 120mm; left: 20mm; font-size: 90pt; font-weight: bold;
  transform: rotate(-40deg); opacity: .16; color: #198754; }}
</style></head><body>{stamp}
<h1>{t('doc.invoice')}</h1><div class=meta><b>{t('doc.number')} {e(doc.number)}</b><br>
<span class=muted>{t('doc.issued')}</span> {day(doc.language, doc.issued_on)}</div>
<div class=parties><div><b class=muted>{t('doc.seller')}</b><br><b>{e(doc.seller.name)}</b>
<br>{e(doc.seller.details)}</div><div><b class=muted>{t('doc.buyer')}</b><br>
<b>{e(doc.buyer.name)}</b><br>{e(doc.buyer.company)}<br>{t('doc.tax_id')}: {e(doc.buyer.tax_id)}
</div></div><table><tr><th>{t('doc.description')}</th><th>{t('doc.quantity')}</th>
<th>{t('doc.unit_price')}</th><th>{t('doc.discount')}</th><th>{t('doc.tax')}</th>
<th>{t('doc.amount')}</th></tr>{rows}</table><table class=totals>{totals}</table>
<h3>{t('doc.how_to_pay')}</h3><div class=pay>{qr}<div><b>{t('doc.pay_online')}</b><br>
{e(pay.pay_url)}<br><b>{t('doc.ton')}</b><br>{e(pay.ton_address)}<br>
<b>{t('doc.ton_comment')}</b><br>{e(pay.ton_comment)}<br><b>{t('doc.bank')}</b><br>
{e(pay.bank_details)}</div></div></body></html>"""


def render_weasyprint(doc: InvoiceDocument) -> bytes:
    import weasyprint  # optional: the pdf-bench extra

    page = weasyprint.HTML(string=_html(doc))
    return page.write_pdf(uncompressed_pdf=False, pdf_identifier=doc.number.encode(),
                          custom_metadata=False) or b""


def render_fpdf2(doc: InvoiceDocument) -> bytes:
    from bench.pdf_fpdf2 import render_fpdf2  # optional: the pdf-bench extra

    return render_fpdf2(doc)


RENDERERS: dict[str, Renderer] = {
    "typst": render_pdf, "fpdf2": render_fpdf2, "weasyprint": render_weasyprint}
CHOSEN = "typst"


def measure(render: Renderer, docs: list[InvoiceDocument], seconds: float) -> dict[str, Any]:
    first = [render(doc) for doc in docs]  # also warms caches (fonts, QR) as a server would
    same = all(render(doc) == data for doc, data in zip(docs, first, strict=True))
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for doc in docs:
            render(doc)
            count += 1
    return {"pdfs_per_second": round(count / elapsed, 1),
            "ms_per_pdf": round(1000 * elapsed / count, 2),
            "bytes": [len(data) for data in first], "byte_identical": same}


def run(seconds: float) -> dict[str, Any]:
    # Pending: the whole design (payment instructions and their QR), partly paid.
    docs = [sample("en", amount_paid=10_000), sample("ru", amount_paid=10_000)]
    result: dict[str, Any] = {"chosen": CHOSEN, "lines": len(docs[0].lines),
                              "languages": ["en", "ru"], "renderers": {}}
    for name, render in RENDERERS.items():
        try:
            result["renderers"][name] = measure(render, docs, seconds)
        except ImportError as error:  # an alternative not installed: say so, go on
            result["renderers"][name] = {"skipped": f"not installed: {error.name}"}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per renderer")
    parser.add_argument("--creation-seconds", type=float, default=6.0,
                        help="invoice creation, 10 lines against one (0: skip)")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"),
                        help="server for the creation run (default: an embedded PostgreSQL)")
    args = parser.parse_args()
    result = run(args.seconds)
    if args.creation_seconds > 0:  # bench/invoice_creation.py
        result["creation"] = invoice_creation.run(
            args.database_url, seconds=args.creation_seconds, concurrency=32)
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
