"""Refunding Telegram Stars (issue 14): the seller's "↩️ Refund Stars" on their invoice card (a
reason, a confirmation, Telegram's refundStarPayment, then the ledger's compensating entry), a
refund twice, a card payment refused with the sentence, and a refund Telegram did not answer —
left pending, the money reserved — finished by the job."""

from __future__ import annotations

import secrets
from decimal import Decimal

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer

from bot.telegram.invoice_actions import RefundCb
from bot.telegram.star_refunds import refund_stars
from bot.telegram.stars_reconcile import reconcile_stars
from ledger.accounts import adjust_balance, balance
from ledger.core import Ledger
from ledger.errors import AlreadyRefunded
from ledger.invoices import create_invoice
from ledger.models import Invoice
from ledger.rails import RailPayment
from tests.bot.botapi import ApiCall, BotApiStandIn
from tests.bot.client import TgClient
from tests.conftest import run_sql

STARS_PER_LIQ = Decimal(77)
TON_RATE = Decimal("5.00")


@pytest.fixture
async def stars_account(bot_api: BotApiStandIn, ledger: Ledger) -> BotApiStandIn:
    """The bot's Stars account as the ledger last read it: the stand-in starts empty for each
    test while the ledger's cursor stays where earlier tests left it, so the history already
    read is filled in (withdrawals, which are not the ledger's)."""
    for n in range(await ledger.star_cursor() - len(bot_api.star_transactions)):
        bot_api.star_transactions.insert(0, {
            "id": f"withdrawal{n}", "amount": 1, "date": 1700000000,
            "receiver": {"type": "fragment"}})
    return bot_api


async def _invoice(engine, seller: TgClient, amount: int = 500) -> Invoice:  # type: ignore[no-untyped-def]
    return await create_invoice(engine, seller_id=seller.user.id, title="Ebook", amount=amount,
                                ton_rate=TON_RATE)


async def paid_with_stars(ledger: Ledger, api: BotApiStandIn, invoice: Invoice,
                          buyer: TgClient) -> RailPayment:
    """The buyer paid `invoice` in Stars: Telegram has the charge, the ledger settled it."""
    quote = await ledger.quote_rail(purpose="invoice", rail="stars", channel="telegram",
                                    currency="XTR", rate=STARS_PER_LIQ,
                                    invoice=invoice.public_id, user_id=buyer.user.id)
    charge = f"stx{secrets.token_hex(12)}"
    api.star_payment(buyer._from(), quote.amount, quote.token, charge)
    settled = await ledger.settle_rail_payment(
        rail="stars", channel="telegram", reference=charge, provider_reference="",
        token=quote.token, currency="XTR", amount=quote.amount, payer_id=buyer.user.id,
        details={"telegram_payment_charge_id": charge})
    assert settled.outcome == "paid"
    return await ledger.rail_payment(settled.rail_payment_id)


def _refund_calls(api: BotApiStandIn, paid: RailPayment) -> list[ApiCall]:
    # the job retries every pending refund in the database: this test's are its charge's
    return [c for c in api.calls_of("refundStarPayment")
            if c.params.get("telegram_payment_charge_id") == paid.reference]


async def paid_by_card(ledger: Ledger, invoice: Invoice, buyer: TgClient) -> RailPayment:
    quote = await ledger.quote_rail(purpose="invoice", rail="card:stripe", channel="telegram",
                                    currency="USD", rate=Decimal(1), invoice=invoice.public_id,
                                    user_id=buyer.user.id)
    settled = await ledger.settle_rail_payment(
        rail="card:stripe", channel="telegram", reference=f"tg{secrets.token_hex(8)}",
        provider_reference=f"ch_{secrets.token_hex(8)}", token=quote.token, currency="USD",
        amount=quote.amount, payer_id=buyer.user.id, details={})
    assert settled.outcome == "paid"
    return await ledger.rail_payment(settled.rail_payment_id)


