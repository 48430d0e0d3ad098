"""Paid channel access through the Bot API stand-in: a paid subscription's subscriber gets a
join link, their join request is approved, anyone else's declined with where to subscribe; when
the subscription ends they are removed (free to come back after paying again), unless they are
entitled again by the time the removal is delivered."""

from __future__ import annotations

import itertools
import secrets
from typing import Any

import pytest
from aiogram import Bot

from bot.telegram import Notifier
from bot.telegram.config import BotConfig
from bot.telegram.notifier import Backoff
from ledger.core import Ledger
from ledger.plans import Plan
from ledger.subscriptions import Subscription
from tests.bot.botapi import BotApiStandIn, ChatMessage
from tests.bot.client import TgClient
from tests.conftest import run_sql

_channel_ids = itertools.count(-1001987654321 - secrets.randbelow(10**6) * 1000, -1)


@pytest.fixture
async def notifier(engine, bot: Bot, cfg: BotConfig) -> Notifier:  # type: ignore[no-untyped-def]
    n = Notifier(Ledger(engine), bot, backoff=Backoff(base=30.0), cfg=cfg)
    await n.deliver_due()  # events left by other tests are not this test's business
    return n


@pytest.fixture
async def channel_plan(engine, person, bot_api: BotApiStandIn) -> Plan:  # type: ignore[no-untyped-def]
    """A plan granting a channel of its own (the database lives as long as the test run)."""
    chat_id = next(_channel_ids)
    bot_api.add_chat(chat_id, "VIP <club>")
    seller = await person()
    return await Ledger(engine).create_plan(seller.user.id, "VIP", {1: 500},
                                            channel_chat_id=chat_id,
                                            channel_title="VIP <club>")


async def _subscribe(engine, plan: Plan, buyer: TgClient) -> Subscription:  # type: ignore[no-untyped-def]
    ledger = Ledger(engine)
    sub = await ledger.subscribe(plan.public_id, buyer.user.id, 1)
    assert sub.invoice is not None
    await ledger.pay_from_balance(sub.invoice, buyer.user.id, f"pay-{sub.invoice}")
    return await ledger.subscription(sub.subscription.public_id)


async def _ask_to_join(buyer: TgClient, bot_api: BotApiStandIn, chat_id: int,
                       link: str | None = None) -> None:
    update: dict[str, Any] = bot_api.join_request(chat_id, buyer._from(), link)
    await buyer._feed(update)


def _confirmation(bot_api: BotApiStandIn, buyer: TgClient) -> ChatMessage:
    """The latest subscription confirmation (the period's receipt comes too, as for any paid
    invoice)."""
    return [m for m in bot_api.messages(buyer.id) if "Subscribed:" in m.plain][-1]


def _join_button(message: ChatMessage) -> str:
    return str(message.button("Join the channel")["url"])


async def test_a_subscriber_gets_a_join_link_and_is_let_in(
        engine, person, bot_api, notifier, channel_plan) -> None:  # type: ignore[no-untyped-def]
    chat = channel_plan.channel_chat_id
    buyer = await person(balance=2_000)
    sub = await _subscribe(engine, channel_plan, buyer)
    await notifier.deliver_due()

    confirmation = _confirmation(bot_api, buyer)
    assert confirmation.plain.startswith(
        f"✅ Subscribed: VIP — 5.00 Liquid $, paid until "
        f"{sub.current_period_end.date().isoformat()}.")
    assert "Join VIP <club> with the button below" in confirmation.plain
    link = _join_button(confirmation)
    made = bot_api.channels[chat].invite_links[link]
    assert made["creates_join_request"] is True and made["name"] == sub.public_id

    seen = len(bot_api.messages(buyer.id))
    await _ask_to_join(buyer, bot_api, chat, link)
    assert buyer.id in bot_api.members(chat)
    assert bot_api.channels[chat].join_requests == {}
    assert len(bot_api.messages(buyer.id)) == seen  # approved without a word


async def test_someone_without_a_subscription_is_declined(
        person, bot_api, channel_plan, cfg) -> None:  # type: ignore[no-untyped-def]
    chat = channel_plan.channel_chat_id
    stranger = await person()
    await _ask_to_join(stranger, bot_api, chat, "https://t.me/+passed-on")
    assert stranger.id not in bot_api.members(chat)
    assert bot_api.member_status(chat, stranger.id) == "left"
    assert bot_api.calls_of("declineChatJoinRequest")
    [told] = bot_api.messages(stranger.id)
    assert told.plain == ("🔒 VIP <club> is for subscribers: subscribe (VIP) and ask to join "
                          "again.")
    assert f'href="https://t.me/{cfg.bot_username}?start=sub_{channel_plan.public_id}"' \
        in str(told.text)


async def test_a_refusal_they_cannot_be_told_still_declines(
        person, bot_api, channel_plan) -> None:  # type: ignore[no-untyped-def]
    chat = channel_plan.channel_chat_id
    stranger = await person()
    bot_api.fail(403, "Forbidden: bot can't initiate conversation with a user",
                 method="sendMessage", chat_id=stranger.id)
    await _ask_to_join(stranger, bot_api, chat)
    assert bot_api.calls_of("declineChatJoinRequest")
    assert stranger.id not in bot_api.members(chat)


