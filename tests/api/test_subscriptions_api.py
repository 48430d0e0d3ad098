"""Plans and subscriptions over the seller API: what a shop backend creates, reads, checks and
is told (signed `subscription_*` callbacks); every bad input a clear 4xx with nothing changed."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from bot.api.subscriptions import subscription_renderer
from ledger.core import Ledger
from ledger.subscriptions import renew_due
from ledger.webhooks import get_webhook, set_webhook_url
from tests.api.conftest import RENDER
from tests.conftest import run_sql
from watchers.callbacks import deliver_all_due, verify_signature

BASE = "/api/v1"


def at(text: str | None) -> datetime:
    assert text is not None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def new_plan(api, seller, **fields: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    body = {"name": "Club", "prices": [{"months": 1, "amount": "5.00"},
                                       {"months": 12, "amount": "50.00"}], **fields}
    resp = await api.post(f"{BASE}/plans", headers=seller.auth, json=body)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def subscribe(api, seller, plan: dict[str, Any], buyer,  # type: ignore[no-untyped-def]
                    months: int = 1) -> dict[str, Any]:
    resp = await api.post(f"{BASE}/subscriptions", headers=seller.auth, json={
        "plan_id": plan["id"], "telegram_id": buyer.telegram_id, "months": months})
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def paid_subscription(api, engine, seller, buyer,  # type: ignore[no-untyped-def]
                            **plan_fields: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A plan and a subscription to it whose first period the buyer paid from the balance."""
    plan = await new_plan(api, seller, **plan_fields)
    made = await subscribe(api, seller, plan, buyer)
    await Ledger(engine).pay_from_balance(made["invoice"]["id"], buyer.id, "first-period")
    return plan, await get(api, seller, f"/subscriptions/{made['subscription']['id']}")


async def get(api, seller, path: str, status: int = 200) -> Any:  # type: ignore[no-untyped-def]
    resp = await api.get(BASE + path, headers=seller.auth)
    assert resp.status == status, await resp.text()
    return await resp.json()


async def error_of(resp) -> str:  # type: ignore[no-untyped-def]
    return (await resp.json())["error"]["code"]


async def subscription_rows(engine, seller) -> int:  # type: ignore[no-untyped-def]
    rows = await run_sql(engine, "SELECT count(*) AS n FROM subscriptions WHERE seller_id = :s",
                         s=seller.user.id)
    return int(rows[0]["n"])


# --- plans ------------------------------------------------------------------------------------

async def test_a_plan_is_created_read_listed_and_archived(api, make_seller) -> None:
    seller = await make_seller()
    plan = await new_plan(api, seller, trial_days=7, item_id="vip")
    assert plan["name"] == "Club" and plan["status"] == "active" and plan["trial_days"] == 7
    assert plan["currency"] == "LIQ" and plan["item_id"] == "vip" and plan["channel"] is None
    assert plan["prices"] == [{"months": 1, "amount": "5.00", "amount_minor": 500},
                              {"months": 12, "amount": "50.00", "amount_minor": 5000}]
    assert await get(api, seller, f"/plans/{plan['id']}") == plan
    assert [p["id"] for p in (await get(api, seller, "/plans"))["items"]] == [plan["id"]]

    resp = await api.post(f"{BASE}/plans/{plan['id']}/archive", headers=seller.auth)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["status"] == "archived"
    assert (await get(api, seller, f"/plans/{plan['id']}"))["status"] == "archived"


async def test_a_bad_plan_is_refused_and_nothing_is_created(api, engine, make_seller) -> None:
    seller = await make_seller()
    bad = [
        {"name": "X", "prices": [{"months": 2, "amount": "5.00"}]},  # a period not offered
        {"name": "X", "prices": [{"months": 1, "amount": "5.00"},
                                 {"months": 1, "amount": "6.00"}]},  # the same period twice
        {"name": "X", "prices": []},
        {"name": "X", "prices": [{"months": 1, "amount": "0"}]},
        {"name": "X", "prices": [{"months": 1, "amount": "5.001"}]},  # past the cents
        {"name": "", "prices": [{"months": 1, "amount": "5.00"}]},
        {"name": " \u200b ", "prices": [{"months": 1, "amount": "5.00"}]},  # nothing visible
        {"name": "X", "prices": [{"months": 1, "amount": "5.00"}], "trial_days": 366},
        {"name": "X", "prices": [{"months": 1, "amount": "5.00"}], "channel_chat_id": -100},
    ]
    for body in bad:
        resp = await api.post(f"{BASE}/plans", headers=seller.auth, json=body)
        assert resp.status == 422, (body, await resp.text())
    assert (await get(api, seller, "/plans"))["items"] == []


