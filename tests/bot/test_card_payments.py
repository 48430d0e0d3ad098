"""Paying by card and with Telegram Stars inside the bot (Telegram Payments), end to end through
the Bot API stand-in on a real PostgreSQL: the invoice card's buttons, sendInvoice at a locked
price, the pre-checkout answer, the successful_payment settled exactly once — and held (never
lost, never paying a closed invoice) when it cannot pay what it was for."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from aiogram import Bot, Dispatcher
from aiogram.types import Update
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from bot.settings import CardProvider, PaymentSettings
from bot.telegram import create_dispatcher
from bot.telegram.config import BotConfig
from bot.telegram.fsm_storage import PostgresStorage
from ledger.accounts import balance
from ledger.core import Ledger
from ledger.invoice_reads import get_invoice
from ledger.invoices import cancel_invoice, create_invoice
from ledger.payments import pay_from_balance
from ledger.postgres import libpq_url, make_engine
from tests.bot.botapi import BotApiStandIn, StandInInvoice
from tests.bot.client import TgClient
from tests.bot.conftest import bot_settings
from tests.bot.test_rate_limits import limited_dispatcher
from tests.conftest import run_sql
from tests.test_db_outage import FreezableRelay
from tests.waiting import wait_until

RATE = Decimal("5.00")
_update_ids = itertools.count(5_000_000)


@pytest.fixture(autouse=True)
def _cards(cfg: BotConfig) -> None:
    """Cards in USD (Stripe) and JPY (Smart Glocal) through Telegram Payments; Stars at 77."""
    cfg.card_providers = {"USD": ("stripe", "tok-usd"), "JPY": ("smartglocal", "tok-jpy")}
    cfg.rail_rates = {"XTR": Decimal("77"), "USD": Decimal("1.1"), "JPY": Decimal("150")}


async def _coffee(engine, seller, **kw):  # type: ignore[no-untyped-def]
    args = dict(seller_id=seller.user.id, title="Coffee <beans>", amount=1250, ton_rate=RATE,
                payload={"item_id": "coffee-1"})
    return await create_invoice(engine, **(args | kw))


def _from(person: TgClient) -> dict[str, Any]:
    return person._from()


async def _feed(dp: Dispatcher, bot: Bot, update: dict[str, Any], update_id: int | None = None
                ) -> None:
    """Deliver an update as Telegram does (a redelivery carries the same update_id)."""
    full = {"update_id": update_id or next(_update_ids), **update}
    await dp.feed_update(bot, Update.model_validate(full, context={"bot": bot}))


async def _offered(buyer: TgClient, bot_api: BotApiStandIn, invoice: Any,
                   label: str) -> StandInInvoice:
    """The buyer opens the invoice and taps `label`: the Telegram invoice the bot sent."""
    [card] = await buyer.send(f"/start pay_{invoice.public_id}")
    tap = await buyer.tap(card, label)
    assert tap.answered and not tap.alert
    [sent] = bot_api.invoices_in(buyer.id)
    [message] = tap.sent
    assert message.invoice is not None and message.message_id == sent.message_id
    return sent


async def _pre_checkout(buyer: TgClient, bot_api: BotApiStandIn, sent: StandInInvoice,
                        **kw: Any) -> dict[str, Any]:
    update = bot_api.pre_checkout_update(_from(buyer), sent, **kw)
    await _feed(buyer.dp, buyer.bot, update)
    return await bot_api.pre_checkout_answer(update["pre_checkout_query"]["id"])


async def _rail_payments(engine, payer: TgClient) -> list[dict]:  # type: ignore[no-untyped-def]
    return await run_sql(engine, "SELECT * FROM rail_payments WHERE payer_id = :p ORDER BY id",
                         p=payer.user.id)


async def _invoice_payments(engine, invoice) -> list[dict]:  # type: ignore[no-untyped-def]
    return await run_sql(engine, "SELECT * FROM payments WHERE invoice_id = :id", id=invoice.id)


async def _outbox(engine, event_type: str, **about: Any) -> list[dict]:  # type: ignore[no-untyped-def]
    """The outbox events of a type whose payload has these values."""
    rows = await run_sql(engine, "SELECT payload FROM outbox WHERE event_type = :t ORDER BY id",
                         t=event_type)
    return [r["payload"] for r in rows
            if all(r["payload"].get(k) == v for k, v in about.items())]


async def test_card_payment_end_to_end(person, engine, bot_api: BotApiStandIn) -> None:
    seller, buyer = await person(username="bean_shop"), await person()
    invoice = await _coffee(engine, seller)
    [card] = await buyer.send(f"/start pay_{invoice.public_id}")
    assert card.button_texts == [
        "💳 Pay 12.50 Liquid $ from balance", "💎 Pay with TON", "💵 Pay with USDT",
        "💳 Pay by card (USD)",
        "💳 Pay by card (JPY)", "⭐ Pay with Stars", "📱 Open in Mini App"]

    sent = await _offered(buyer, bot_api, invoice, "Pay by card (USD)")
    # 12.50 Liquid $ at 1.1 USD each: 13.75 USD, locked and shown before paying
    assert (sent.currency, sent.total_amount, sent.provider_token) == ("USD", 1375, "tok-usd")
    assert sent.title == "Coffee <beans>"
    assert invoice.number in sent.description and "13.75 USD" in sent.description
    assert "12.50 Liquid $" in sent.description
    assert await _rail_payments(engine, buyer) == []  # offering is not paying

    assert await _pre_checkout(buyer, bot_api, sent) == {"ok": True}
    update = bot_api.successful_payment_update(_from(buyer), sent)
    await _feed(buyer.dp, buyer.bot, update)
    assert buyer.last.plain == "✅ Paid 13.75 USD for Coffee <beans>.\nYou received: 🎁 coffee-1"

    assert (await get_invoice(engine, invoice.public_id)).status == "paid"
    assert await balance(engine, seller.user.id) == 1250  # exactly the invoice's amount
    [payment] = await _invoice_payments(engine, invoice)
    assert payment["method"] == "card:stripe" and payment["payer_id"] == buyer.user.id
    [rail] = await _rail_payments(engine, buyer)
    paid = update["message"]["successful_payment"]
    assert (rail["rail"], rail["reference"], rail["provider_reference"], rail["outcome"]) == (
        "card:stripe", paid["telegram_payment_charge_id"], paid["provider_payment_charge_id"],
        "paid")
    assert rail["details"] == paid  # the SuccessfulPayment as Telegram sent it
    told = await _outbox(engine, "invoice.paid", invoice=invoice.public_id, role="seller")
    assert [(p["recipient"], p["method"]) for p in told] == [(seller.user.id, "card:stripe")]


async def test_stars_payment_end_to_end(person, engine, bot_api: BotApiStandIn, bot) -> None:
    seller, buyer = await person(), await person()
    invoice = await _coffee(engine, seller)
    sent = await _offered(buyer, bot_api, invoice, "Pay with Stars")
    # 12.50 × 77 = 962.5 → 963 Stars (rounded up: the seller never gets less); no provider
    assert (sent.currency, sent.total_amount, sent.provider_token) == ("XTR", 963, "")
    assert "963 ⭐" in sent.description

    assert await _pre_checkout(buyer, bot_api, sent) == {"ok": True}
    update = bot_api.successful_payment_update(_from(buyer), sent)
    await _feed(buyer.dp, buyer.bot, update)
    assert buyer.last.plain.startswith("✅ Paid 963 ⭐ for Coffee <beans>.")
    assert (await get_invoice(engine, invoice.public_id)).status == "paid"
    [payment] = await _invoice_payments(engine, invoice)
    assert payment["method"] == "stars"
    # the reference is the charge id, which is the Stars transaction's id in Telegram's list
    [tx] = (await bot.get_star_transactions()).transactions
    [rail] = await _rail_payments(engine, buyer)
    assert (rail["rail"], rail["reference"], rail["amount"]) == ("stars", tx.id, 963)


async def test_amounts_in_a_zero_decimal_currency(person, engine,
                                                  bot_api: BotApiStandIn) -> None:
    seller, buyer = await person(), await person()
    invoice = await _coffee(engine, seller, amount=1234)  # 12.34 Liquid $ at 150 JPY
    sent = await _offered(buyer, bot_api, invoice, "Pay by card (JPY)")
    assert (sent.currency, sent.total_amount) == ("JPY", 1851)  # 1851 yen, not 18.51
    assert "1851 JPY" in sent.description
    assert await _pre_checkout(buyer, bot_api, sent) == {"ok": True}
    await _feed(buyer.dp, buyer.bot, bot_api.successful_payment_update(_from(buyer), sent))
    assert buyer.last.plain.startswith("✅ Paid 1851 JPY for")
    assert (await get_invoice(engine, invoice.public_id)).status == "paid"
    [payment] = await _invoice_payments(engine, invoice)
    assert payment["method"] == "card:smartglocal" and payment["amount"] == 1234


async def test_pre_checkout_for_an_invoice_paid_meanwhile_is_refused(
        person, engine, bot_api: BotApiStandIn) -> None:
    seller, buyer, other = await person(), await person(), await person(balance=5000)
    invoice = await _coffee(engine, seller)
    sent = await _offered(buyer, bot_api, invoice, "Pay by card (USD)")
    await pay_from_balance(engine, invoice.public_id, other.user.id, "k1")

    assert await _pre_checkout(buyer, bot_api, sent) == {
        "ok": False,
        "error_message": "This invoice has already been paid. You were not charged."}
    ru = TgClient(bot_api, buyer.dp, buyer.bot, buyer.user, language="ru")
    answer = await _pre_checkout(ru, bot_api, sent)
    assert answer["error_message"] == "Этот счёт уже оплачен. Деньги не списаны."


async def test_pre_checkout_for_another_amount_is_refused(person, engine,
                                                          bot_api: BotApiStandIn) -> None:
    seller, buyer = await person(), await person()
    invoice = await _coffee(engine, seller)
    sent = await _offered(buyer, bot_api, invoice, "Pay by card (USD)")
    answer = await _pre_checkout(buyer, bot_api, sent, total_amount=1)
    assert answer["ok"] is False and "amount has changed" in answer["error_message"]
    answer = await _pre_checkout(buyer, bot_api, sent, payload="q" + "x" * 22)
    assert answer["ok"] is False and "do not know this payment" in answer["error_message"]


async def test_success_after_cancel_is_held_and_the_operator_told(
        person, engine, bot_api: BotApiStandIn) -> None:
    seller, buyer = await person(), await person()
    invoice = await _coffee(engine, seller)
    sent = await _offered(buyer, bot_api, invoice, "Pay by card (USD)")
    assert await _pre_checkout(buyer, bot_api, sent) == {"ok": True}
    await cancel_invoice(engine, invoice.public_id, seller.user.id)  # between the two

    await _feed(buyer.dp, buyer.bot, bot_api.successful_payment_update(_from(buyer), sent))
    assert buyer.last.plain == (
        "⚠️ Your payment of 13.75 USD arrived, but the invoice had been closed (cancelled or "
        "expired) in the meantime. It is held for you and will be refunded; the operator has "
        "been told.")
    assert (await get_invoice(engine, invoice.public_id)).status == "cancelled"
    assert await _invoice_payments(engine, invoice) == []
    assert await balance(engine, seller.user.id) == 0
    [rail] = await _rail_payments(engine, buyer)
    assert (rail["outcome"], rail["hold_reason"], rail["amount"]) == ("held", "invoice_closed",
                                                                      1375)
    [alert] = await _outbox(engine, "operator.rail_held", rail_payment_id=rail["id"])
    assert alert["reason"] == "invoice_closed"
    [held] = await _outbox(engine, "rail.held", rail_payment_id=rail["id"])
    assert held["recipient"] == buyer.user.id


async def test_a_duplicate_successful_payment_settles_once(person, engine,
                                                           bot_api: BotApiStandIn) -> None:
    seller, buyer = await person(), await person()
    invoice = await _coffee(engine, seller, kind="multi_use")  # a second payment would count
    sent = await _offered(buyer, bot_api, invoice, "Pay with Stars")
    update = bot_api.successful_payment_update(_from(buyer), sent)
    await _feed(buyer.dp, buyer.bot, update)
    await _feed(buyer.dp, buyer.bot, update)  # Telegram sends it again
    assert len(await _invoice_payments(engine, invoice)) == 1
    assert len(await _rail_payments(engine, buyer)) == 1
    assert await balance(engine, seller.user.id) == 1250
    assert (await get_invoice(engine, invoice.public_id)).uses == 1
    # both times the buyer reads the same outcome
    paid = [m for m in bot_api.messages(buyer.id) if m.plain.startswith("✅ Paid 963 ⭐")]
    assert len(paid) == 2


async def test_a_forged_payment_with_an_unknown_payload_is_held(
        person, engine, bot_api: BotApiStandIn) -> None:
    seller, buyer = await person(), await person()
    invoice = await _coffee(engine, seller)
    # The payload names a real invoice, not a quote: nothing is paid by it.
    forged = bot_api.successful_payment_update(
        _from(buyer), currency="USD", total_amount=1375, payload=invoice.public_id)
    await _feed(buyer.dp, buyer.bot, forged)
    assert "we could not match it to an invoice" in buyer.last.plain
    assert (await get_invoice(engine, invoice.public_id)).status == "pending"
    [rail] = await _rail_payments(engine, buyer)
    assert (rail["rail"], rail["outcome"], rail["hold_reason"]) == (
        "card:telegram", "held", "unknown_quote")
    assert len(await _outbox(engine, "operator.rail_held", rail_payment_id=rail["id"])) == 1


async def test_an_amount_or_currency_unlike_the_quote_is_held(
        person, engine, bot_api: BotApiStandIn) -> None:
    seller, buyer = await person(), await person()
    invoice = await _coffee(engine, seller)
    sent = await _offered(buyer, bot_api, invoice, "Pay by card (USD)")
    await _feed(buyer.dp, buyer.bot,
                bot_api.successful_payment_update(_from(buyer), sent, total_amount=1))
    await _feed(buyer.dp, buyer.bot,
                bot_api.successful_payment_update(_from(buyer), sent, currency="EUR"))
    assert "the amount or currency differs" in buyer.last.plain
    assert (await get_invoice(engine, invoice.public_id)).status == "pending"
    assert [(r["outcome"], r["hold_reason"]) for r in await _rail_payments(engine, buyer)] == [
        ("held", "amount_mismatch"), ("held", "amount_mismatch")]


async def test_top_up_with_stars(person, engine, bot_api: BotApiStandIn) -> None:
    buyer = await person()
    [shown] = await buyer.send("/balance")
    assert "⭐ Top up with Stars" in shown.button_texts
    assert "💳 Top up by card (USD)" in shown.button_texts
    [choose] = (await buyer.tap(shown, "Top up with Stars")).sent
    assert choose.button_texts == ["5.00 Liquid $", "10.00 Liquid $", "25.00 Liquid $",
                                   "50.00 Liquid $"]
    tap = await buyer.tap(choose, "10.00 Liquid $")
    [sent] = bot_api.invoices_in(buyer.id)
    assert tap.sent[0].message_id == sent.message_id
    assert (sent.currency, sent.total_amount) == ("XTR", 770)
    assert await _pre_checkout(buyer, bot_api, sent) == {"ok": True}
    await _feed(buyer.dp, buyer.bot, bot_api.successful_payment_update(_from(buyer), sent))
    assert buyer.last.plain == (
        "✅ Your payment of 770 ⭐ arrived: 10.00 Liquid $ added to your balance.")
    assert await balance(engine, buyer.user.id) == 1000
    # a forged amount is not offered: one sentence, no quote, no invoice
    tap = await buyer.press(choose, "tup:XTR:99999999")
    assert tap.alert and tap.answer_text == "This way of paying is not available now."
    assert len(bot_api.invoices_in(buyer.id)) == 1


async def test_a_missing_provider_token_offers_no_card_and_the_bot_starts(
        person, engine, bot_api: BotApiStandIn, bot) -> None:
    settings = bot_settings(bot_api.url, bot_api.token)
    # EUR has a rate but no provider token; GBP a token but no rate; no Stars rate
    settings.payments = PaymentSettings(
        telegram_card={"USD": CardProvider(provider="stripe", token=SecretStr("t1")),
                       "GBP": CardProvider(provider="stripe", token=SecretStr("t2"))},
        rates={"USD": Decimal("1"), "EUR": Decimal("0.9")})
    dp = create_dispatcher(Ledger(engine), settings)
    seller, buyer = await person(), await person()
    buyer = TgClient(bot_api, dp, bot, buyer.user)
    invoice = await _coffee(engine, seller)
    [card] = await buyer.send(f"/start pay_{invoice.public_id}")
    assert [t for t in card.button_texts if "card" in t or "Stars" in t] == [
        "💳 Pay by card (USD)"]
    # an old button for a currency no longer offered: one sentence, nothing sent
    tap = await buyer.press(card, f"rail:{invoice.public_id}:XTR")
    assert tap.alert and tap.answer_text == "This way of paying is not available now."
    assert bot_api.invoices_in(buyer.id) == []


async def test_the_sellers_own_invoice_offers_no_card(person, engine) -> None:
    seller = await person()
    invoice = await _coffee(engine, seller)
    [card] = await seller.send(f"/start pay_{invoice.public_id}")
    assert not [t for t in card.button_texts if "card" in t or "Stars" in t]
    tap = await seller.press(card, f"rail:{invoice.public_id}:USD")
    assert tap.alert and "your own invoice" in (tap.answer_text or "")


async def test_paying_a_closed_invoice_is_one_sentence(person, engine,
                                                       bot_api: BotApiStandIn) -> None:
    seller, buyer = await person(), await person()
    invoice = await _coffee(engine, seller)
    [card] = await buyer.send(f"/start pay_{invoice.public_id}")
    await cancel_invoice(engine, invoice.public_id, seller.user.id)
    tap = await buyer.tap(card, "Pay with Stars")
    assert tap.alert and tap.answer_text == "This invoice was cancelled by the seller."
    assert bot_api.invoices_in(buyer.id) == []


# --- the database fails while a payment arrives ---------------------------------------------

@pytest.fixture
async def relayed(database_url: str, bot_api: BotApiStandIn,
                  cfg: BotConfig) -> AsyncIterator[tuple[FreezableRelay, Dispatcher]]:
    """A bot process whose database connection goes through a relay that can freeze."""
    url = make_url(libpq_url(database_url))
    host = url.query.get("host")
    if not isinstance(host, str) or not host.startswith("/"):
        pytest.skip("the relay needs the test server's Unix socket")
    relay = FreezableRelay(f"{host}/.s.PGSQL.{url.port or 5432}")
    port = await relay.start()
    relayed_url = url.set(host="127.0.0.1", port=port, query={}).render_as_string(
        hide_password=False)
    flaky = make_engine(relayed_url, pool_size=2, connect_timeout=1.0, command_timeout=1.0,
                        pool_timeout=1.0)
    dp = create_dispatcher(Ledger(flaky), bot_settings(bot_api.url, bot_api.token))
    dp["cfg"].card_providers, dp["cfg"].rail_rates = cfg.card_providers, cfg.rail_rates
    dp["cfg"].settle_retry_seconds = 0  # give up at once (production: retries for a while)
    yield relay, dp
    relay.thaw()
    await relay.close()
    await flaky.dispose()


async def test_a_payment_that_fails_to_settle_is_settled_once_when_redelivered(
        person, engine, bot_api: BotApiStandIn, bot, relayed) -> None:
    relay, flaky_dp = relayed
    seller, buyer = await person(), await person()
    invoice = await _coffee(engine, seller)
    buyer = TgClient(bot_api, flaky_dp, bot, buyer.user)
    sent = await _offered(buyer, bot_api, invoice, "Pay by card (USD)")
    assert await _pre_checkout(buyer, bot_api, sent) == {"ok": True}

    relay.freeze()  # the database stops answering
    # a pre-checkout now is still answered, well within Telegram's 10 seconds
    answer = await _pre_checkout(buyer, bot_api, sent)
    assert answer == {"ok": False, "error_message": "We could not check this payment right "
                      "now. You were not charged; please try again in a minute."}
    update = bot_api.successful_payment_update(_from(buyer), sent)
    await _feed(flaky_dp, bot, update, update_id=777)
    assert buyer.last.plain.startswith("⏳ Your payment of 13.75 USD arrived, but we could "
                                       "not record it yet.")
    assert await _rail_payments(engine, buyer) == []
    relay.thaw()

    # The update again, to a restarted process (routers go to the newest dispatcher), twice:
    # settled, once.
    restarted = create_dispatcher(Ledger(engine), bot_settings(bot_api.url, bot_api.token))
    restarted["cfg"].card_providers = flaky_dp["cfg"].card_providers
    await _feed(restarted, bot, update, update_id=777)
    assert buyer.last.plain == "✅ Paid 13.75 USD for Coffee <beans>.\nYou received: 🎁 coffee-1"
    await _feed(restarted, bot, update, update_id=777)
    assert (await get_invoice(engine, invoice.public_id)).status == "paid"
    assert len(await _invoice_payments(engine, invoice)) == 1
    assert len(await _rail_payments(engine, buyer)) == 1
    assert await balance(engine, seller.user.id) == 1250


async def test_a_database_blip_while_settling_is_retried(
        person, engine, bot_api: BotApiStandIn, bot, relayed, caplog) -> None:
    relay, flaky_dp = relayed
    # Conversations on a healthy connection: the outage meets the settlement itself.
    dp = create_dispatcher(flaky_dp["ledger"], bot_settings(bot_api.url, bot_api.token),
                           storage=PostgresStorage(engine))
    dp["cfg"].card_providers, dp["cfg"].rail_rates = flaky_dp["cfg"].card_providers, \
        flaky_dp["cfg"].rail_rates
    seller, buyer = await person(), await person()
    invoice = await _coffee(engine, seller)
    buyer = TgClient(bot_api, dp, bot, buyer.user)
    sent = await _offered(buyer, bot_api, invoice, "Pay with Stars")
    assert await _pre_checkout(buyer, bot_api, sent) == {"ok": True}

    relay.freeze()
    answer = await _pre_checkout(buyer, bot_api, sent)  # answered, not left to time out
    assert answer["ok"] is False and "You were not charged" in answer["error_message"]
    update = bot_api.successful_payment_update(_from(buyer), sent)
    handling = asyncio.create_task(_feed(dp, bot, update))
    await wait_until(lambda: any("not settled yet" in r.getMessage() for r in caplog.records),
                     "a failed attempt", task=handling)
    assert await _rail_payments(engine, buyer) == []
    relay.thaw()
    await handling
    assert buyer.last.plain.startswith("✅ Paid 963 ⭐ for Coffee <beans>.")
    assert len(await _rail_payments(engine, buyer)) == 1
    assert len(await _invoice_payments(engine, invoice)) == 1


async def test_card_and_stars_offers_are_limited_per_user(engine, bot_api: BotApiStandIn, bot,
                                                          make_user) -> None:
    dp = limited_dispatcher(engine, bot_api, "1/h:2")
    seller = await make_user()
    buyer = TgClient(bot_api, dp, bot, await make_user(), language="en")
    invoice = await create_invoice(engine, seller_id=seller.id, title="Beans", amount=100,
                                   ton_rate=RATE)
    [card] = await buyer.send(f"/start pay_{invoice.public_id}")
    for _ in range(2):
        assert not (await buyer.tap(card, "Pay with Stars")).alert
    refused = await buyer.tap(card, "Pay with Stars")
    assert refused.alert and "Too many requests" in (refused.answer_text or "")
    assert len(bot_api.invoices_in(buyer.id)) == 2  # no third quote, no third invoice


async def test_the_webhook_answers_a_payment_only_once_it_is_recorded(
        person, engine, bot_api: BotApiStandIn, bot, relayed) -> None:
    """Telegram sends an update again until its webhook answers 200: a successful_payment is
    answered after the ledger recorded it, 500 before — so a database outage (or a process
    killed mid-payment, which answers nothing) gets the payment sent again, settled once."""
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from bot.telegram.webhook import PaymentsFirstHandler

    relay, flaky_dp = relayed
    seller, buyer = await person(), await person()
    invoice = await _coffee(engine, seller)
    client = TgClient(bot_api, flaky_dp, bot, buyer.user)
    sent = await _offered(client, bot_api, invoice, "Pay by card (USD)")
    app = web.Application()
    PaymentsFirstHandler(flaky_dp, bot, flaky_dp["ledger"], secret_token="s3").register(
        app, "/hook")
    update = {"update_id": 4242, **bot_api.successful_payment_update(_from(client), sent)}
    headers = {"X-Telegram-Bot-Api-Secret-Token": "s3"}
    async with TestClient(TestServer(app)) as http:
        relay.freeze()
        first = await http.post("/hook", json=update, headers=headers)
        assert first.status == 500  # not recorded: Telegram will send it again
        relay.thaw()
        for _ in range(2):  # the redelivery, and a duplicate of it
            again = await http.post("/hook", json=update, headers=headers)
            assert again.status == 200
        chat = await http.post("/hook", headers=headers, json={
            "update_id": 4243, "message": {"message_id": 9, "date": 1_700_000_000,
                                           "text": "hello", "chat": {"id": 1, "type": "private"}}})
        assert chat.status == 200  # any other update: answered at once, handled after
    assert (await get_invoice(engine, invoice.public_id)).status == "paid"
    assert len(await _rail_payments(engine, client)) == 1
    assert await balance(engine, seller.user.id) == 1250


async def test_stars_are_not_offered_beyond_one_stars_invoice(person, engine) -> None:
    """Telegram takes 1 to 10,000 Stars per invoice: at 77 ⭐ per Liquid $ an invoice of 200 $
    (15,400 ⭐) gets no Stars button — rather than a tap that can only fail."""
    seller, buyer = await person(), await person()
    big = await _coffee(engine, seller, amount=20000)
    [card] = await buyer.send(f"/start pay_{big.public_id}")
    assert not [t for t in card.button_texts if "Stars" in t]
    small = await _coffee(engine, seller)
    [card] = await buyer.send(f"/start pay_{small.public_id}")
    assert [t for t in card.button_texts if "Stars" in t] == ["⭐ Pay with Stars"]