async def test_the_end_removes_them_and_paying_again_lets_them_back(
        engine, person, bot_api, notifier, channel_plan) -> None:  # type: ignore[no-untyped-def]
    chat = channel_plan.channel_chat_id
    buyer = await person(balance=2_000)
    sub = await _subscribe(engine, channel_plan, buyer)
    await notifier.deliver_due()
    await _ask_to_join(buyer, bot_api, chat, _join_button(_confirmation(bot_api, buyer)))
    assert buyer.id in bot_api.members(chat)

    await Ledger(engine).cancel_subscription(sub.public_id, actor_id=buyer.user.id,
                                             at_period_end=False)
    report = await notifier.deliver_due()
    assert report.failed == 0
    assert buyer.id not in bot_api.members(chat)
    assert bot_api.member_status(chat, buyer.id) == "left"  # removed, not banned
    assert bot_api.messages(buyer.id)[-1].plain.startswith("⛔ Subscription ended: VIP.")
    await _ask_to_join(buyer, bot_api, chat)  # an old link: declined now
    assert buyer.id not in bot_api.members(chat)

    await _subscribe(engine, channel_plan, buyer)
    await notifier.deliver_due()
    await _ask_to_join(buyer, bot_api, chat, _join_button(_confirmation(bot_api, buyer)))
    assert buyer.id in bot_api.members(chat)


async def test_a_removal_for_someone_subscribed_again_does_nothing(
        engine, person, bot_api, notifier, channel_plan) -> None:  # type: ignore[no-untyped-def]
    chat = channel_plan.channel_chat_id
    buyer = await person(balance=2_000)
    sub = await _subscribe(engine, channel_plan, buyer)
    await notifier.deliver_due()
    await _ask_to_join(buyer, bot_api, chat, _join_button(_confirmation(bot_api, buyer)))

    await Ledger(engine).cancel_subscription(sub.public_id, actor_id=buyer.user.id,
                                             at_period_end=False)
    await _subscribe(engine, channel_plan, buyer)  # before the removal went out
    since = len(bot_api.calls)
    await notifier.deliver_due()
    assert bot_api.calls_of("banChatMember", since) == []
    assert buyer.id in bot_api.members(chat)
    [revoke] = await run_sql(engine, "SELECT delivered_at, failed_at FROM outbox WHERE "
                             "event_type = 'channel.revoke' AND payload ->> 'subscription' "
                             "= :s", s=sub.public_id)
    assert revoke["delivered_at"] is not None and revoke["failed_at"] is None


async def test_a_subscriber_who_blocked_the_bot_is_still_removed(
        engine, person, bot_api, notifier, channel_plan) -> None:  # type: ignore[no-untyped-def]
    chat = channel_plan.channel_chat_id
    buyer = await person(balance=2_000)
    sub = await _subscribe(engine, channel_plan, buyer)
    await notifier.deliver_due()
    await _ask_to_join(buyer, bot_api, chat, _join_button(_confirmation(bot_api, buyer)))
    bot_api.block(buyer.id)

    await Ledger(engine).cancel_subscription(sub.public_id, actor_id=buyer.user.id,
                                             at_period_end=False)
    await notifier.deliver_due()
    rows = await run_sql(engine, "SELECT event_type, delivered_at, last_error FROM outbox "
                         "WHERE payload ->> 'subscription' = :s AND topic = 'telegram'",
                         s=sub.public_id)
    by_type = {r["event_type"]: r for r in rows}
    assert "bot was blocked by the user" in by_type["subscription.ended"]["last_error"]
    assert by_type["channel.revoke"]["delivered_at"] is not None
    assert buyer.id not in bot_api.members(chat)


async def test_without_the_right_to_invite_the_subscriber_is_told_why(
        engine, person, bot_api, notifier, channel_plan) -> None:  # type: ignore[no-untyped-def]
    chat = channel_plan.channel_chat_id
    bot_api.set_bot_rights(chat, can_invite_users=False)
    buyer = await person(balance=2_000)
    await _subscribe(engine, channel_plan, buyer)
    report = await notifier.deliver_due()
    assert report.failed == 0
    confirmation = _confirmation(bot_api, buyer)
    assert confirmation.plain.endswith(
        "The bot cannot invite you to VIP <club> right now: ask the seller to make it an admin "
        "allowed to invite users.")
    assert confirmation.buttons == []


async def test_a_removal_the_bot_has_no_right_to_make_fails_with_the_reason(
        engine, person, bot_api, notifier, channel_plan) -> None:  # type: ignore[no-untyped-def]
    chat = channel_plan.channel_chat_id
    buyer = await person(balance=2_000)
    sub = await _subscribe(engine, channel_plan, buyer)
    await notifier.deliver_due()
    await _ask_to_join(buyer, bot_api, chat, _join_button(_confirmation(bot_api, buyer)))
    bot_api.set_bot_rights(chat, can_restrict_members=False)

    await Ledger(engine).cancel_subscription(sub.public_id, actor_id=buyer.user.id,
                                             at_period_end=False)
    await notifier.deliver_due()
    [revoke] = await run_sql(engine, "SELECT failed_at, last_error FROM outbox WHERE "
                             "event_type = 'channel.revoke' AND payload ->> 'subscription' "
                             "= :s", s=sub.public_id)
    assert revoke["failed_at"] is not None
    assert "not enough rights" in revoke["last_error"]
