"""The Mini App's buyer view (/app/api/buyer/...): what was sent to me and is still to pay, my
subscriptions, what I bought, my balance, and my history saying what I paid for, to whom and
how — only mine, a page at a time, with a cursor nobody else can use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from ledger.payers import bind_user, tag_for_guest
from ledger.plans import create_plan
from tests.web.conftest import make_settings, sign_init_data, tg_user, tma

OVERVIEW = "/app/api/buyer/overview"
HISTORY = "/app/api/buyer/history"


async def _get(client: Any, path: str, who: Any, lang: str = "en",
               **query: str) -> tuple[int, dict[str, Any]]:
    init = sign_init_data(tg_user(who, lang) if hasattr(who, "telegram_id") else who)
    # the page always passes its language, as app.js does
    r = await client.get(path, headers=tma(init), params={"lang": lang, **query})
    return r.status, await r.json()


async def test_an_invoice_sent_to_me_is_to_pay_until_paid_then_in_my_history(
        client_for, make_user, make_invoice, ledger) -> None:
    client = await client_for(make_settings())
    seller = await make_user(username="bakery_shop")
    me = await make_user(balance=5000, username="hungry_buyer")
    due = datetime.now(UTC) - timedelta(days=1)
    # a draft may carry a past due date; sending issues it, overdue from the start
    late = await make_invoice(seller, title="Sourdough", amount=1250, due_at=due, draft=True,
                               expires_in=None)
    later = await make_invoice(seller, title="Croissants", amount=700,
                               due_at=datetime.now(UTC) + timedelta(days=3), expires_in=None)
    for inv in (later, late):
        await ledger.send_invoice(seller.id, inv.public_id, me.telegram_id)
    late = (await ledger.invoice(late.public_id)).invoice  # numbered when sent

    status, body = await _get(client, OVERVIEW, me)
    assert status == 200
    assert [x["title"] for x in body["to_pay"]] == ["Sourdough", "Croissants"]  # oldest due first
    first = body["to_pay"][0]
    assert first["overdue"] is True and body["to_pay"][1]["overdue"] is False
    assert first["seller"] == "@bakery_shop" and first["number"] == late.number
    assert first["due"]["display"] == "12.50 Liquid $"
    assert first["pay"] == f"/pay/{late.public_id}"
    assert body["balances"][0]["display"] == "50.00 Liquid $"

    await ledger.pay_from_balance(late.public_id, me.id, "buyer-view-1")
    status, body = await _get(client, OVERVIEW, me)
    assert [x["title"] for x in body["to_pay"]] == ["Croissants"]
    paid = body["history"]["lines"][0]
    assert paid["kind"] == "payment" and paid["title"] == "Sourdough"
    assert paid["number"] == late.number and paid["seller"] == "@bakery_shop"
    assert paid["method_text"] == "Liquid $ balance" and paid["state"] is None
    assert paid["amount"]["display"] == "12.50 Liquid $" and paid["direction"] == "out"
    assert paid["receipt"] == f"/pay/{late.public_id}/invoice.pdf"
    assert (await client.get(paid["receipt"])).status == 200
    # the test funding is a balance move of mine, below the payment
    assert body["history"]["lines"][1]["kind"] == "adjustment"
    assert [p["title"] for p in body["purchases"]] == ["Sourdough"]
    assert body["balances"][0]["display"] == "37.50 Liquid $"

    _, ru = await _get(client, OVERVIEW, me, "ru")
    assert ru["history"]["lines"][0]["method_text"] == "баланс Liquid $"
    assert ru["history"]["lines"][1]["title"] == "Корректировка баланса"


async def test_a_manual_payment_reversed_by_the_seller_is_shown_as_reversed(
        client_for, make_user, make_invoice, ledger) -> None:
    client = await client_for(make_settings())
    seller, me = await make_user(username="studio_x"), await make_user()
    inv = await make_invoice(seller, title="Design work", amount=10000)
    await ledger.send_invoice(seller.id, inv.public_id, me.telegram_id)
    paid = await ledger.record_manual_payment(
        inv.public_id, seller_id=seller.id, amount=10000, received_on=datetime.now(UTC).date(),
        reference="bank-42")
    _, body = await _get(client, OVERVIEW, me)
    line = body["history"]["lines"][0]
    assert (line["title"], line["method_text"], line["state"]) == (
        "Design work", "paid outside paybot", None)
    assert body["to_pay"] == []
    await ledger.reverse_manual_payment(paid.payment_id, seller_id=seller.id,
                                        reason="the transfer bounced")
    _, body = await _get(client, OVERVIEW, me)
    assert body["history"]["lines"][0]["state"] == "reversed"
    assert [x["title"] for x in body["to_pay"]] == ["Design work"]  # open again


async def test_someone_elses_invoices_and_payments_never_show(
        client_for, make_user, make_invoice, ledger) -> None:
    client = await client_for(make_settings())
    seller = await make_user(username="tea_house")
    me, other = await make_user(), await make_user(balance=5000)
    theirs = await make_invoice(seller, title="Their tea")
    await ledger.send_invoice(seller.id, theirs.public_id, other.telegram_id)
    await make_invoice(seller, title="Nobody's tea")  # a link, sent to no one
    status, body = await _get(client, OVERVIEW, me)
    assert status == 200 and body["to_pay"] == [] and body["history"]["lines"] == []

    await ledger.pay_from_balance(theirs.public_id, other.id, "other-1")
    _, body = await _get(client, OVERVIEW, me)
    assert body["to_pay"] == [] and body["purchases"] == [] and body["history"]["lines"] == []
    # the seller's takings are not a buyer's history either
    _, sellers = await _get(client, OVERVIEW, seller)
    assert sellers["history"]["lines"] == [] and sellers["purchases"] == []
    _, theirs_view = await _get(client, OVERVIEW, other)
    assert [x["title"] for x in theirs_view["history"]["lines"] if x["kind"] == "payment"] \
        == ["Their tea"]


async def test_a_guests_card_payment_shows_once_claimed(
        client_for, make_user, make_invoice, ledger, engine) -> None:
    client = await client_for(make_settings())
    seller, me = await make_user(username="book_shop"), await make_user()
    inv = await make_invoice(seller, title="E-book", amount=1000, payload={"item_id": "ebook"})
    guest_key = "guest-browser-key-buyer-view-01"
    tag = await tag_for_guest(engine, inv.public_id, guest_key)
    quote = await ledger.quote_rail(purpose="invoice", rail="card:stripe", channel="web",
                                    currency="USD", rate=Decimal(1), invoice=inv.public_id,
                                    payer_tag=tag.tag)
    await ledger.settle_rail_payment(
        rail=quote.rail, channel="web", reference="cs_buyer_view_1", provider_reference=None,
        token=quote.token, currency=quote.currency, amount=quote.amount, payer_id=None,
        details={"test": True})
    _, body = await _get(client, OVERVIEW, me)
    assert body["history"]["lines"] == [] and body["purchases"] == []

    await bind_user(engine, inv.public_id, tag.tag, me.id, proof=tag.proof)
    _, body = await _get(client, OVERVIEW, me)
    [line] = body["history"]["lines"]
    assert (line["title"], line["method_text"]) == ("E-book", "card (Stripe)")
    assert body["purchases"][0]["item"] == "ebook"


async def test_my_subscriptions_with_their_next_renewal(
        client_for, make_user, engine, ledger) -> None:
    client = await client_for(make_settings())
    seller, me = await make_user(username="gym_club"), await make_user(balance=10000)
    plan = await create_plan(engine, seller_id=seller.id, name="Gym monthly",
                             prices={1: 2000, 3: 5400})
    subscribed = await ledger.subscribe(plan.public_id, me.id, 3)
    assert subscribed.invoice is not None
    _, body = await _get(client, OVERVIEW, me)
    [sub] = body["subscriptions"]
    assert (sub["status"], sub["next"]["kind"]) == ("incomplete", "to_pay")
    # The first period's invoice waits under "To pay", with its Pay button's page.
    [first] = body["to_pay"]
    assert first["due"]["display"] == "54.00 Liquid $"
    assert first["pay"] == f"/pay/{subscribed.invoice}"

    await ledger.pay_from_balance(subscribed.invoice, me.id, "gym-1")
    live = await ledger.subscription(subscribed.subscription.public_id)
    _, body = await _get(client, OVERVIEW, me)
    [sub] = body["subscriptions"]
    assert sub["plan_name"] == "Gym monthly" and sub["seller"] == "@gym_club"
    assert (sub["status"], sub["months"], sub["amount"]["display"]) == ("active", 3,
                                                                       "54.00 Liquid $")
    assert sub["next"] == {"kind": "renews", "at": live.current_period_end.isoformat()}
    assert body["to_pay"] == []  # paid: nothing waits
    assert sub["cancel_at_period_end"] is False and sub["page"] == f"/sub/{plan.public_id}"
    assert sub["per_period"] == "54.00 Liquid $ / 3 months"
    _, ru = await _get(client, OVERVIEW, me, "ru")
    assert ru["subscriptions"][0]["per_period"] == "54.00 Liquid $ за 3 месяца"


async def test_history_comes_a_page_at_a_time_with_a_cursor_only_mine(
        client_for, make_user, make_invoice, ledger) -> None:
    client = await client_for(make_settings())
    seller = await make_user(username="sticker_shop")
    me, other = await make_user(balance=100000), await make_user(balance=1000)
    for n in range(23):
        inv = await make_invoice(seller, title=f"Sticker {n}", amount=100)
        await ledger.pay_from_balance(inv.public_id, me.id, f"sticker-{n}")
    _, body = await _get(client, OVERVIEW, me)
    first = body["history"]
    assert len(first["lines"]) == 20 and first["next_cursor"]
    status, second = await _get(client, HISTORY, me, cursor=first["next_cursor"])
    assert status == 200 and second["next_cursor"] is None
    titles = [x["title"] for x in first["lines"] + second["lines"] if x["kind"] == "payment"]
    assert titles == [f"Sticker {n}" for n in reversed(range(23))]  # each once, newest first
    assert second["lines"][-1]["kind"] == "adjustment"

    cursor = first["next_cursor"]
    tampered = cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB")
    for bad in ("not-a-cursor", tampered, "x" * 300):
        status, err = await _get(client, HISTORY, me, cursor=bad)
        assert status == 422 and err["error"]["code"] == "invalid_cursor"
        assert err["error"]["message"]
    status, err = await _get(client, HISTORY, other, cursor=cursor)  # mine, not theirs
    assert status == 422 and err["error"]["code"] == "invalid_cursor"
    status, err = await _get(client, HISTORY, me, "ru", cursor="forged")
    assert "истории" in err["error"]["message"]
    status, err = await _get(client, HISTORY, me, page="2")
    assert status == 422 and err["error"]["code"] == "unknown_parameter"


async def test_a_viewer_unknown_to_the_bot_gets_empty_lists(client_for) -> None:
    client = await client_for(make_settings())
    stranger = {"id": 777000222, "first_name": "New"}
    status, body = await _get(client, OVERVIEW, stranger)
    assert status == 200 and body["known"] is False
    assert all(body[k] == [] for k in ("to_pay", "subscriptions", "purchases", "balances"))
    assert body["history"] == {"lines": [], "next_cursor": None}
    status, body = await _get(client, HISTORY, stranger)
    assert status == 200 and body["lines"] == []
    status, _ = await _get(client, HISTORY, stranger, cursor="anything")
    assert status == 422


async def test_without_init_data_the_buyer_view_is_refused(client) -> None:
    r = await client.get(OVERVIEW)
    assert r.status == 401
