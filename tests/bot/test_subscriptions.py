"""Buyers and subscriptions in the chat: the plan card of `/start sub_<plan>`, subscribing (a
trial, or the first period's invoice paid like any invoice), `/subscriptions` with the next
charge, cancelling — at the period's end or now — and changing plan or period (prorated)."""

from __future__ import annotations

from bot.telegram.render import day
from ledger.accounts import balance
from ledger.core import Ledger
from ledger.plans import Plan
from ledger.subscriptions import Subscription
from tests.bot.client import TgClient


async def _plan(ledger: Ledger, seller: TgClient, **kw):  # type: ignore[no-untyped-def]
    args = dict(name="Premium club", prices={1: 500, 3: 1350}) | kw
    return await ledger.create_plan(seller.user.id, args.pop("name"), args.pop("prices"), **args)


async def test_subscribe_and_pay_the_first_period_from_the_balance(person, ledger: Ledger,
                                                                   engine) -> None:
    seller, buyer = await person(username="club_owner"), await person(balance=2000)
    plan = await _plan(ledger, seller, item_id="vip-badge")
    [card] = await buyer.send(f"/start sub_{plan.public_id}")
    assert card.plain == ("📅 Premium club\nSeller: @club_owner\n\n"
                          "1 month — 5.00 Liquid $\n3 months — 13.50 Liquid $\nGives: 🎁 vip-badge")
    assert card.button_texts == ["1 month · 5.00 Liquid $", "3 months · 13.50 Liquid $",
                                 "⭐ Subscribe with Stars (385 ⭐/month)"]  # Stars are on

    tap = await buyer.tap(card, "1 month")
    [invoice_card] = tap.edited
    assert invoice_card.plain.startswith(
        "📅 Premium club, 1 month. Pay this invoice to start the subscription; the next periods "
        "renew from your balance.\n\n🧾 Premium club")
    assert "Amount: 5.00 Liquid $ (≈ 1 TON)\nSeller: @club_owner" in invoice_card.plain
    assert invoice_card.button_texts == ["💳 Pay 5.00 Liquid $ from balance", "💎 Pay with TON",
                                         "💵 Pay with USDT", "⭐ Pay with Stars",
                                         "📱 Open in Mini App"]
    [sub] = await ledger.subscriptions_of_user(buyer.user.id)
    assert (sub.status, sub.months, sub.amount) == ("incomplete", 1, 500)
    assert await balance(engine, buyer.user.id) == 2000  # choosing is not paying

    # the invoice's own pay buttons: from the balance, one confirmation
    confirm = (await buyer.tap(invoice_card, "from balance")).edited[0]
    tap = await buyer.tap(confirm, "Confirm payment")
    assert tap.answer_text == "Paid ✅"
    [sub] = await ledger.subscriptions_of_user(buyer.user.id)
    assert sub.status == "active" and not sub.cancel_at_period_end
    assert await balance(engine, buyer.user.id) == 1500

    [listed] = await buyer.send("/subscriptions")
    assert listed.plain == (
        "📅 Your subscriptions\n\n📅 Premium club — ✅ active\n5.00 Liquid $ for 1 month\n"
        f"Next charge: {day(sub.current_period_end)}, 5.00 Liquid $.")
    assert listed.button_texts == ["🔁 Premium club: change plan",
                                   "⏹ Premium club: cancel at period end",
                                   "✖️ Premium club: cancel now"]


