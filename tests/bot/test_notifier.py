"""The Telegram outbox: the seller hears about each payment and from whom, the buyer gets a
receipt; blocked bots, flood control, server trouble and over-long texts never lose news."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from aiogram import Bot
from pydantic import SecretStr

from bot.settings import Settings, TelegramSettings
from bot.telegram import Notifier, create_bot, create_dispatcher
from bot.telegram.notifier import Backoff
from ledger.accounts import adjust_balance
from ledger.core import Ledger
from ledger.invoices import create_invoice
from ledger.payments import pay_from_balance, settle_external_payment
from ledger.subscriptions import add_months, queue_subscription_reminders, renew_due
from tests.bot.client import TgClient
from tests.conftest import run_sql
from tests.waiting import wait_until
from watchers.wakeup import OutboxListener


@pytest.fixture
async def notifier(engine, bot: Bot) -> Notifier:  # type: ignore[no-untyped-def]
    n = Notifier(Ledger(engine), bot, backoff=Backoff(base=30.0))
    await n.deliver_due()  # events left by other tests are not this test's business
    return n


async def _paid(engine, seller, buyer, **kw):  # type: ignore[no-untyped-def]
    invoice = await create_invoice(engine, seller_id=seller.user.id, title="Coffee <beans>",
                                   amount=1250, ton_rate=Decimal(5),
                                   payload={"item_id": "coffee-1"}, **kw)
    await pay_from_balance(engine, invoice.public_id, buyer.user.id, f"k-{invoice.public_id}")
    return invoice


async def _events(engine, invoice) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    rows = await run_sql(
        engine, "SELECT id, payload ->> 'role' AS role, attempts, available_at, delivered_at, "
                "failed_at, last_error FROM outbox WHERE topic = 'telegram' "
                "AND payload ->> 'invoice' = :inv", inv=invoice.public_id)
    return {r["role"]: r for r in rows}


async def test_seller_and_buyer_are_told_once(person, engine, notifier, bot_api) -> None:
    seller, buyer = await person(), await person(balance=5000, username="alice")
    invoice = await _paid(engine, seller, buyer)
    report = await notifier.deliver_due()
    assert report.delivered >= 2 and report.failed == 0

    [to_seller] = bot_api.messages(seller.id)
    assert to_seller.plain == (f"💰 Paid: Coffee <beans> ({invoice.number}) — 12.50 Liquid $\n"
                               "By @alice, from balance.")
    [to_buyer] = bot_api.messages(buyer.id)
    assert to_buyer.plain == (f"🧾 Receipt: Coffee <beans> ({invoice.number}) — 12.50 Liquid $, "
                              "from balance.\nYou received: 🎁 coffee-1")
    events = await _events(engine, invoice)
    assert all(e["delivered_at"] is not None for e in events.values())

    await notifier.deliver_due()
    assert len(bot_api.messages(seller.id)) == 1 and len(bot_api.messages(buyer.id)) == 1


async def test_buyer_blocked_the_bot(person, engine, notifier, bot_api) -> None:
    seller, buyer = await person(), await person(balance=5000)
    invoice = await _paid(engine, seller, buyer)
    bot_api.block(buyer.id)
    report = await notifier.deliver_due()
    assert report.failed == 1
    events = await _events(engine, invoice)
    assert events["buyer"]["failed_at"] is not None
    assert "bot was blocked by the user" in events["buyer"]["last_error"]
    assert events["seller"]["delivered_at"] is not None  # the seller still hears about it
    assert len(bot_api.messages(seller.id)) == 1
    since = len(bot_api.calls)
    await notifier.deliver_due()
    assert [c for c in bot_api.calls[since:] if c.params.get("chat_id") == str(buyer.id)] == []


async def test_flood_control_retries_later(person, engine, notifier, bot_api) -> None:
    seller, buyer = await person(), await person(balance=5000)
    invoice = await _paid(engine, seller, buyer)
    bot_api.fail(429, "Too Many Requests: retry after 7", method="sendMessage", retry_after=7)
    report = await notifier.deliver_due()
    assert report.delivered == 0 and report.retried >= 2
    events = await _events(engine, invoice)
    for event in events.values():
        assert event["delivered_at"] is None and event["failed_at"] is None
        assert "429" in event["last_error"]
        assert event["available_at"] > datetime.now(UTC) + timedelta(seconds=5)
    await notifier.deliver_due()  # not due yet: nothing is sent
    assert bot_api.messages(seller.id) == [] and bot_api.messages(buyer.id) == []

    await run_sql(engine, "UPDATE outbox SET available_at = now() WHERE id = ANY(:ids)",
                  ids=[e["id"] for e in events.values()])
    await notifier.deliver_due()
    assert all(e["delivered_at"] is not None for e in (await _events(engine, invoice)).values())
    assert len(bot_api.messages(seller.id)) == 1 and len(bot_api.messages(buyer.id)) == 1


async def test_server_errors_back_off_and_retry(person, engine, notifier, bot_api) -> None:
    seller, buyer = await person(), await person(balance=5000)
    invoice = await _paid(engine, seller, buyer)
    bot_api.fail(502, "Bad Gateway", chat_id=seller.id, times=1)
    await notifier.deliver_due()
    events = await _events(engine, invoice)
    seller_event = events["seller"]
    assert seller_event["delivered_at"] is None and seller_event["failed_at"] is None
    assert "TelegramServerError" in seller_event["last_error"]
    assert seller_event["available_at"] > datetime.now(UTC) + timedelta(seconds=20)  # backoff
    assert events["buyer"]["delivered_at"] is not None
    await run_sql(engine, "UPDATE outbox SET available_at = now() WHERE id = :id",
                  id=seller_event["id"])
    await notifier.deliver_due()
    assert (await _events(engine, invoice))["seller"]["delivered_at"] is not None
    assert len(bot_api.messages(seller.id)) == 1


async def test_network_down_keeps_events_queued(person, engine, bot_api, notifier) -> None:
    seller, buyer = await person(), await person(balance=5000)
    invoice = await _paid(engine, seller, buyer)
    offline = Settings()
    offline.telegram = TelegramSettings(bot_token=SecretStr(bot_api.token),
                                        api_url="http://127.0.0.1:9")  # nothing listens there
    dead_bot = create_bot(offline)
    try:
        report = await Notifier(Ledger(engine), dead_bot).deliver_due()
    finally:
        await dead_bot.session.close()
    assert report.failed == 0 and report.retried >= 2
    events = await _events(engine, invoice)
    assert all("TelegramNetworkError" in e["last_error"] for e in events.values())
    assert all(e["failed_at"] is None for e in events.values())
    # The network is back: they go out (and leave nothing due for the tests after this one).
    await run_sql(engine, "UPDATE outbox SET available_at = now() WHERE id = ANY(:ids)",
                  ids=[e["id"] for e in events.values()])
    await notifier.deliver_due()
    assert len(bot_api.messages(seller.id)) == 1 and len(bot_api.messages(buyer.id)) == 1


@pytest.mark.parametrize("refusal", ["Bad Request: message is too long",
                                     "Bad Request: can't parse entities: unexpected end tag"])
async def test_refused_text_falls_back_to_a_short_plain_one(
    person, engine, notifier, bot_api, refusal
) -> None:
    seller, buyer = await person(), await person(balance=5000)
    invoice = await _paid(engine, seller, buyer)
    bot_api.fail(400, refusal, chat_id=seller.id, times=1)
    await notifier.deliver_due()
    assert (await _events(engine, invoice))["seller"]["delivered_at"] is not None
    [to_seller] = bot_api.messages(seller.id)
    assert to_seller.text is not None and "<b>" not in to_seller.text
    assert "Coffee <beans>" in to_seller.text and invoice.number in to_seller.text


async def test_other_bad_requests_fail_with_the_reason(person, engine, notifier, bot_api) -> None:
    seller, buyer = await person(), await person(balance=5000)
    invoice = await _paid(engine, seller, buyer)
    bot_api.fail(400, "Bad Request: chat not found", chat_id=seller.id, times=1)
    report = await notifier.deliver_due()
    assert report.failed == 1
    seller_event = (await _events(engine, invoice))["seller"]
    assert seller_event["failed_at"] is not None
    assert "chat not found" in seller_event["last_error"]


async def test_guest_ton_payment_tells_the_seller(person, engine, notifier, bot_api) -> None:
    seller = await person(language="ru")
    invoice = await create_invoice(engine, seller_id=seller.user.id, title="Чай", amount=500)
    await settle_external_payment(engine, invoice.public_id, method="ton", reference="tx-guest-1"
                                  + invoice.public_id)
    await notifier.deliver_due()
    [to_seller] = bot_api.messages(seller.id)
    assert to_seller.plain == (f"💰 Оплачено: Чай ({invoice.number}) — 5.00 Liquid $\n"
                               "Плательщик: гость без аккаунта Telegram, переводом TON.")
    assert set(await _events(engine, invoice)) == {"seller"}  # nobody else to tell


async def test_payer_without_username_is_a_link(person, engine, notifier, bot_api) -> None:
    seller, buyer = await person(), await person(balance=5000)
    await _paid(engine, seller, buyer)
    await notifier.deliver_due()
    [to_seller] = bot_api.messages(seller.id)
    assert f'<a href="tg://user?id={buyer.id}">#{buyer.id}</a>' in (to_seller.text or "")


async def test_a_payment_on_any_path_is_announced_at_once(
    person, engine, database_url, bot, bot_api, settings, notifier
) -> None:
    """After commit, one hook: a payment made in the bot or the Mini App (the same use case:
    the Ledger's after-commit hook, wired as bot/app.py wires it) or settled from the chain
    (PostgreSQL's NOTIFY, from whatever process) wakes delivery at once; nothing here calls
    deliver_due or waits for a poll."""
    listener = OutboxListener(database_url, [notifier.waker])
    ledger = Ledger(engine, after_commit=listener.wake)
    listener.start()
    try:
        await wait_until(listener.listening.is_set, "the outbox listener is listening")
        seller, buyer = await person(), await person(balance=5000, username="bob")
        by_bot, by_app, by_chain = [
            await create_invoice(engine, seller_id=seller.user.id, title=title, amount=100)
            for title in ("Tea", "Cake", "Jam")]
        client = TgClient(bot_api, create_dispatcher(ledger, settings), bot, buyer.user,
                          username="bob")
        [card] = await client.send(f"/start pay_{by_bot.public_id}")
        [confirm] = (await client.tap(card, "from balance")).edited
        await client.tap(confirm, "Confirm payment")
        await ledger.pay_from_balance(by_app.public_id, buyer.user.id, "mini-app-tap")
        await settle_external_payment(engine, by_chain.public_id, method="ton",
                                      reference=f"tx-{by_chain.public_id}")

        def told() -> set[str]:
            return {title for m in bot_api.messages(seller.id)
                    for title in ("Tea", "Cake", "Jam") if title in m.plain}

        assert await wait_until(lambda: told() == {"Tea", "Cake", "Jam"},
                                "the seller is told of all three payments")
    finally:
        await listener.close()


async def test_a_ton_deposit_is_announced_to_the_depositor(person, engine, notifier,
                                                           bot_api) -> None:
    user = await person(language="ru")
    # What the TON watcher does for a transfer carrying the user's deposit comment.
    await run_sql(engine, "SELECT paybot_ton_credit_user('deposit', :u, 3000000000, 'LIQ', 5, "
                          "'deposit', :ref, 'ab12')", u=user.user.id, ref=f"dep-{user.id}")
    report = await notifier.deliver_due()
    assert report.failed == 0
    [message] = bot_api.messages(user.id)
    assert message.plain == "💳 Баланс пополнен: +15.00 Liquid $ (пополнение в TON)."


# --- invoices as documents: sent invoices, reminders and the overdue digest ------------------

@pytest.fixture
async def notices(engine, bot: Bot, cfg) -> Notifier:  # type: ignore[no-untyped-def]
    """The notifier as `paybot run` builds it: with the bot's config for pay buttons."""
    n = Notifier(Ledger(engine), bot, backoff=Backoff(base=30.0), cfg=cfg)
    await n.deliver_due()
    return n


async def _sent(ledger, seller, buyer, notices, *, due_in: timedelta = timedelta(days=7)):  # type: ignore[no-untyped-def]
    """A 12.50 invoice due in `due_in`, sent to `buyer` (who receives its card)."""
    from ledger.invoices import new_invoice

    invoice, _ = await ledger.issue_invoice(new_invoice(
        seller_id=seller.user.id, title="Coffee <beans>", amount=1250, ton_rate=Decimal(5),
        due_at=datetime.now(UTC) + due_in))
    await ledger.send_invoice(seller.user.id, invoice.public_id, buyer.id)
    await notices.deliver_due()
    return await ledger.seller_invoice(seller.user.id, invoice.public_id)


async def _queue(engine, event_type: str, payload: dict) -> int:  # type: ignore[type-arg]
    """An outbox event as the reminder job writes it (ledger/sql/reminders.sql)."""
    import json

    [row] = await run_sql(engine, "INSERT INTO outbox (topic, event_type, payload) VALUES "
                          "('telegram', :type, CAST(:payload AS jsonb)) RETURNING id",
                          type=event_type, payload=json.dumps(payload))
    return int(row["id"])  # type: ignore[call-overload]


async def _delivered(engine, event_id: int) -> bool:
    [row] = await run_sql(engine, "SELECT delivered_at, failed_at FROM outbox WHERE id = :id",
                          id=event_id)
    assert row["failed_at"] is None
    return row["delivered_at"] is not None


async def test_a_reminder_has_the_pay_button_and_a_way_to_stop(
    person, engine, ledger, notices, bot_api
) -> None:
    seller, buyer = await person(), await person(balance=5000)
    invoice = await _sent(ledger, seller, buyer, notices)
    [card] = bot_api.messages(buyer.id)
    assert "An invoice for you" in card.plain and card.button("Pay 12.50 Liquid $")
    assert invoice.due_at is not None
    due = invoice.due_at.date().isoformat()
    await _queue(engine, "invoice.reminder", {"recipient": buyer.user.id, "kind": "before_7",
                                              "invoice": invoice.public_id,
                                              "seller_id": seller.user.id})
    await notices.deliver_due()
    [_, reminder] = bot_api.messages(buyer.id)
    assert reminder.plain.startswith(f"⏰ Reminder: Coffee <beans> ({invoice.number}) — "
                                     f"12.50 Liquid $ to pay by {due}.")
    assert reminder.button("Pay 12.50 Liquid $ from balance")
    stop = await buyer.tap(reminder, "Stop reminders")
    assert stop.alert and stop.answer_text == f"No more reminders about {invoice.number}."
    assert (await ledger.seller_invoice(seller.user.id, invoice.public_id)).reminders_off
    event = await _queue(engine, "invoice.reminder", {"recipient": buyer.user.id,
                                                      "kind": "before_1",
                                                      "invoice": invoice.public_id})
    await notices.deliver_due()
    assert await _delivered(engine, event) and len(bot_api.messages(buyer.id)) == 2


async def test_an_overdue_reminder_says_since_when(person, engine, ledger, notices,
                                                   bot_api) -> None:
    seller, buyer = await person(), await person(language="ru")
    invoice = await _sent(ledger, seller, buyer, notices)
    await run_sql(engine, "UPDATE invoices SET due_at = now() - interval '3 days' "
                          "WHERE public_id = :id", id=invoice.public_id)
    since = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()
    await _queue(engine, "invoice.reminder", {"recipient": buyer.user.id, "kind": "overdue",
                                              "invoice": invoice.public_id})
    await notices.deliver_due()
    reminder = bot_api.messages(buyer.id)[-1]
    assert reminder.plain.startswith(f"⚠️ Просрочен с {since}: Coffee <beans> "
                                     f"({invoice.number}) — к оплате 12.50 Liquid $.")
    assert reminder.plain.count(since) == 1  # said once, not again under the lines
    assert reminder.button("Больше не напоминать")


async def test_no_reminder_once_paid_or_void(person, engine, ledger, notices, bot_api) -> None:
    seller, buyer = await person(), await person(balance=5000)
    paid = await _sent(ledger, seller, buyer, notices)
    await pay_from_balance(engine, paid.public_id, buyer.user.id, f"k-{paid.public_id}")
    voided = await _sent(ledger, seller, buyer, notices)
    await ledger.void_invoice(seller.user.id, voided.public_id)
    await notices.deliver_due()
    before = len(bot_api.messages(buyer.id))
    events = [await _queue(engine, "invoice.reminder",
                           {"recipient": buyer.user.id, "kind": "before_1",
                            "invoice": inv.public_id}) for inv in (paid, voided)]
    report = await notices.deliver_due()
    assert report.failed == 0
    assert [await _delivered(engine, e) for e in events] == [True, True]
    assert len(bot_api.messages(buyer.id)) == before  # nothing said, nothing retried


async def test_the_overdue_digest_lists_what_is_still_due(person, engine, ledger, notices,
                                                         bot_api) -> None:
    seller, buyer = await person(), await person(balance=5000)
    late = [await _sent(ledger, seller, buyer, notices) for _ in range(3)]
    await run_sql(engine, "UPDATE invoices SET due_at = now() - interval '2 days' "
                          "WHERE seller_id = :seller", seller=seller.user.id)
    await pay_from_balance(engine, late[2].public_id, buyer.user.id, f"k-{late[2].public_id}")
    await ledger.record_manual_payment(late[1].public_id, seller_id=seller.user.id, amount=250,
                                       received_on=datetime.now(UTC).date(), reference="B-1")
    await notices.deliver_due()
    before = len(bot_api.messages(seller.id))
    await _queue(engine, "seller.overdue_digest", {
        "recipient": seller.user.id, "invoices": [i.public_id for i in late], "count": 4,
        "day": datetime.now(UTC).date().isoformat()})
    await notices.deliver_due()
    [digest] = bot_api.messages(seller.id)[before:]
    since = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
    assert digest.plain == "\n".join([
        "📋 Overdue invoices: 2",
        f"• {late[0].number} Coffee <beans> — 12.50 Liquid $ due since {since}",
        f"• {late[1].number} Coffee <beans> — 10.00 Liquid $ due since {since}",
        "… and 1 more (/invoices)"])


# --- subscriptions (issue 13): the subscriber's news, read when sent ---------------------------

async def _subscribed(ledger, seller, buyer, **plan):  # type: ignore[no-untyped-def]
    """`buyer` subscribed for a month to a 5.00 plan of `seller`, the first period paid."""
    made = await ledger.create_plan(seller.user.id, "Premium <gold>", {1: 500}, **plan)
    sub = await ledger.subscribe(made.public_id, buyer.user.id, 1)
    if sub.invoice is not None:
        await ledger.pay_from_balance(sub.invoice, buyer.user.id, f"k-{sub.invoice}")
    return await ledger.subscription(sub.subscription.public_id)


def _said(bot_api, buyer, since: int) -> list[str]:  # type: ignore[no-untyped-def]
    """What the subscriber was told since (receipts of the period invoices left out)."""
    return [m.plain for m in bot_api.messages(buyer.id)[since:]
            if not m.plain.startswith("🧾")]


async def test_a_subscriber_is_told_it_is_active_until_when(person, ledger, notices,
                                                           bot_api) -> None:
    seller, buyer = await person(), await person(balance=500)
    sub = await _subscribed(ledger, seller, buyer)
    await notices.deliver_due()
    assert _said(bot_api, buyer, 0) == [
        "✅ Subscribed: Premium <gold> — 5.00 Liquid $, paid until "
        f"{sub.current_period_end.date().isoformat()}."]


async def test_a_trial_says_when_it_ends(person, ledger, notices, bot_api) -> None:
    seller, buyer = await person(), await person()
    sub = await _subscribed(ledger, seller, buyer, trial_days=7)
    assert sub.status == "trialing" and sub.trial_end is not None
    await notices.deliver_due()
    assert _said(bot_api, buyer, 0) == [
        f"🎁 Free trial: Premium <gold> until {sub.trial_end.date().isoformat()}."]


async def test_a_short_balance_is_told_what_to_top_up_and_by_when(
        person, engine, ledger, notices, bot_api) -> None:  # type: ignore[no-untyped-def]
    seller, buyer = await person(), await person(balance=700)
    sub = await _subscribed(ledger, seller, buyer)
    await notices.deliver_due()
    seen = len(bot_api.messages(buyer.id))
    due = sub.current_period_end
    await renew_due(engine, due + timedelta(minutes=1))  # the job runs over every subscription
    assert (await ledger.subscription(sub.public_id)).status == "past_due"
    await notices.deliver_due()
    grace = (due + ledger.subscription_grace).date().isoformat()
    [notice] = bot_api.messages(buyer.id)[seen:]
    assert notice.plain == (
        "⚠️ Renewal failed: Premium <gold> — 5.00 Liquid $, your balance is 3.00 Liquid $ "
        f"short. Top it up (/balance) or pay the invoice by {grace} to keep your access.")
    [invoice] = await run_sql(engine, "SELECT payload ->> 'invoice' AS id FROM outbox WHERE "
                              "event_type = 'subscription.past_due' AND payload ->> "
                              "'subscription' = :s", s=sub.public_id)
    assert notice.button("Pay the invoice")["url"].endswith(f"?start=pay_{invoice['id']}")

    await queue_subscription_reminders(engine, due + timedelta(days=1, minutes=1))
    await notices.deliver_due()
    assert _said(bot_api, buyer, seen + 1) == [
        "⏳ Premium <gold> is still unpaid: top up 3.00 Liquid $ (/balance) or pay the invoice "
        f"by {grace}, or your access ends."]


async def test_news_overtaken_by_a_payment_is_not_sent(person, engine, ledger, notices,
                                                      bot_api) -> None:
    seller, buyer = await person(), await person(balance=500)
    sub = await _subscribed(ledger, seller, buyer)
    await notices.deliver_due()
    seen = len(bot_api.messages(buyer.id))
    due = sub.current_period_end
    await renew_due(engine, due + timedelta(minutes=1))  # past due, queued
    await queue_subscription_reminders(engine, due + timedelta(days=1, minutes=1))  # grace
    await adjust_balance(engine, buyer.user.id, 500, "LIQ", reason="top up")
    await renew_due(engine, due + timedelta(days=2))
    assert (await ledger.subscription(sub.public_id)).status == "active"
    report = await notices.deliver_due()
    assert report.failed == 0
    end = add_months(sub.anchor_at, 2).date().isoformat()
    assert _said(bot_api, buyer, seen) == [f"🔁 Renewed: Premium <gold>, paid until {end}."]


async def test_three_days_before_a_renewal_the_subscriber_is_reminded(
        person, engine, ledger, notices, bot_api) -> None:  # type: ignore[no-untyped-def]
    seller, buyer = await person(), await person(balance=800)
    sub = await _subscribed(ledger, seller, buyer)
    await notices.deliver_due()
    seen = len(bot_api.messages(buyer.id))
    due = sub.current_period_end
    await queue_subscription_reminders(engine, due - timedelta(days=2))
    await notices.deliver_due()
    [notice] = bot_api.messages(buyer.id)[seen:]
    assert notice.plain == (
        f"🔔 Premium <gold> renews on {due.date().isoformat()}: 5.00 Liquid $ from your balance."
        "\nYour balance is 2.00 Liquid $ short: top it up (/balance) before then.")
    assert notice.button_texts == ["Pay the invoice"]
