"""Cards in a plain browser (issue 14, item 7): a guest on /pay/<id> pays through Stripe
Checkout or YooKassa, the official SDKs pointed at a local stand-in (tests/web/providers.py);
the money settles once, by the signed webhook, by the return page, or by the job, and the
guest gets the same claim by proof as a TON guest. Real PostgreSQL throughout."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.settings import PaymentSettings
from bot.web.cards import CARDS, setup_card_checkout
from bot.web.guard import PageGuard
from bot.web.routes import PayPages
from bot.web.view import PayConfig
from ledger.invoices import cancel_invoice
from ledger.payers import find_tag
from tests.conftest import run_sql
from tests.web.conftest import BOT_USERNAME, make_settings, sign_init_data, tg_user, tma
from tests.web.providers import (
    STRIPE_KEY,
    STRIPE_WEBHOOK_SECRET,
    YOOKASSA_KEY,
    YOOKASSA_SHOP,
    Providers,
    start_providers,
)
from tests.web.test_guest_claims import Browser
from watchers.card_sessions import card_sessions_job

RATES = {"USD": Decimal("1"), "RUB": Decimal("90"), "KWD": Decimal("0.308"),
         "JPY": Decimal("150"), "BHD": Decimal("0.3075")}


@pytest.fixture
async def providers() -> AsyncIterator[Providers]:
    async for running in start_providers():
        yield running


def card_settings(providers: Providers) -> Any:
    settings = make_settings()
    settings.payments = PaymentSettings(
        web_card={"USD": "stripe", "KWD": "stripe", "JPY": "stripe", "BHD": "stripe",
                  "RUB": "yookassa"},
        rates=RATES, stripe_secret_key=STRIPE_KEY, stripe_webhook_secret=STRIPE_WEBHOOK_SECRET,
        stripe_api_base=providers.url, yookassa_shop_id=YOOKASSA_SHOP,
        yookassa_secret_key=YOOKASSA_KEY, yookassa_api_url=f"{providers.url}/v3")
    return settings


@pytest.fixture
async def client(client_for, providers):  # type: ignore[no-untyped-def]
    return await client_for(card_settings(providers))


async def checkout(browser: Browser, invoice: Any, currency: str) -> tuple[int, str, Any]:
    """The page's card form, posted from this browser: (status, Location, response)."""
    resp = await browser.client.post(f"/pay/{invoice.public_id}/card",
                                     data={"currency": currency}, allow_redirects=False,
                                     cookies=browser._cookies())
    if "pb_guest" in resp.cookies:
        browser.cookie = resp.cookies["pb_guest"].value
    return resp.status, resp.headers.get("Location", ""), resp


async def stripe_webhook(client: Any, body: bytes, signature: str | None) -> Any:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return await client.post("/webhooks/stripe", data=body, headers=headers)


async def send_stripe(client: Any, kind: str, session: dict[str, Any]) -> dict[str, Any]:
    body = Providers.stripe_event(kind, session)
    resp = await stripe_webhook(client, body, Providers.stripe_signature(body))
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def invoice_status(engine: Any, invoice: Any) -> str:
    rows = await run_sql(engine, "SELECT status FROM invoices WHERE id = :id", id=invoice.id)
    return str(rows[0]["status"])


async def rail_rows(engine: Any, invoice: Any) -> list[dict[str, Any]]:
    return await run_sql(engine, "SELECT * FROM rail_payments WHERE invoice_id = :id ORDER BY id",
                         id=invoice.id)


async def payments_of(engine: Any, invoice: Any) -> int:
    rows = await run_sql(engine, "SELECT count(*) AS n FROM payments WHERE invoice_id = :id",
                         id=invoice.id)
    return int(rows[0]["n"])


def token_of(session: dict[str, Any]) -> str:
    return parse_qs(urlsplit(session["success_url"]).query)["q"][0]


# --- the happy paths ----------------------------------------------------------------------