async def test_cancel_at_period_end_keeps_it_until_then(person, ledger: Ledger) -> None:
    seller, buyer = await person(), await person(balance=2000)
    plan = await _plan(ledger, seller)
    done = await ledger.subscribe(plan.public_id, buyer.user.id, 3)
    assert done.invoice is not None
    await ledger.pay_from_balance(done.invoice, buyer.user.id, "test-pay")
    [listed] = await buyer.send("/subscriptions")
    tap = await buyer.tap(listed, "cancel at period end")
    [confirm] = tap.edited
    [sub] = await ledger.subscriptions_of_user(buyer.user.id)
    ends = day(sub.current_period_end)
    assert confirm.plain == (f"Cancel “Premium club” at the end of the period? It stays on until "
                             f"{ends} and is not renewed.")
    tap = await buyer.tap(confirm, "Yes, cancel")
    assert tap.answer_text == f"Cancelled: it ends on {ends}."
    [after] = tap.edited
    assert f"Ends on {ends}; no more charges." in after.plain
    assert after.button_texts == ["✖️ Premium club: cancel now"]
    [sub] = await ledger.subscriptions_of_user(buyer.user.id)
    assert (sub.status, sub.cancel_at_period_end) == ("active", True)


async def test_cancel_now_ends_it(person, ledger: Ledger) -> None:
    seller, buyer = await person(), await person()
    plan = await _plan(ledger, seller, trial_days=14)
    await ledger.subscribe(plan.public_id, buyer.user.id, 1)
    [listed] = await buyer.send("/subscriptions")
    assert "🎁 trial" in listed.plain
    [confirm] = (await buyer.tap(listed, "cancel now")).edited
    assert "Access ends at once" in confirm.plain
    yes = confirm.button("Yes, cancel")["callback_data"]
    tap = await buyer.press(confirm, yes)
    assert tap.answer_text == "Cancelled."
    [sub] = await ledger.subscriptions_of_user(buyer.user.id)
    assert sub.status == "cancelled"
    assert "✖️ cancelled" in tap.edited[0].plain and tap.edited[0].buttons == []
    # the same confirmation tapped again (a double tap): one sentence, nothing changes
    tap = await buyer.press(confirm, yes)
    assert tap.alert and tap.answer_text == "This subscription has already ended."


async def test_a_trial_starts_at_once_without_an_invoice(person, ledger: Ledger, engine) -> None:
    seller, buyer = await person(), await person()
    plan = await _plan(ledger, seller, trial_days=7)
    [card] = await buyer.send(f"/start sub_{plan.public_id}")
    assert "🎁 Free trial: 7 days" in card.plain
    one_month = card.button("1 month")["callback_data"]
    tap = await buyer.tap(card, "3 months")
    [started] = tap.edited
    [sub] = await ledger.subscriptions_of_user(buyer.user.id)
    assert sub.status == "trialing" and sub.trial_end is not None
    assert started.plain == (
        f"🎁 You are subscribed to Premium club: the free trial runs until {day(sub.trial_end)}. "
        "Then 13.50 Liquid $ for 3 months, renewed from your balance; cancel any time in "
        "/subscriptions.")
    assert started.buttons == []
    [listed] = await buyer.send("/subscriptions")
    assert f"Trial until {day(sub.trial_end)}; then 13.50 Liquid $." in listed.plain

    # the card's other period tapped (a double tap): already subscribed, one sentence
    tap = await buyer.press(card, one_month)
    assert tap.alert and tap.answer_text == (
        "You already have a subscription to this plan: see /subscriptions.")
    assert len(await ledger.subscriptions_of_user(buyer.user.id)) == 1
    assert await balance(engine, buyer.user.id) == 0


async def test_choosing_the_period_again_brings_back_the_same_invoice(person,
                                                                     ledger: Ledger) -> None:
    seller, buyer = await person(), await person()
    plan = await _plan(ledger, seller)
    [card] = await buyer.send(f"/start sub_{plan.public_id}")
    first = (await buyer.tap(card, "1 month")).edited[0].plain
    [card] = await buyer.send(f"/start sub_{plan.public_id}")
    again = (await buyer.tap(card, "1 month")).edited[0].plain
    assert again == first  # the same invoice, its number included
    assert len(await ledger.subscriptions_of_user(buyer.user.id)) == 1


