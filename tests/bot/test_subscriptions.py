"""Buyers and subscriptions in the chat: the plan card of `/start sub_<plan>`, subscribing (a
trial, or the first period's invoice paid like any invoice), `/subscriptions` with the next
charge, and cancelling — at the period's end or now."""

from __future__ import annotations

from bot.telegram.render import day
from ledger.accounts import balance
from ledger.core import Ledger
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
    assert card.button_texts == ["1 month · 5.00 Liquid $", "3 months · 13.50 Liquid $"]

    tap = await buyer.tap(card, "1 month")
    [invoice_card] = tap.edited
    assert invoice_card.plain.startswith(
        "📅 Premium club, 1 month. Pay this invoice to start the subscription; the next periods "
        "renew from your balance.\n\n🧾 Premium club")
    assert "Amount: 5.00 Liquid $ (≈ 1 TON)\nSeller: @club_owner" in invoice_card.plain
    assert invoice_card.button_texts == ["💳 Pay 5.00 Liquid $ from balance", "💎 Pay with TON",
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
    assert listed.button_texts == ["⏹ Premium club: cancel at period end",
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
                                 "12 месяцев · 48.00 Liquid $"]
    await buyer.tap(card, "3 месяца")
    [listed] = await buyer.send("/subscriptions")
    assert "⏳ ждёт оплаты" in listed.plain and "Оплатите первый счёт (13.50 Liquid $)" in (
        listed.plain)
    assert listed.button_texts == ["✖️ Premium club: отменить сейчас"]
