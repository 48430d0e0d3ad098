"""Cards and Telegram Stars in the ledger: a price locked when offered, every payment a provider
reports recorded once and settled, credited or held (never lost, never an invoice paid by the
wrong amount), and refunds in two phases around the provider's call."""

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from ledger.accounts import balance
from ledger.errors import (
    AlreadyRefunded,
    InsufficientFunds,
    InvalidAmount,
    InvoiceAlreadyPaid,
    OwnInvoice,
    RailPaymentNotFound,
    RefundNotPending,
    RefundNotSupported,
)
from ledger.invariants import check_invariants
from ledger.invoices import new_invoice
from ledger.purchases import purchases_of_user
from ledger.rails import StarTx, convert, format_provider_amount
from tests.conftest import run_sql

STARS_RATE = Decimal(77)  # Stars per 1 Liquid $


async def _invoice(ledger, seller, amount: int = 1000, **kw):  # type: ignore[no-untyped-def]
    invoice, _ = await ledger.issue_invoice(
        new_invoice(seller_id=seller.id, title="Course", amount=amount, **kw))
    return invoice


async def _stars_quote(ledger, invoice, buyer):  # type: ignore[no-untyped-def]
    return await ledger.quote_rail(purpose="invoice", rail="stars", channel="telegram",
                                   currency="XTR", rate=STARS_RATE, invoice=invoice.public_id,
                                   user_id=buyer.id)


def _paid(quote, buyer, ref: str, **kw):  # type: ignore[no-untyped-def]
    return dict(rail=quote.rail, channel="telegram", reference=ref,
                provider_reference=kw.pop("provider_reference", None), token=quote.token,
                currency=kw.pop("currency", quote.currency), amount=kw.pop("amount", quote.amount),
                payer_id=buyer.id if buyer else None, details={"test": True}, **kw)


async def _inflow(engine, name: str, currency: str) -> int:  # type: ignore[no-untyped-def]
    rows = await run_sql(engine, "SELECT balance + coalesce((SELECT sum(amount) FROM entries e"
                                 " WHERE e.account_id = a.id AND e.balance_after IS NULL), 0) AS b"
                                 " FROM accounts a WHERE system_name = :n AND currency = :c",
                         n=name, c=currency)
    return int(rows[0]["b"]) if rows else 0


def test_provider_amounts_round_up_at_each_currency_exponent() -> None:
    # 10.01 Liquid $ at 150 JPY per $ = 1501.5 yen -> 1502 (0 decimals)
    assert convert(1001, "LIQ", Decimal(150), "JPY") == 1502
    # 10.01 at 0.3075 KWD = 3.078075 -> 3.079 (3 decimals, fils)
    assert convert(1001, "LIQ", Decimal("0.3075"), "KWD") == 3079
    assert convert(1001, "LIQ", Decimal(1), "USD") == 1001
    assert convert(1001, "LIQ", Decimal(77), "XTR") == 771  # 770.77 Stars -> 771
    assert format_provider_amount(3079, "KWD") == "3.079"
    assert format_provider_amount(1502, "JPY") == "1502"
    with pytest.raises(InvalidAmount):
        convert(100, "LIQ", Decimal(1), "ZZZ")


async def test_a_stars_payment_pays_the_invoice_once_and_books_the_stars(
        ledger, make_user, engine) -> None:
    seller, buyer = await make_user(), await make_user()
    invoice = await _invoice(ledger, seller, 1000)
    quote = await _stars_quote(ledger, invoice, buyer)
    assert (quote.currency, quote.amount, quote.ledger_amount) == ("XTR", 770, 1000)
    assert (await ledger.precheck_rail(quote.token, currency="XTR", amount=770,
                                       payer_id=buyer.id)).ok
    stars_before = await _inflow(engine, "stars_inflow", "XTR")
    first = await ledger.settle_rail_payment(**_paid(quote, buyer, "stxA"))
    again = await ledger.settle_rail_payment(**_paid(quote, buyer, "stxA"))
    assert (first.outcome, first.invoice_status, first.replayed) == ("paid", "paid", False)
    assert again.replayed and again.payment_id == first.payment_id
    assert again.grant_id == first.grant_id
    assert await balance(engine, seller.id) == 1000
    assert await _inflow(engine, "stars_inflow", "XTR") == stars_before - 770
    [payment] = await run_sql(engine, "SELECT method, amount FROM payments WHERE id = :id",
                              id=first.payment_id)
    assert payment == {"method": "stars", "amount": 1000}
    events = await run_sql(engine, "SELECT payload->>'method' AS m, payload->>'role' AS r"
                                   " FROM outbox WHERE event_type = 'invoice.paid'"
                                   " AND payload->>'invoice' = :i", i=invoice.public_id)
    assert sorted(e["r"] for e in events) == ["buyer", "seller"]
    assert {e["m"] for e in events} == {"stars"}
    assert await check_invariants(engine) == []


