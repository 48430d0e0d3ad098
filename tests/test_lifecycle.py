"""An invoice's life as a document: draft → issued → sent/viewed → paid, void, uncollectible
or expired. Every transition a seller can make is tried, and every illegal one is refused with
nothing changed."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ledger.documents import Buyer, document_of
from ledger.errors import (
    InsufficientFunds,
    InvalidInvoice,
    InvoiceAlreadyPaid,
    InvoiceCancelled,
    InvoiceDraft,
    InvoiceNotDraft,
    InvoiceNotFound,
    InvoicePartlyPaid,
    InvoiceUncollectible,
    InvoiceVoid,
    NotInvoiceSeller,
    OwnInvoice,
    RecipientNotFound,
)
from ledger.invariants import check_invariants
from ledger.invoices import new_invoice
from ledger.totals import Line, PercentOff, TaxRate
from tests.conftest import run_sql

VAT = TaxRate("VAT 20 %", Decimal(20))


def three_lines(seller_id: int, **kw: object):  # type: ignore[no-untyped-def]
    return new_invoice(
        seller_id=seller_id,
        lines=[Line("Design", Decimal("1.5"), 4000, tax_rate="VAT 20 %"),
               Line("Hosting", Decimal(12), 500, tax_rate="VAT 20 %"),
               Line("Domain", Decimal(1), 1200)],
        discount=PercentOff(Decimal(10)), tax_rates=[VAT],
        buyer=Buyer(name="Ivan Petrov", company="OOO Romashka", tax_id="7701234567"), **kw)


async def test_a_document_invoice_stores_its_lines_and_its_total_is_the_amount(
        ledger, make_user) -> None:
    seller = await make_user()
    invoice, _ = await ledger.issue_invoice(three_lines(seller.id))
    doc = document_of(invoice)
    # 6000 + 6000 + 1200 = 13200; 10 % off = 1320; VAT 20 % on the two taxed lines after
    # their share of the discount: (6000 - 600) * 0.2 + (6000 - 600) * 0.2 = 2160
    assert doc.totals.subtotal == 13200
    assert doc.totals.discount == 1320
    assert [(t.name, t.amount) for t in doc.totals.taxes] == [("VAT 20 %", 2160)]
    assert invoice.amount == doc.totals.total == 13200 - 1320 + 2160
    assert invoice.title == "Design +2"
    assert doc.buyer.company == "OOO Romashka"
    assert invoice.status == "pending" and invoice.number is not None
    assert invoice.amount_due == invoice.amount


async def test_a_plain_invoice_is_one_line_of_its_amount(ledger, make_user) -> None:
    seller = await make_user()
    invoice, _ = await ledger.issue_invoice(new_invoice(seller_id=seller.id, title="Tea",
                                                        amount=350))
    doc = document_of(invoice)
    assert invoice.document is None
    assert [(line.description, line.unit_price) for line in doc.lines] == [("Tea", 350)]
    assert doc.totals.total == 350


async def test_a_draft_has_no_number_is_not_payable_and_can_be_replaced(
        ledger, make_user) -> None:
    seller, buyer = await make_user(), await make_user(balance=100_000)
    draft, _ = await ledger.issue_invoice(three_lines(seller.id, draft=True))
    assert (draft.status, draft.number, draft.issued_at) == ("draft", None, None)
    with pytest.raises(InvoiceDraft):
        await ledger.pay_from_balance(draft.public_id, buyer.id, "k1")

    edited = await ledger.update_draft(seller.id, draft.public_id, new_invoice(
        seller_id=seller.id, title="Consulting", amount=5000, draft=True))
    assert (edited.amount, edited.title, edited.version) == (5000, "Consulting", 2)
    assert edited.document is None

    issued = await ledger.finalize_invoice(seller.id, draft.public_id)
    assert issued.status == "pending" and issued.number and issued.issued_at
    assert await ledger.finalize_invoice(seller.id, draft.public_id) == issued  # idempotent
    with pytest.raises(InvoiceNotDraft):
        await ledger.update_draft(seller.id, draft.public_id, new_invoice(
            seller_id=seller.id, title="Changed", amount=1))
    assert (await ledger.invoice(draft.public_id)).invoice.amount == 5000
    paid = await ledger.pay_from_balance(draft.public_id, buyer.id, "k2")
    assert paid.invoice_status == "paid"


async def test_drafts_take_numbers_only_when_issued(ledger, make_user) -> None:
    seller = await make_user()
    d, _ = await ledger.issue_invoice(new_invoice(seller_id=seller.id, title="A", amount=1,
                                                  draft=True))
    first, _ = await ledger.issue_invoice(new_invoice(seller_id=seller.id, title="B", amount=1))
    issued = await ledger.finalize_invoice(seller.id, d.public_id)
    year = first.created_at.year
    assert (first.number, issued.number) == (f"INV-{year}-0001", f"INV-{year}-0002")


async def test_another_seller_cannot_touch_an_invoice(ledger, make_user) -> None:
    seller, other = await make_user(), await make_user()
    draft, _ = await ledger.issue_invoice(new_invoice(seller_id=seller.id, title="A", amount=9,
                                                      draft=True))
    for action in (lambda: ledger.finalize_invoice(other.id, draft.public_id),
                   lambda: ledger.void_invoice(other.id, draft.public_id),
                   lambda: ledger.update_draft(other.id, draft.public_id, new_invoice(
                       seller_id=other.id, title="x", amount=1)),
                   lambda: ledger.send_invoice(other.id, draft.public_id, None)):
        with pytest.raises(NotInvoiceSeller):
            await action()
    assert (await ledger.invoice(draft.public_id)).invoice.status == "draft"


async def test_void_keeps_the_document_and_nothing_pays_it(ledger, make_user) -> None:
    seller, buyer = await make_user(), await make_user(balance=1000)
    invoice, _ = await ledger.issue_invoice(new_invoice(seller_id=seller.id, title="A",
                                                        amount=500))
    void = await ledger.void_invoice(seller.id, invoice.public_id, "sent by mistake")
    assert (void.status, void.number) == ("void", invoice.number)
    assert await ledger.void_invoice(seller.id, invoice.public_id) == void  # twice: no-op
    with pytest.raises(InvoiceVoid):
        await ledger.pay_from_balance(invoice.public_id, buyer.id, "k")
    with pytest.raises(InvoiceVoid):
        await ledger.record_manual_payment(invoice.public_id, seller_id=seller.id, amount=100,
                                           received_on=datetime.now(UTC).date(),
                                           reference="B-1")
    with pytest.raises(InvoiceVoid):
        await ledger.mark_uncollectible(seller.id, invoice.public_id)
    event = await run_sql(ledger.engine, "SELECT count(*) AS n FROM outbox WHERE "
                          "event_type = 'invoice_voided' AND payload->>'invoice' = :id",
                          id=invoice.public_id)
    assert event[0]["n"] == 0  # no callback_url and no webhook: nowhere to send it


async def test_a_paid_or_partly_paid_invoice_cannot_be_voided(ledger, make_user) -> None:
    seller, buyer = await make_user(), await make_user(balance=1000)
    paid, _ = await ledger.issue_invoice(new_invoice(seller_id=seller.id, title="A", amount=5))
    await ledger.pay_from_balance(paid.public_id, buyer.id, "k")
    with pytest.raises(InvoiceAlreadyPaid):
        await ledger.void_invoice(seller.id, paid.public_id)
    part, _ = await ledger.issue_invoice(new_invoice(seller_id=seller.id, title="B",
                                                     amount=500))
    await ledger.record_manual_payment(part.public_id, seller_id=seller.id, amount=100,
                                       received_on=datetime.now(UTC).date(), reference="B-2")
    with pytest.raises(InvoicePartlyPaid):
        await ledger.void_invoice(seller.id, part.public_id)
    with pytest.raises(InvoicePartlyPaid):
        await ledger.cancel_invoice(part.public_id, seller.id)
    assert (await ledger.invoice(part.public_id)).invoice.status == "pending"


async def test_uncollectible_writes_off_what_is_due(ledger, make_user) -> None:
    seller, buyer = await make_user(), await make_user(balance=1000)
    invoice, _ = await ledger.issue_invoice(new_invoice(seller_id=seller.id, title="A",
                                                        amount=500))
    await ledger.record_manual_payment(invoice.public_id, seller_id=seller.id, amount=200,
                                       received_on=datetime.now(UTC).date(), reference="C-1")
    written = await ledger.mark_uncollectible(seller.id, invoice.public_id, "client vanished")
    assert (written.status, written.amount_paid) == ("uncollectible", 200)
    with pytest.raises(InvoiceUncollectible):
        await ledger.pay_from_balance(invoice.public_id, buyer.id, "k")
    draft, _ = await ledger.issue_invoice(new_invoice(seller_id=seller.id, title="D", amount=5,
                                                      draft=True))
    with pytest.raises(InvoiceDraft):
        await ledger.mark_uncollectible(seller.id, draft.public_id)
    assert await check_invariants(ledger.engine) == []


async def test_send_to_a_user_who_started_the_bot_issues_and_queues_the_card(
        ledger, make_user) -> None:
    seller, client = await make_user(), await make_user(username="client_anna")
    draft, _ = await ledger.issue_invoice(three_lines(seller.id, draft=True))
    sent = await ledger.send_invoice(seller.id, draft.public_id, "@Client_Anna")
    assert sent.recipient is not None and sent.recipient.id == client.id
    assert sent.invoice.status == "pending" and sent.invoice.number
    assert sent.invoice.sent_to == client.id and sent.invoice.sent_at is not None
    rows = await run_sql(ledger.engine, "SELECT payload FROM outbox WHERE topic = 'telegram' "
                         "AND event_type = 'invoice.sent' AND payload->>'invoice' = :id",
                         id=draft.public_id)
    assert [r["payload"]["recipient"] for r in rows] == [client.id]
    by_id = await ledger.send_invoice(seller.id, draft.public_id, client.telegram_id)
    assert by_id.recipient is not None and by_id.recipient.id == client.id


async def test_send_to_someone_unknown_or_to_oneself_is_refused(ledger, make_user) -> None:
    seller = await make_user(username="the_seller")
    draft, _ = await ledger.issue_invoice(new_invoice(seller_id=seller.id, title="A", amount=5,
                                                      draft=True))
    with pytest.raises(RecipientNotFound):
        await ledger.send_invoice(seller.id, draft.public_id, "@nobody_here_at_all")
    assert (await ledger.invoice(draft.public_id)).invoice.status == "draft"  # not issued
    with pytest.raises(OwnInvoice):
        await ledger.send_invoice(seller.id, draft.public_id, "@the_seller")
    with pytest.raises(InvalidInvoice):
        await ledger.send_invoice(seller.id, draft.public_id, "@x")
    link = await ledger.send_invoice(seller.id, draft.public_id, None)
    assert link.recipient is None and link.invoice.sent_at is not None


async def test_viewed_is_recorded_once_and_never_for_the_seller(ledger, make_user) -> None:
    seller, viewer = await make_user(), await make_user()
    invoice, _ = await ledger.issue_invoice(new_invoice(seller_id=seller.id, title="A",
                                                        amount=5))
    assert await ledger.mark_viewed(invoice.public_id, seller.id) is False
    assert (await ledger.invoice(invoice.public_id)).invoice.viewed_at is None
    assert await ledger.mark_viewed(invoice.public_id, viewer.id) is True
    assert await ledger.mark_viewed(invoice.public_id, None) is False
    assert (await ledger.invoice(invoice.public_id)).invoice.viewed_at is not None


async def test_the_buyer_it_was_sent_to_can_stop_its_reminders(ledger, make_user) -> None:
    seller, client, stranger = await make_user(), await make_user(), await make_user()
    invoice, _ = await ledger.issue_invoice(new_invoice(seller_id=seller.id, title="A",
                                                        amount=5))
    await ledger.send_invoice(seller.id, invoice.public_id, client.telegram_id)
    with pytest.raises(InvoiceNotFound):
        await ledger.stop_reminders(invoice.public_id, stranger.id)
    assert (await ledger.stop_reminders(invoice.public_id, client.id)).reminders_off is True


async def test_a_due_date_keeps_the_link_alive_past_it(ledger, make_user) -> None:
    seller = await make_user()
    due = datetime.now(UTC) + timedelta(days=14)
    invoice, _ = await ledger.issue_invoice(new_invoice(seller_id=seller.id, title="A",
                                                        amount=5, due_at=due))
    assert invoice.due_at == due.replace(microsecond=invoice.due_at.microsecond)
    assert invoice.expires_at >= due + timedelta(days=29)
    assert not invoice.overdue()
    assert invoice.overdue(due + timedelta(seconds=1))
    with pytest.raises(InvalidInvoice):
        new_invoice(seller_id=seller.id, title="A", amount=5, due_at=due,
                    expires_in=timedelta(days=1))
    with pytest.raises(InvalidInvoice):
        new_invoice(seller_id=seller.id, title="A", amount=5,
                    due_at=datetime.now(UTC) - timedelta(days=1))


async def test_cancelled_stays_the_quick_paths_word(ledger, make_user) -> None:
    seller, buyer = await make_user(), await make_user(balance=100)
    invoice, _ = await ledger.issue_invoice(new_invoice(seller_id=seller.id, title="A",
                                                        amount=5))
    await ledger.cancel_invoice(invoice.public_id, seller.id)
    with pytest.raises(InvoiceCancelled):
        await ledger.pay_from_balance(invoice.public_id, buyer.id, "k")
    with pytest.raises(InsufficientFunds):
        other, _ = await ledger.issue_invoice(new_invoice(seller_id=seller.id, title="B",
                                                          amount=500))
        await ledger.pay_from_balance(other.public_id, buyer.id, "k2")


async def test_issuing_prices_the_draft_as_it_stands_at_the_rate_given(ledger, make_user) -> None:
    """The TON quote is locked when the draft is issued, from the amount on the locked row: an
    edit just before issuing is priced as edited, never at the old amount."""
    seller = await make_user()
    draft, _ = await ledger.issue_invoice(new_invoice(seller_id=seller.id, title="A",
                                                      amount=1000, ton_rate=Decimal(5),
                                                      draft=True))
    assert draft.ton_amount == 2 * 10**9
    await ledger.update_draft(seller.id, draft.public_id, new_invoice(
        seller_id=seller.id, title="A", amount=2000, draft=True))
    issued = await ledger.finalize_invoice(seller.id, draft.public_id, ton_rate=Decimal(4))
    assert (issued.amount, issued.ton_amount) == (2000, 5 * 10**9)
    sent = await ledger.send_invoice(seller.id, draft.public_id, None, ton_rate=Decimal(8))
    assert sent.invoice.ton_amount == 5 * 10**9  # issued already: the quote stays locked