# --- subscribing ------------------------------------------------------------------------------

async def test_subscribing_answers_the_subscription_and_its_first_invoice_to_pay(
        api, engine, make_seller, make_user) -> None:
    seller = await make_seller()
    buyer = await make_user(balance=10_000, username="reader")
    plan = await new_plan(api, seller)
    made = await subscribe(api, seller, plan, buyer, months=12)
    sub, invoice = made["subscription"], made["invoice"]
    assert sub["status"] == "incomplete" and not sub["entitled"]
    assert sub["plan"] == {"id": plan["id"], "name": "Club"}
    assert sub["subscriber"] == {"telegram_id": buyer.telegram_id, "username": "reader"}
    assert (sub["months"], sub["amount"], sub["amount_minor"], sub["currency"]) == (
        12, "50.00", 5000, "LIQ")
    assert invoice["amount_minor"] == 5000 and invoice["status"] == "pending"
    assert made["pay_url"] == invoice["pay_url"] and invoice["id"] in made["pay_url"]
    assert made["bot_url"] == invoice["bot_url"]
    assert sub["latest_invoice"] == invoice["id"]

    await Ledger(engine).pay_from_balance(invoice["id"], buyer.id, "first-period")
    now_paid = await get(api, seller, f"/subscriptions/{sub['id']}")
    assert now_paid["status"] == "active" and now_paid["entitled"]
    start, end = at(now_paid["current_period_start"]), at(now_paid["current_period_end"])
    assert end.year == start.year + 1 and (end.month, end.day) == (start.month, start.day)


async def test_a_trial_starts_without_an_invoice(api, make_seller, make_user) -> None:
    seller = await make_seller()
    buyer = await make_user()
    made = await subscribe(api, seller, await new_plan(api, seller, trial_days=14), buyer)
    sub = made["subscription"]
    assert sub["status"] == "trialing" and sub["entitled"] and sub["trial_end"] is not None
    assert made["invoice"] is None and made["pay_url"] is None and made["bot_url"] is None


async def test_subscribing_twice_is_a_conflict_and_changes_nothing(
        api, engine, make_seller, make_user) -> None:
    seller = await make_seller()
    buyer = await make_user(balance=10_000)
    plan, first = await paid_subscription(api, engine, seller, buyer)
    for months in (1, 12):
        resp = await api.post(f"{BASE}/subscriptions", headers=seller.auth, json={
            "plan_id": plan["id"], "telegram_id": buyer.telegram_id, "months": months})
        assert resp.status == 409 and await error_of(resp) == "already_subscribed"
    assert [s["id"] for s in (await get(api, seller, "/subscriptions"))["items"]] == [
        first["id"]]
    assert await subscription_rows(engine, seller) == 1
    assert await get(api, seller, f"/subscriptions/{first['id']}") == first


async def test_asking_again_before_paying_answers_the_same_subscription_and_invoice(
        api, engine, make_seller, make_user) -> None:
    seller = await make_seller()
    buyer = await make_user()
    plan = await new_plan(api, seller)
    first = await subscribe(api, seller, plan, buyer)
    ask = {"plan_id": plan["id"], "telegram_id": buyer.telegram_id, "months": 1}
    resp = await api.post(f"{BASE}/subscriptions", headers=seller.auth, json=ask)
    assert resp.status == 200 and resp.headers["Idempotent-Replayed"] == "true"
    again = await resp.json()
    assert again["subscription"]["id"] == first["subscription"]["id"]
    assert again["invoice"]["id"] == first["invoice"]["id"]
    resp = await api.post(f"{BASE}/subscriptions", headers=seller.auth,
                          json={**ask, "months": 12})  # another period while one is unpaid
    assert resp.status == 409 and await error_of(resp) == "already_subscribed"
    assert await subscription_rows(engine, seller) == 1