async def test_the_seller_refunds_a_stars_payment_from_the_invoice_card(
        person, ledger: Ledger, engine, bot_api: BotApiStandIn) -> None:
    seller, buyer = await person(username="book_shop"), await person()
    invoice = await _invoice(engine, seller)
    paid = await paid_with_stars(ledger, bot_api, invoice, buyer)
    assert paid.amount == 385  # 5.00 Liquid $ at 77 Stars each
    before = await balance(engine, seller.user.id)

    [card] = await seller.send(f"/start pay_{invoice.public_id}")
    assert "↩️ Refund Stars (385 ⭐)" in card.button_texts
    [ask] = (await seller.tap(card, "Refund Stars")).sent
    assert ask.plain == (f"Refund 385 ⭐ paid for {invoice.number} “Ebook” (5.00 Liquid $)? "
                         "Send the reason in one message; the buyer sees it.")
    [confirm] = await seller.send("Out of stock")
    assert confirm.plain == (f"Refund 385 ⭐ to the buyer of {invoice.number} “Ebook”?\n"
                             "5.00 Liquid $ leaves your balance and the invoice can be paid "
                             "again.\nReason: Out of stock")
    assert not bot_api.calls_of("refundStarPayment")  # nothing before the confirmation

    [done] = (await seller.tap(confirm, "Yes, refund 385")).edited
    assert done.plain == ("↩️ 385 ⭐ refunded to the buyer. 5.00 Liquid $ left your balance; "
                          f"{invoice.number} can be paid again.")
    [call] = bot_api.calls_of("refundStarPayment")
    assert call.params == {"user_id": str(buyer.id), "telegram_payment_charge_id": paid.reference}

    # the compensating entry: the seller gave the money back, the invoice owes it again
    assert await balance(engine, seller.user.id) == before - 500
    again = (await ledger.invoice(invoice.public_id)).invoice
    assert (again.status, again.amount_due) == ("pending", 500)
    [reversal] = await run_sql(engine, "SELECT reason FROM payment_reversals "
                                       "WHERE payment_id = :p", p=paid.payment_id)
    assert reversal["reason"] == "Out of stock"
    refund = (await ledger.rail_payment(paid.id)).refund
    assert refund is not None and (refund.status, refund.amount) == ("done", 385)
    [told] = await run_sql(engine, "SELECT payload FROM outbox WHERE event_type = 'rail.refunded'"
                                   " AND (payload->>'rail_payment_id')::bigint = :p", p=paid.id)
    assert told["payload"]["recipient"] == buyer.user.id

    [card] = await seller.send(f"/start pay_{invoice.public_id}")
    assert not [t for t in card.button_texts if "Refund" in t]  # refunded: no button any more


async def test_a_refund_twice_refunds_once(person, ledger: Ledger, engine,
                                           bot_api: BotApiStandIn, bot: Bot) -> None:
    seller, buyer = await person(), await person()
    invoice = await _invoice(engine, seller)
    paid = await paid_with_stars(ledger, bot_api, invoice, buyer)
    [card] = await seller.send(f"/start pay_{invoice.public_id}")
    await seller.tap(card, "Refund Stars")
    [confirm] = await seller.send("duplicate order")
    await seller.tap(confirm, "Yes, refund")
    before = await balance(engine, seller.user.id)

    # the old card's button, and the operator behind it: the same sentence, nothing moves
    tap = await seller.tap(card, "Refund Stars")
    assert tap.alert and tap.answer_text == ("This payment is already refunded (or its refund "
                                             "is under way).")
    with pytest.raises(AlreadyRefunded):
        await refund_stars(ledger, bot, paid.id, seller_id=None, actor_id=None, reason="again")
    assert len(bot_api.calls_of("refundStarPayment")) == 1
    assert await balance(engine, seller.user.id) == before


async def test_telegram_already_refunded_counts_as_done(person, ledger: Ledger, engine,
                                                        bot_api: BotApiStandIn, bot: Bot) -> None:
    """An earlier attempt went through but its answer was lost: Telegram says
    CHARGE_ALREADY_REFUNDED, and the ledger books the refund (once)."""
    seller, buyer = await person(), await person()
    invoice = await _invoice(engine, seller)
    paid = await paid_with_stars(ledger, bot_api, invoice, buyer)
    await bot.refund_star_payment(user_id=buyer.id, telegram_payment_charge_id=paid.reference)
    refund = await refund_stars(ledger, bot, paid.id, seller_id=seller.user.id,
                                actor_id=seller.user.id, reason="lost answer")
    assert refund.status == "done"
    assert (await ledger.invoice(invoice.public_id)).invoice.status == "pending"


async def test_a_card_payment_is_not_refunded_here(person, ledger: Ledger, engine,
                                                   bot_api: BotApiStandIn) -> None:
    seller, buyer = await person(), await person()
    invoice = await _invoice(engine, seller)
    paid = await paid_by_card(ledger, invoice, buyer)
    before = await balance(engine, seller.user.id)
    [card] = await seller.send(f"/start pay_{invoice.public_id}")
    assert not [t for t in card.button_texts if "Refund" in t]  # only Stars get the button

    forged = await seller.press(card, RefundCb(action="ask", payment=paid.id).pack())
    assert forged.alert and forged.answer_text == (
        "This is a card payment: refund it in the payment provider's dashboard, then the "
        "operator records the refund.")
    assert not bot_api.calls_of("refundStarPayment")
    assert await balance(engine, seller.user.id) == before
    assert (await ledger.rail_payment(paid.id)).refund is None