async def test_wrong_taps_get_one_sentence_and_change_nothing(person, ledger: Ledger) -> None:
    seller, buyer = await person(), await person()
    plan = await _plan(ledger, seller)
    [own] = await seller.send(f"/start sub_{plan.public_id}")
    assert "This is your plan" in own.plain and own.buttons == []
    tap = await seller.press(own, f"sub:{plan.public_id}:1")  # a forged tap on the own plan
    assert tap.alert and tap.answer_text == "This is your own plan: you cannot subscribe to it."

    [card] = await buyer.send(f"/start sub_{plan.public_id}")
    tap = await buyer.press(card, f"sub:{plan.public_id}:6")  # a period the plan lacks
    assert tap.alert and tap.answer_text == "This plan does not offer that period."
    [unknown] = await buyer.send("/start sub_NOSUCHPLAN123")
    assert unknown.plain == "This plan does not exist or is no longer offered."
    assert await ledger.subscriptions_of_user(buyer.user.id) == []
    assert await ledger.subscriptions_of_user(seller.user.id) == []

    # someone else's subscription cannot be cancelled with a forged button
    sub = (await ledger.subscribe(plan.public_id, buyer.user.id, 1)).subscription
    stranger = await person()
    [listed] = await stranger.send("/subscriptions")
    assert listed.plain == "You have no subscriptions."
    tap = await stranger.press(listed, f"subs:now_do:{sub.public_id}")
    assert tap.alert and tap.answer_text == "No such subscription."
    assert (await ledger.subscription(sub.public_id)).status == "incomplete"


async def test_russian_texts(person, ledger: Ledger) -> None:
    seller, buyer = await person(), await person(language="ru")
    plan = await _plan(ledger, seller, prices={1: 500, 3: 1350, 12: 4800})
    [card] = await buyer.send(f"/start sub_{plan.public_id}")
    assert card.button_texts == ["1 месяц · 5.00 Liquid $", "3 месяца · 13.50 Liquid $",
                                 "12 месяцев · 48.00 Liquid $",
                                 "⭐ Подписаться за звёзды (385 ⭐/мес.)"]
    await buyer.tap(card, "3 месяца")
    [listed] = await buyer.send("/subscriptions")
    assert "⏳ ждёт оплаты" in listed.plain and "Оплатите первый счёт (13.50 Liquid $)" in (
        listed.plain)
    assert listed.button_texts == ["✖️ Premium club: отменить сейчас"]


async def _active(ledger: Ledger, plan: Plan, buyer: TgClient, months: int = 1) -> Subscription:
    done = await ledger.subscribe(plan.public_id, buyer.user.id, months)
    assert done.invoice is not None
    await ledger.pay_from_balance(done.invoice, buyer.user.id, f"test-{done.invoice}")
    return await ledger.subscription(done.subscription.public_id)


async def test_an_upgrade_charges_the_difference_and_shows_the_new_plan(person, ledger: Ledger,
                                                                       engine) -> None:
    seller, buyer = await person(), await person(balance=2000)
    basic = await _plan(ledger, seller, name="Basic", prices={1: 300, 3: 800})
    await _plan(ledger, seller, name="Pro", prices={1: 900})
    await _plan(ledger, seller, name="In TON", prices={1: 900}, currency="TON")
    sub = await _active(ledger, basic, buyer)
    [listed] = await buyer.send("/subscriptions")
    [choices] = (await buyer.tap(listed, "change plan")).edited
    assert choices.plain == (
        "🔁 Change “Basic” (now 3.00 Liquid $ for 1 month): choose the new plan or period. "
        "The difference for the rest of this period is charged or credited at once.")
    # the current plan's other period first, then the seller's other plan in this currency;
    # the current plan and period is not offered
    assert choices.button_texts == ["Basic · 3 months · 8.00 Liquid $",
                                    "Pro · 1 month · 9.00 Liquid $", "← Back"]
    [confirm] = (await buyer.tap(choices, "Pro")).edited
    # right after paying almost all the period is unused: ceil(900·u) − floor(300·u) = 601
    ends = day(sub.current_period_end)
    assert confirm.plain == (
        "🔁 Change “Basic” to “Pro”, 1 month?\nYou will be charged about 6.01 Liquid $ now "
        "(the unused part of this period, prorated) and 9.00 Liquid $ for 1 month from "
        f"{ends}.")
    assert await balance(engine, buyer.user.id) == 1700  # asking is not changing
    tap = await buyer.tap(confirm, "Yes, change")
    [after] = tap.edited
    assert after.plain.startswith(
        "🔁 Changed to “Pro”, 1 month: 6.01 Liquid $ charged from your balance.\n\n"
        "📅 Your subscriptions\n\n📅 Pro — ✅ active\n9.00 Liquid $ for 1 month\n"
        f"Next charge: {ends}, 9.00 Liquid $.")
    assert await balance(engine, buyer.user.id) == 1700 - 601
    [now] = await ledger.subscriptions_of_user(buyer.user.id)
    assert (now.plan_name, now.amount, now.current_period_end) == (
        "Pro", 900, sub.current_period_end)


