"""Sellers' subscription plans in the chat: /plans, a new plan in a short conversation (prices
per period, trial, an item, a channel checked before the plan exists), and archiving one."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.telegram.i18n import translator
from bot.telegram.parse import InputProblem
from bot.telegram.plans import parse_prices
from ledger.core import Ledger
from tests.bot.botapi import BotApiStandIn, ChatMessage
from tests.bot.client import TgClient

LINK = "https://t.me/paybot_test_bot?start=sub_"


async def _to_prices(seller: TgClient, name: str = "Premium club") -> ChatMessage:
    [plans] = await seller.send("/plans")
    tap = await seller.tap(plans, "New plan")
    [ask_name] = tap.sent
    assert "What is it called?" in ask_name.plain
    [ask_prices] = await seller.send(name)
    assert "1m 5.00, 3m 13.50, 12m 48.00" in ask_prices.plain
    return ask_prices


async def _to_channel(seller: TgClient) -> ChatMessage:
    await _to_prices(seller)
    [ask_trial] = await seller.send("1m 5.00, 3m 13.50, 12m 48.00")
    [ask_item] = (await seller.tap(ask_trial, "No trial")).sent
    [ask_channel] = (await seller.tap(ask_item, "Skip")).sent
    assert "forward any message from it" in ask_channel.plain
    return ask_channel


async def _forward_from(seller: TgClient, chat_id: int, title: str) -> list[ChatMessage]:
    """The seller forwards a post of the channel to the bot."""
    update = seller.message_update("Hello, subscribers")
    update["message"]["forward_origin"] = {
        "type": "channel", "chat": {"id": chat_id, "type": "channel", "title": title},
        "message_id": 7, "date": int(datetime.now(UTC).timestamp())}
    before = {m.message_id for m in seller.api.messages(seller.id)}
    await seller._feed(update)
    return [m for m in seller.api.messages(seller.id) if m.message_id not in before]


async def test_a_plan_is_created_in_a_short_conversation(person, ledger: Ledger) -> None:
    seller = await person()
    [empty] = await seller.send("/plans")
    assert "no subscription plans yet" in empty.plain
    assert empty.button_texts == ["➕ New plan"]
    await _to_prices(seller)
    # commas as decimal points, Russian "м", and the prices in any order
    [ask_trial] = await seller.send("12м 48, 1m 5,00, 3 m 13.50")
    assert "A free trial?" in ask_trial.plain
    assert ask_trial.button_texts == ["No trial", "7 d", "14 d", "30 d"]
    [ask_item] = (await seller.tap(ask_trial, "7 d")).sent
    assert "give an item" in ask_item.plain and ask_item.button_texts == ["Skip"]
    [ask_channel] = await seller.send("vip-badge")
    tap = await seller.tap(ask_channel, "Skip")
    [created] = tap.sent

    [plan] = await ledger.plans_of_seller(seller.user.id)
    assert (plan.name, plan.prices, plan.trial_days, plan.item_id, plan.channel_chat_id) == (
        "Premium club", {1: 500, 3: 1350, 12: 4800}, 7, "vip-badge", None)
    assert created.plain == (
        "✅ Plan Premium club created.\n"
        "1 month — 5.00 Liquid $\n3 months — 13.50 Liquid $\n12 months — 48.00 Liquid $\n"
        "🎁 Free trial: 7 days\nGives: 🎁 vip-badge\n\n"
        f"The subscribe link:\n{LINK}{plan.public_id}")
    assert created.button_texts == ["📤 Share", "🗄 Archive plan"]

    [listed] = await seller.send("/plans")
    assert "Premium club" in listed.plain and f"{LINK}{plan.public_id}" in listed.plain
    assert listed.button_texts == ["➕ New plan", "🗄 Archive Premium club"]
    # a second tap on the finished form's Skip creates nothing more
    await seller.tap(ask_channel, "Skip")
    assert len(await ledger.plans_of_seller(seller.user.id)) == 1


@pytest.mark.parametrize(("prices", "says"), [
    ("2m 5.00", "A plan offers periods of 1, 3, 6 or 12 months, not 2."),
    ("1m 5.00, 1m 6.00", "The price for “1m” is given twice."),
    ("1m five", "“five” is not an amount"),
    ("1m 0", "greater than zero"),
    ("1m 5.001", "at most 2 digits after the point"),
    ("monthly 5", "“monthly 5” is not a price: write each one as 1m 5.00"),
])
async def test_bad_prices_are_refused_with_one_sentence(person, ledger: Ledger, prices: str,
                                                        says: str) -> None:
    seller = await person()
    await _to_prices(seller)
    [refused] = await seller.send(prices)
    assert says in refused.plain
    assert refused.buttons == []  # still at the prices step: no trial buttons yet
    [ask_trial] = await seller.send("1m 5.00")
    assert "A free trial?" in ask_trial.plain
    assert await ledger.plans_of_seller(seller.user.id) == []


def test_prices_parse_separators_and_decimal_commas() -> None:
    tr = translator("en")
    assert parse_prices("1m 5,50, 3m 15", "LIQ", tr) == {1: 550, 3: 1500}
    assert parse_prices("6 months 30\n12 mo 55.5", "LIQ", tr) == {6: 3000, 12: 5550}
    assert parse_prices("1m 5.00; 3m 13.50", "LIQ", tr) == {1: 500, 3: 1350}
    with pytest.raises(InputProblem, match="Send the prices"):
        parse_prices("  ", "LIQ", tr)


async def test_a_channel_where_the_bot_cannot_manage_members_is_refused_now(
    person, ledger: Ledger, bot_api: BotApiStandIn
) -> None:
    bot_api.add_chat(-1001001, "Club chat", admin=False)
    bot_api.add_chat(-1001002, "Club news", can_restrict_members=False)
    bot_api.add_chat(-1001003, "Club posts")
    seller = await person()
    await _to_channel(seller)

    [refused] = await seller.send("-1001001")
    assert refused.plain == (
        "@paybot_test_bot is not an administrator of “Club chat”: make it one with the rights "
        "“Invite users via link” and “Ban users”, then send the channel again.")
    [refused] = await seller.send("-1001002")
    assert refused.plain == (
        "In “Club news”, @paybot_test_bot lacks the right: “Ban users”. Turn it on in the "
        "chat's administrator settings, then send the channel again.")
    [refused] = await seller.send("-1009999")  # a chat the bot is not in
    assert refused.plain == ("I can't see that chat: add @paybot_test_bot to it as an "
                             "administrator, then send it again.")
    [refused] = await seller.send("https://t.me/club_elsewhere")  # asked by its @username
    assert "I can't see that chat" in refused.plain
    assert bot_api.calls_of("getchat")[-1].params["chat_id"] == "@club_elsewhere"
    [refused] = await seller.send("my channel")
    assert "Forward a message from the channel" in refused.plain
    assert await ledger.plans_of_seller(seller.user.id) == []  # nothing created meanwhile

    [created] = await _forward_from(seller, -1001003, "Club posts")
    assert "Access to: 📣 Club posts" in created.plain
    [plan] = await ledger.plans_of_seller(seller.user.id)
    assert (plan.channel_chat_id, plan.channel_title) == (-1001003, "Club posts")


async def test_rights_are_fixed_and_the_channel_sent_again(person, ledger: Ledger,
                                                         bot_api: BotApiStandIn) -> None:
    bot_api.add_chat(-1002001, "Basic group", type="group", can_restrict_members=False)
    bot_api.add_chat(-1002002, "Supergroup", type="supergroup", can_invite_users=False)
    seller = await person()
    await _to_channel(seller)
    [refused] = await seller.send("-1002002")
    assert "lacks the right: “Invite users via link”" in refused.plain
    bot_api.set_bot_rights(-1002002)  # the seller gives the bot every right
    [created] = await seller.send("-1002002")
    assert "Access to: 📣 Supergroup" in created.plain
    # in a basic group an administrator can do both, whatever the flags say
    await _to_channel(seller)
    [created] = await seller.send("-1002001")
    assert "Access to: 📣 Basic group" in created.plain
    assert len(await ledger.plans_of_seller(seller.user.id)) == 2


async def test_archiving_a_plan_stops_new_subscriptions(person, ledger: Ledger) -> None:
    seller, buyer = await person(), await person()
    plan = await ledger.create_plan(seller.user.id, "Weekly tips", {1: 300})
    [listed] = await seller.send("/plans")
    tap = await seller.tap(listed, "Archive Weekly tips")
    [confirm] = tap.edited
    assert "Archive “Weekly tips”?" in confirm.plain
    tap = await seller.tap(confirm, "Yes, archive")
    assert tap.answer_text == "Plan archived."
    assert await ledger.plans_of_seller(seller.user.id) == []
    [card] = await buyer.send(f"/start sub_{plan.public_id}")
    assert "This plan is no longer offered." in card.plain and card.buttons == []


async def test_someone_elses_plan_cannot_be_archived(person, ledger: Ledger) -> None:
    seller, other = await person(), await person()
    plan = await ledger.create_plan(seller.user.id, "Weekly tips", {1: 300})
    [listed] = await other.send("/plans")
    tap = await other.press(listed, f"plan:archive_do:{plan.public_id}")
    assert tap.alert and tap.answer_text == "This plan does not exist or is no longer offered."
    assert [p.status for p in await ledger.plans_of_seller(seller.user.id)] == ["active"]
