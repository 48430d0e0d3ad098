"""`paybot admin rails`: the operator lists card and Stars payments (held ones alone), sees the
Stars totals, refunds a Stars payment through Telegram and records a card refund made in the
provider's dashboard. Telegram is the Bot API stand-in, reached through TELEGRAM_API_URL as
the real command would reach a self-hosted server."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from ledger.accounts import balance
from ledger.core import Ledger
from ledger.invoices import cancel_invoice, create_invoice
from ledger.models import Invoice, User
from tests.bot.botapi import BotApiStandIn
from tests.test_cli import Paybot, paybot  # noqa: F401 (the fixture)

STARS_PER_LIQ = Decimal(77)


@pytest.fixture
async def telegram(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[BotApiStandIn]:
    api = BotApiStandIn()
    await api.start()
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", api.token)
    monkeypatch.setenv("TELEGRAM_API_URL", api.url)
    yield api
    await api.close()


async def _invoice(engine, seller: User) -> Invoice:  # type: ignore[no-untyped-def]
    return await create_invoice(engine, seller_id=seller.id, title="Ebook", amount=500,
                                ton_rate=Decimal("5.00"))


async def _pay(ledger: Ledger, invoice: Invoice, buyer: User, *, rail: str, currency: str,
               rate: Decimal, api: BotApiStandIn | None = None) -> int:
    quote = await ledger.quote_rail(purpose="invoice", rail=rail, channel="telegram",
                                    currency=currency, rate=rate, invoice=invoice.public_id,
                                    user_id=buyer.id)
    charge = f"stx{secrets.token_hex(10)}" if rail == "stars" else f"tg{secrets.token_hex(8)}"
    if api is not None:
        api.star_payment({"id": buyer.telegram_id, "is_bot": False, "first_name": "B"},
                         quote.amount, quote.token, charge)
    settled = await ledger.settle_rail_payment(
        rail=rail, channel="telegram", reference=charge,
        provider_reference=None if rail == "stars" else f"ch_{charge}", token=quote.token,
        currency=currency, amount=quote.amount, payer_id=buyer.id, details={})
    return settled.rail_payment_id


async def test_list_held_and_stars_totals(database_url, engine, ledger: Ledger, make_user,
                                          paybot: Paybot) -> None:  # noqa: F811
    seller, buyer = await make_user(), await make_user()
    stars_id = await _pay(ledger, await _invoice(engine, seller), buyer, rail="stars",
                          currency="XTR", rate=STARS_PER_LIQ)
    # a card payment that arrives after the invoice was cancelled: held for a refund
    invoice = await _invoice(engine, seller)
    quote = await ledger.quote_rail(purpose="invoice", rail="card:stripe", channel="telegram",
                                    currency="USD", rate=Decimal(1), invoice=invoice.public_id,
                                    user_id=buyer.id)
    await cancel_invoice(engine, invoice.public_id, seller.id)
    held = await ledger.settle_rail_payment(
        rail="card:stripe", channel="telegram", reference="tgcharge-held-1",
        provider_reference="ch_provider_held_1", token=quote.token, currency="USD",
        amount=quote.amount, payer_id=buyer.id, details={})
    assert held.outcome == "held"

    code, out = await paybot(database_url, "admin", "rails", "--limit", "1000")
    assert code == 0, out
    lines = {line.split("\t")[0]: line.split("\t") for line in out.splitlines() if "\t" in line}
    assert lines["id"][:5] == ["id", "received", "rail", "channel", "reference"]
    stars = lines[str(stars_id)]
    assert stars[2:4] == ["stars", "telegram"] and stars[6:9] == ["385 XTR", "paid", "-"]
    card = lines[str(held.rail_payment_id)]
    assert card[2:9] == ["card:stripe", "telegram", "tgcharge-held-1", "ch_provider_held_1",
                         "5.00 USD", "held", "invoice_closed"]
    assert card[9:] == [f"INV-{invoice.public_id}", "-"]

    code, out = await paybot(database_url, "admin", "rails", "--held", "--limit", "1000")
    ids = [line.split("\t")[0] for line in out.splitlines() if "\t" in line]
    assert str(held.rail_payment_id) in ids and str(stars_id) not in ids
    code, out = await paybot(database_url, "admin", "rails", "--rail", "stars")
    assert str(held.rail_payment_id) not in [line.split("\t")[0] for line in out.splitlines()]

    code, out = await paybot(database_url, "admin", "rails", "stars")
    assert code == 0, out
    totals = dict(line.split("\t") for line in out.splitlines() if "\t" in line)
    assert int(totals["settled"]) >= 385 and "refunded" in totals


async def test_refund_a_stars_payment(database_url, engine, ledger: Ledger, make_user,
                                      paybot: Paybot, telegram: BotApiStandIn) -> None:  # noqa: F811
    seller, buyer = await make_user(), await make_user()
    invoice = await _invoice(engine, seller)
    rail_id = await _pay(ledger, invoice, buyer, rail="stars", currency="XTR",
                         rate=STARS_PER_LIQ, api=telegram)
    before = await balance(engine, seller.id)

    code, out = await paybot(database_url, "admin", "rails", "refund", str(rail_id),
                             "--reason", "customer complaint")
    assert code == 0, out
    assert "385 XTR refunded" in out
    [call] = telegram.calls_of("refundStarPayment")
    assert call.params["user_id"] == str(buyer.telegram_id)
    assert await balance(engine, seller.id) == before - 500
    assert (await ledger.invoice(invoice.public_id)).invoice.status == "pending"

    code, out = await paybot(database_url, "admin", "rails", "refund", str(rail_id),
                             "--reason", "again")
    assert code == 2 and "already been refunded" in out
    assert len(telegram.calls_of("refundStarPayment")) == 1


async def test_a_card_is_refunded_in_the_dashboard_then_recorded(
        database_url, engine, ledger: Ledger, make_user, paybot: Paybot,  # noqa: F811
        telegram: BotApiStandIn) -> None:
    seller, buyer = await make_user(), await make_user()
    invoice = await _invoice(engine, seller)
    rail_id = await _pay(ledger, invoice, buyer, rail="card:stripe", currency="USD",
                         rate=Decimal(1))
    before = await balance(engine, seller.id)

    code, out = await paybot(database_url, "admin", "rails", "refund", str(rail_id),
                             "--reason", "card")
    assert code == 2
    assert "refund it in the provider's dashboard, then record it" in out
    assert f"paybot admin rails record-refund {rail_id}" in out
    assert not telegram.calls_of("refundStarPayment")
    assert await balance(engine, seller.id) == before

    code, out = await paybot(database_url, "admin", "rails", "record-refund", str(rail_id),
                             "--reason", "refunded in Stripe, re_123")
    assert code == 0, out
    assert "5.00 USD refunded" in out
    assert await balance(engine, seller.id) == before - 500
    assert (await ledger.invoice(invoice.public_id)).invoice.status == "pending"
    assert not telegram.calls_of("refundStarPayment")

    code, out = await paybot(database_url, "admin", "rails", "record-refund", str(rail_id),
                             "--reason", "twice")
    assert code == 2 and "already been refunded" in out


async def test_refund_without_a_bot_token_says_so(database_url, engine, ledger: Ledger,
                                                  make_user, paybot: Paybot,  # noqa: F811
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    seller, buyer = await make_user(), await make_user()
    rail_id = await _pay(ledger, await _invoice(engine, seller), buyer, rail="stars",
                         currency="XTR", rate=STARS_PER_LIQ)
    code, out = await paybot(database_url, "admin", "rails", "refund", str(rail_id),
                             "--reason", "x")
    assert code == 1 and "TELEGRAM_BOT_TOKEN" in out
    assert (await ledger.rail_payment(rail_id)).refund is None


async def test_unknown_payment_is_a_clear_error(database_url, paybot: Paybot,  # noqa: F811
                                                telegram: BotApiStandIn) -> None:
    code, out = await paybot(database_url, "admin", "rails", "record-refund", "999999999",
                             "--reason", "x")
    assert code == 2 and "No such card or Stars payment" in out


async def test_no_answer_from_telegram_is_pending(database_url, engine, ledger: Ledger,
                                                 make_user, paybot: Paybot,  # noqa: F811
                                                 telegram: BotApiStandIn) -> None:
    seller, buyer = await make_user(), await make_user()
    invoice = await _invoice(engine, seller)
    rail_id = await _pay(ledger, invoice, buyer, rail="stars", currency="XTR",
                         rate=STARS_PER_LIQ, api=telegram)
    telegram.fail(500, "Internal Server Error", method="refundStarPayment")
    code, out = await paybot(database_url, "admin", "rails", "refund", str(rail_id),
                             "--reason", "x")
    assert code == 4 and "Telegram did not answer" in out
    refund = (await ledger.rail_payment(rail_id)).refund
    assert refund is not None and refund.status == "pending"
    assert (await ledger.invoice(invoice.public_id)).invoice.status == "paid"
