"""Stars reconciliation (issue 14, "verify without webhook"): the job reads the bot's Telegram
Star transactions after its cursor, page by page; a payment whose `successful_payment` never
reached the bot is settled, once; what does not match is told to the operator, once; Telegram
unreachable is the next run's business. And the Stars subscription of a plan: an invoice link
with `subscription_period`, whose payments (first and recurring) the ledger settles."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from decimal import Decimal

from aiogram import Bot

from bot.telegram.stars_reconcile import PAGE, reconcile_stars, stars_reconcile_job
from ledger.core import Ledger
from ledger.rails import StarTx
from tests.bot import test_star_refunds
from tests.bot.botapi import BotApiStandIn
from tests.bot.client import TgClient
from tests.bot.test_star_refunds import STARS_PER_LIQ, _invoice, paid_with_stars
from tests.conftest import run_sql

stars_account = test_star_refunds.stars_account  # the fixture, shared


async def _missed(ledger: Ledger, api: BotApiStandIn, engine, seller: TgClient,  # type: ignore[no-untyped-def]
                  buyer: TgClient):
    """A Stars payment Telegram took whose update never came: only in the transactions."""
    invoice = await _invoice(engine, seller)
    quote = await ledger.quote_rail(purpose="invoice", rail="stars", channel="telegram",
                                    currency="XTR", rate=STARS_PER_LIQ,
                                    invoice=invoice.public_id, user_id=buyer.user.id)
    charge = f"stxMissed{secrets.token_hex(8)}"
    api.star_payment(buyer._from(), quote.amount, quote.token, charge)
    return invoice, charge


async def _alerts(engine, charge: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return await run_sql(engine, "SELECT payload FROM outbox WHERE event_type = "
                                 "'operator.reconcile' AND payload->>'tx_id' = :c", c=charge)


async def test_a_missed_stars_payment_is_settled_once(
        person, ledger: Ledger, engine, bot: Bot, stars_account: BotApiStandIn) -> None:
    seller, buyer = await person(), await person()
    invoice, charge = await _missed(ledger, stars_account, engine, seller, buyer)
    assert (await ledger.invoice(invoice.public_id)).invoice.status == "pending"

    report = await reconcile_stars(ledger, bot)
    [settled] = report.settled
    assert (settled.outcome, settled.invoice_public_id) == ("paid", invoice.public_id)
    assert (await ledger.invoice(invoice.public_id)).invoice.status == "paid"
    paid = await ledger.rail_payment_by_reference("stars", charge)
    assert paid is not None and (paid.amount, paid.payer_id) == (385, buyer.user.id)
    assert await ledger.star_cursor() == len(stars_account.star_transactions)

    # read again (the next run, or the same list handed over twice): nothing more
    assert (await reconcile_stars(ledger, bot)).settled == []
    tx = StarTx(id=charge, amount=385, date=datetime.now(UTC), incoming=True,
                user_telegram_id=buyer.id, invoice_payload=paid.quote_token)
    assert (await ledger.reconcile_star_transactions([tx])).settled == []
    payments = await run_sql(engine, "SELECT id FROM payments WHERE invoice_id = :i",
                             i=invoice.id)
    assert len(payments) == 1


async def test_pages_until_a_short_page(person, ledger: Ledger, engine, bot: Bot,
                                        stars_account: BotApiStandIn) -> None:
    """More than one page of history not the ledger's (withdrawals), then the missed payment."""
    seller, buyer = await person(), await person()
    for n in range(PAGE + 20):
        stars_account.star_transactions.append({
            "id": f"w{secrets.token_hex(4)}{n}", "amount": 10, "date": 1700000000,
            "receiver": {"type": "fragment"}})
    invoice, _charge = await _missed(ledger, stars_account, engine, seller, buyer)
    start = await ledger.star_cursor()

    report = await reconcile_stars(ledger, bot)
    assert len(report.settled) == 1
    assert (await ledger.invoice(invoice.public_id)).invoice.status == "paid"
    assert await ledger.star_cursor() == start + PAGE + 21
    offsets = [int(c.params["offset"]) for c in stars_account.calls_of("getStarTransactions")]
    assert offsets == [start, start + PAGE]