async def test_a_seller_cannot_subscribe_to_their_own_plan(api, engine, make_seller) -> None:
    seller = await make_seller()
    plan = await new_plan(api, seller)
    resp = await api.post(f"{BASE}/subscriptions", headers=seller.auth, json={
        "plan_id": plan["id"], "telegram_id": seller.user.telegram_id, "months": 1})
    assert resp.status == 403 and await error_of(resp) == "own_plan"
    assert await subscription_rows(engine, seller) == 0


async def test_a_period_the_plan_does_not_offer_or_an_unknown_buyer_is_refused(
        api, engine, make_seller, make_user) -> None:
    seller = await make_seller()
    buyer = await make_user()
    plan = await new_plan(api, seller)  # 1 and 12 months
    resp = await api.post(f"{BASE}/subscriptions", headers=seller.auth, json={
        "plan_id": plan["id"], "telegram_id": buyer.telegram_id, "months": 3})
    assert resp.status == 422 and await error_of(resp) == "period_not_offered"
    resp = await api.post(f"{BASE}/subscriptions", headers=seller.auth, json={
        "plan_id": plan["id"], "telegram_id": buyer.telegram_id, "months": 2})
    assert resp.status == 422 and await error_of(resp) == "invalid_request"
    resp = await api.post(f"{BASE}/subscriptions", headers=seller.auth, json={
        "plan_id": plan["id"], "telegram_id": 2**52 - 7, "months": 1})  # never started the bot
    assert resp.status == 404 and await error_of(resp) == "user_not_found"
    assert await subscription_rows(engine, seller) == 0


async def test_an_archived_plan_takes_no_new_subscribers(api, engine, make_seller,
                                                         make_user) -> None:
    seller = await make_seller()
    buyer = await make_user()
    plan = await new_plan(api, seller)
    await api.post(f"{BASE}/plans/{plan['id']}/archive", headers=seller.auth)
    resp = await api.post(f"{BASE}/subscriptions", headers=seller.auth, json={
        "plan_id": plan["id"], "telegram_id": buyer.telegram_id, "months": 1})
    assert resp.status == 404 and await error_of(resp) == "plan_not_found"
    assert await subscription_rows(engine, seller) == 0


async def test_another_sellers_plan_and_subscription_look_missing(
        api, engine, make_seller, make_user) -> None:
    owner, other = await make_seller(), await make_seller()
    buyer = await make_user(balance=10_000)
    plan, sub = await paid_subscription(api, engine, owner, buyer)
    before = await get(api, owner, f"/subscriptions/{sub['id']}")
    asked = [
        ("GET", f"/plans/{plan['id']}", None),
        ("POST", f"/plans/{plan['id']}/archive", None),
        ("POST", "/subscriptions", {"plan_id": plan["id"], "telegram_id": buyer.telegram_id,
                                    "months": 1}),
        ("GET", f"/subscriptions/{sub['id']}", None),
        ("POST", f"/subscriptions/{sub['id']}/cancel", {"at_period_end": False}),
        ("POST", f"/subscriptions/{sub['id']}/extend", {"months": 1, "reason": "gift"}),
        ("GET", f"/access?telegram_id={buyer.telegram_id}&plan_id={plan['id']}", None),
        ("GET", "/plans/NOSUCHPLAN000", None),
        ("GET", "/subscriptions/NOSUCHSUB0000", None),
    ]
    for method, path, body in asked:
        resp = await api.request(method, BASE + path, headers=other.auth, json=body)
        assert resp.status == 404, (method, path, await resp.text())
        assert (await error_of(resp)).endswith("_not_found")
    assert (await get(api, other, "/plans"))["items"] == []
    assert (await get(api, other, "/subscriptions"))["items"] == []
    assert await get(api, owner, f"/subscriptions/{sub['id']}") == before
    assert (await get(api, owner, f"/plans/{plan['id']}"))["status"] == "active"


# --- reading and checking ---------------------------------------------------------------------

