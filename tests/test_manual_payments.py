"""Manual payments: a bank transfer or cash recorded by the seller or the operator — partial
allowed, idempotent by reference, undone only by a compensating reversal — keep the ledger's
invariants and finish the purchase like any other payment."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from ledger.accounts import adjust_balance, balance
from ledger.errors import (
    InsufficientFunds,
    InvalidAmount,
    InvalidInvoice,
    InvoiceAlreadyPaid,
    InvoiceDraft,
    ManualPaymentMultiUse,
    ManualPaymentTooLarge,
    NotInvoiceSeller,
    PaymentNotFound,
    PaymentNotReversible,
    ReferenceReused,
)
from ledger.invariants import check_invariants
from ledger.invoices import new_invoice
from ledger.payments import grants_of_user
from tests.conftest import run_sql

TODAY = datetime.now(UTC).date()


async def invoice_of(ledger, seller, amount: int = 10_000, **kw):  # type: ignore[no-untyped-def]
    invoice, _ = await ledger.issue_invoice(new_invoice(seller_id=seller.id, title="Audit",
                                                        amount=amount, **kw))
    return invoice


async def test_two_partial_payments_pay_the_invoice_and_grant_once(ledger, make_user) -> None:
    seller, client = await make_user(), await make_user()
    invoice = await invoice_of(ledger, seller, payload={"item_id": "report"})
    await ledger.send_invoice(seller.id, invoice.public_id, client.telegram_id)

    first = await ledger.record_manual_payment(invoice.public_id, seller_id=seller.id,
                                               amount=4000, received_on=TODAY,
                                               reference="SWIFT-001", note="first half")
    assert (first.invoice.status, first.invoice.amount_paid) == ("pending", 4000)
    assert first.invoice.amount_due == 6000
    assert await grants_of_user(ledger.engine, client.id) == []  # nothing yet

    rest = await ledger.record_manual_payment(invoice.public_id, seller_id=seller.id,
                                              amount=6000, received_on=TODAY,
                                              reference="SWIFT-002")
    assert (rest.invoice.status, rest.invoice.amount_due) == ("paid", 0)
    grants = await grants_of_user(ledger.engine, client.id)
    assert [g.item_id for g in grants] == ["report"]  # the buyer it was sent to gets it
    assert await balance(ledger.engine, seller.id) == 10_000
    manual = await run_sql(ledger.engine, "SELECT e.amount FROM entries e JOIN accounts a "
                           "ON a.id = e.account_id WHERE a.system_name = 'manual' "
                           "AND e.tx_id IN (SELECT ledger_tx_id FROM payments "
                           "WHERE invoice_id = :i) ORDER BY e.id", i=invoice.id)
    assert [r["amount"] for r in manual] == [-4000, -6000]  # the money came from outside
    assert await check_invariants(ledger.engine) == []


async def test_the_same_reference_is_recorded_once(ledger, make_user) -> None:
    seller = await make_user()
    invoice = await invoice_of(ledger, seller)
    once = await ledger.record_manual_payment(invoice.public_id, seller_id=seller.id,
                                              amount=2500, received_on=TODAY, reference="B-7")
    again = await ledger.record_manual_payment(invoice.public_id, seller_id=seller.id,
                                               amount=2500, received_on=TODAY, reference="B-7")
    assert again.replayed and again.payment_id == once.payment_id
    assert again.invoice.amount_paid == 2500
    with pytest.raises(ReferenceReused):  # the same reference, another amount
        await ledger.record_manual_payment(invoice.public_id, seller_id=seller.id,
                                           amount=2000, received_on=TODAY, reference="B-7")
    other = await invoice_of(ledger, seller)
    with pytest.raises(ReferenceReused):  # the same reference, another invoice
        await ledger.record_manual_payment(other.public_id, seller_id=seller.id,
                                           amount=2500, received_on=TODAY, reference="B-7")
    assert (await ledger.invoice(other.public_id)).invoice.amount_paid == 0


async def test_two_sellers_may_use_the_same_reference(ledger, make_user) -> None:
    a, b = await make_user(), await make_user()
    for seller in (a, b):
        invoice = await invoice_of(ledger, seller)
        result = await ledger.record_manual_payment(invoice.public_id, seller_id=seller.id,
                                                    amount=100, received_on=TODAY,
                                                    reference="CASH-1")
        assert not result.replayed


async def test_concurrent_records_of_one_reference_make_one_payment(ledger, make_user) -> None:
    seller = await make_user()
    invoice = await invoice_of(ledger, seller)
    results = await asyncio.gather(*(ledger.record_manual_payment(
        invoice.public_id, seller_id=seller.id, amount=3000, received_on=TODAY,
        reference="RACE-1") for _ in range(5)))
    assert len({r.payment_id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert (await ledger.invoice(invoice.public_id)).invoice.amount_paid == 3000


async def test_bad_manual_payments_are_refused_and_change_nothing(ledger, make_user) -> None:
    seller, other = await make_user(), await make_user()
    invoice = await invoice_of(ledger, seller, amount=1000)
    cases = [
        (ManualPaymentTooLarge, dict(amount=1001, reference="R1")),
        (InvalidAmount, dict(amount=0, reference="R2")),
        (InvalidAmount, dict(amount=-5, reference="R3")),
        (InvalidAmount, dict(amount=10, reference="  ")),
        (InvalidAmount, dict(amount=10, reference="R4",
                             received_on=TODAY + timedelta(days=5))),
    ]
    for error, kw in cases:
        with pytest.raises(error):
            await ledger.record_manual_payment(invoice.public_id, seller_id=seller.id,
                                               **{"received_on": TODAY, **kw})
    with pytest.raises(NotInvoiceSeller):  # answered as "not found" at every edge
        await ledger.record_manual_payment(invoice.public_id, seller_id=other.id, amount=10,
                                           received_on=TODAY, reference="R5")
    multi = await invoice_of(ledger, seller, kind="multi_use")
    with pytest.raises(ManualPaymentMultiUse):
        await ledger.record_manual_payment(multi.public_id, seller_id=seller.id, amount=10,
                                           received_on=TODAY, reference="R6")
    draft = await invoice_of(ledger, seller, draft=True)
    with pytest.raises(InvoiceDraft):
        await ledger.record_manual_payment(draft.public_id, seller_id=seller.id, amount=10,
                                           received_on=TODAY, reference="R7")
    assert (await ledger.invoice(invoice.public_id)).invoice.amount_paid == 0
    assert await ledger.payments_of_invoice(invoice.public_id, seller.id) == []


async def test_a_paid_invoice_takes_no_manual_payment(ledger, make_user) -> None:
    seller, buyer = await make_user(), await make_user(balance=5000)
    invoice = await invoice_of(ledger, seller, amount=1000)
    await ledger.pay_from_balance(invoice.public_id, buyer.id, "k")
    with pytest.raises(InvoiceAlreadyPaid):
        await ledger.record_manual_payment(invoice.public_id, seller_id=seller.id, amount=1,
                                           received_on=TODAY, reference="late")


async def test_after_a_partial_payment_the_balance_pays_only_what_is_due(
        ledger, make_user) -> None:
    seller, buyer = await make_user(), await make_user(balance=10_000)
    invoice = await invoice_of(ledger, seller, amount=10_000)
    await ledger.record_manual_payment(invoice.public_id, seller_id=seller.id, amount=7000,
                                       received_on=TODAY, reference="P-1")
    paid = await ledger.pay_from_balance(invoice.public_id, buyer.id, "k")
    assert paid.invoice_status == "paid" and paid.buyer_balance == 7000
    assert await balance(ledger.engine, seller.id) == 10_000
    assert await check_invariants(ledger.engine) == []


async def test_the_operator_records_a_payment_on_any_invoice(ledger, make_user) -> None:
    seller = await make_user()
    invoice = await invoice_of(ledger, seller, amount=500)
    result = await ledger.record_manual_payment(invoice.public_id, seller_id=None, amount=500,
                                                received_on=TODAY, reference="OPS-1")
    assert result.invoice.status == "paid"
    rows = await ledger.payments_of_invoice(invoice.public_id, None)
    assert [(p.method, p.amount, p.reference) for p in rows] == [("manual", 500, "OPS-1")]


async def test_a_transfer_for_an_expired_invoice_is_still_recorded(ledger, make_user) -> None:
    seller = await make_user()
    invoice = await invoice_of(ledger, seller, amount=800)
    await run_sql(ledger.engine, "UPDATE invoices SET expires_at = now() - interval '1 day' "
                  "WHERE id = :id", id=invoice.id)
    result = await ledger.record_manual_payment(invoice.public_id, seller_id=seller.id,
                                                amount=800, received_on=TODAY, reference="L-1")
    assert result.invoice.amount_paid == 800 and result.invoice.uses == 1
    assert await check_invariants(ledger.engine) == []


async def test_a_reversal_compensates_and_reopens_a_paid_invoice(ledger, make_user) -> None:
    seller = await make_user()
    invoice = await invoice_of(ledger, seller, amount=1000)
    part = await ledger.record_manual_payment(invoice.public_id, seller_id=seller.id,
                                              amount=400, received_on=TODAY, reference="A")
    rest = await ledger.record_manual_payment(invoice.public_id, seller_id=seller.id,
                                              amount=600, received_on=TODAY, reference="B")
    assert rest.invoice.status == "paid"

    reopened = await ledger.reverse_manual_payment(rest.payment_id, seller_id=seller.id,
                                                   reason="the bank returned it")
    assert (reopened.status, reopened.amount_paid, reopened.paid_at) == ("pending", 400, None)
    assert await balance(ledger.engine, seller.id) == 400
    again = await ledger.reverse_manual_payment(rest.payment_id, seller_id=seller.id,
                                                reason="twice")
    assert again.amount_paid == 400  # once only
    payments = await ledger.payments_of_invoice(invoice.public_id, seller.id)
    assert [(p.id, p.reversal_reason) for p in payments] == [
        (part.payment_id, None), (rest.payment_id, "the bank returned it")]
    assert await check_invariants(ledger.engine) == []

    # paid again later: the invoice is whole once more
    final = await ledger.record_manual_payment(invoice.public_id, seller_id=seller.id,
                                               amount=600, received_on=TODAY, reference="C")
    assert final.invoice.status == "paid"
    assert await check_invariants(ledger.engine) == []


async def test_bad_reversals_are_refused(ledger, make_user) -> None:
    seller, buyer, other = await make_user(), await make_user(balance=500), await make_user()
    invoice = await invoice_of(ledger, seller, amount=500)
    paid = await ledger.pay_from_balance(invoice.public_id, buyer.id, "k")
    with pytest.raises(PaymentNotReversible):  # a balance payment is refunded, not reversed
        await ledger.reverse_manual_payment(paid.payment_id, seller_id=seller.id, reason="x")
    manual_inv = await invoice_of(ledger, seller, amount=300)
    manual = await ledger.record_manual_payment(manual_inv.public_id, seller_id=seller.id,
                                                amount=300, received_on=TODAY, reference="M")
    with pytest.raises(PaymentNotFound):
        await ledger.reverse_manual_payment(manual.payment_id, seller_id=other.id, reason="x")
    with pytest.raises(InvalidInvoice):
        await ledger.reverse_manual_payment(manual.payment_id, seller_id=seller.id, reason=" ")
    # the seller spent the money meanwhile: the reversal cannot take it back
    await run_sql(ledger.engine, "SELECT apply_pending_credits(id) FROM accounts "
                  "WHERE user_id = :u", u=seller.id)
    await adjust_balance(ledger.engine, seller.id, -800, "LIQ", reason="withdrawn")
    with pytest.raises(InsufficientFunds):
        await ledger.reverse_manual_payment(manual.payment_id, seller_id=seller.id,
                                            reason="mistake")
    assert (await ledger.invoice(manual_inv.public_id)).invoice.status == "paid"
    assert await check_invariants(ledger.engine) == []


async def test_a_reversed_payment_takes_back_what_it_bought(ledger, make_user) -> None:
    from ledger.errors import ClaimRevoked
    from ledger.payments import claim_grant
    from ledger.purchases import purchases_of_user

    seller, client, stranger = await make_user(), await make_user(), await make_user()
    sent = await invoice_of(ledger, seller, payload={"item_id": "report"})
    await ledger.send_invoice(seller.id, sent.public_id, client.telegram_id)
    paid = await ledger.record_manual_payment(sent.public_id, seller_id=seller.id,
                                              amount=10_000, received_on=TODAY, reference="R-1")
    assert [p.item_id for p in await purchases_of_user(ledger.engine, client.id)] == ["report"]
    await ledger.reverse_manual_payment(paid.payment_id, seller_id=seller.id, reason="bounced")
    # The buyer no longer holds it: not in the inventory, not in what they bought.
    assert await purchases_of_user(ledger.engine, client.id) == []
    assert await grants_of_user(ledger.engine, client.id) == []

    # Sent to nobody: the purchase waits under a claim link, which a refund voids.
    unsent = await invoice_of(ledger, seller, payload={"item_id": "guide"})
    by_bank = await ledger.record_manual_payment(unsent.public_id, seller_id=seller.id,
                                                 amount=10_000, received_on=TODAY,
                                                 reference="R-2")
    [row] = await run_sql(ledger.engine, "SELECT claim_token FROM grants WHERE payment_id = :p",
                          p=by_bank.payment_id)
    await ledger.reverse_manual_payment(by_bank.payment_id, seller_id=seller.id, reason="oops")
    with pytest.raises(ClaimRevoked):
        await claim_grant(ledger.engine, row["claim_token"], stranger.id)
    assert await purchases_of_user(ledger.engine, stranger.id) == []
    # Paid again, the invoice grants again (a new payment, a new grant).
    again = await ledger.record_manual_payment(unsent.public_id, seller_id=seller.id,
                                               amount=10_000, received_on=TODAY, reference="R-3")
    [fresh] = await run_sql(ledger.engine, "SELECT claim_token FROM grants WHERE payment_id = :p",
                            p=again.payment_id)
    await claim_grant(ledger.engine, fresh["claim_token"], stranger.id)
    assert [p.item_id for p in await purchases_of_user(ledger.engine, stranger.id)] == ["guide"]
    assert await check_invariants(ledger.engine) == []
