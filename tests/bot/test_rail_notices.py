"""Notices of card and Stars payments: the paid notices name the method, a payer hears that a
payment is held (and why) and when it is refunded, a top-up says how it came, and the operators
(OPERATOR_TELEGRAM_IDS) hear of every held payment and of what reconciliation could not match;
in English and Russian."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from aiogram import Bot

from bot.telegram import Notifier
from ledger.core import Ledger
from ledger.invoices import create_invoice
from ledger.payments import pay_from_balance
from ledger.rails import StarTx
from tests.conftest import run_sql


@pytest.fixture
async def notifier_for(engine, bot: Bot):  # type: ignore[no-untyped-def]
    """A notifier telling these operators; events left by other tests are delivered first."""
    await Notifier(Ledger(engine), bot).deliver_due()

    def _make(*operators: int) -> Notifier:
        return Notifier(Ledger(engine), bot, operators=operators)

    return _make


async def _invoice(engine, seller, title: str = "Coffee <beans>"):  # type: ignore[no-untyped-def]
    return await create_invoice(engine, seller_id=seller.user.id, title=title, amount=1250,
                                ton_rate=Decimal(5), payload={"item_id": "coffee-1"})


async def _settle(ledger: Ledger, invoice, payer, rail: str = "stars",  # type: ignore[no-untyped-def]
                  currency: str = "XTR", rate: Decimal = Decimal(77), ref: str | None = None):
    quote = await ledger.quote_rail(purpose="invoice", rail=rail, channel="telegram",
                                    currency=currency, rate=rate, invoice=invoice.public_id,
                                    user_id=payer.user.id)
    return await ledger.settle_rail_payment(
        rail=rail, channel="telegram", reference=ref or f"charge-{quote.token}",
        provider_reference=None, token=quote.token, currency=currency, amount=quote.amount,
        payer_id=payer.user.id, details={})


async def test_paid_notices_name_stars_and_the_card_provider(
    person, engine, notifier_for, bot_api
) -> None:
    ledger = Ledger(engine)
    seller = await person()
    alice = await person(username="alice")
    boris = await person(username="boris", language="ru")
    by_stars = await _invoice(engine, seller)
    assert (await _settle(ledger, by_stars, alice)).outcome == "paid"
    by_card = await _invoice(engine, seller, "Tea")
    settled = await _settle(ledger, by_card, boris, rail="card:stripe", currency="USD",
                            rate=Decimal("1.08"))
    assert settled.outcome == "paid"
    await notifier_for().deliver_due()

    to_seller = [m.plain for m in bot_api.messages(seller.id)]
    assert to_seller == [
        f"💰 Paid: Coffee <beans> ({by_stars.number}) — 12.50 Liquid $\n"
        "By @alice, with Telegram Stars.",
        f"💰 Paid: Tea ({by_card.number}) — 12.50 Liquid $\nBy @boris, by card (stripe)."]
    [receipt] = bot_api.messages(alice.id)
    assert receipt.plain.startswith(f"🧾 Receipt: Coffee <beans> ({by_stars.number}) — "
                                    "12.50 Liquid $, with Telegram Stars.")
    [receipt] = bot_api.messages(boris.id)
    assert ", картой (stripe)." in receipt.plain


async def test_a_held_payment_is_told_to_the_payer_and_every_operator(
    person, engine, notifier_for, bot_api
) -> None:
    ledger = Ledger(engine)
    seller, first = await person(), await person(balance=5000)
    late = await person(language="ru")
    ops = [await person(), await person(language="ru")]
    invoice = await _invoice(engine, seller)
    quote = await ledger.quote_rail(purpose="invoice", rail="stars", channel="telegram",
                                    currency="XTR", rate=Decimal(77), invoice=invoice.public_id,
                                    user_id=late.user.id)
    # Paid from a balance between the Stars pre-checkout and Telegram's successful_payment.
    await pay_from_balance(engine, invoice.public_id, first.user.id, "first")
    held = await ledger.settle_rail_payment(
        rail="stars", channel="telegram", reference="stxHeld1", provider_reference=None,
        token=quote.token, currency="XTR", amount=quote.amount, payer_id=late.user.id,
        details={})
    assert (held.outcome, held.hold_reason) == ("held", "invoice_paid")
    report = await notifier_for(*(o.id for o in ops)).deliver_due()
    assert report.failed == 0

    [to_payer] = bot_api.messages(late.id)
    assert to_payer.plain == (
        "⚠️ Ваш платёж 963 ⭐ удержан.\n"
        f"Счёт {invoice.number} “Coffee <beans>” уже был оплачен.\n"
        "Деньги сохранены и будут вам возвращены.")
    [to_op] = bot_api.messages(ops[0].id)
    assert to_op.plain == (
        f"🛑 Held payment #{held.rail_payment_id}: 963 ⭐ with Telegram Stars, for "
        f"{invoice.number} “Coffee <beans>”.\n"
        f"Invoice {invoice.number} “Coffee <beans>” had already been paid.\n"
        f"Refund: paybot admin rails refund {held.rail_payment_id} --reason …")
    [to_op_ru] = bot_api.messages(ops[1].id)
    assert to_op_ru.plain.startswith(f"🛑 Удержан платёж #{held.rail_payment_id}: 963 ⭐ "
                                     "звёздами Telegram")

    # Refunded (here by the operator): the payer hears it.
    refund = await ledger.begin_rail_refund(held.rail_payment_id, seller_id=None, actor_id=None,
                                            reason="invoice already paid")
    await ledger.complete_rail_refund(refund.id)
    await notifier_for().deliver_due()
    assert bot_api.messages(late.id)[-1].plain == (
        f"↩️ Возврат: 963 ⭐ за {invoice.number} “Coffee <beans>”.")


async def test_a_held_card_payment_tells_the_operator_to_use_the_dashboard(
    person, engine, notifier_for, bot_api
) -> None:
    ledger = Ledger(engine)
    seller, payer, op = await person(), await person(), await person()
    invoice = await _invoice(engine, seller)
    quote = await ledger.quote_rail(purpose="invoice", rail="card:stripe", channel="telegram",
                                    currency="USD", rate=Decimal(1), invoice=invoice.public_id,
                                    user_id=payer.user.id)
    held = await ledger.settle_rail_payment(  # Telegram says 12.00, the quote said 12.50
        rail="card:stripe", channel="telegram", reference="tgcharge-x", provider_reference="ch_x",
        token=quote.token, currency="USD", amount=1200, payer_id=payer.user.id, details={})
    assert held.hold_reason == "amount_mismatch"
    await notifier_for(op.id).deliver_due()
    assert bot_api.messages(payer.id)[-1].plain == (
        "⚠️ Your payment of 12.00 USD is held.\n"
        f"The amount differs from what invoice {invoice.number} “Coffee <beans>” asks.\n"
        "It is kept safe and will be refunded to you.")
    assert bot_api.messages(op.id)[-1].plain.endswith(
        "Refund it in the provider's dashboard, then: "
        f"paybot admin rails record-refund {held.rail_payment_id} --reason …")


async def test_top_ups_say_how_the_money_came(person, engine, notifier_for, bot_api) -> None:
    ledger = Ledger(engine)
    en, ru = await person(), await person(language="ru")
    for who, rail, currency, rate in ((en, "stars", "XTR", Decimal(77)),
                                      (ru, "card:yookassa", "RUB", Decimal(90))):
        quote = await ledger.quote_rail(purpose="topup", rail=rail, channel="telegram",
                                        currency=currency, rate=rate, topup_amount=500,
                                        user_id=who.user.id)
        settled = await ledger.settle_rail_payment(
            rail=rail, channel="telegram", reference=f"topup-{quote.token}",
            provider_reference=None, token=quote.token, currency=currency, amount=quote.amount,
            payer_id=who.user.id, details={})
        assert settled.outcome == "topup"
    await notifier_for().deliver_due()
    assert bot_api.messages(en.id)[-1].plain == (
        "💳 Balance credited: +5.00 Liquid $ (top-up with Stars).")
    assert bot_api.messages(ru.id)[-1].plain.endswith("(пополнение картой).")


async def test_reconciliation_mismatch_reaches_operators_and_none_is_no_failure(
    person, engine, notifier_for, bot_api, caplog
) -> None:
    ledger = Ledger(engine)
    op = await person(language="ru")
    stray = StarTx(id="stxNeverBegun", amount=50, date=datetime.now(UTC), incoming=False,
                   user_telegram_id=op.id, invoice_payload=None)
    report = await ledger.reconcile_star_transactions([stray])
    assert report.mismatches
    await notifier_for(op.id).deliver_due()
    [told] = bot_api.messages(op.id)
    assert told.plain.startswith("⚠️ Сверка звёзд: ") and "stxNeverBegun" in told.plain

    # Nobody configured: the event is done (not failed, not retried), with a log line.
    stray = StarTx(id="stxNobodyTold", amount=7, date=datetime.now(UTC), incoming=False,
                   user_telegram_id=op.id, invoice_payload=None)
    await ledger.reconcile_star_transactions([stray])
    with caplog.at_level(logging.WARNING, logger="bot.telegram.notifier"):
        report = await notifier_for().deliver_due()
    assert report.failed == 0 and report.retried == 0
    assert "no OPERATOR_TELEGRAM_IDS" in caplog.text and "stxNobodyTold" in caplog.text
    rows = await run_sql(engine, "SELECT delivered_at FROM outbox WHERE event_type = "
                                 "'operator.reconcile' AND payload ->> 'tx_id' = 'stxNobodyTold'")
    assert rows and all(r["delivered_at"] is not None for r in rows)
    assert len(bot_api.messages(op.id)) == 1


async def test_a_stars_subscription_cancelled_here_stops_renewing_at_telegram(
    person, engine, notifier_for, bot_api
) -> None:
    """Telegram renews a Stars subscription every 30 days by itself: cancelling it in paybot
    must tell Telegram (editUserStarSubscription, is_canceled), naming it by the first
    payment's charge id — else the subscriber is charged for what they cancelled."""
    ledger = Ledger(engine)
    seller, fan = await person(), await person()
    plan = await ledger.create_plan(seller.user.id, "Club", {1: 500})
    subscribed = await ledger.subscribe(plan.public_id, fan.user.id, 1)
    quote = await ledger.quote_rail(purpose="subscription", rail="stars", channel="telegram",
                                    currency="XTR", rate=Decimal(77),
                                    subscription=subscribed.subscription.public_id,
                                    user_id=fan.user.id)
    # Telegram's first payment of the subscription (the stand-in keeps it as a Stars charge)
    update = bot_api.successful_payment_update(
        {"id": fan.id, "is_bot": False, "first_name": "Fan"}, currency="XTR",
        total_amount=quote.amount, payload=quote.token, charge_id="stxSubFirst")
    paid = update["message"]["successful_payment"]
    await ledger.settle_rail_payment(
        rail="stars", channel="telegram", reference=paid["telegram_payment_charge_id"],
        provider_reference=None, token=quote.token, currency="XTR", amount=quote.amount,
        payer_id=fan.user.id, details={})
    await notifier_for().deliver_due()
    assert "stxSubFirst" not in bot_api.star_subscriptions_canceled

    await ledger.cancel_subscription(subscribed.subscription.public_id, actor_id=fan.user.id,
                                     at_period_end=True)
    await notifier_for().deliver_due()
    assert bot_api.star_subscriptions_canceled == {"stxSubFirst": True}


async def test_usdt_payments_and_deposits_say_usdt(person, engine, notifier_for,
                                                   bot_api) -> None:
    from tests.test_jettons_ledger import Shop

    seller, buyer = await person(), await person()
    invoice = await _invoice(engine, seller)
    shop = Shop(engine)
    await shop.receive(12_500_000, f"INV-{invoice.public_id}", invoice=invoice.public_id)
    await shop.receive(2_000_000, f"DEP-{buyer.user.deposit_code}",
                       deposit=buyer.user.deposit_code)
    await notifier_for().deliver_due()
    [paid] = bot_api.messages(seller.id)
    assert paid.plain.endswith("by USDT transfer.")
    [credited] = bot_api.messages(buyer.id)
    assert "2.00 Liquid $" in credited.plain and "USDT deposit" in credited.plain