async def test_the_list_filters_by_telegram_id_and_status(api, engine, make_seller,
                                                          make_user) -> None:
    seller = await make_seller()
    paying, waiting = await make_user(balance=10_000), await make_user()
    plan, active = await paid_subscription(api, engine, seller, paying)
    pending = (await subscribe(api, seller, plan, waiting))["subscription"]

    def ids(page: dict[str, Any]) -> set[str]:
        return {s["id"] for s in page["items"]}

    assert ids(await get(api, seller, "/subscriptions")) == {active["id"], pending["id"]}
    assert ids(await get(api, seller, f"/subscriptions?telegram_id={paying.telegram_id}")) == {
        active["id"]}
    assert ids(await get(api, seller, "/subscriptions?status=incomplete")) == {pending["id"]}
    assert ids(await get(api, seller, f"/subscriptions?telegram_id={waiting.telegram_id}"
                                      "&status=active")) == set()
    for bad in ("telegram_id=abc", "telegram_id=-1", "telegram_id=0", "status=paid"):
        await get(api, seller, f"/subscriptions?{bad}", status=422)


async def test_access_is_true_while_paid_for_and_false_otherwise(
        api, engine, make_seller, make_user) -> None:
    seller = await make_seller()
    paying, waiting, stranger = (await make_user(balance=10_000), await make_user(),
                                 await make_user())
    plan, sub = await paid_subscription(api, engine, seller, paying)
    await subscribe(api, seller, plan, waiting)  # not paid yet: no access

    yes = await get(api, seller, f"/access?telegram_id={paying.telegram_id}&plan_id={plan['id']}")
    assert yes["access"] is True and yes["subscription"]["id"] == sub["id"]
    assert yes["until"] == sub["current_period_end"]
    for user in (waiting, stranger):
        no = await get(api, seller, f"/access?telegram_id={user.telegram_id}&plan_id={plan['id']}")
        assert no == {"access": False, "subscription": None, "until": None}
    never = await get(api, seller, f"/access?telegram_id={2**52 - 9}&plan_id={plan['id']}")
    assert never["access"] is False

    resp = await api.post(f"{BASE}/subscriptions/{sub['id']}/cancel", headers=seller.auth,
                          json={"at_period_end": False})
    assert resp.status == 200, await resp.text()
    gone = await get(api, seller, f"/access?telegram_id={paying.telegram_id}&plan_id={plan['id']}")
    assert gone["access"] is False
    for bad in (f"telegram_id={paying.telegram_id}", f"plan_id={plan['id']}",
                f"telegram_id=x&plan_id={plan['id']}"):
        await get(api, seller, f"/access?{bad}", status=422)


# --- changes ----------------------------------------------------------------------------------

async def test_cancel_at_period_end_keeps_access_then_at_once_ends_it(
        api, engine, make_seller, make_user) -> None:
    seller = await make_seller()
    buyer = await make_user(balance=10_000)
    _, sub = await paid_subscription(api, engine, seller, buyer)
    path = f"{BASE}/subscriptions/{sub['id']}/cancel"

    resp = await api.post(path, headers=seller.auth, json={"at_period_end": True})
    assert resp.status == 200, await resp.text()
    later = await resp.json()
    assert later["cancel_at_period_end"] and later["status"] == "active" and later["entitled"]
    assert later["current_period_end"] == sub["current_period_end"]

    resp = await api.post(path, headers=seller.auth, json={"at_period_end": False})
    assert resp.status == 200, await resp.text()
    ended = await resp.json()
    assert ended["status"] == "cancelled" and not ended["entitled"]
    assert ended["cancelled_at"] is not None and ended["ended_at"] is not None

    again = await api.post(path, headers=seller.auth, json={"at_period_end": False})
    assert again.status == 410 and await error_of(again) == "subscription_ended"
    assert await get(api, seller, f"/subscriptions/{sub['id']}") == ended
    bad = await api.post(path, headers=seller.auth, json={"at_period_end": "yes"})
    assert bad.status == 422


async def test_the_seller_extends_a_subscription_by_months_with_a_reason(
        api, engine, make_seller, make_user) -> None:
    seller = await make_seller()
    buyer = await make_user(balance=10_000)
    _, sub = await paid_subscription(api, engine, seller, buyer)
    path = f"{BASE}/subscriptions/{sub['id']}/extend"
    for bad in ({"months": 0, "reason": "x"}, {"months": 1}, {"months": 1, "reason": ""},
                {"months": "1", "reason": "x"}):
        resp = await api.post(path, headers=seller.auth, json=bad)
        assert resp.status == 422, (bad, await resp.text())
    assert await get(api, seller, f"/subscriptions/{sub['id']}") == sub

    resp = await api.post(path, headers=seller.auth, json={"months": 2, "reason": "outage"})
    assert resp.status == 200, await resp.text()
    extended = await resp.json()
    end, new_end = at(sub["current_period_end"]), at(extended["current_period_end"])
    assert (new_end.year * 12 + new_end.month) - (end.year * 12 + end.month) == 2
    rows = await run_sql(engine, "SELECT reason FROM subscription_changes c JOIN subscriptions s "
                                 "ON s.id = c.subscription_id WHERE s.public_id = :p "
                                 "AND c.kind = 'extend'", p=sub["id"])
    assert [r["reason"] for r in rows] == ["outage"]


