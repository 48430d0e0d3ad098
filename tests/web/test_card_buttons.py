"""Card and Stars on the pay page: the Mini App's invoice link at a locked price (Telegram
Payments), and a plain browser's "Pay by card" forms; each only where configured and only
while the invoice can be paid."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from aiogram import Bot
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.settings import PaymentSettings, Settings, TelegramSettings
from bot.telegram import create_bot
from bot.web import setup_pay_pages
from bot.web.invoice_links import TELEGRAM_BOT
from ledger.core import Ledger
from ledger.invoices import cancel_invoice
from ledger.payments import pay_from_balance
from tests.bot.botapi import BotApiStandIn
from tests.conftest import run_sql
from tests.web.conftest import BOT_TOKEN, BOT_USERNAME, make_settings, sign_init_data, tg_user, tma
from tests.web.test_pay_page import page_data

CARD_TOKEN = "284685063:TEST:card-provider-token"


def card_settings(*, telegram_card: bool = True, stars: bool = True, web_card: bool = True,
                  api_url: str | None = None) -> Settings:
    settings = make_settings()
    if api_url is not None:
        settings.telegram = TelegramSettings(bot_token=SecretStr(BOT_TOKEN),
                                             bot_username=BOT_USERNAME, api_url=api_url)
    rates = {"USD": Decimal("1.08"), "EUR": Decimal("1"), "JPY": Decimal("160")}
    if stars:
        rates["XTR"] = Decimal("77")
    settings.payments = PaymentSettings(
        rates=rates,
        telegram_card={"USD": {"provider": "stripe", "token": CARD_TOKEN}} if telegram_card
        else {},
        web_card={"EUR": "stripe", "JPY": "yookassa"} if web_card else {},
        stripe_secret_key="sk_test_card_buttons", yookassa_shop_id="123456",
        yookassa_secret_key="test_yookassa_key",
    )
    return settings


@pytest.fixture(scope="module")
async def bot_api() -> AsyncIterator[BotApiStandIn]:
    api = BotApiStandIn(token=BOT_TOKEN)
    await api.start()
    yield api
    await api.close()


@pytest.fixture
async def tg_bot(bot_api: BotApiStandIn) -> AsyncIterator[Bot]:
    bot_api.reset()
    bot = create_bot(card_settings(api_url=bot_api.url))
    yield bot
    await bot.session.close()


@pytest.fixture
async def serve(engine: AsyncEngine) -> AsyncIterator:  # type: ignore[type-arg]
    clients: list[TestClient] = []

    async def _serve(settings: Settings, bot: Bot | None = None) -> TestClient:
        app = web.Application()
        setup_pay_pages(app, Ledger(engine), settings)
        if bot is not None:
            app[TELEGRAM_BOT] = bot
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield _serve
    for client in clients:
        await client.close()


async def quotes(engine: AsyncEngine, *invoices) -> int:  # type: ignore[no-untyped-def]
    """Prices locked for these invoices."""
    rows = await run_sql(engine, "SELECT count(*) AS n FROM rail_quotes "
                                 "WHERE invoice_id = ANY(:ids)", ids=[i.id for i in invoices])
    return rows[0]["n"]


def link(client: TestClient, invoice, init: str | None, body: object):  # type: ignore[no-untyped-def]
    headers = tma(init) if init is not None else {}
    return client.post(f"/pay/{invoice.public_id}/invoice-link", json=body, headers=headers)


# --- the Mini App: Telegram Payments ------------------------------------------------------------

async def test_mini_app_offers_card_and_stars_with_the_amount_they_lock(
    serve, tg_bot, bot_api, make_invoice, make_user, engine
):
    client = await serve(card_settings(), tg_bot)
    invoice = await make_invoice()  # 12.50 Liquid $
    buyer = await make_user(username="card_buyer")
    init = sign_init_data(tg_user(buyer))
    status = await (await client.get(f"/pay/{invoice.public_id}/status",
                                     headers=tma(init))).json()
    offers = {(o["rail"], o["currency"]): o["amount"]["display"]
              for o in status["invoice"]["pay_rails"]}
    # 12.50 × 1.08 = 13.50 USD; 12.50 × 77 = 962.5 → 963 Stars (rounded up, never short).
    assert offers == {("card:stripe", "USD"): "13.50 USD", ("stars", "XTR"): "963 ⭐"}

    resp = await link(client, invoice, init, {"rail": "stars", "currency": "XTR"})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert (body["amount"], body["currency"], body["display"]) == (963, "XTR", "963 ⭐")
    sent = bot_api.invoice_of_link(body["url"])
    assert (sent.currency, sent.total_amount, sent.provider_token) == ("XTR", 963, "")
    quote = await Ledger(engine).rail_quote(sent.payload)  # the link's payload is the quote
    assert (quote.rail, quote.channel, quote.amount, quote.invoice_public_id,
            quote.user_id) == ("stars", "telegram", 963, invoice.public_id, buyer.id)
    assert "Coffee beans" in sent.title and invoice.number in sent.description

    resp = await link(client, invoice, init, {"rail": "card:stripe", "currency": "USD"})
    body = await resp.json()
    sent = bot_api.invoice_of_link(body["url"])
    assert (body["amount"], body["display"]) == (1350, "13.50 USD")
    assert (sent.currency, sent.total_amount, sent.provider_token) == ("USD", 1350, CARD_TOKEN)
    assert (await Ledger(engine).rail_quote(sent.payload)).rail == "card:stripe"


async def test_invoice_link_needs_the_mini_app_user(serve, tg_bot, make_invoice, engine):
    client = await serve(card_settings(), tg_bot)
    invoice = await make_invoice()
    body = {"rail": "stars", "currency": "XTR"}
    resp = await link(client, invoice, None, body)
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "missing_init_data"
    resp = await link(client, invoice, sign_init_data({"id": 5}, token="1:other-bot"), body)
    assert resp.status == 401
    assert await quotes(engine, invoice) == 0


async def test_invoice_link_refuses_what_is_not_offered(
    serve, tg_bot, bot_api, make_invoice, make_user, engine
):
    client = await serve(card_settings(), tg_bot)
    invoice = await make_invoice()
    init = sign_init_data(tg_user(await make_user()))
    for bad in ({"rail": "card:paypal", "currency": "USD"},  # no such provider
                {"rail": "stars", "currency": "USD"},  # Stars are XTR
                {"rail": "card:stripe", "currency": "EUR"},  # no Telegram card for EUR
                {"rail": "card:stripe"}, {"rail": 5, "currency": "USD"}, ["stars"], "x"):
        resp = await link(client, invoice, init, bad)
        assert resp.status == 400, bad
        error = (await resp.json())["error"]
        assert error["code"] == "rail_not_offered"
        assert error["message"] == "This way to pay is not available."
    resp = await client.post(f"/pay/{invoice.public_id}/invoice-link", data=b"{not json",
                             headers={**tma(init), "Content-Type": "application/json"})
    assert resp.status == 400
    # Nothing configured: nothing offered, nothing accepted.
    bare = await serve(card_settings(telegram_card=False, stars=False), tg_bot)
    status = await (await bare.get(f"/pay/{invoice.public_id}/status", headers=tma(init))).json()
    assert status["invoice"]["pay_rails"] == []
    resp = await link(bare, invoice, init, {"rail": "stars", "currency": "XTR"})
    assert resp.status == 400
    assert await quotes(engine, invoice) == 0 and bot_api.invoices == []


async def test_invoice_link_for_an_invoice_that_cannot_be_paid(
    serve, tg_bot, bot_api, make_invoice, make_user, engine
):
    client = await serve(card_settings(), tg_bot)
    seller = await make_user(username="link_seller")
    buyer = await make_user(balance=5000)
    init = sign_init_data(tg_user(buyer))
    stars = {"rail": "stars", "currency": "XTR"}

    paid = await make_invoice(seller)
    await pay_from_balance(engine, paid.public_id, buyer.id, "first")
    resp = await link(client, paid, init, stars)
    assert resp.status == 409
    body = await resp.json()
    assert body["error"]["code"] == "invoice_already_paid"
    assert body["error"]["message"] == "This invoice has already been paid."
    status = await (await client.get(f"/pay/{paid.public_id}/status", headers=tma(init))).json()
    assert status["invoice"]["pay_rails"] == []  # no button for it either

    cancelled = await make_invoice(seller)
    await cancel_invoice(engine, cancelled.public_id, seller.id)
    assert (await link(client, cancelled, init, stars)).status == 410

    own = await make_invoice(seller)
    resp = await link(client, own, sign_init_data(tg_user(seller)), stars)
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "own_invoice"

    resp = await client.post("/pay/0000000000000/invoice-link", json=stars, headers=tma(init))
    assert resp.status == 404
    assert await quotes(engine, paid, cancelled, own) == 0 and bot_api.invoices == []


async def test_invoice_link_when_telegram_is_not_there(
    serve, tg_bot, bot_api, make_invoice, make_user, engine
):
    invoice = await make_invoice()
    init = sign_init_data(tg_user(await make_user()))
    stars = {"rail": "stars", "currency": "XTR"}
    no_bot = await serve(card_settings())
    resp = await link(no_bot, invoice, init, stars)
    assert resp.status == 503 and (await resp.json())["error"]["code"] == "telegram_unavailable"
    assert await quotes(engine, invoice) == 0
    client = await serve(card_settings(), tg_bot)
    bot_api.fail(502, "Bad Gateway", method="createInvoiceLink", times=1)
    resp = await link(client, invoice, init, stars)
    assert resp.status == 503 and resp.headers["Retry-After"]
    assert "nothing was charged" in (await resp.json())["error"]["message"]


async def test_stars_beyond_telegrams_bounds_are_not_offered(
    serve, tg_bot, make_invoice, make_user, engine
):
    client = await serve(card_settings(), tg_bot)
    big = await make_invoice(amount=20_000)  # 200 Liquid $ × 77 = 15400 Stars > 10000
    init = sign_init_data(tg_user(await make_user()))
    status = await (await client.get(f"/pay/{big.public_id}/status", headers=tma(init))).json()
    assert [o["rail"] for o in status["invoice"]["pay_rails"]] == ["card:stripe"]
    resp = await link(client, big, init, {"rail": "stars", "currency": "XTR"})
    assert resp.status == 422 and (await resp.json())["error"]["code"] == "invalid_amount"
    assert await quotes(engine, big) == 0  # nothing locked


# --- a plain browser: card checkout forms -------------------------------------------------------

def card_forms(body: str) -> list[tuple[str, str, str]]:
    """(action, currency, button text) of each card form on the page."""
    return [(html.unescape(a), c, html.unescape(b)) for a, c, b in re.findall(
        r'<form method="post" action="([^"]+)" class="card-form">'
        r'<input type="hidden" name="currency" value="([A-Z]{3})">'
        r'<button type="submit" class="btn">([^<]+)</button></form>', body)]


async def test_browser_gets_a_card_form_per_configured_currency(serve, make_invoice):
    client = await serve(card_settings())
    invoice = await make_invoice()
    body = await (await client.get(f"/pay/{invoice.public_id}")).text()
    action = f"/pay/{invoice.public_id}/card"
    # 12.50 EUR at 1 per Liquid $; 12.50 × 160 = 2000 JPY (no minor units).
    assert card_forms(body) == [(action, "EUR", "💳 Pay by card 12.50 EUR"),
                                (action, "JPY", "💳 Pay by card 2000 JPY")]
    assert '<section id="card" class="card-pay">' in body
    assert [o["currency"] for o in page_data(body)["invoice"]["pay_card"]] == ["EUR", "JPY"]
    ru = await (await client.get(f"/pay/{invoice.public_id}",
                                 headers={"Accept-Language": "ru"})).text()
    assert card_forms(ru)[0][2] == "💳 Оплатить картой 12.50 EUR"


async def test_no_card_form_without_configuration_or_once_paid(
    serve, make_invoice, make_user, engine
):
    invoice = await make_invoice()
    bare = await serve(card_settings(web_card=False))
    body = await (await bare.get(f"/pay/{invoice.public_id}")).text()
    assert card_forms(body) == [] and '<section id="card" class="card-pay" hidden>' in body

    client = await serve(card_settings())
    buyer = await make_user(balance=5000)
    await pay_from_balance(engine, invoice.public_id, buyer.id, "k")
    body = await (await client.get(f"/pay/{invoice.public_id}")).text()
    assert card_forms(body) == [] and '<section id="card" class="card-pay" hidden>' in body
    draft = await make_invoice(draft=True)
    body = await (await client.get(f"/pay/{draft.public_id}")).text()
    assert card_forms(body) == []
