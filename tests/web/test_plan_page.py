"""A plan's page (/sub/<plan>) and subscribing from the Mini App: the first period's invoice is
paid on its pay page like any invoice, and paying it makes the subscription active."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.core import Ledger
from ledger.models import User
from ledger.plans import Plan, archive_plan, create_plan
from tests.conftest import run_sql
from tests.web.conftest import BOT_USERNAME, make_settings, sign_init_data, tg_user, tma

CHANNEL = "Coffee <club> chat"


@pytest.fixture
def make_plan(engine, make_user):  # type: ignore[no-untyped-def]
    async def _make(seller: User | None = None, **kw: Any) -> Plan:
        if seller is None:
            seller = await make_user(username="roastery")
        kw.setdefault("name", "Coffee club")
        kw.setdefault("prices", {1: 500, 12: 5000})
        return await create_plan(engine, seller_id=seller.id, **kw)

    return _make


async def subscriptions_count(engine, plan: Plan) -> int:  # type: ignore[no-untyped-def]
    return (await run_sql(engine, "SELECT count(*) AS n FROM subscriptions WHERE plan_id = :p",
                          p=plan.id))[0]["n"]


async def subscribe(client, plan: Plan, user: User, months: int = 1,  # type: ignore[no-untyped-def]
                    language: str = "en"):
    return await client.post(f"/sub/{plan.public_id}/subscribe", json={"months": months},
                             headers=tma(sign_init_data(tg_user(user, language))))


# --- the page ---------------------------------------------------------------------------------

async def test_the_page_in_english_shows_periods_trial_grants_and_the_telegram_link(
        client, make_plan):
    plan = await make_plan(trial_days=7, channel_chat_id=-1001234, channel_title=CHANNEL,
                           item_id="club-badge")
    resp = await client.get(f"/sub/{plan.public_id}", headers={"Accept-Language": "en-US"})
    assert resp.status == 200
    page = await resp.text()
    assert '<html lang="en">' in page
    assert "Coffee club" in page and "@roastery" in page
    assert "1 month" in page and "5.00 Liquid $" in page
    assert "12 months" in page and "50.00 Liquid $" in page
    assert "7 days free" in page
    assert "Access to Coffee &lt;club&gt; chat" in page  # escaped, never markup
    assert "Item: club-badge" in page
    # A plain browser subscribes in Telegram (renewals come from the Telegram balance) ...
    assert f'href="https://t.me/{BOT_USERNAME}?start=sub_{plan.public_id}"' in page
    assert "Subscribe in Telegram" in page
    # ... the Mini App gets a button per period (shown by the script).
    assert 'data-months="1"' in page and 'data-months="12"' in page
    assert "Subscribe · 12 months · 50.00 Liquid $" in page


async def test_the_page_in_russian(client, make_plan):
    plan = await make_plan(trial_days=5, channel_chat_id=-1001234, channel_title="Клуб",
                           prices={3: 1200})
    page = await (await client.get(f"/sub/{plan.public_id}",
                                   headers={"Accept-Language": "ru-RU,ru;q=0.9"})).text()
    assert '<html lang="ru">' in page
    assert "3 месяца" in page and "12.00 Liquid $" in page
    assert "5 дней бесплатно" in page
    assert "Доступ к Клуб" in page
    assert "Подписаться в Telegram" in page
    assert "Subscribe in Telegram" not in page


async def test_an_unknown_or_archived_plan_is_a_404_page(client, make_plan, engine):
    for raw in ("0000000000000", "nonsense", "x" * 300):
        resp = await client.get(f"/sub/{raw}", headers={"Accept-Language": "ru"})
        assert resp.status == 404
        assert "План не найден" in await resp.text()
    plan = await make_plan()
    await archive_plan(engine, plan.seller_id, plan.public_id)
    resp = await client.get(f"/sub/{plan.public_id}")
    assert resp.status == 404
    assert "no longer offered" in await resp.text()


# --- subscribing from the Mini App ------------------------------------------------------------

async def test_subscribing_opens_the_first_invoice_and_paying_it_activates(
        client, make_plan, make_user, engine):
    plan = await make_plan()
    buyer = await make_user(balance=2000, username="regular")
    resp = await subscribe(client, plan, buyer, months=1)
    assert resp.status == 200
    body = await resp.json()
    assert body["subscription"]["status"] == "incomplete"
    invoice_id = body["pay_url"].removeprefix("/pay/")
    assert body["pay_url"] == f"/pay/{invoice_id}"

    # The pay page shows it, and the Mini App pays it there from the balance.
    assert (await client.get(body["pay_url"])).status == 200
    paid = await client.post(f"{body['pay_url']}/pay", json={"idempotency_key": "sub-1"},
                             headers=tma(sign_init_data(tg_user(buyer))))
    assert paid.status == 200
    sub = await Ledger(engine).subscription(body["subscription"]["id"])
    assert sub.status == "active" and sub.subscriber_id == buyer.id


async def test_subscribing_twice_answers_the_same_invoice(client, make_plan, make_user, engine):
    plan = await make_plan()
    buyer = await make_user()
    first = await (await subscribe(client, plan, buyer, months=12)).json()
    again = await (await subscribe(client, plan, buyer, months=12)).json()
    assert again["pay_url"] == first["pay_url"] is not None
    assert again["subscription"]["id"] == first["subscription"]["id"]
    assert await subscriptions_count(engine, plan) == 1


async def test_a_trial_starts_at_once_without_an_invoice(client, make_plan, make_user):
    plan = await make_plan(trial_days=7)
    buyer = await make_user()
    resp = await subscribe(client, plan, buyer, language="ru")
    body = await resp.json()
    assert resp.status == 200
    assert body["pay_url"] is None
    assert body["subscription"]["status"] == "trialing"
    assert body["subscription"]["trial_end"] is not None
    assert body["message"].startswith("Пробный период действует до ")


async def test_without_valid_init_data_401_and_nothing_created(client, make_plan, make_user,
                                                                engine):
    plan = await make_plan()
    buyer = await make_user()
    resp = await client.post(f"/sub/{plan.public_id}/subscribe", json={"months": 1})
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "missing_init_data"
    forged = sign_init_data(tg_user(buyer), token="999:not-our-bot")
    resp = await client.post(f"/sub/{plan.public_id}/subscribe", json={"months": 1},
                             headers=tma(forged))
    assert resp.status == 401
    assert await subscriptions_count(engine, plan) == 0


async def test_refusals_are_a_sentence_in_the_users_language(client, make_plan, make_user,
                                                             engine):
    seller = await make_user(username="roastery")
    plan = await make_plan(seller)
    resp = await subscribe(client, plan, seller, language="ru")
    assert resp.status == 403
    error = (await resp.json())["error"]
    assert error["code"] == "own_plan"
    assert error["message"] == "Это ваш собственный план: на него нельзя подписаться."

    buyer = await make_user()
    resp = await subscribe(client, plan, buyer, months=3)  # the plan offers 1 and 12
    assert resp.status == 422
    assert (await resp.json())["error"]["message"] == "This plan does not offer that period."
    for months in (2, "1", None, True):
        resp = await subscribe(client, plan, buyer, months=months)  # type: ignore[arg-type]
        assert resp.status == 400
    resp = await client.post(f"/sub/{plan.public_id}/subscribe", data=b"{not json",
                             headers=tma(sign_init_data(tg_user(buyer))))
    assert resp.status == 400

    resp = await client.post("/sub/0000000000000/subscribe", json={"months": 1},
                             headers=tma(sign_init_data(tg_user(buyer))))
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "plan_not_found"

    trial = await make_plan(seller, name="Tasting", trial_days=3)
    assert (await subscribe(client, trial, buyer)).status == 200
    resp = await subscribe(client, trial, buyer)
    assert resp.status == 409
    assert (await resp.json())["error"]["message"] == \
        "You already have a subscription to this plan."
    assert await subscriptions_count(engine, plan) == 0
    assert await subscriptions_count(engine, trial) == 1


async def test_subscribing_is_rate_limited_per_user_like_paying(client_for, make_plan,
                                                                make_user, engine):
    settings = make_settings()
    settings.web.rate_pay_per_user = "1/m:1"
    client = await client_for(settings)
    plan = await make_plan()
    buyer, other = await make_user(), await make_user()
    assert (await subscribe(client, plan, buyer)).status == 200
    refused = await subscribe(client, plan, buyer, months=12)
    assert refused.status == 429 and "Retry-After" in refused.headers
    assert (await refused.json())["error"]["code"] == "rate_limited"
    assert (await subscribe(client, plan, other)).status == 200  # someone else meanwhile
    assert await subscriptions_count(engine, plan) == 2