# --- callbacks --------------------------------------------------------------------------------

async def test_a_renewal_sends_a_signed_subscription_renewed_callback(
        api, engine, make_seller, make_user, receiver, sender) -> None:
    seller = await make_seller()
    await set_webhook_url(engine, seller.user.id, receiver.url)
    secret = (await get_webhook(engine, seller.user.id)).secret
    buyer = await make_user(balance=10_000, username="renewer")
    _, sub = await paid_subscription(api, engine, seller, buyer)
    ledger = Ledger(engine)

    # The clock the test controls: the renewal job runs just after the period's end.
    await renew_due(engine, now=at(sub["current_period_end"]) + timedelta(minutes=1))
    await deliver_all_due(ledger, sender, RENDER, batch=100, lease_seconds=30,
                          subscriptions=subscription_renderer(ledger))

    events = {}
    for got in receiver.received:
        verify_signature(secret, got.body, got.headers["X-Paybot-Timestamp"],
                         got.headers["X-Paybot-Signature"])
        doc = json.loads(got.body)
        assert got.headers["X-Paybot-Event-Type"] == doc["type"]
        events.setdefault(doc["type"], []).append(doc)
    assert "subscription_created" in events
    [renewed] = events["subscription_renewed"]
    assert set(renewed) == {"id", "type", "created_at", "subscription"}
    view = renewed["subscription"]
    assert view["id"] == sub["id"] and view["status"] == "active" and view["entitled"]
    assert view["subscriber"] == {"telegram_id": buyer.telegram_id, "username": "renewer"}
    assert view["current_period_start"] == sub["current_period_end"]
    assert view["latest_invoice"] not in (None, sub["latest_invoice"])
    assert view == await get(api, seller, f"/subscriptions/{sub['id']}")
    listed = (await get(api, seller, "/callbacks"))["items"]
    assert {c["type"] for c in listed} >= {"subscription_created", "subscription_renewed"}
    assert all(c["status"] == "delivered" for c in listed)


async def test_a_short_balance_makes_it_past_due_then_expired_each_told_by_callback(
        api, engine, make_seller, make_user, receiver, sender) -> None:
    seller = await make_seller()
    await set_webhook_url(engine, seller.user.id, receiver.url)
    buyer = await make_user(balance=500)  # the first month exactly: nothing for a renewal
    plan, sub = await paid_subscription(api, engine, seller, buyer)
    ledger = Ledger(engine)
    access = f"/access?telegram_id={buyer.telegram_id}&plan_id={plan['id']}"
    end = at(sub["current_period_end"])

    await renew_due(engine, now=end + timedelta(minutes=1))
    # The grace is counted from the real clock's now in the SQL; access holds until it ends.
    due = await get(api, seller, f"/subscriptions/{sub['id']}")
    assert due["status"] == "past_due" and due["entitled"] and due["grace_until"] is not None
    held = await get(api, seller, access)
    assert held["access"] is True and held["until"] == due["grace_until"]

    await renew_due(engine, now=at(due["grace_until"]) + timedelta(minutes=1))
    ended = await get(api, seller, f"/subscriptions/{sub['id']}")
    assert ended["status"] == "expired" and not ended["entitled"]
    assert (await get(api, seller, access))["access"] is False

    await deliver_all_due(ledger, sender, RENDER, batch=100, lease_seconds=30,
                          subscriptions=subscription_renderer(ledger))
    told = [d for d in map(json.loads, (r.body for r in receiver.received))
            if "subscription" in d]  # the invoices' own events come too
    kinds = [d["type"] for d in told if d["subscription"]["id"] == sub["id"]]
    assert kinds.count("subscription_past_due") == 1 and kinds.count("subscription_expired") == 1
    past_due = next(d for d in told if d["type"] == "subscription_past_due")
    assert past_due["subscription"] == ended  # the state at delivery time
