"""Sellers in the chat: /invoice (one line and step by step), bad input, /invoices and cancel."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from bot.qr import qr_png
from ledger.invoice_reads import get_invoice
from ledger.invoices import create_invoice, list_invoices
from ledger.payments import pay_from_balance

PNG = b"\x89PNG\r\n\x1a\n"


async def test_one_line_invoice_reply_carries_every_way_to_pay(person, engine) -> None:
    seller = await person(username="beans_shop")
    [reply] = await seller.send("/invoice 12.50 Coffee beans")

    [invoice] = await list_invoices(engine, seller.user.id)
    assert (invoice.title, invoice.amount, invoice.currency, invoice.kind) == (
        "Coffee beans", 1250, "LIQ", "one_time")
    assert invoice.ton_amount == 2_500_000_000  # 12.50 at 5 Liquid $ per TON, locked now
    page = f"https://pay.example.com/pay/{invoice.public_id}"
    deep = f"https://t.me/paybot_test_bot?start=pay_{invoice.public_id}"
    for shown in (page, deep, f"INV-{invoice.public_id}", "12.50 Liquid $", "2.5 TON",
                  invoice.number, "Coffee beans"):
        assert shown in reply.plain
    assert reply.photo is not None and reply.photo.startswith(PNG)
    assert reply.photo == qr_png(page)  # the QR opens the pay page
    share = reply.button("Share")["url"]
    assert urlsplit(share).netloc == "t.me" and parse_qs(urlsplit(share).query)["url"] == [page]
    assert reply.button("Pay page")["url"] == page


async def test_the_seller_gets_the_invoice_as_a_pdf_to_forward(person, engine) -> None:
    """"📄 PDF" under a new invoice sends the document a client can keep: the same PDF the pay
    page serves, in the seller's language."""
    from io import BytesIO

    from pypdf import PdfReader

    seller = await person(language="ru")
    [reply] = await seller.send("/invoice 12.50 Кофе")
    tap = await seller.tap(reply, "PDF")
    [doc] = tap.sent
    assert doc.document is not None and doc.document.startswith(b"%PDF")
    invoice_number = doc.document_name.removesuffix(".pdf")
    assert invoice_number.startswith("INV-") and invoice_number in doc.plain
    text = PdfReader(BytesIO(doc.document)).pages[0].extract_text()
    assert "Счёт" in text and "Кофе" in text and "12.50 Liquid $" in text
    bad = await seller.press(reply, "doc:0000000000000")  # a forged button: one sentence
    assert bad.alert and bad.answer_text == "Счёта с таким номером нет. Проверьте ссылку."


async def test_invoice_conversation_multi_use_with_item(person, engine) -> None:
    seller = await person()
    [ask_title] = await seller.send("/invoice")
    assert "Send the title" in ask_title.plain
    [ask_amount] = await seller.send("Concert ticket")
    assert "How much" in ask_amount.plain
    [ask_kind] = await seller.send("20")
    tap = await seller.tap(ask_kind, "Many buyers")
    [ask_expiry] = tap.sent
    assert ask_expiry.button_texts == ["1 h", "24 h", "7 d", "30 d"]
    tap = await seller.tap(ask_expiry, "24 h")
    [ask_item] = tap.sent
    assert "Item id" in ask_item.plain
    [created] = await seller.send("ticket-42")

    [invoice] = await list_invoices(engine, seller.user.id)
    assert (invoice.title, invoice.amount, invoice.kind) == ("Concert ticket", 2000, "multi_use")
    assert invoice.payload == {"item_id": "ticket-42"}
    assert abs(invoice.expires_at - (datetime.now(UTC) + timedelta(hours=24))) < timedelta(
        minutes=5)
    assert "ticket-42" in created.plain and "Multi-use" in created.plain


async def test_conversation_typed_expiry_and_skipped_item(person, engine) -> None:
    seller = await person()
    await seller.send("/invoice")
    await seller.send("Tea")
    [ask_kind] = await seller.send("3,5")  # a comma works as the decimal point
    await seller.tap(ask_kind, "One buyer")
    [bad] = await seller.send("forever")
    assert "from 1 hour up to a year" in bad.plain
    [ask_item] = await seller.send("3d")
    tap = await seller.tap(ask_item, "Skip")
    [created] = tap.sent
    [invoice] = await list_invoices(engine, seller.user.id)
    assert (invoice.amount, invoice.kind, invoice.payload) == (350, "one_time", {})
    assert abs(invoice.expires_at - invoice.created_at - timedelta(days=3)) < timedelta(minutes=1)
    assert created.photo is not None