async def test_a_guest_pays_by_stripe_checkout_and_gets_the_claim(
        client, providers, make_invoice, engine) -> None:
    invoice = await make_invoice(payload={"item_id": "beans-1kg"})
    guest = Browser(client)
    tag = (await guest.open(invoice))[1]["payer"]["tag"]
    status, location, _ = await checkout(guest, invoice, "usd")
    assert status == 303 and location.startswith("https://checkout.stripe.com/c/pay/cs_test_")
    session = providers.sessions[location.rsplit("/", 1)[1]]
    token = token_of(session)
    # One line of 12.50 USD for the invoice, bound to the quote; back to the pay page after.
    assert (session["amount_total"], session["currency"], session["mode"]) == (1250, "usd",
                                                                                "payment")
    assert session["client_reference_id"] == token == session["metadata"]["quote"]
    assert session["metadata"]["invoice"] == invoice.public_id
    assert session["success_url"] == (f"https://pay.example.com/pay/{invoice.public_id}"
                                      f"/card/return?q={token}")
    assert session["cancel_url"] == f"https://pay.example.com/pay/{invoice.public_id}"
    assert session["line_items_name"] == invoice.title
    assert await invoice_status(engine, invoice) == "pending"  # nothing paid by a redirect

    providers.pay(session["id"])
    answer = await send_stripe(client, "checkout.session.completed", session)
    assert answer == {"received": True, "outcome": "paid", "replayed": False}
    assert await invoice_status(engine, invoice) == "paid"
    (row,) = await rail_rows(engine, invoice)
    assert (row["rail"], row["channel"], row["reference"], row["currency"], row["amount"]) == (
        "card:stripe", "web", session["id"], "USD", 1250)
    assert row["provider_reference"] == session["payment_intent"]
    # The guest's browser — and only it — holds the proof link; the item waits for it.
    payer = await find_tag(engine, invoice.public_id, tag)
    assert payer is not None and payer.proof
    mine = await guest.status(invoice)
    assert mine["invoice"]["status"] == "paid"
    assert mine["claim"] == {"url": f"https://t.me/{BOT_USERNAME}?start=bind_"
                                    f"{invoice.public_id}_{tag}_{payer.proof}"}
    assert (await Browser(client).status(invoice))["claim"] is None
    grants = await run_sql(engine, "SELECT user_id FROM grants WHERE invoice_id = :id",
                           id=invoice.id)
    assert [g["user_id"] for g in grants] == [None]


async def test_a_browser_without_a_cookie_gets_one_with_the_checkout(
        client, providers, make_invoice, engine) -> None:
    invoice = await make_invoice()
    guest = Browser(client)  # never opened the page's script: no tag yet
    status, location, _ = await checkout(guest, invoice, "USD")
    assert status == 303 and guest.cookie is not None
    session = providers.sessions[location.rsplit("/", 1)[1]]
    providers.pay(session["id"])
    await send_stripe(client, "checkout.session.completed", session)
    assert (await guest.status(invoice))["claim"]["url"].startswith(f"https://t.me/{BOT_USERNAME}")


async def test_a_guest_pays_by_yookassa_and_its_body_is_never_trusted(
        client, providers, make_invoice, engine) -> None:
    invoice = await make_invoice()
    guest = Browser(client)
    await guest.open(invoice)
    status, location, _ = await checkout(guest, invoice, "RUB")
    assert status == 303 and location.startswith("https://yoomoney.ru/checkout/")
    (payment,) = providers.payments.values()
    token = payment["metadata"]["quote"]
    assert payment["amount"] == {"value": "1125.00", "currency": "RUB"}  # 12.50 x 90
    assert payment["capture"] is True and payment["confirmation"]["return_url"] == (
        f"https://pay.example.com/pay/{invoice.public_id}/card/return?q={token}")
    # A notification saying "succeeded" for a payment YooKassa still has pending: nothing.
    forged = dict(payment, status="succeeded", paid=True)
    resp = await client.post("/webhooks/yookassa",
                             json=Providers.yookassa_notification("payment.succeeded", forged))
    assert resp.status == 200 and (await resp.json())["outcome"] is None
    assert await invoice_status(engine, invoice) == "pending"
    # An id YooKassa does not know: refused, nothing changes.
    unknown = dict(payment, id="2f2b4c1e-000f-5000-9000-1b68e7b15f3f")
    resp = await client.post("/webhooks/yookassa",
                             json=Providers.yookassa_notification("payment.succeeded", unknown))
    assert resp.status == 400
    for junk in (b"", b"[]", b'{"event": "payment.succeeded"}', b"\xff\xfe"):
        resp = await client.post("/webhooks/yookassa", data=junk,
                                 headers={"Content-Type": "application/json"})
        assert resp.status == 400, junk

    providers.pay(payment["id"])
    note = Providers.yookassa_notification("payment.succeeded", payment)
    first = await client.post("/webhooks/yookassa", json=note)
    again = await client.post("/webhooks/yookassa", json=note)
    assert first.status == again.status == 200
    assert (await first.json())["outcome"] == "paid" and (await again.json())["replayed"]
    assert await invoice_status(engine, invoice) == "paid"
    (row,) = await rail_rows(engine, invoice)
    assert (row["rail"], row["reference"], row["currency"], row["amount"]) == (
        "card:yookassa", payment["id"], "RUB", 112500)
    assert (await guest.status(invoice))["claim"]["url"]