async def test_another_sellers_payment_is_not_theirs_to_refund(person, ledger: Ledger, engine,
                                                               bot_api: BotApiStandIn) -> None:
    seller, buyer, stranger = await person(), await person(), await person()
    invoice = await _invoice(engine, seller)
    paid = await paid_with_stars(ledger, bot_api, invoice, buyer)
    [hello] = await stranger.send("/start")
    tap = await stranger.press(hello, RefundCb(action="ask", payment=paid.id).pack())
    assert tap.alert and tap.answer_text == "No such card or Stars payment."
    assert (await ledger.rail_payment(paid.id)).refund is None


async def test_a_balance_short_of_the_refund_is_refused_with_the_sentence(
        person, ledger: Ledger, engine, bot_api: BotApiStandIn) -> None:
    seller, buyer = await person(), await person()
    invoice = await _invoice(engine, seller)
    paid = await paid_with_stars(ledger, bot_api, invoice, buyer)
    [card] = await seller.send(f"/start pay_{invoice.public_id}")
    await seller.tap(card, "Refund Stars")
    [confirm] = await seller.send("changed my mind")
    await adjust_balance(engine, seller.user.id, -await balance(engine, seller.user.id), "LIQ",
                         "withdrawn meanwhile")

    tap = await seller.tap(confirm, "Yes, refund")
    assert tap.alert and tap.answer_text is not None and "5.00 Liquid $" in tap.answer_text
    assert not bot_api.calls_of("refundStarPayment")
    assert (await ledger.rail_payment(paid.id)).refund is None
    assert (await ledger.invoice(invoice.public_id)).invoice.status == "paid"


async def test_no_answer_from_telegram_leaves_it_pending_and_the_job_finishes_it(
        person, ledger: Ledger, engine, bot_api: BotApiStandIn, bot: Bot, stars_account) -> None:
    seller, buyer = await person(), await person()
    invoice = await _invoice(engine, seller)
    paid = await paid_with_stars(ledger, bot_api, invoice, buyer)
    before = await balance(engine, seller.user.id)
    # Telegram out of reach (nothing listens there): a network error, not an answer
    unreachable = Bot(bot.token, session=AiohttpSession(
        api=TelegramAPIServer.from_base("http://127.0.0.1:9")))
    try:
        refund = await refund_stars(ledger, unreachable, paid.id, seller_id=seller.user.id,
                                    actor_id=seller.user.id, reason="customer asked")
    finally:
        await unreachable.session.close()
    assert refund.status == "pending"
    assert await balance(engine, seller.user.id) == before - 500  # reserved, not yet given back
    assert (await ledger.invoice(invoice.public_id)).invoice.status == "paid"
    with pytest.raises(AlreadyRefunded):  # in flight: not begun twice
        await ledger.begin_rail_refund(paid.id, seller_id=None, actor_id=None, reason="again")

    await reconcile_stars(ledger, bot, retry_after_seconds=0)
    assert len(_refund_calls(bot_api, paid)) == 1
    refund = (await ledger.rail_payment(paid.id)).refund
    assert refund is not None and refund.status == "done"
    assert (await ledger.invoice(invoice.public_id)).invoice.status == "pending"
    assert await balance(engine, seller.user.id) == before - 500

    await reconcile_stars(ledger, bot, retry_after_seconds=0)  # nothing left to do
    assert len(_refund_calls(bot_api, paid)) == 1


async def test_a_refund_telegram_refuses_gives_the_money_back(
        person, ledger: Ledger, engine, bot_api: BotApiStandIn, bot: Bot) -> None:
    seller, buyer = await person(), await person()
    invoice = await _invoice(engine, seller)
    paid = await paid_with_stars(ledger, bot_api, invoice, buyer)
    before = await balance(engine, seller.user.id)
    bot_api.fail(400, "Bad Request: CHARGE_NOT_FOUND", method="refundStarPayment")
    refund = await refund_stars(ledger, bot, paid.id, seller_id=seller.user.id,
                                actor_id=seller.user.id, reason="try")
    assert refund.status == "failed" and "CHARGE_NOT_FOUND" in (refund.error or "")
    assert await balance(engine, seller.user.id) == before
    assert (await ledger.invoice(invoice.public_id)).invoice.status == "paid"
    # a failed refund may be tried again
    again = await refund_stars(ledger, bot, paid.id, seller_id=seller.user.id,
                               actor_id=seller.user.id, reason="try again")
    assert again.status == "done"