@pytest.mark.parametrize(
    ("amount", "says"),
    [
        ("abc", "“abc” is not an amount"),
        ("-5", "greater than zero"),
        ("0", "greater than zero"),
        ("0.00", "greater than zero"),
        ("1e9999", "“1e9999” is not an amount"),
        ("NaN", "is not an amount"),
        ("12.345", "at most 2 digits after the point"),
        ("10000000000000000", "too large"),
        ("9999999999999", "too large"),  # fits Liquid $, but not its quote in nanotons
    ],
)
async def test_bad_amounts_are_refused_one_line(person, engine, amount, says) -> None:
    seller = await person()
    [reply] = await seller.send(f"/invoice {amount} Coffee beans")
    assert says in reply.plain
    assert "Usage: /invoice 12.50 Coffee beans" in reply.plain
    assert await list_invoices(engine, seller.user.id) == []


@pytest.mark.parametrize("amount", ["abc", "-5", "0", "1e9999", "1.001", "9999999999999"])
async def test_bad_amounts_are_refused_in_the_conversation(person, engine, amount) -> None:
    seller = await person()
    await seller.send("/invoice")
    await seller.send("Coffee")
    [reply] = await seller.send(amount)
    assert "How much" not in reply.plain and reply.buttons == []
    [ask_kind] = await seller.send("1.5")  # still at the amount step; a good one goes on
    assert "Who can pay it?" in ask_kind.plain
    assert await list_invoices(engine, seller.user.id) == []


async def test_titles_empty_or_too_long_are_refused(person, engine) -> None:
    seller = await person()
    [reply] = await seller.send("/invoice 12.50")
    assert "The title is empty" in reply.plain
    [reply] = await seller.send("/invoice 12.50 " + "x" * 129)
    assert "too long: 129 characters, at most 128" in reply.plain
    await seller.send("/invoice")
    [reply] = await seller.send("y" * 200)
    assert "too long: 200 characters" in reply.plain
    [reply] = await seller.send("y" * 128)  # exactly the limit is fine
    assert "How much" in reply.plain
    assert await list_invoices(engine, seller.user.id) == []


@pytest.mark.parametrize(
    ("args", "amount", "title"),
    [
        ("1 000 Test item", 100_000, "Test item"),  # a space between thousands
        ("1\u00a0000 Test item", 100_000, "Test item"),  # no-break space
        ("1\u2009000,50 Test item", 100_050, "Test item"),  # thin space, decimal comma
        ("12 500.50 Test item", 1_250_050, "Test item"),
        ("1 000 000 Big deal", 100_000_000, "Big deal"),
        ("15 500 roses", 1_550_000, "roses"),  # groups of three are always one amount
        ("15 50 roses", 1_500, "50 roses"),  # "50" is not a group of three: the title's
    ],
)
async def test_thousands_separated_by_spaces_are_one_amount(
    person, engine, args, amount, title
) -> None:
    seller = await person()
    [reply] = await seller.send(f"/invoice {args}")
    [invoice] = await list_invoices(engine, seller.user.id)
    assert (invoice.amount, invoice.title) == (amount, title)
    assert invoice.number in reply.plain


@pytest.mark.parametrize("typed", ["1.000", "1,000"])
async def test_a_thousand_written_with_a_point_is_refused_not_read_as_one(
    person, engine, typed
) -> None:
    seller = await person()
    [reply] = await seller.send(f"/invoice {typed} Test item")
    assert "could mean 1 or 1000" in reply.plain
    await seller.send("/invoice")
    await seller.send("Test item")
    [reply] = await seller.send(typed)
    assert "could mean 1 or 1000" in reply.plain
    [ask_kind] = await seller.send("1 000,50")  # the conversation takes groups too
    assert "Who can pay it?" in ask_kind.plain
    tap = await seller.tap(ask_kind, "One buyer")
    tap = await seller.tap(tap.sent[0], "7 d")
    await seller.tap(tap.sent[0], "Skip")
    [invoice] = await list_invoices(engine, seller.user.id)
    assert invoice.amount == 100_050


async def test_titles_cannot_hide_or_reverse_text(person, engine) -> None:
    seller = await person()
    [reply] = await seller.send("/invoice 5 \u200b\u200d\u2060\u3164")  # only invisible
    assert "The title is empty" in reply.plain
    await seller.send("/invoice 5 Receipt\u202egnp.exe\u2066x\x07")
    [invoice] = await list_invoices(engine, seller.user.id)
    assert invoice.title == "Receiptgnp.exex"


async def test_item_id_must_be_one_short_word(person, engine) -> None:
    seller = await person()
    for step in ("/invoice", "Tea", "1"):
        [prompt] = await seller.send(step)
    tap = await seller.tap(prompt, "One buyer")
    await seller.tap(tap.sent[0], "7 d")
    [reply] = await seller.send("two words")
    assert "one word" in reply.plain
    assert await list_invoices(engine, seller.user.id) == []


async def test_cancel_stops_the_conversation(person, engine) -> None:
    seller = await person()
    [reply] = await seller.send("/cancel")
    assert reply.plain == "Nothing to cancel."
    await seller.send("/invoice")
    await seller.send("Tea")
    [reply] = await seller.send("/cancel")
    assert reply.plain == "Invoice not created."
    [reply] = await seller.send("5")  # no form any more
    assert "did not understand" in reply.plain
    assert await list_invoices(engine, seller.user.id) == []