async def test_concurrent_deliveries_of_one_payment_settle_it_once(
        ledger, make_user, engine) -> None:
    seller, buyer = await make_user(), await make_user()
    invoice = await _invoice(ledger, seller, 500, kind="multi_use")
    quote = await ledger.quote_rail(purpose="invoice", rail="card:stripe", channel="telegram",
                                    currency="USD", rate=Decimal(1), invoice=invoice.public_id,
                                    user_id=buyer.id)
    results = await asyncio.gather(*[
        ledger.settle_rail_payment(**_paid(quote, buyer, "tg-charge-1", provider_reference="ch_1"))
        for _ in range(5)])
    assert len({r.payment_id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert await balance(engine, seller.id) == 500
    [rp] = await ledger.rail_payments_of_invoice(invoice.public_id)
    assert (rp.rail, rp.provider_reference, rp.outcome) == ("card:stripe", "ch_1", "paid")


async def test_pre_checkout_refuses_an_invoice_paid_meanwhile_and_a_changed_amount(
        ledger, make_user) -> None:
    seller, buyer, other = await make_user(), await make_user(), await make_user(balance=5000)
    invoice = await _invoice(ledger, seller, 1000)
    quote = await _stars_quote(ledger, invoice, buyer)
    check = await ledger.precheck_rail(quote.token, currency="XTR", amount=771, payer_id=buyer.id)
    assert (check.ok, check.reason) == (False, "amount_changed")
    await ledger.pay_from_balance(invoice.public_id, other.id, "k1")
    check = await ledger.precheck_rail(quote.token, currency="XTR", amount=770, payer_id=buyer.id)
    assert (check.ok, check.reason) == (False, "invoice_paid")
    assert (await ledger.precheck_rail("qNoSuchQuote000000", currency="XTR", amount=1,
                                       payer_id=None)).reason == "quote_unknown"
    with pytest.raises(InvoiceAlreadyPaid):
        await _stars_quote(ledger, invoice, buyer)


async def test_a_success_after_cancel_is_held_refundable_and_the_operator_told(
        ledger, make_user, engine) -> None:
    seller, buyer = await make_user(), await make_user()
    invoice = await _invoice(ledger, seller, 1000)
    quote = await _stars_quote(ledger, invoice, buyer)
    await ledger.cancel_invoice(invoice.public_id, seller.id)
    held = await ledger.settle_rail_payment(**_paid(quote, buyer, "stx-late"))
    assert (held.outcome, held.hold_reason, held.invoice_status) == (
        "held", "invoice_closed", "cancelled")
    assert held.payment_id is None and await balance(engine, seller.id) == 0
    assert await _inflow(engine, "suspense", "XTR") == 770
    told = await run_sql(engine, "SELECT event_type, payload FROM outbox WHERE event_type IN"
                                 " ('rail.held', 'operator.rail_held')"
                                 " AND (payload->>'rail_payment_id')::bigint = :id",
                         id=held.rail_payment_id)
    assert sorted(t["event_type"] for t in told) == ["operator.rail_held", "rail.held"]
    assert [p.id for p in await ledger.rail_payments(held_only=True)].count(
        held.rail_payment_id) == 1
    refund = await ledger.begin_rail_refund(held.rail_payment_id, seller_id=None, actor_id=None,
                                            reason="invoice was cancelled")
    assert refund.status == "pending" and refund.amount == 770
    done = await ledger.complete_rail_refund(refund.id)
    assert done.status == "done"
    assert await _inflow(engine, "suspense", "XTR") == 0
    assert held.rail_payment_id not in [p.id for p in await ledger.rail_payments(held_only=True)]
    assert await check_invariants(engine) == []


@pytest.mark.parametrize(("currency", "amount", "why"), [
    ("XTR", 769, "amount_mismatch"), ("USD", 770, "amount_mismatch")])
async def test_an_amount_or_currency_other_than_quoted_is_held_never_paid(
        ledger, make_user, currency, amount, why) -> None:
    seller, buyer = await make_user(), await make_user()
    invoice = await _invoice(ledger, seller, 1000)
    quote = await _stars_quote(ledger, invoice, buyer)
    held = await ledger.settle_rail_payment(**_paid(quote, buyer, f"x-{currency}-{amount}",
                                                    currency=currency, amount=amount))
    assert (held.outcome, held.hold_reason) == ("held", why)
    assert (await ledger.invoice(invoice.public_id)).invoice.status == "pending"


async def test_a_forged_payload_is_recorded_and_held(ledger, make_user) -> None:
    buyer = await make_user()
    held = await ledger.settle_rail_payment(
        rail="stars", channel="telegram", reference="forged-1", provider_reference=None,
        token="INV-0000000000000", currency="XTR", amount=5, payer_id=buyer.id, details={})
    assert (held.outcome, held.hold_reason, held.invoice_public_id) == (
        "held", "unknown_quote", None)
    assert (await ledger.rail_payment(held.rail_payment_id)).amount == 5


async def test_a_top_up_credits_the_payer_once(ledger, make_user, engine) -> None:
    buyer = await make_user()
    quote = await ledger.quote_rail(purpose="topup", rail="card:yookassa", channel="telegram",
                                    currency="RUB", rate=Decimal("95.5"), topup_amount=1000,
                                    user_id=buyer.id)
    assert (quote.amount, quote.ledger_amount) == (95500, 1000)  # 10 $ = 955.00 RUB
    for _ in range(2):
        got = await ledger.settle_rail_payment(**_paid(quote, buyer, "topup-1"))
    assert (got.outcome, got.credited, got.replayed) == ("topup", 1000, True)
    assert await balance(engine, buyer.id) == 1000
    [credited] = await run_sql(engine, "SELECT payload FROM outbox WHERE event_type ="
                                       " 'balance.credited' AND (payload->>'recipient')::bigint"
                                       " = :u", u=buyer.id)
    assert credited["payload"]["kind"] == "topup"
    assert await check_invariants(engine) == []


async def test_a_three_decimal_currency_is_quoted_and_paid_exactly(ledger, make_user) -> None:
    seller = await make_user()
    invoice = await _invoice(ledger, seller, 1001)
    quote = await ledger.quote_rail(purpose="invoice", rail="card:stripe", channel="web",
                                    currency="KWD", rate=Decimal("0.3075"),
                                    invoice=invoice.public_id)
    assert quote.amount == 3079
    paid = await ledger.settle_rail_payment(**_paid(quote, None, "cs_test_kwd"))
    assert paid.outcome == "paid" and paid.claim_token  # a guest: the grant waits for a claim


async def test_the_sellers_own_invoice_is_not_offered_and_a_payment_of_it_is_held(
        ledger, make_user) -> None:
    seller = await make_user()
    invoice = await _invoice(ledger, seller)
    with pytest.raises(OwnInvoice):
        await _stars_quote(ledger, invoice, seller)
    other = await make_user()
    quote = await _stars_quote(ledger, invoice, other)
    held = await ledger.settle_rail_payment(**_paid(quote, seller, "own-1"))
    assert (held.outcome, held.hold_reason) == ("held", "own_invoice")


async def test_a_stars_refund_reverses_the_payment_and_reopens_the_invoice(
        ledger, make_user, engine) -> None:
    seller, buyer = await make_user(), await make_user()
    invoice = await _invoice(ledger, seller, 1000)
    paid = await ledger.settle_rail_payment(**_paid(await _stars_quote(ledger, invoice, buyer),
                                                    buyer, "stx-refund"))
    with pytest.raises(RailPaymentNotFound):  # another seller
        await ledger.begin_rail_refund(paid.rail_payment_id, seller_id=buyer.id,
                                       actor_id=buyer.id, reason="x")
    refund = await ledger.begin_rail_refund(paid.rail_payment_id, seller_id=seller.id,
                                            actor_id=seller.id, reason="customer asked")
    assert await balance(engine, seller.id) == 0  # reserved before Telegram is asked
    with pytest.raises(AlreadyRefunded):
        await ledger.begin_rail_refund(paid.rail_payment_id, seller_id=seller.id,
                                       actor_id=seller.id, reason="again")
    done = await ledger.complete_rail_refund(refund.id)
    assert (await ledger.complete_rail_refund(refund.id)).status == done.status == "done"
    with pytest.raises(RefundNotPending):
        await ledger.fail_rail_refund(refund.id, "late")
    reopened = (await ledger.invoice(invoice.public_id)).invoice
    assert (reopened.status, reopened.amount_due) == ("pending", 1000)
    assert await run_sql(engine, "SELECT count(*) AS n FROM payment_reversals WHERE payment_id"
                                 " = :p", p=paid.payment_id) == [{"n": 1}]
    # Refunded, the purchase is taken back: the buyer no longer holds it.
    assert await run_sql(engine, "SELECT revoked_at IS NOT NULL AS revoked FROM grants"
                                 " WHERE payment_id = :p", p=paid.payment_id) == [
        {"revoked": True}]
    assert await purchases_of_user(engine, buyer.id) == []
    told = await run_sql(engine, "SELECT payload FROM outbox WHERE event_type = 'rail.refunded'"
                                 " AND (payload->>'rail_payment_id')::bigint = :id",
                         id=paid.rail_payment_id)
    assert told[0]["payload"]["recipient"] == buyer.id
    with pytest.raises(AlreadyRefunded):
        await ledger.begin_rail_refund(paid.rail_payment_id, seller_id=None, actor_id=None,
                                       reason="twice")
    assert await check_invariants(engine) == []


async def test_a_failed_refund_gives_the_reservation_back_and_may_be_tried_again(
        ledger, make_user, engine) -> None:
    seller, buyer = await make_user(), await make_user()
    invoice = await _invoice(ledger, seller, 1000)
    paid = await ledger.settle_rail_payment(**_paid(await _stars_quote(ledger, invoice, buyer),
                                                    buyer, "stx-fail"))
    refund = await ledger.begin_rail_refund(paid.rail_payment_id, seller_id=seller.id,
                                            actor_id=seller.id, reason="asked")
    failed = await ledger.fail_rail_refund(refund.id, "CHARGE_NOT_FOUND")
    assert (failed.status, failed.error) == ("failed", "CHARGE_NOT_FOUND")
    assert await balance(engine, seller.id) == 1000
    assert (await ledger.invoice(invoice.public_id)).invoice.status == "paid"
    again = await ledger.begin_rail_refund(paid.rail_payment_id, seller_id=seller.id,
                                           actor_id=seller.id, reason="asked again")
    assert again.id != refund.id and again.status == "pending"
    assert await check_invariants(engine) == []


async def test_a_refund_the_balance_no_longer_covers_changes_nothing(
        ledger, make_user, engine) -> None:
    seller, buyer, shop = await make_user(), await make_user(), await make_user()
    invoice = await _invoice(ledger, seller, 1000)
    paid = await ledger.settle_rail_payment(**_paid(await _stars_quote(ledger, invoice, buyer),
                                                    buyer, "stx-spent"))
    spend = await _invoice(ledger, shop, 600)
    await ledger.pay_from_balance(spend.public_id, seller.id, "spend")
    with pytest.raises(InsufficientFunds):
        await ledger.begin_rail_refund(paid.rail_payment_id, seller_id=seller.id,
                                       actor_id=seller.id, reason="asked")
    assert await balance(engine, seller.id) == 400
    assert (await ledger.rail_payment(paid.rail_payment_id)).refund is None


async def test_a_card_payment_is_refunded_outside_and_recorded_by_the_operator(
        ledger, make_user, engine) -> None:
    seller, buyer = await make_user(), await make_user()
    invoice = await _invoice(ledger, seller, 1000)
    quote = await ledger.quote_rail(purpose="invoice", rail="card:stripe", channel="telegram",
                                    currency="USD", rate=Decimal(1), invoice=invoice.public_id,
                                    user_id=buyer.id)
    paid = await ledger.settle_rail_payment(**_paid(quote, buyer, "tg-card-9"))
    with pytest.raises(RefundNotSupported):
        await ledger.begin_rail_refund(paid.rail_payment_id, seller_id=seller.id,
                                       actor_id=seller.id, reason="asked")
    recorded = await ledger.record_rail_refund(paid.rail_payment_id, actor_id=None,
                                               reason="refunded in the Stripe dashboard")
    assert recorded.status == "done" and await balance(engine, seller.id) == 0
    assert await check_invariants(engine) == []


async def test_reconciliation_settles_a_missed_stars_payment_and_completes_a_refund(
        ledger, make_user, engine) -> None:
    seller, buyer = await make_user(), await make_user()
    invoice = await _invoice(ledger, seller, 1000)
    quote = await _stars_quote(ledger, invoice, buyer)
    when = datetime.now(UTC)
    missed = StarTx(id="stx-missed", amount=770, date=when, incoming=True,
                    user_telegram_id=buyer.telegram_id, invoice_payload=quote.token)
    report = await ledger.reconcile_star_transactions([missed])
    assert [s.outcome for s in report.settled] == ["paid"]
    assert report.settled[0].user_id == buyer.id
    again = await ledger.reconcile_star_transactions([missed])
    assert again.settled == [] and again.mismatches == []
    assert await balance(engine, seller.id) == 1000
    refund = await ledger.begin_rail_refund(report.settled[0].rail_payment_id, seller_id=None,
                                            actor_id=None, reason="asked")
    out = StarTx(id="stx-missed", amount=770, date=when, incoming=False,
                 user_telegram_id=buyer.telegram_id, invoice_payload=None)
    assert (await ledger.reconcile_star_transactions([out])).completed_refunds == 1
    assert (await ledger.rail_payment(refund.rail_payment_id)).refund.status == "done"
    # a payer who never started the bot becomes a user: a refund goes back to them by that id
    stranger = StarTx(id="stx-stranger", amount=770, date=when, incoming=True,
                      user_telegram_id=7_000_000_001, invoice_payload="qUnknownQuote0000")
    [held] = (await ledger.reconcile_star_transactions([stranger])).settled
    assert held.outcome == "held" and held.user_id is not None
    assert (await ledger.rail_payment(held.rail_payment_id)).payer_telegram_id == 7_000_000_001
    stray = StarTx(id="stx-never", amount=3, date=when, incoming=False, user_telegram_id=1,
                   invoice_payload=None)
    first = await ledger.reconcile_star_transactions([stray])
    second = await ledger.reconcile_star_transactions([stray])
    assert len(first.mismatches) == len(second.mismatches) == 1
    alerts = await run_sql(engine, "SELECT count(*) AS n FROM outbox WHERE event_type ="
                                   " 'operator.reconcile' AND payload->>'tx_id' = 'stx-never'")
    assert alerts == [{"n": 1}]  # told once, not once per run
    at = await ledger.star_cursor()  # shared by the tests of one run
    assert await ledger.advance_star_cursor(at + 7) == at + 7
    assert await ledger.advance_star_cursor(at + 3) == at + 7  # never back


async def test_a_stars_subscription_pays_its_open_period_then_tops_up_ahead(
        ledger, make_user, engine) -> None:
    seller, fan = await make_user(), await make_user()
    plan = await ledger.create_plan(seller.id, "Club", {1: 500})
    subscribed = await ledger.subscribe(plan.public_id, fan.id, 1)
    quote = await ledger.quote_rail(purpose="subscription", rail="stars", channel="telegram",
                                    currency="XTR", rate=STARS_RATE,
                                    subscription=subscribed.subscription.public_id,
                                    user_id=fan.id)
    first = await ledger.settle_rail_payment(**_paid(quote, fan, "sub-1"))
    assert (first.outcome, first.invoice_public_id) == ("paid", subscribed.invoice)
    assert (await ledger.subscription(subscribed.subscription.public_id)).status == "active"
    ahead = await ledger.settle_rail_payment(**_paid(quote, fan, "sub-2"))
    assert (ahead.outcome, ahead.credited) == ("topup", 500)
    assert await balance(engine, fan.id) == 500  # the renewal takes it from here
    await ledger.cancel_subscription(subscribed.subscription.public_id, actor_id=fan.id,
                                     at_period_end=False)
    # Telegram is told to stop charging, naming the subscription by its first payment
    [stop] = await run_sql(engine, "SELECT payload FROM outbox WHERE event_type ="
                                   " 'stars.subscription_stop' AND payload->>'subscription' = :s",
                           s=subscribed.subscription.public_id)
    assert stop["payload"]["charge_id"] == "sub-1"
    assert stop["payload"]["telegram_id"] == fan.telegram_id
    ended = await ledger.settle_rail_payment(**_paid(quote, fan, "sub-3"))
    assert (ended.outcome, ended.hold_reason) == ("held", "subscription_ended")
    assert await check_invariants(engine) == []


async def test_a_guest_paying_by_card_in_the_browser_claims_it_with_the_tags_proof(
        ledger, make_user, engine) -> None:
    from ledger.payers import bind_user, guest_purchase, tag_for_guest

    seller, later = await make_user(), await make_user()
    invoice = await _invoice(ledger, seller, 1000, payload={"item_id": "ebook"})
    guest_key = "guest-browser-key-0123456789"
    tag = await tag_for_guest(engine, invoice.public_id, guest_key)
    quote = await ledger.quote_rail(purpose="invoice", rail="card:stripe", channel="web",
                                    currency="USD", rate=Decimal(1), invoice=invoice.public_id,
                                    payer_tag=tag.tag)
    paid = await ledger.settle_rail_payment(**_paid(quote, None, "cs_guest_1"))
    assert paid.outcome == "paid" and paid.user_id is None
    seen = await guest_purchase(engine, invoice.public_id, guest_key)
    assert seen is not None and seen.status == "paid" and seen.claim == {"claimed": False}
    assert await guest_purchase(engine, invoice.public_id, "another-browser-key-999") is None
    await bind_user(engine, invoice.public_id, tag.tag, later.id, proof=tag.proof)
    owned = await run_sql(engine, "SELECT user_id, item_id FROM grants WHERE payment_id = :p",
                          p=paid.payment_id)
    assert owned == [{"user_id": later.id, "item_id": "ebook"}]


async def test_refunding_one_sale_of_a_product_link_gives_its_use_back(
        ledger, make_user, engine) -> None:
    seller, a, b = await make_user(), await make_user(), await make_user()
    link = await _invoice(ledger, seller, 300, kind="multi_use", max_uses=2)
    first = await ledger.settle_rail_payment(**_paid(await _stars_quote(ledger, link, a), a,
                                                     "ml-1"))
    await ledger.settle_rail_payment(**_paid(await _stars_quote(ledger, link, b), b, "ml-2"))
    assert (await ledger.invoice(link.public_id)).invoice.status == "paid"  # sold out
    refund = await ledger.begin_rail_refund(first.rail_payment_id, seller_id=seller.id,
                                            actor_id=seller.id, reason="returned")
    await ledger.complete_rail_refund(refund.id)
    again = (await ledger.invoice(link.public_id)).invoice
    assert (again.status, again.uses) == ("pending", 1)
    assert await balance(engine, seller.id) == 300
    assert await check_invariants(engine) == []


async def test_two_buyers_paying_one_invoice_at_once_one_pays_the_other_is_held(
        ledger, make_user, engine) -> None:
    seller, a, b = await make_user(), await make_user(), await make_user()
    invoice = await _invoice(ledger, seller, 1000)
    qa, qb = await _stars_quote(ledger, invoice, a), await _stars_quote(ledger, invoice, b)
    results = await asyncio.gather(ledger.settle_rail_payment(**_paid(qa, a, "race-a")),
                                   ledger.settle_rail_payment(**_paid(qb, b, "race-b")))
    assert sorted(r.outcome for r in results) == ["held", "paid"]
    held = next(r for r in results if r.outcome == "held")
    assert held.hold_reason == "invoice_paid"
    assert await balance(engine, seller.id) == 1000  # paid once, the other Stars held
    assert await check_invariants(engine) == []