async def test_a_canceled_yookassa_payment_pays_nothing(
        client, providers, make_invoice, engine) -> None:
    invoice = await make_invoice()
    await checkout(Browser(client), invoice, "RUB")
    (payment,) = providers.payments.values()
    providers.fail(payment["id"])
    resp = await client.post("/webhooks/yookassa", json=Providers.yookassa_notification(
        "payment.canceled", payment))
    assert resp.status == 200
    assert await invoice_status(engine, invoice) == "pending" and not await rail_rows(
        engine, invoice)


# --- webhooks: signatures, replays, order -------------------------------------------------


async def test_a_stripe_webhook_without_a_good_signature_changes_nothing(
        client, providers, make_invoice, engine) -> None:
    invoice = await make_invoice()
    _, location, _ = await checkout(Browser(client), invoice, "USD")
    session = providers.sessions[location.rsplit("/", 1)[1]]
    providers.pay(session["id"])
    body = Providers.stripe_event("checkout.session.completed", session)
    now = int(time.time())
    cases = {
        "missing": None,
        "wrong secret": Providers.stripe_signature(body, secret="whsec_someone_else"),
        "stale": Providers.stripe_signature(body, at=now - 301),
        "garbage": "t=abc,v1=zz",
        "other body": Providers.stripe_signature(body + b" "),
    }
    for name, signature in cases.items():
        resp = await stripe_webhook(client, body, signature)
        assert resp.status == 400, name
        assert (await resp.json())["error"]["code"] == "bad_signature"
    tampered = body.replace(b'"amount_total": 1250', b'"amount_total": 1')
    resp = await stripe_webhook(client, tampered, Providers.stripe_signature(body))
    assert resp.status == 400
    assert await invoice_status(engine, invoice) == "pending"
    assert not await rail_rows(engine, invoice)


async def test_replayed_duplicated_and_late_failed_events_settle_once(
        client, providers, make_invoice, engine) -> None:
    invoice = await make_invoice()
    _, location, _ = await checkout(Browser(client), invoice, "USD")
    session = providers.sessions[location.rsplit("/", 1)[1]]
    # An async method: completed but unpaid waits; then it succeeds.
    providers.pay(session["id"], later=True)
    assert (await send_stripe(client, "checkout.session.completed", session))["outcome"] is None
    assert await invoice_status(engine, invoice) == "pending"
    providers.pay(session["id"])
    body = Providers.stripe_event("checkout.session.async_payment_succeeded", session)
    signature = Providers.stripe_signature(body)
    first = await stripe_webhook(client, body, signature)
    replayed = await stripe_webhook(client, body, signature)  # the same delivery again
    duplicate = await send_stripe(client, "checkout.session.completed", session)  # another id
    assert first.status == replayed.status == 200
    assert (await first.json())["outcome"] == "paid"
    assert (await replayed.json())["replayed"] and duplicate["replayed"]
    # Out of order: a failure after the success changes nothing.
    assert (await send_stripe(client, "checkout.session.async_payment_failed", session)) == {
        "received": True}
    assert await invoice_status(engine, invoice) == "paid"
    assert len(await rail_rows(engine, invoice)) == 1 and await payments_of(engine, invoice) == 1


async def test_a_failed_async_payment_pays_nothing(
        client, providers, make_invoice, engine) -> None:
    invoice = await make_invoice()
    _, location, _ = await checkout(Browser(client), invoice, "USD")
    session = providers.sessions[location.rsplit("/", 1)[1]]
    providers.pay(session["id"], later=True)
    await send_stripe(client, "checkout.session.completed", session)
    providers.fail(session["id"])
    await send_stripe(client, "checkout.session.async_payment_failed", session)
    assert await invoice_status(engine, invoice) == "pending"
    assert not await rail_rows(engine, invoice)


# --- the verify fallback ------------------------------------------------------------------


