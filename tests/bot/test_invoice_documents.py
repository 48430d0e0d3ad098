"""Invoices as documents in the bot: /invoice with lines, a discount, a tax rate and a due date
(the one-line invoice as quick as before), and the seller's buttons on the card — record a
payment, send to a client, void, write off."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import BytesIO

import pytest
from aiogram import Bot
from pypdf import PdfReader

from bot.telegram import Notifier
from bot.telegram.notifier import Backoff
from ledger.core import Ledger
from ledger.invoices import list_invoices
from tests.bot.client import TgClient


@pytest.fixture
async def notifier(engine, bot: Bot, cfg) -> Notifier:  # type: ignore[no-untyped-def]
    n = Notifier(Ledger(engine), bot, backoff=Backoff(base=30.0), cfg=cfg)
    await n.deliver_due()  # events left by other tests are not this test's business
    return n


async def _to_kind_question(seller: TgClient, title: str, amount: str):  # type: ignore[no-untyped-def]
    await seller.send("/invoice")
    await seller.send(title)
    [ask_kind] = await seller.send(amount)
    return ask_kind


async def _extra(seller: TgClient, question, button: str, answer: str):  # type: ignore[no-untyped-def]
    """Tap an optional step under "one buyer or many?", answer it; the question comes back."""
    tap = await seller.tap(question, button)
    assert len(tap.sent) == 1, tap.sent
    return await seller.send(answer)


async def _issue(seller: TgClient, question):  # type: ignore[no-untyped-def]
    tap = await seller.tap(question, "One buyer")
    [ask_expiry] = tap.sent
    [ask_item] = (await seller.tap(ask_expiry, "7 d")).sent
    [created] = (await seller.tap(ask_item, "Skip")).sent
    return created


async def test_the_one_line_invoice_takes_the_same_steps(person, engine) -> None:
    """The extras are buttons beside a question asked anyway: a plain invoice still takes
    title, amount, one tap, one tap, skip — and is stored as before (no document)."""
    seller = await person()
    [reply] = await seller.send("/invoice 12.50 Coffee beans")
    ask_kind = await _to_kind_question(seller, "Tea", "3.50")
    assert ask_kind.button_texts == ["One buyer (one-time)", "Many buyers (multi-use)",
                                     "➕ Add a line", "% Discount", "🧾 Tax", "📅 Due date"]
    created = await _issue(seller, ask_kind)
    invoices = await list_invoices(engine, seller.user.id)
    assert [(i.title, i.amount, i.document, i.due_at) for i in invoices] == [
        ("Tea", 350, None, None), ("Coffee beans", 1250, None, None)]
    for shown in (reply, created):
        assert "Subtotal" not in shown.plain and "Total" not in shown.plain


async def test_three_lines_with_a_discount_and_vat(person, engine) -> None:
    """100.00 + 2 × 15.50 + 12.00 = 143.00; 10 % off = 14.30; VAT 20 % on each line's rest
    (90.00, 27.90, 10.80) = 18.00 + 5.58 + 2.16 = 25.74; total 154.44 — on the preview, the
    card and the PDF alike."""
    seller = await person()
    question = await _to_kind_question(seller, "Website", "100")
    [question] = await _extra(seller, question, "Add a line", "Hosting, 2 x 15.50")
    assert "2. Hosting — 2 × 15.50 = 31.00" in question.plain
    [question] = await _extra(seller, question, "Add a line", "Domain 12")
    [question] = await _extra(seller, question, "Discount", "10%")
    [question] = await _extra(seller, question, "Tax", "VAT 20%")
    assert "Total due: 154.44 Liquid $" in question.plain
    # A document is for one buyer: the multi-use choice is gone once lines are added.
    assert not [text for text in question.button_texts if "Many buyers" in text]
    created = await _issue(seller, question)

    [invoice] = await list_invoices(engine, seller.user.id)
    assert (invoice.title, invoice.amount) == ("Website", 15444)
    for shown in ("1. Website — 1 × 100.00 = 100.00", "3. Domain — 1 × 12.00 = 12.00",
                  "Subtotal: 143.00 Liquid $", "Discount 10 %: −14.30 Liquid $",
                  "VAT 20 %: 25.74 Liquid $", "Total due: 154.44 Liquid $"):
        assert shown in created.plain
    [doc] = (await seller.tap(created, "PDF")).sent
    assert doc.document is not None
    pdf = PdfReader(BytesIO(doc.document)).pages[0].extract_text()
    for figure in ("143.00", "14.30", "25.74", "154.44"):
        assert figure in pdf


async def test_an_included_tax_and_a_due_date(person, engine) -> None:
    seller = await person(language="ru")
    question = await _to_kind_question(seller, "Консультация", "120")
    [question] = await _extra(seller, question, "Налог", "НДС 20% вкл")
    [question] = await _extra(seller, question, "Срок", "через 14 дней")
    [ask_expiry] = (await seller.tap(question, "Один покупатель")).sent
    [ask_item] = (await seller.tap(ask_expiry, "1 ч")).sent
    [created] = (await seller.tap(ask_item, "Пропустить")).sent
    [invoice] = await list_invoices(engine, seller.user.id)
    assert invoice.amount == 12000  # an included tax is inside the price
    due = (datetime.now(UTC) + timedelta(days=14)).date()
    assert invoice.due_at is not None and invoice.due_at.date() == due
    # Payable past its due date, whatever expiry was tapped: overdue reminders need it open.
    assert invoice.expires_at > invoice.due_at + timedelta(days=29)
    assert "НДС 20 %" in created.plain and "20.00 Liquid $" in created.plain
    assert f"Оплатить до {due.isoformat()}" in created.plain


@pytest.mark.parametrize(
    ("button", "answer", "says"),
    [
        ("Add a line", "2 x", "Send the line as a description and a price"),
        ("Add a line", "Hosting, 0 x 5", "quantity must be greater than zero"),
        ("Add a line", "Hosting, 1.2345 x 5", "at most 3 decimals"),
        ("Discount", "200", "does not fit this invoice"),
        ("Discount", "150%", "Send the discount as a percent"),
        ("Tax", "VAT 120%", "from 0 to 100 %"),
        ("Due date", "yesterday", "Send the due date"),
        ("Due date", "2001-01-01", "Send the due date"),
    ],
)
async def test_bad_extras_are_one_sentence_and_the_step_stays(
    person, engine, button, answer, says
) -> None:
    seller = await person()
    question = await _to_kind_question(seller, "Website", "100")
    [refusal] = await _extra(seller, question, button, answer)
    assert says in refusal.plain
    assert refusal.buttons == []  # still at that step: the next message answers it
    [question] = await seller.send({"Add a line": "Hosting 5", "Discount": "5",
                                    "Tax": "VAT 10%", "Due date": "7"}[button])
    assert "One buyer" in question.button_texts[0]
    assert await list_invoices(engine, seller.user.id) == []


async def _plain(seller: TgClient, engine, amount: str = "100"):  # type: ignore[no-untyped-def]
    [card] = await seller.send(f"/invoice {amount} Consulting")
    [invoice] = await list_invoices(engine, seller.user.id)
    return card, invoice


async def _record(seller: TgClient, card, amount: str, reference: str):  # type: ignore[no-untyped-def]
    tap = await seller.tap(card, "Record payment")
    assert not tap.alert, tap.answer_text
    [asked] = tap.sent
    assert "How much was received" in asked.plain
    [reply] = await seller.send(amount)
    if "reference" not in reply.plain:
        return reply
    [done] = await seller.send(reference)
    return done


async def test_record_a_part_then_the_rest_and_the_invoice_is_paid(
    person, engine, ledger
) -> None:
    seller = await person()
    card, invoice = await _plain(seller, engine)
    done = await _record(seller, card, "40", "BANK-1")
    assert done.plain == f"💵 Recorded 40.00 Liquid $ for {invoice.number}. Still due: " \
                         "60.00 Liquid $."
    buyer = await person(balance=50_000)
    [shown] = await buyer.send(f"/start pay_{invoice.public_id}")  # what is left to pay
    assert "Paid: −40.00 Liquid $\nAmount due: 60.00 Liquid $" in shown.plain
    assert shown.button("Pay 60.00 Liquid $ from balance")
    too_much = await _record(seller, card, "70", "BANK-2")
    assert too_much.plain == "That is more than is due on this invoice. Due: 60.00 Liquid $."
    [done] = await seller.send("60")  # the amount step stays: the right amount goes through
    [done] = await seller.send("BANK-2")
    assert done.plain == f"✅ Recorded 60.00 Liquid $: {invoice.number} is paid in full."
    paid = await ledger.seller_invoice(seller.user.id, invoice.public_id)
    assert (paid.status, paid.amount_paid, paid.amount_due) == ("paid", 10000, 0)
    again = await seller.tap(card, "Record payment")  # an old button: one sentence
    assert again.alert and again.answer_text == "This invoice has already been paid."


async def test_void_asks_first_and_a_void_invoice_takes_no_payment(
    person, engine, ledger
) -> None:
    seller = await person()
    card, invoice = await _plain(seller, engine)
    [confirm] = (await seller.tap(card, "Void")).sent
    assert "can no longer be paid" in confirm.plain
    kept = await seller.tap(confirm, "Back")
    assert kept.edited[0].plain == "Nothing changed."
    assert (await ledger.seller_invoice(seller.user.id, invoice.public_id)).status == "pending"
    [confirm] = (await seller.tap(card, "Void")).sent
    done = await seller.tap(confirm, "Yes, void it")
    assert done.edited[0].plain == f"🚫 {invoice.number} is void."
    assert (await ledger.seller_invoice(seller.user.id, invoice.public_id)).status == "void"
    late = await seller.tap(card, "Record payment")
    assert late.alert and late.answer_text == "This invoice was voided by the seller."


async def test_write_off_what_is_left_after_a_partial_payment(person, engine, ledger) -> None:
    seller = await person()
    card, invoice = await _plain(seller, engine)
    await _record(seller, card, "40", "CASH-1")
    refused = await seller.tap(card, "Void")  # money was recorded: void is refused
    [confirm] = refused.sent
    refused = await seller.tap(confirm, "Yes, void it")
    assert refused.alert and "cannot be voided" in (refused.answer_text or "")
    [confirm] = (await seller.tap(card, "Write off")).sent
    assert "60.00 Liquid $ still due" in confirm.plain
    done = await seller.tap(confirm, "Yes, write it off")
    assert done.edited[0].plain == f"🗑 {invoice.number} is written off."
    after = await ledger.seller_invoice(seller.user.id, invoice.public_id)
    assert (after.status, after.amount_paid) == ("uncollectible", 4000)


async def test_send_to_a_client_who_started_the_bot(person, engine, ledger, notifier,
                                                    bot_api) -> None:
    seller, client = await person(), await person(username="bob_client", balance=50_000)
    card, invoice = await _plain(seller, engine)
    [asked] = (await seller.tap(card, "Send to client")).sent
    assert "@username or Telegram id" in asked.plain
    [done] = await seller.send("@bob_client")
    assert done.plain == f"📨 {invoice.number} sent to @bob_client."
    await notifier.deliver_due()
    [received] = bot_api.messages(client.id)
    assert "An invoice for you" in received.plain and "Consulting" in received.plain
    assert received.button("Pay 100.00 Liquid $ from balance")
    sent = await ledger.seller_invoice(seller.user.id, invoice.public_id)
    assert sent.sent_to == client.user.id


async def test_send_to_someone_who_never_started_the_bot(person, engine, ledger) -> None:
    seller = await person()
    card, invoice = await _plain(seller, engine)
    await seller.tap(card, "Send to client")
    [reply] = await seller.send("@nobody_started_it")
    link = f"https://t.me/paybot_test_bot?start=pay_{invoice.public_id}"
    assert reply.plain == ("@nobody_started_it has not started this bot yet, so it cannot "
                           f"write to them: forward them this link instead: {link}")
    assert (await ledger.seller_invoice(seller.user.id, invoice.public_id)).sent_to is None
    await seller.tap(card, "Send to client")
    [bad] = await seller.send("not a user!")
    assert "Send an @username" in bad.plain


async def test_someone_elses_buttons_do_nothing(person, engine, ledger) -> None:
    seller, other = await person(), await person()
    card, invoice = await _plain(seller, engine)
    data = card.button("Void")["callback_data"].replace("void_ask", "void_do")
    forged = await other.press(card, data)
    assert forged.alert and forged.answer_text == "Only the seller can do this with the invoice."
    assert (await ledger.seller_invoice(seller.user.id, invoice.public_id)).status == "pending"


async def test_viewed_when_someone_else_first_opens_the_card(person, engine, ledger) -> None:
    seller, buyer = await person(), await person()
    _, invoice = await _plain(seller, engine)
    await seller.send(f"/start pay_{invoice.public_id}")  # the seller's own look is no view
    assert (await ledger.seller_invoice(seller.user.id, invoice.public_id)).viewed_at is None
    await buyer.send(f"/start pay_{invoice.public_id}")
    first = (await ledger.seller_invoice(seller.user.id, invoice.public_id)).viewed_at
    assert first is not None
    await buyer.send(f"/start pay_{invoice.public_id}")
    assert (await ledger.seller_invoice(seller.user.id, invoice.public_id)).viewed_at == first
