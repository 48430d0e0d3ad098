"""Buyers in the chat: /start pay_<id>, paying from the balance (once), TON, the Mini App,
claims, /balance, /inventory, /history, /api — and every way to get it wrong."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bot.qr import qr_png
from bot.telegram import create_dispatcher
from ledger.accounts import adjust_balance, balance, credit_deposit
from ledger.api_tokens import issue_token
from ledger.core import Ledger
from ledger.errors import MAX_ACTIVE_TOKENS
from ledger.invoice_reads import get_invoice
from ledger.invoices import cancel_invoice, create_invoice
from ledger.payers import tag_for_guest, tag_for_user
from ledger.payments import pay_from_balance, settle_external_payment
from ledger.transfers import record_transfer, start_cursor
from tests.bot.client import TgClient
from tests.bot.conftest import TON_WALLET, bot_settings
from tests.conftest import run_sql
from tests.watchers.test_ledger_transfers import SyntheticChain

RATE = Decimal("5.00")


async def _coffee(engine, seller, **kw):  # type: ignore[no-untyped-def]
    args = dict(seller_id=seller.user.id, title="Coffee <beans>", amount=1250, ton_rate=RATE,
                payload={"item_id": "coffee-1"})
    return await create_invoice(engine, **(args | kw))


async def _payments(engine, invoice) -> list[dict]:  # type: ignore[no-untyped-def]
    return await run_sql(engine, "SELECT * FROM payments WHERE invoice_id = :id", id=invoice.id)


async def test_invoice_card_shows_what_is_paid_for_and_how(person, engine) -> None:
    seller, buyer = await person(username="bean_shop"), await person()
    invoice = await _coffee(engine, seller)
    [card] = await buyer.send(f"/start pay_{invoice.public_id.lower()}")  # any case works
    assert card.plain == (
        "🧾 Coffee <beans>\nAmount: 12.50 Liquid $ (≈ 2.5 TON)\nSeller: @bean_shop\n"
        f"Status: ⏳ waiting for payment\nInvoice {invoice.number}"
    )
    assert "Coffee &lt;beans&gt;" in (card.text or "")  # people's text is escaped
    assert card.button_texts == ["💳 Pay 12.50 Liquid $ from balance", "💎 Pay with TON",
                                 "💵 Pay with USDT", "⭐ Pay with Stars", "📱 Open in Mini App"]
    assert card.button("Mini App")["web_app"] == {
        "url": f"https://pay.example.com/pay/{invoice.public_id}"}


async def test_pay_from_balance_end_to_end(person, engine) -> None:
    seller, buyer = await person(), await person(balance=5000)
    invoice = await _coffee(engine, seller)
    [card] = await buyer.send(f"/start pay_{invoice.public_id}")
    tap = await buyer.tap(card, "from balance")
    [confirm] = tap.edited
    assert confirm.message_id == card.message_id
    assert confirm.plain == "Pay 12.50 Liquid $ for Coffee <beans>?\nYour balance: 50.00 Liquid $"
    assert await _payments(engine, invoice) == []  # asking is not paying

    tap = await buyer.tap(confirm, "Confirm payment")
    assert tap.answer_text == "Paid ✅" and not tap.alert
    [done] = tap.edited
    assert done.plain == ("✅ Paid 12.50 Liquid $ for Coffee <beans>.\n"
                          "You received: 🎁 coffee-1\nBalance now: 37.50 Liquid $")
    assert done.buttons == []
    assert await balance(engine, buyer.user.id) == 3750
    assert await balance(engine, seller.user.id) == 1250
    assert (await get_invoice(engine, invoice.public_id)).status == "paid"
    [payment] = await _payments(engine, invoice)
    assert payment["payer_id"] == buyer.user.id and payment["method"] == "internal"
    assert payment["idempotency_key"] == (
        f"tg:{buyer.id}:{card.message_id}:{invoice.public_id}:{buyer.user.id}")
    inventory = await run_sql(engine, "SELECT item_id FROM inventory WHERE user_id = :u",
                              u=buyer.user.id)
    assert inventory == [{"item_id": "coffee-1"}]

    [listing] = await buyer.send("/inventory")
    assert "🎁 coffee-1" in listing.plain
    [history] = await buyer.send("/history")
    assert "−12.50 invoice payment" in history.plain and "+50.00 adjustment" in history.plain


async def test_double_tap_pays_once(person, engine) -> None:
    seller, buyer = await person(), await person(balance=5000)
    invoice = await _coffee(engine, seller, kind="multi_use")
    [card] = await buyer.send(f"/start pay_{invoice.public_id}")
    [confirm] = (await buyer.tap(card, "from balance")).edited
    data = confirm.button("Confirm payment")["callback_data"]
    first = await buyer.press(confirm, data)
    second = await buyer.press(confirm, data)  # the same button again, from the same message
    assert first.answer_text == "Paid ✅"
    assert second.alert
    assert second.answer_text == "Already paid with this button — you were charged once."
    assert len(await _payments(engine, invoice)) == 1
    assert await balance(engine, buyer.user.id) == 3750


async def test_simultaneous_taps_pay_once(person, engine) -> None:
    seller, buyer = await person(), await person(balance=5000)
    invoice = await _coffee(engine, seller, kind="multi_use")
    [card] = await buyer.send(f"/start pay_{invoice.public_id}")
    [confirm] = (await buyer.tap(card, "from balance")).edited
    taps = await asyncio.gather(*(buyer.tap(confirm, "Confirm payment") for _ in range(3)))
    assert sorted(t.alert for t in taps) == [False, True, True]
    assert len(await _payments(engine, invoice)) == 1
    assert await balance(engine, buyer.user.id) == 3750


async def test_a_new_card_is_a_new_purchase_of_a_multi_use_invoice(person, engine) -> None:
    seller, buyer = await person(), await person(balance=5000)
    invoice = await _coffee(engine, seller, kind="multi_use")
    for _ in range(2):
        [card] = await buyer.send(f"/start pay_{invoice.public_id}")
        [confirm] = (await buyer.tap(card, "from balance")).edited
        assert (await buyer.tap(confirm, "Confirm payment")).answer_text == "Paid ✅"
    assert len(await _payments(engine, invoice)) == 2
    assert await balance(engine, buyer.user.id) == 2500


async def test_insufficient_balance_tells_how_to_top_up(person, engine) -> None:
    seller, buyer = await person(), await person(balance=300)
    invoice = await _coffee(engine, seller)
    [card] = await buyer.send(f"/start pay_{invoice.public_id}")
    tap = await buyer.tap(card, "from balance")
    [short] = tap.edited
    assert "Not enough money for Coffee <beans>: it is 12.50 Liquid $, your balance is " \
           "3.00 Liquid $" in short.plain
    assert f"DEP-{buyer.user.deposit_code}" in short.plain and TON_WALLET in short.plain
    assert short.button_texts == ["➕ How to top up", "← Back"]
    [instructions] = (await buyer.tap(short, "How to top up")).sent
    assert f"DEP-{buyer.user.deposit_code}" in instructions.plain
    assert instructions.photo == qr_png(f"ton://transfer/{TON_WALLET}?text=DEP-"
                                        f"{buyer.user.deposit_code}")
    [card_again] = (await buyer.tap(short, "Back")).edited
    assert "Pay 12.50 Liquid $ from balance" in card_again.button_texts[0]
    assert await _payments(engine, invoice) == []


async def test_money_gone_between_confirmation_and_tap(person, engine) -> None:
    seller, buyer = await person(), await person(balance=2000)
    invoice = await _coffee(engine, seller)
    [card] = await buyer.send(f"/start pay_{invoice.public_id}")
    [confirm] = (await buyer.tap(card, "from balance")).edited
    await adjust_balance(engine, buyer.user.id, -1000, "LIQ", reason="spent elsewhere")
    tap = await buyer.tap(confirm, "Confirm payment")
    assert tap.alert
    assert tap.answer_text == ("Not enough money: the invoice is 12.50 Liquid $, your balance "
                               "is 10.00 Liquid $. Top up with /balance.")
    assert tap.edited == []
    assert await _payments(engine, invoice) == []
    assert await balance(engine, buyer.user.id) == 1000


async def test_paying_your_own_invoice(person, engine) -> None:
    seller = await person(balance=5000)
    invoice = await _coffee(engine, seller)
    [card] = await seller.send(f"/start pay_{invoice.public_id}")
    assert "This is your invoice" in card.plain
    # No pay buttons: the seller's own card has the seller's actions instead.
    assert card.button_texts == ["💵 Record payment", "📨 Send to client", "🚫 Void",
                                 "🗑 Write off"]
    for action in ("ask", "confirm", "ton"):
        tap = await seller.press(card, f"pay:{action}:{invoice.public_id}")
        assert tap.alert and tap.answer_text == "You cannot pay your own invoice."
    assert await _payments(engine, invoice) == []
    assert await balance(engine, seller.user.id) == 5000


@pytest.mark.parametrize("arg", ["pay_0000000000000", "pay_ZZZ", "pay_", "pay_' OR 1=1 --",
                                 "pay_" + "A" * 60])
async def test_unknown_or_malformed_invoice_ids(person, arg) -> None:
    buyer = await person()
    [reply] = await buyer.send(f"/start {arg}")
    assert reply.plain == "No invoice with this id. Check the link."


async def test_start_without_or_with_a_strange_argument(person) -> None:
    buyer = await person()
    [reply] = await buyer.send("/start")
    assert "sell and get paid in Telegram" in reply.plain
    [reply] = await buyer.send("/start something_else")
    assert reply.plain.startswith("This link is not valid.")


async def test_buttons_of_an_invoice_paid_meanwhile(person, engine) -> None:
    seller, late, early = await person(), await person(balance=5000), await person(balance=5000)
    invoice = await _coffee(engine, seller)
    [card] = await late.send(f"/start pay_{invoice.public_id}")
    [confirm] = (await late.tap(card, "from balance")).edited
    await pay_from_balance(engine, invoice.public_id, early.user.id, "early-bird")
    for data in (f"pay:ask:{invoice.public_id}", f"pay:confirm:{invoice.public_id}",
                 f"pay:ton:{invoice.public_id}"):
        tap = await late.press(confirm, data)
        assert tap.alert and tap.answer_text == "This invoice has already been paid."
        assert tap.edited == [] and tap.sent == []
    assert await balance(engine, late.user.id) == 5000
    assert len(await _payments(engine, invoice)) == 1


async def test_buttons_of_a_cancelled_or_expired_invoice(person, engine) -> None:
    seller, buyer = await person(), await person(balance=5000)
    cancelled = await _coffee(engine, seller)
    expired = await _coffee(engine, seller, expires_in=timedelta(minutes=1))
    cards = {}
    for inv in (cancelled, expired):
        [cards[inv.public_id]] = await buyer.send(f"/start pay_{inv.public_id}")
    await cancel_invoice(engine, cancelled.public_id, seller.user.id)
    await run_sql(engine, "UPDATE invoices SET expires_at = now() - interval '1 second' "
                          "WHERE id = :id", id=expired.id)
    for inv, says in ((cancelled, "cancelled by the seller"), (expired, "has expired")):
        for action in ("ask", "confirm"):
            tap = await buyer.press(cards[inv.public_id], f"pay:{action}:{inv.public_id}")
            assert tap.alert and says in (tap.answer_text or "")
    assert await balance(engine, buyer.user.id) == 5000
    [card] = await buyer.send(f"/start pay_{expired.public_id}")
    assert "Status: ⌛ expired" in card.plain and card.buttons == []


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ("pay:confirm:NOT-AN-ID", "No invoice with this id. Check the link."),
        ("pay:explode:0000000000000", "This button is outdated. Open the invoice again."),
        ("pay:confirm", "This button is outdated. Open the invoice again."),
        ("cxl:ask:0000000000000", "No invoice with this id. Check the link."),
        ("invs:not-a-number", "This button is outdated. Open the invoice again."),
        ("form:kind:one_time", "This button is outdated. Open the invoice again."),
        ("whatever", "This button is outdated. Open the invoice again."),
    ],
)
async def test_stale_or_forged_callback_data(person, engine, data, says) -> None:
    buyer = await person(balance=5000)
    [card] = await buyer.send("/start")
    tap = await buyer.press(card, data)
    assert tap.alert and tap.answer_text == says
    assert tap.edited == [] and tap.sent == []
    assert await balance(engine, buyer.user.id) == 5000


async def test_pay_with_ton(person, engine) -> None:
    seller, buyer = await person(), await person()
    invoice = await _coffee(engine, seller)
    [card] = await buyer.send(f"/start pay_{invoice.public_id}")
    tap = await buyer.tap(card, "Pay with TON")
    [ton] = tap.sent
    # The comment names this buyer too: a transfer carrying it gives them the item at once.
    payer = await tag_for_user(engine, invoice.public_id, buyer.user.id)  # the same tag again
    comment = f"INV-{invoice.public_id}-{payer.tag}"
    link = f"ton://transfer/{TON_WALLET}?amount=2500000000&text={comment}"
    assert "Pay 2.5 TON for Coffee <beans>" in ton.plain
    assert f"To: {TON_WALLET}" in ton.plain
    assert f"Comment (required): {comment}\n" in ton.plain
    assert link in ton.plain
    assert ton.photo == qr_png(link)
    assert ton.button("Open in wallet")["url"] == (
        f"https://app.tonkeeper.com/transfer/{TON_WALLET}?amount=2500000000&text={comment}")
    assert await _payments(engine, invoice) == []
    # Another buyer gets a comment of their own.
    other = await person()
    [card] = await other.send(f"/start pay_{invoice.public_id}")
    [theirs] = (await other.tap(card, "Pay with TON")).sent
    assert comment not in theirs.plain and f"INV-{invoice.public_id}-" in theirs.plain


async def test_without_ton_or_a_public_page(person, engine, cfg) -> None:
    cfg.ton_destination = None
    cfg.public_url = "http://127.0.0.1:8080"
    seller, buyer = await person(), await person()
    invoice = await _coffee(engine, seller)
    [card] = await buyer.send(f"/start pay_{invoice.public_id}")
    # No TON button, and no Web App button (Telegram refuses non-https ones): a link instead.
    assert card.button_texts == ["💳 Pay 12.50 Liquid $ from balance", "⭐ Pay with Stars"]
    assert f"Pay page: http://127.0.0.1:8080/pay/{invoice.public_id}" in card.plain
    tap = await buyer.press(card, f"pay:ton:{invoice.public_id}")
    assert tap.alert and tap.answer_text == "TON payments are not available for this invoice."
    [reply] = await buyer.send("/balance")
    assert reply.photo is None
    assert f"Your personal comment is DEP-{buyer.user.deposit_code}" in reply.plain


async def test_a_claim_link_also_hands_over_what_the_guest_overpaid(person, engine) -> None:
    """A guest sent twice the price with a bare INV-<id>: the operator hands them the claim
    link; opening it gives the item and puts the excess on their balance, once."""
    seller, guest = await person(), await person()
    invoice = await _coffee(engine, seller)  # 12.50 Liquid $ = 2.5 TON
    chain = SyntheticChain()
    transfer = chain.next(2 * (invoice.ton_amount or 0), invoice.comment,
                          invoice=invoice.public_id)
    address = f"0:{secrets.token_hex(32)}"  # an account of its own: a chain from its start
    await start_cursor(engine, address, 0, "0" * 64)
    done = await record_transfer(engine, replace(transfer, address=address), currency="LIQ",
                                 ton_rate=Decimal("5.00"))
    assert done.outcome == "excess" and done.claim_token
    [reply] = await guest.send(f"/start claim_{done.claim_token}")
    assert reply.plain == ("🎁 It is yours now:\n🎁 coffee-1\n"
                           "💵 12.50 Liquid $ you paid over the price is on your balance.")
    assert await balance(engine, guest.user.id) == 1250
    [again] = await guest.send(f"/start claim_{done.claim_token}")
    assert "over the price" not in again.plain and await balance(engine, guest.user.id) == 1250


async def test_guest_purchase_is_claimed_once(person, engine) -> None:
    seller, claimer, other = await person(), await person(), await person()
    invoice = await _coffee(engine, seller)
    paid = await settle_external_payment(engine, invoice.public_id, method="ton",
                                         reference=f"tx-{invoice.public_id}")
    assert paid.claim_token
    [reply] = await claimer.send(f"/start claim_{paid.claim_token}")
    assert reply.plain == "🎁 It is yours now:\n🎁 coffee-1"
    [again] = await claimer.send(f"/start claim_{paid.claim_token}")  # same person: fine
    assert again.plain == reply.plain
    [refused] = await other.send(f"/start claim_{paid.claim_token}")
    assert refused.plain == "This item was already claimed by someone else."
    [bad] = await other.send("/start claim_nope")
    assert bad.plain == "This claim link is not valid."
    items = await run_sql(engine, "SELECT user_id FROM inventory WHERE item_id = 'coffee-1' "
                                  "AND grant_id = :g", g=paid.grant_id)
    assert items == [{"user_id": claimer.user.id}]


async def test_a_guest_proves_their_telegram_account_through_the_link_once(
        person, engine) -> None:
    from tests.web.test_guest_claims import Chain

    seller, guest, other = await person(), await person(), await person()
    invoice = await _coffee(engine, seller)
    # The pay page gave a guest browser its tag; the guest paid with it.
    payer = await tag_for_guest(engine, invoice.public_id, "browser-key-0123456789abcdef")
    assert await Chain(engine).send(payer.comment) == "paid"
    link = f"bind_{invoice.public_id}_{payer.tag}_{payer.proof}"
    # Knowing the tag (it is public on chain) is not enough: the proof must match.
    for forged in (f"bind_{invoice.public_id}_{payer.tag}_{'A' * 20}",
                   f"bind_{invoice.public_id}_ZZZZZ_{payer.proof}", "bind_nope"):
        [bad] = await other.send(f"/start {forged}")
        assert bad.plain in ("This claim link is not valid.",
                             "This payment reference is not known for this invoice."), bad.plain
    [reply] = await guest.send(f"/start {link}")
    assert reply.plain == "🎁 It is yours now:\n🎁 coffee-1"
    [again] = await guest.send(f"/start {link}")  # the same account again: fine, no change
    assert again.plain == reply.plain
    [refused] = await other.send(f"/start {link}")  # a second account
    assert refused.plain == "This purchase is already linked to another Telegram account."
    items = await run_sql(engine, "SELECT user_id FROM grants WHERE invoice_id = :i",
                          i=invoice.id)
    assert items == [{"user_id": guest.user.id}]


async def test_a_guest_links_telegram_before_paying(person, engine) -> None:
    seller, guest = await person(), await person()
    invoice = await _coffee(engine, seller)
    payer = await tag_for_guest(engine, invoice.public_id, "browser-key-fedcba9876543210")
    [reply] = await guest.send(f"/start bind_{invoice.public_id}_{payer.tag}_{payer.proof}")
    assert f"INV-{invoice.public_id}-{payer.tag}" in reply.plain
    assert "comes to you here" in reply.plain


async def test_balance_shows_deposit_instructions(person, engine) -> None:
    buyer = await person(balance=1234)
    await credit_deposit(engine, buyer.user.id, 3_000_000_000, "TON", reference="dep-ton-1")
    [reply] = await buyer.send("/balance")
    comment = f"DEP-{buyer.user.deposit_code}"
    assert "Balance: 12.34 Liquid $" in reply.plain and "Also: 3 TON" in reply.plain
    assert f"send TON to {TON_WALLET} with the comment {comment}" in reply.plain
    assert "1 TON = 5.00 Liquid $" in reply.plain
    assert reply.photo == qr_png(f"ton://transfer/{TON_WALLET}?text={comment}")
    assert reply.button("Open in wallet")["url"] == (
        f"https://app.tonkeeper.com/transfer/{TON_WALLET}?text={comment}")


async def test_empty_inventory_and_history(person) -> None:
    buyer = await person()
    assert [m.plain for m in await buyer.send("/inventory")] == ["Nothing here yet."]
    assert [m.plain for m in await buyer.send("/history")] == ["No movements yet."]


async def test_api_token(person, engine) -> None:
    seller = await person()
    [menu] = await seller.send("/api")  # the list; more in tests/bot/test_api_tokens.py
    [reply] = (await seller.tap(menu, "New token")).sent
    token = reply.plain.split("\n")[1]
    assert token.startswith("pbk_") and "Authorization: Bearer" in reply.plain
    rows = await run_sql(engine, "SELECT hint FROM api_tokens WHERE user_id = :u",
                         u=seller.user.id)
    assert rows == [{"hint": token[:8]}]


async def test_russian_buyer(person, engine) -> None:
    seller, buyer = await person(), await person(balance=100, language="ru-RU")
    invoice = await _coffee(engine, seller)
    [card] = await buyer.send(f"/start pay_{invoice.public_id}")
    assert "Сумма: 12.50 Liquid $" in card.plain and "Статус: ⏳ ожидает оплаты" in card.plain
    [short] = (await buyer.tap(card, "с баланса")).edited
    assert "Не хватает средств" in short.plain
    await adjust_balance(engine, buyer.user.id, 5000, "LIQ", reason="gift")
    tap = await buyer.press(card, f"pay:confirm:{invoice.public_id}")
    assert tap.answer_text == "Оплачено ✅"
    tap = await buyer.press(card, "pay:confirm:0000000000000")
    assert tap.answer_text == "Счёта с таким номером нет. Проверьте ссылку."


async def test_every_handler_registers_the_sender(person, engine) -> None:
    buyer = await person(username="old_name")
    await buyer.send("/history")  # remembered by this process as (id, old_name, en)
    buyer.username = "new_name"
    buyer.language = "ru"
    await buyer.send("/history")
    [row] = await run_sql(engine, "SELECT username, language FROM users WHERE id = :id",
                          id=buyer.user.id)
    assert row == {"username": "new_name", "language": "ru"}


async def test_unknown_text(person) -> None:
    buyer = await person()
    [reply] = await buyer.send("hello?")
    assert reply.plain == "I did not understand that. /help lists what I can do."


async def test_card_snapshots(person, engine, bot, bot_api) -> None:
    """With LEDGER_INVOICE_CACHE_SECONDS, a card may reuse a recent read; every button still
    reads the invoice, and what happens in the bot drops the cached read at once."""
    settings = bot_settings(bot_api.url, bot_api.token)
    dp = create_dispatcher(Ledger(engine, invoice_cache_seconds=60), settings)
    seller, first, second = await person(), await person(balance=5000), await person(balance=5000)
    a, b = (TgClient(bot_api, dp, bot, p.user) for p in (first, second))
    invoice = await _coffee(engine, seller)
    [card] = await a.send(f"/start pay_{invoice.public_id}")
    # The first view by a buyer is recorded (viewed_at), which drops the cached read once.
    await a.send(f"/start pay_{invoice.public_id}")

    await pay_from_balance(engine, invoice.public_id, first.user.id, "outside-the-bot")
    [stale] = await b.send(f"/start pay_{invoice.public_id}")  # within a minute: the snapshot
    assert "waiting for payment" in stale.plain
    tap = await b.tap(stale, "from balance")  # ...but the button reads the invoice again
    assert tap.alert and tap.answer_text == "This invoice has already been paid."
    assert await balance(engine, second.user.id) == 5000

    other = await _coffee(engine, seller, kind="multi_use")
    [card] = await a.send(f"/start pay_{other.public_id}")
    [confirm] = (await a.tap(card, "from balance")).edited
    await a.tap(confirm, "Confirm payment")
    cancel = TgClient(bot_api, dp, bot, seller.user)
    [listing] = await cancel.send("/invoices")
    [ask] = (await cancel.tap(listing, f"Cancel {other.number}")).edited
    await cancel.tap(ask, "Yes, cancel")
    [fresh] = await b.send(f"/start pay_{other.public_id}")  # cancelled here: no snapshot
    assert "cancelled" in fresh.plain and fresh.buttons == []


async def test_payment_outcome_is_told_even_if_the_message_is_gone(person, engine,
                                                                   bot_api) -> None:
    seller, buyer = await person(), await person(balance=5000)
    invoice = await _coffee(engine, seller)
    [card] = await buyer.send(f"/start pay_{invoice.public_id}")
    [confirm] = (await buyer.tap(card, "from balance")).edited
    bot_api.fail(400, "Bad Request: message to edit not found", method="editMessageText")
    tap = await buyer.tap(confirm, "Confirm payment")
    assert tap.answer_text == "Paid ✅"
    [told] = tap.sent
    assert told.plain.startswith("✅ Paid 12.50 Liquid $ for Coffee <beans>.")
    assert len(await _payments(engine, invoice)) == 1


async def test_api_token_limit(person, engine) -> None:
    seller = await person()
    for _ in range(MAX_ACTIVE_TOKENS):
        await issue_token(engine, seller.user.id)
    [reply] = await seller.send("/api")
    assert "revoke one below to get a new one" in reply.plain  # not a dead end
    assert "➕ New token" not in reply.button_texts


async def test_a_lost_answer_is_asked_again_with_the_same_button(person, engine,
                                                                 monkeypatch) -> None:
    """The payment commits but its answer is lost (the connection dropped after the commit):
    the buyer is told to tap again, the confirmation keeps its buttons, and the next tap on
    them replays the first payment instead of making a second one."""
    import asyncpg

    from ledger.batcher import PaymentBatcher

    seller, buyer = await person(), await person(balance=5000)
    invoice = await _coffee(engine, seller, kind="multi_use")  # only the key stops a repeat
    [card] = await buyer.send(f"/start pay_{invoice.public_id}")
    [confirm] = (await buyer.tap(card, "from balance")).edited
    real_pay = PaymentBatcher.pay

    async def commit_then_lose_the_answer(*args, **kwargs):  # type: ignore[no-untyped-def]
        await real_pay(*args, **kwargs)
        raise asyncpg.exceptions.ConnectionDoesNotExistError(
            "connection was closed in the middle of operation")

    monkeypatch.setattr(PaymentBatcher, "pay", commit_then_lose_the_answer)
    tap = await buyer.tap(confirm, "Confirm payment")
    assert tap.alert
    assert tap.answer_text == ("We could not confirm the payment yet. Tap Confirm again: "
                               "you will not be charged twice.")
    assert tap.edited == []  # the confirmation (and its key) stays
    assert len(await _payments(engine, invoice)) == 1

    monkeypatch.setattr(PaymentBatcher, "pay", real_pay)
    tap = await buyer.tap(confirm, "Confirm payment")
    assert tap.answer_text == "Already paid with this button — you were charged once."
    [done] = tap.edited
    assert done.plain.startswith("✅ Paid 12.50 Liquid $ for Coffee <beans>.")
    assert len(await _payments(engine, invoice)) == 1
    assert await balance(engine, buyer.user.id) == 5000 - 1250


async def test_a_partly_paid_invoice_asks_only_for_the_rest(person, engine) -> None:
    """The seller recorded a bank transfer for part of it: the balance pays the rest, and a
    TON payment is asked for the same share of the locked quote."""
    seller, buyer = await person(), await person(balance=1000)
    invoice = await _coffee(engine, seller)  # 12.50 = 2.5 TON
    await Ledger(engine).record_manual_payment(
        invoice.public_id, seller_id=seller.user.id, amount=500,
        received_on=datetime.now(UTC).date(), reference="WIRE-1")
    [card] = await buyer.send(f"/start pay_{invoice.public_id}")
    [ton] = (await buyer.tap(card, "Pay with TON")).sent
    assert "Pay 1.5 TON for Coffee <beans>" in ton.plain
    assert "?amount=1500000000&" in ton.plain

    [confirm] = (await buyer.tap(card, "from balance")).edited
    assert confirm.plain.startswith("Pay 7.50 Liquid $ for Coffee <beans>?")  # 10.00 is enough
    [done] = (await buyer.tap(confirm, "Confirm payment")).edited
    assert done.plain.startswith("✅ Paid 7.50 Liquid $ for Coffee <beans>.")
    assert await balance(engine, buyer.user.id) == 250
    assert (await get_invoice(engine, invoice.public_id)).status == "paid"