async def test_a_missed_webhook_is_caught_by_the_return_page(
        client, providers, make_invoice, engine) -> None:
    invoice = await make_invoice()
    guest = Browser(client)
    await guest.open(invoice)
    _, location, _ = await checkout(guest, invoice, "USD")
    session = providers.sessions[location.rsplit("/", 1)[1]]
    back = urlsplit(session["success_url"])
    # Back before paying (or with a made-up token): the page, nothing changes.
    for query in (back.query, "q=qNOTAREALTOKEN00000000", "q=%00", ""):
        resp = await client.get(f"{back.path}?{query}", allow_redirects=False,
                                cookies=guest._cookies())
        assert resp.status == 303 and resp.headers["Location"] == f"/pay/{invoice.public_id}"
    assert await invoice_status(engine, invoice) == "pending"

    providers.pay(session["id"])  # paid; the webhook never comes
    resp = await client.get(f"{back.path}?{back.query}", allow_redirects=False,
                            cookies=guest._cookies())
    assert resp.status == 303 and resp.headers["Location"] == f"/pay/{invoice.public_id}"
    assert await invoice_status(engine, invoice) == "paid"
    assert (await guest.status(invoice))["claim"]["url"]
    # Reloading the return page (or anyone holding its link) asks Stripe nothing more.
    asked = len(providers.calls)
    for _ in range(3):
        await client.get(f"{back.path}?{back.query}", allow_redirects=False)
    assert len(providers.calls) == asked
    # The webhook arriving after all: nothing more.
    assert (await send_stripe(client, "checkout.session.completed", session))["replayed"]
    assert await payments_of(engine, invoice) == 1


async def test_a_missed_webhook_is_caught_by_the_job(
        client, providers, make_invoice, engine) -> None:
    stripe_invoice, yk_invoice = await make_invoice(), await make_invoice()
    _, location, _ = await checkout(Browser(client), stripe_invoice, "USD")
    session = providers.sessions[location.rsplit("/", 1)[1]]
    await checkout(Browser(client), yk_invoice, "RUB")
    (payment,) = providers.payments.values()
    providers.pay(session["id"])
    providers.pay(payment["id"])
    ledger = client.app[CARDS].ledger
    verify = client.app[CARDS].verify_quote
    # A checkout younger than the webhook's grace is left alone.
    await card_sessions_job(ledger, verify, older_than_seconds=3600)
    assert await invoice_status(engine, stripe_invoice) == "pending"
    await card_sessions_job(ledger, verify, older_than_seconds=0)
    assert await invoice_status(engine, stripe_invoice) == "paid"
    assert await invoice_status(engine, yk_invoice) == "paid"
    assert not {token_of(session), payment["metadata"]["quote"]} & {
        q.token for q in await ledger.open_web_quotes(0)}
    await card_sessions_job(ledger, verify, older_than_seconds=0)  # again: nothing twice
    assert await payments_of(engine, stripe_invoice) == await payments_of(engine, yk_invoice) == 1


# --- held, amounts, bad input ---------------------------------------------------------------


async def test_a_success_for_an_invoice_cancelled_meanwhile_is_held(
        client, providers, make_invoice, make_user, engine) -> None:
    seller = await make_user(username="card_seller")
    invoice = await make_invoice(seller)
    _, location, _ = await checkout(Browser(client), invoice, "USD")
    session = providers.sessions[location.rsplit("/", 1)[1]]
    await cancel_invoice(engine, invoice.public_id, seller.id)
    providers.pay(session["id"])
    answer = await send_stripe(client, "checkout.session.completed", session)
    assert answer["outcome"] == "held"
    (row,) = await rail_rows(engine, invoice)
    assert (row["outcome"], row["hold_reason"], row["amount"]) == ("held", "invoice_closed", 1250)
    assert await invoice_status(engine, invoice) == "cancelled"
    events = await run_sql(engine, "SELECT payload FROM outbox WHERE event_type = "
                                   "'operator.rail_held' AND payload->>'rail_payment_id' = :id",
                           id=str(row["id"]))
    assert len(events) == 1 and events[0]["payload"]["reason"] == "invoice_closed"


# BHD: 12.50 x 0.3075 = 3.84375 -> 3.844 at the exponent, and Stripe takes three-decimal
# currencies only in whole tens: the quote is rounded up to 3.850 (never short).
@pytest.mark.parametrize(("currency", "amount"),
                         [("KWD", 3850), ("BHD", 3850), ("JPY", 1875)])