async def test_a_downgrade_credits_the_balance(person, ledger: Ledger, engine) -> None:
    seller, buyer = await person(), await person(balance=900, language="ru")
    await _plan(ledger, seller, name="Basic", prices={1: 300})
    pro = await _plan(ledger, seller, name="Pro", prices={1: 900})
    await _active(ledger, pro, buyer)
    [listed] = await buyer.send("/subscriptions")
    [choices] = (await buyer.tap(listed, "сменить тариф")).edited
    [confirm] = (await buyer.tap(choices, "Basic")).edited
    assert "Около 5.99 Liquid $ вернётся на ваш баланс сейчас" in confirm.plain
    [after] = (await buyer.tap(confirm, "Да, сменить")).edited
    assert after.plain.startswith(
        "🔁 Тариф изменён на «Basic», 1 месяц: на баланс возвращено 5.99 Liquid $.")
    assert await balance(engine, buyer.user.id) == 599  # floor(900·u) − ceil(300·u)
    [now] = await ledger.subscriptions_of_user(buyer.user.id)
    assert (now.plan_name, now.amount) == ("Basic", 300)


async def test_an_upgrade_without_the_money_is_one_sentence_and_changes_nothing(
        person, ledger: Ledger, engine) -> None:
    seller, buyer = await person(), await person(balance=300)
    basic = await _plan(ledger, seller, name="Basic", prices={1: 300})
    await _plan(ledger, seller, name="Pro", prices={1: 900})
    sub = await _active(ledger, basic, buyer)
    [listed] = await buyer.send("/subscriptions")
    [choices] = (await buyer.tap(listed, "change plan")).edited
    [confirm] = (await buyer.tap(choices, "Pro")).edited
    tap = await buyer.tap(confirm, "Yes, change")
    assert tap.alert and tap.answer_text == (
        "Not enough money: the invoice is 6.01 Liquid $, your balance is 0.00 Liquid $. "
        "Top up with /balance.")
    assert tap.edited == []
    assert await balance(engine, buyer.user.id) == 0
    assert await ledger.subscriptions_of_user(buyer.user.id) == [sub]


async def test_the_same_plan_is_not_offered_nor_taken(person, ledger: Ledger) -> None:
    seller, buyer = await person(), await person(balance=500)
    plan = await _plan(ledger, seller, prices={1: 500})
    sub = await _active(ledger, plan, buyer)
    [listed] = await buyer.send("/subscriptions")
    [choices] = (await buyer.tap(listed, "change plan")).edited
    assert choices.plain == "There is no other plan or period to change “Premium club” to."
    assert choices.button_texts == ["← Back"]
    for action in ("ask", "do"):  # a forged tap on the same plan and period
        tap = await buyer.press(choices, f"subch:{action}:{sub.public_id}:{plan.public_id}:1")
        assert tap.alert and tap.answer_text == "You are already on this plan and period."
    tap = await buyer.press(choices, f"subch:ask:{sub.public_id}:{plan.public_id}:6")
    assert tap.alert and tap.answer_text == "This plan does not offer that period."
    assert await ledger.subscriptions_of_user(buyer.user.id) == [sub]
