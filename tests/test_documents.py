"""The invoice PDF: what a reader sees in it (text extracted with pypdf) in both languages, the
same bytes for the same invoice version, the stamp, and logos that are refused."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from io import BytesIO

import pytest
from pypdf import PdfReader

from bot.documents.model import (
    InvoiceDocument,
    Line,
    Party,
    Payment,
    TotalRow,
)
from bot.documents.pdf import render_pdf
from bot.qr import qr_png
from ledger.errors import InvalidSettings
from ledger.seller_settings import MAX_LOGO_BYTES

PAY_URL = "https://pay.example.com/pay/8f3a2c1e"


def _doc(lang: str, **changes: object) -> InvoiceDocument:
    ru = lang == "ru"
    doc = InvoiceDocument(
        number="INV-2026-0042", issued_on=date(2026, 11, 27), due_on=date(2026, 12, 11),
        language=lang,
        seller=Party(name="ООО «Ромашка»" if ru else "Acme Studio Ltd",
                     details="ИНН 7701234567" if ru else "VAT GB123456789"),
        buyer=Party(name="Иван Петров" if ru else "Jane Smith", company="АО «Вектор»",
                    tax_id="7709876543"),
        lines=(Line("Консультация" if ru else "Consulting", "1.5", "120.00 $", "180.00 $",
                    discount="10 %", tax="20 %"),
               Line("Код-ревью" if ru else "Code review", "2", "50.00 $", "100.00 $")),
        totals=(TotalRow("НДС 20 %" if ru else "VAT 20 %", "36.00 $"),
                TotalRow("Итого" if ru else "Total due", "316.00 $", strong=True)),
        payment=Payment(pay_url=PAY_URL, ton_address="UQBvW8Z5huBkMJYdnfAEM5JqTNkuWX3d",
                        ton_comment="INV-8f3a2c1e", bank_details="IBAN GB33 BUKB 2020"),
        created_at=datetime(2026, 11, 27, 9, 30, tzinfo=UTC))
    return dataclasses.replace(doc, **changes)


def _text(pdf: bytes) -> str:
    reader = PdfReader(BytesIO(pdf))
    return " ".join((page.extract_text() or "") for page in reader.pages)


@pytest.mark.parametrize(("lang", "words"), [
    ("en", ["Invoice", "Description", "Amount", "How to pay", "Consulting", "Total due"]),
    ("ru", ["Счёт", "Наименование", "Сумма", "Как оплатить", "Консультация", "Итого",
            "ПОКУПАТЕЛЬ", "ноября 2026"]),
])
def test_the_pdf_shows_number_lines_totals_and_pay_link(lang: str, words: list[str]) -> None:
    text = _text(render_pdf(_doc(lang)))
    for expected in [*words, "INV-2026-0042", "180.00 $", "100.00 $", "316.00 $", "36.00 $",
                     PAY_URL, "INV-8f3a2c1e", "7709876543"]:
        assert expected in text, (lang, expected)


def test_the_same_document_gives_the_same_bytes() -> None:
    first = render_pdf(_doc("ru", stamp="PAID"))
    assert render_pdf(_doc("ru", stamp="PAID")) == first
    later = _doc("ru", stamp="PAID", created_at=datetime(2026, 11, 28, tzinfo=UTC))
    assert render_pdf(later) != first  # a new version is a new document


@pytest.mark.parametrize(("lang", "stamp", "shown"), [
    ("en", "PAID", "PAID"), ("en", "VOID", "VOID"), ("ru", "PAID", "ОПЛАЧЕН"),
    ("ru", "VOID", "АННУЛИРОВАН"), ("en", "UNCOLLECTIBLE", "UNCOLLECTIBLE"),
    ("ru", "UNCOLLECTIBLE", "СПИСАН"), ("en", "DRAFT", "DRAFT"), ("ru", "DRAFT", "ЧЕРНОВИК")])
def test_a_stamp_appears_only_when_set(lang: str, stamp: str, shown: str) -> None:
    assert shown in _text(render_pdf(_doc(lang, stamp=stamp)))
    assert shown not in _text(render_pdf(_doc(lang)))


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_the_memo_and_the_buyers_address_are_printed(lang: str) -> None:
    text = _text(render_pdf(_doc(lang, note="Спасибо за заказ" if lang == "ru" else "Thanks!",
                                 buyer=Party(name="", company="Globex", address="1 Main St"))))
    assert ("Спасибо за заказ" if lang == "ru" else "Thanks!") in text
    assert "Globex" in text and "1 Main St" in text  # a company without a person: its name


def test_nothing_left_to_pay_prints_no_payment_instructions() -> None:
    text = _text(render_pdf(_doc("en", payment=None, stamp="PAID")))
    assert "How to pay" not in text and PAY_URL not in text
    assert "Total due" in text


def test_a_logo_is_drawn_and_the_document_stays_deterministic() -> None:
    logo = qr_png("logo", 2)
    with_logo = _doc("en", seller=Party(name="Acme", logo=logo))
    pdf = render_pdf(with_logo)
    assert pdf == render_pdf(with_logo)
    images = [image for page in PdfReader(BytesIO(pdf)).pages for image in page.images]
    assert images  # the logo (the QR is vector)


@pytest.mark.parametrize(("logo", "reason"), [
    (b"GIF89a" + b"\0" * 100, "PNG or JPEG"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "PNG or JPEG"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "not a readable"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * (MAX_LOGO_BYTES + 1), "at most"),
])
def test_a_logo_that_is_not_an_image_or_is_huge_is_refused(logo: bytes, reason: str) -> None:
    with pytest.raises(InvalidSettings, match=reason):
        Party(name="Acme", logo=logo)


def test_bad_language_or_stamp_is_refused() -> None:
    with pytest.raises(ValueError, match="language"):
        _doc("de")
    with pytest.raises(ValueError, match="stamp"):
        _doc("en", stamp="LATE")