async def test_amounts_in_three_and_zero_decimal_currencies(
        client, providers, make_invoice, engine, currency, amount) -> None:
    invoice = await make_invoice()  # 12.50: x 0.308 = 3.850 KWD; x 150 = 1875 JPY
    status, location, _ = await checkout(Browser(client), invoice, currency)
    assert status == 303
    session = providers.sessions[location.rsplit("/", 1)[1]]
    assert (session["amount_total"], session["currency"]) == (amount, currency.lower())
    providers.pay(session["id"])
    assert (await send_stripe(client, "checkout.session.completed", session))["outcome"] == "paid"
    (row,) = await rail_rows(engine, invoice)
    assert (row["currency"], row["amount"]) == (currency, amount)


async def test_what_cannot_be_charged_is_refused_with_a_sentence_and_charges_nothing(
        client, providers, make_invoice, engine) -> None:
    invoice = await make_invoice()
    guest = Browser(client)
    status, _, resp = await checkout(guest, invoice, "EUR")  # no provider for it
    assert status == 404 and "EUR" in await resp.text()
    for bad in ("", "US", "ÜSD", "x" * 300):
        assert (await checkout(guest, invoice, bad))[0] == 400, bad
    providers.down = True
    status, _, resp = await checkout(guest, invoice, "USD")
    assert status == 503 and "Nothing was charged" in await resp.text()
    status, _, _ = await checkout(guest, invoice, "RUB")
    assert status == 503
    providers.down = False
    missing = await client.post("/pay/0000000000000/card", data={"currency": "USD"},
                                allow_redirects=False)
    assert missing.status == 404
    assert not providers.sessions and not providers.payments
    assert await invoice_status(engine, invoice) == "pending"
    await cancel_invoice(engine, invoice.public_id, invoice.seller_id)
    status, _, _ = await checkout(guest, invoice, "USD")
    assert status in (409, 410)
    assert not await rail_rows(engine, invoice)


async def test_yookassa_notifications_from_elsewhere_are_refused_when_checked(
        client, providers) -> None:
    # The same routes with the source check on (the setting is off in the other tests: they
    # notify from 127.0.0.1), mounted on an app of their own.
    settings = card_settings(providers)
    pages = PayPages(client.app[CARDS].ledger, PayConfig.from_settings(settings))
    checked = web.Application()
    setup_card_checkout(checked, pages, PageGuard.from_settings(settings.web, None), settings,
                        yookassa_check_source=True)
    other = TestClient(TestServer(checked))
    await other.start_server()
    try:
        resp = await other.post("/webhooks/yookassa", json=Providers.yookassa_notification(
            "payment.succeeded", {"id": "2f2b4c1e-000f-5000-9000-1b68e7b15f3f"}))
        assert resp.status == 403  # 127.0.0.1 is not one of YooKassa's addresses
    finally:
        await other.close()


async def test_a_provider_outage_leaves_the_checkout_to_the_next_look(
        client, providers, make_invoice, engine) -> None:
    invoice = await make_invoice()
    guest = Browser(client)
    _, location, _ = await checkout(guest, invoice, "USD")
    session = providers.sessions[location.rsplit("/", 1)[1]]
    providers.pay(session["id"])
    providers.down = True
    back = urlsplit(session["success_url"])
    resp = await client.get(f"{back.path}?{back.query}", allow_redirects=False)
    assert resp.status == 303  # the page all the same; it shows what is known
    cards = client.app[CARDS]
    await card_sessions_job(cards.ledger, cards.verify_quote, older_than_seconds=0)
    assert await invoice_status(engine, invoice) == "pending"
    providers.down = False
    await card_sessions_job(cards.ledger, cards.verify_quote, older_than_seconds=0)
    assert await invoice_status(engine, invoice) == "paid"


async def test_a_mini_app_user_paying_by_card_gets_the_item_at_once(
        client, providers, make_invoice, make_user, engine) -> None:
    buyer = await make_user(username="card_buyer")
    invoice = await make_invoice()
    resp = await client.post(f"/pay/{invoice.public_id}/card", data={"currency": "USD"},
                             headers=tma(sign_init_data(tg_user(buyer))),
                             allow_redirects=False)
    assert resp.status == 303 and "pb_guest" not in resp.cookies
    session = providers.sessions[resp.headers["Location"].rsplit("/", 1)[1]]
    providers.pay(session["id"])
    await send_stripe(client, "checkout.session.completed", session)
    grants = await run_sql(engine, "SELECT user_id FROM grants WHERE invoice_id = :id",
                           id=invoice.id)
    assert [g["user_id"] for g in grants] == [buyer.id]
    (row,) = await rail_rows(engine, invoice)
    assert row["payer_id"] == buyer.id