async def test_commands_still_work_inside_the_conversation(person) -> None:
    seller = await person(balance=700)
    await seller.send("/invoice")
    [reply] = await seller.send("/balance")
    assert "Balance: 7.00 Liquid $" in reply.plain
    [reply] = await seller.send("Tea")  # the form is still waiting for the title
    assert "How much" in reply.plain


async def test_double_tap_on_the_last_step_creates_one_invoice(person, engine) -> None:
    seller = await person()
    for step in ("/invoice", "Tea", "1"):
        [prompt] = await seller.send(step)
    tap = await seller.tap(prompt, "One buyer")
    [ask_item] = (await seller.tap(tap.sent[0], "1 h")).sent
    first, second = await asyncio.gather(seller.tap(ask_item, "Skip"),
                                         seller.tap(ask_item, "Skip"))
    assert len(await list_invoices(engine, seller.user.id)) == 1
    assert len([m for m in seller.api.messages(seller.id) if m.photo]) == 1
    assert sorted([first.alert, second.alert]) == [False, True]
    stale = first if first.alert else second
    assert "outdated" in (stale.answer_text or "")


async def test_russian_and_fallback_languages(person, engine) -> None:
    ru = await person(language="ru")
    [reply] = await ru.send("/invoice abc Кофе")
    assert "«abc» — не сумма" in reply.plain
    [reply] = await ru.send("/invoice")
    assert "Пришлите название" in reply.plain
    de = await person(language="de")
    [reply] = await de.send("/invoice")
    assert "Send the title" in reply.plain
    nobody = await person(language=None)
    [reply] = await nobody.send("/help")
    assert "sell and get paid" in reply.plain


async def test_invoices_list_and_cancel(person, engine) -> None:
    seller = await person()
    tea = await create_invoice(engine, seller_id=seller.user.id, title="Tea", amount=100)
    cake = await create_invoice(engine, seller_id=seller.user.id, title="Cake", amount=250)
    [listing] = await seller.send("/invoices")
    assert listing.plain.index(cake.number) < listing.plain.index(tea.number)  # newest first
    assert "Tea · 1.00 Liquid $ · ⏳ waiting for payment" in listing.plain
    assert len(listing.button_texts) == 2

    tap = await seller.tap(listing, f"Cancel {tea.number}")
    assert "Nobody will be able to pay it" in tap.edited[0].plain
    assert (await get_invoice(engine, tea.public_id)).status == "pending"  # asked, not done
    tap = await seller.tap(tap.edited[0], "Yes, cancel")
    assert tap.answer_text == f"Invoice {tea.number} cancelled." and not tap.alert
    assert (await get_invoice(engine, tea.public_id)).status == "cancelled"
    [shown] = tap.edited
    assert "Tea · 1.00 Liquid $ · ✖ cancelled" in shown.plain
    assert shown.button_texts == [f"✖ Cancel {cake.number}"]


async def test_cancel_from_an_old_list_after_the_invoice_was_paid(person, engine) -> None:
    seller, buyer = await person(), await person(balance=1000)
    tea = await create_invoice(engine, seller_id=seller.user.id, title="Tea", amount=100)
    [listing] = await seller.send("/invoices")
    await pay_from_balance(engine, tea.public_id, buyer.user.id, "k1")
    tap = await seller.tap(listing, f"Cancel {tea.number}")
    assert tap.alert and tap.answer_text == "This invoice has already been paid."
    assert tap.edited == [] and tap.sent == []
    # "Yes, cancel" from a confirmation shown before the payment:
    tap = await seller.press(listing, f"cxl:do:{tea.public_id}")
    assert tap.alert and "already been paid" in (tap.answer_text or "")
    assert (await get_invoice(engine, tea.public_id)).status == "paid"


async def test_only_the_seller_can_cancel(person, engine) -> None:
    seller, other = await person(), await person()
    tea = await create_invoice(engine, seller_id=seller.user.id, title="Tea", amount=100)
    [listing] = await other.send("/invoices")
    assert listing.plain.startswith("You have no invoices yet")
    for data in (f"cxl:ask:{tea.public_id}", f"cxl:do:{tea.public_id}"):
        tap = await other.press(listing, data)
        assert tap.alert and tap.answer_text == "Only the seller can do this with the invoice."
    assert (await get_invoice(engine, tea.public_id)).status == "pending"


async def test_invoices_are_paged(person, engine) -> None:
    seller = await person()
    made = [await create_invoice(engine, seller_id=seller.user.id, title=f"Item {n}", amount=100)
            for n in range(11)]
    [listing] = await seller.send("/invoices")
    assert made[0].number not in listing.plain and made[10].number in listing.plain
    tap = await seller.tap(listing, "Older")
    assert made[0].number in tap.edited[0].plain
    assert made[10].number not in tap.edited[0].plain