async def test_a_mismatch_is_told_to_the_operator_once(
        person, ledger: Ledger, engine, bot: Bot, stars_account: BotApiStandIn) -> None:
    """Telegram shows a refund the ledger never began (someone refunded by hand)."""
    seller, buyer = await person(), await person()
    invoice = await _invoice(engine, seller)
    paid = await paid_with_stars(ledger, stars_account, invoice, buyer)
    await bot.refund_star_payment(user_id=buyer.id, telegram_payment_charge_id=paid.reference)

    report = await reconcile_stars(ledger, bot)
    assert [m for m in report.mismatches if paid.reference in m]
    [alert] = await _alerts(engine, paid.reference)
    assert alert["payload"]["kind"] == "refund_not_booked"
    # the same transaction seen again is not news
    refund_tx = StarTx(id=paid.reference, amount=paid.amount, date=datetime.now(UTC),
                       incoming=False, user_telegram_id=buyer.id, invoice_payload=None)
    await ledger.reconcile_star_transactions([refund_tx])
    await reconcile_stars(ledger, bot)
    assert len(await _alerts(engine, paid.reference)) == 1
    # the ledger books nothing it did not begin: the invoice stays paid
    assert (await ledger.invoice(invoice.public_id)).invoice.status == "paid"


async def test_telegram_unreachable_is_the_next_runs_business(
        person, ledger: Ledger, engine, bot: Bot, stars_account: BotApiStandIn) -> None:
    seller, buyer = await person(), await person()
    invoice, _charge = await _missed(ledger, stars_account, engine, seller, buyer)
    start = await ledger.star_cursor()
    stars_account.fail(502, "Bad Gateway", method="getStarTransactions")

    await stars_reconcile_job(ledger, bot)  # the scheduler's run: no exception comes out
    assert await ledger.star_cursor() == start
    assert (await ledger.invoice(invoice.public_id)).invoice.status == "pending"

    await stars_reconcile_job(ledger, bot)
    assert (await ledger.invoice(invoice.public_id)).invoice.status == "paid"


async def test_a_stars_subscription_is_an_invoice_link_with_a_period(
        person, ledger: Ledger, engine, bot: Bot, stars_account: BotApiStandIn) -> None:
    seller, buyer = await person(username="club_owner"), await person()
    plan = await ledger.create_plan(seller.user.id, "Premium club", {1: 500, 3: 1350})
    [card] = await buyer.send(f"/start sub_{plan.public_id}")
    assert card.button_texts[-1] == "⭐ Subscribe with Stars (385 ⭐/month)"

    [shown] = (await buyer.tap(card, "Subscribe with Stars")).edited
    assert shown.plain == ("⭐ Premium club: 385 ⭐ a month. Telegram charges the Stars every 30 "
                           "days until you cancel the subscription in Telegram.")
    link = shown.button("Subscribe for 385 ⭐/month")["url"]
    invoice = stars_account.invoice_of_link(link)
    assert (invoice.currency, invoice.total_amount, invoice.subscription_period,
            invoice.provider_token) == ("XTR", 385, 2592000, "")
    [sub] = await ledger.subscriptions_of_user(buyer.user.id)
    assert (sub.status, sub.months, sub.plan_public_id) == ("incomplete", 1, plan.public_id)
    quote = await ledger.rail_quote(invoice.payload)
    assert (quote.purpose, quote.rail, quote.subscription_public_id, quote.user_id) == (
        "subscription", "stars", sub.public_id, buyer.user.id)

    # tapped again: the same subscription, a fresh link
    [card] = await buyer.send(f"/start sub_{plan.public_id}")
    await buyer.tap(card, "Subscribe with Stars")
    assert [s.public_id for s in await ledger.subscriptions_of_user(buyer.user.id)] == [
        sub.public_id]

    # Telegram charged the first month; the update was missed, reconciliation settles it
    stars_account.star_payment(buyer._from(), 385, invoice.payload, f"stxSub{secrets.token_hex(6)}",
                               subscription_period=2592000)
    [settled] = (await reconcile_stars(ledger, bot)).settled
    assert settled.outcome in ("paid", "topup")
    [sub] = await ledger.subscriptions_of_user(buyer.user.id)
    assert sub.status == "active"


async def test_no_stars_button_for_a_plan_without_a_monthly_price(person, ledger: Ledger,
                                                                  cfg) -> None:
    seller, buyer = await person(), await person()
    quarterly = await ledger.create_plan(seller.user.id, "Quarterly", {3: 1350})
    [card] = await buyer.send(f"/start sub_{quarterly.public_id}")
    assert not [t for t in card.button_texts if "Stars" in t]
    monthly = await ledger.create_plan(seller.user.id, "Monthly", {1: 500})
    cfg.rail_rates = {"USD": Decimal(1)}  # Stars switched off
    [card] = await buyer.send(f"/start sub_{monthly.public_id}")
    assert not [t for t in card.button_texts if "Stars" in t]
