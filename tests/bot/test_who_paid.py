"""The seller is told who paid: a name for a buyer without a @username (never "#2005"), the
contact a guest left, in the notice and in /invoices."""

from __future__ import annotations

import secrets
from dataclasses import replace
from decimal import Decimal

import pytest
from aiogram import Bot

from bot.telegram import Notifier
from bot.telegram.notifier import Backoff
from ledger.core import Ledger
from ledger.invoices import create_invoice
from ledger.payers import set_contact, tag_for_guest
from ledger.payments import pay_from_balance, settle_external_payment
from ledger.transfers import record_transfer, start_cursor
from tests.bot.client import TgClient
from tests.conftest import legacy_contact
from tests.watchers.conftest import RATE
from tests.watchers.test_ledger_transfers import SyntheticChain


@pytest.fixture
async def notifier(engine, bot: Bot) -> Notifier:  # type: ignore[no-untyped-def]
    n = Notifier(Ledger(engine), bot, backoff=Backoff(base=30.0))
    await n.deliver_due()  # events left by other tests are not this test's business
    return n


async def _coffee(engine, seller):  # type: ignore[no-untyped-def]
    return await create_invoice(engine, seller_id=seller.user.id, title="Coffee beans",
                                amount=1250, ton_rate=Decimal(5), payload={"item_id": "c-1"})


async def test_a_buyer_without_username_is_named(make_user, bot_api, dp, bot, engine,
                                                 notifier) -> None:
    seller = TgClient(bot_api, dp, bot, await make_user())
    buyer = await make_user(balance=5000, first_name="Alice", last_name="Smith")
    invoice = await _coffee(engine, seller)
    await pay_from_balance(engine, invoice.public_id, buyer.id, "k-named")
    await notifier.deliver_due()
    [told] = bot_api.messages(seller.id)
    assert told.plain == (f"💰 Paid: Coffee beans ({invoice.number}) — 12.50 Liquid $\n"
                          "By Alice Smith, from balance.")
    assert f'<a href="tg://user?id={buyer.telegram_id}">Alice Smith</a>' in told.text

    [listing] = await seller.send("/invoices")
    assert f"{invoice.number} · Coffee beans · 12.50 Liquid $ · ✅ paid · by Alice Smith" in (
        listing.plain)


async def test_a_guest_is_named_by_the_contact_they_left(make_user, bot_api, dp, bot, engine,
                                                         notifier) -> None:
    seller = TgClient(bot_api, dp, bot, await make_user(language="ru"), language="ru")
    invoice = await _coffee(engine, seller)
    await legacy_contact(engine, invoice.public_id, email="guest@example.com")
    await settle_external_payment(engine, invoice.public_id, method="ton",
                                  reference=f"tx-{invoice.public_id}")
    await notifier.deliver_due()
    [told] = bot_api.messages(seller.id)
    assert "Плательщик: гость (guest@example.com), переводом TON." in told.plain
    [listing] = await seller.send("/invoices")
    assert "✅ оплачен · оплатил гость (guest@example.com)" in listing.plain


async def test_a_guest_nobody_knows_and_an_unpaid_invoice(make_user, bot_api, dp, bot, engine,
                                                          notifier) -> None:
    seller = TgClient(bot_api, dp, bot, await make_user())
    paid, unpaid = await _coffee(engine, seller), await _coffee(engine, seller)
    # Two guests left contacts: nobody can tell whose money it was, so no name is guessed.
    await legacy_contact(engine, paid.public_id, email="one@example.com")
    await legacy_contact(engine, paid.public_id, telegram="@someone_else")
    await settle_external_payment(engine, paid.public_id, method="ton",
                                  reference=f"tx-{paid.public_id}")
    await notifier.deliver_due()
    [told] = bot_api.messages(seller.id)
    assert "By a guest without a Telegram account, by TON transfer." in told.plain
    [listing] = await seller.send("/invoices")
    lines = listing.plain.split("\n")
    [paid_line] = [line for line in lines if paid.number in line]
    [unpaid_line] = [line for line in lines if unpaid.number in line]
    assert paid_line.endswith("· by a guest without a Telegram account")
    assert " by " not in unpaid_line


async def test_a_guest_is_named_by_the_contact_left_with_their_tag(make_user, bot_api, dp, bot,
                                                                   engine, notifier) -> None:
    """Two guests opened the page and left contacts; the transfer carries the second one's
    tag: the seller is told that guest's contact, not the other's."""
    seller = TgClient(bot_api, dp, bot, await make_user())
    invoice = await _coffee(engine, seller)
    first = await tag_for_guest(engine, invoice.public_id, "g" * 24)
    second = await tag_for_guest(engine, invoice.public_id, "h" * 24)
    await set_contact(engine, invoice.public_id, first.tag, "g" * 24, "first@example.com")
    await set_contact(engine, invoice.public_id, second.tag, "h" * 24, "@second_guest")
    chain = SyntheticChain()
    transfer = chain.next(invoice.ton_amount or 0, second.comment, invoice=invoice.public_id)
    address = f"0:{secrets.token_hex(32)}"  # an account of its own: a chain from its start
    await start_cursor(engine, address, 0, "0" * 64)
    await record_transfer(engine, replace(transfer, address=address, payer_tag=second.tag),
                          currency="LIQ", ton_rate=RATE)
    await notifier.deliver_due()
    [told] = bot_api.messages(seller.id)
    assert "By a guest (@second_guest), by TON transfer." in told.plain
