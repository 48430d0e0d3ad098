"""What a buyer reads about their own money: /inventory and /history say what was bought and
from whom (never "payment #1"), in English and Russian; "Liquid $" is explained where a buyer
first meets it; the Telegram name people go by is kept current."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ledger.invoices import create_invoice
from ledger.payments import claim_grant, pay_from_balance, settle_external_payment
from tests.bot.client import TgClient
from tests.conftest import run_sql


class NamedClient(TgClient):
    """A Telegram person whose updates carry a last name too (TgClient sends a first name)."""

    last_name: str | None = None

    def _from(self) -> dict[str, Any]:
        sender = super()._from()
        if self.last_name:
            sender["last_name"] = self.last_name
        return sender


async def _client(make_user, bot_api, dp, bot, *, balance: int = 0,  # type: ignore[no-untyped-def]
                  username: str | None = None, first: str = "Test", last: str | None = None,
                  language: str = "en") -> NamedClient:
    user = await make_user(balance=balance, username=username, language=language,
                           first_name=first, last_name=last)
    client = NamedClient(bot_api, dp, bot, user, language=language, username=username,
                         first_name=first)
    client.last_name = last
    return client


async def _bought(engine, seller, buyer, title: str = "Coffee beans"):  # type: ignore[no-untyped-def]
    invoice = await create_invoice(engine, seller_id=seller.user.id, title=title, amount=1250,
                                   ton_rate=Decimal(5), payload={"item_id": "coffee-1"})
    await pay_from_balance(engine, invoice.public_id, buyer.user.id, f"k-{invoice.public_id}")
    return invoice


def _today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


async def test_inventory_says_what_was_bought_and_from_whom(make_user, bot_api, dp, bot,
                                                            engine) -> None:
    seller = await _client(make_user, bot_api, dp, bot, username="bean_shop")
    buyer = await _client(make_user, bot_api, dp, bot, balance=5000)
    invoice = await _bought(engine, seller, buyer)
    [listing] = await buyer.send("/inventory")
    assert listing.plain == (
        "🎒 Your purchases:\n"
        f"🎁 coffee-1 — Coffee beans · {invoice.number} · 12.50 Liquid $ · @bean_shop"
        f" · {_today()}")
    assert "payment #" not in listing.plain


async def test_history_names_the_invoice_and_the_other_party(make_user, bot_api, dp, bot,
                                                             engine) -> None:
    seller = await _client(make_user, bot_api, dp, bot, username="bean_shop")
    # No @username: the seller's history names the buyer by their Telegram name.
    buyer = await _client(make_user, bot_api, dp, bot, balance=5000, first="Alice",
                          last="Smith")
    invoice = await _bought(engine, seller, buyer)
    [mine] = await buyer.send("/history")
    assert (f"−12.50 invoice payment: Coffee beans · {invoice.number} · @bean_shop"
            in mine.plain)
    assert "+50.00 adjustment · test funding" in mine.plain
    [theirs] = await seller.send("/history")
    assert f"+12.50 invoice payment: Coffee beans · {invoice.number} · Alice Smith" in (
        theirs.plain)
    assert "#" + str(buyer.id) not in theirs.plain


async def test_a_guest_purchase_until_and_after_it_is_claimed(make_user, bot_api, dp, bot,
                                                              engine) -> None:
    seller = await _client(make_user, bot_api, dp, bot, username="bean_shop")
    invoice = await create_invoice(engine, seller_id=seller.user.id, title="Coffee beans",
                                   amount=1250, ton_rate=Decimal(5),
                                   payload={"item_id": "coffee-1"})
    paid = await settle_external_payment(engine, invoice.public_id, method="ton",
                                         reference=f"tx-{invoice.public_id}")
    [before] = await seller.send("/history")
    assert f"+12.50 payment received: Coffee beans · {invoice.number} · guest" in before.plain

    guest = await _client(make_user, bot_api, dp, bot, first="Boris")
    assert paid.claim_token is not None
    await claim_grant(engine, paid.claim_token, guest.user.id)
    [after] = await seller.send("/history")
    assert f"· {invoice.number} · Boris" in after.plain
    [listing] = await guest.send("/inventory")
    assert f"🎁 coffee-1 — Coffee beans · {invoice.number} · 12.50 Liquid $ · @bean_shop" in (
        listing.plain)


async def test_russian_inventory_and_history(make_user, bot_api, dp, bot, engine) -> None:
    seller = await _client(make_user, bot_api, dp, bot, username="bean_shop")
    buyer = await _client(make_user, bot_api, dp, bot, balance=5000, language="ru")
    invoice = await _bought(engine, seller, buyer, title="Кофе в зёрнах")
    [listing] = await buyer.send("/inventory")
    assert listing.plain == (
        "🎒 Ваши покупки:\n"
        f"🎁 coffee-1 — Кофе в зёрнах · {invoice.number} · 12.50 Liquid $ · @bean_shop"
        f" · {_today()}")
    [history] = await buyer.send("/history")
    assert f"−12.50 оплата счёта: Кофе в зёрнах · {invoice.number} · @bean_shop" in (
        history.plain)


async def test_titles_and_names_are_shown_not_obeyed(make_user, bot_api, dp, bot,
                                                     engine) -> None:
    seller = await _client(make_user, bot_api, dp, bot, first="<b>Shop</b>")
    buyer = await _client(make_user, bot_api, dp, bot, balance=5000)
    invoice = await _bought(engine, seller, buyer, title="Beans <i>x</i>")
    [listing] = await buyer.send("/inventory")
    assert f"Beans <i>x</i> · {invoice.number} · 12.50 Liquid $ · <b>Shop</b>" in listing.plain


async def test_liquid_dollars_are_explained_where_a_buyer_meets_them(person) -> None:
    buyer, russian = await person(), await person(language="ru")
    [hello] = await buyer.send("/start")
    assert "Liquid $ is your balance here" in hello.plain and "/balance shows" in hello.plain
    [privet] = await russian.send("/start")
    assert "Liquid $ — ваш баланс здесь" in privet.plain and "/balance покажет" in privet.plain
    [balance] = await buyer.send("/balance")
    assert "Liquid $ is paybot's own money" in balance.plain
    assert "with the comment DEP-" in balance.plain  # ... and how to top it up, still whole
    [balans] = await russian.send("/balance")
    assert "Liquid $ — внутренние деньги paybot" in balans.plain
    assert "с комментарием DEP-" in balans.plain


async def test_the_name_people_go_by_is_kept_current(make_user, bot_api, dp, bot,
                                                     engine) -> None:
    user = await make_user()
    client = NamedClient(bot_api, dp, bot, user, first_name="Alice")
    client.last_name = "Smith"

    async def stored() -> dict[str, object]:
        [row] = await run_sql(engine, "SELECT first_name, last_name FROM users WHERE id = :id",
                              id=user.id)
        return row

    await client.send("/history")
    assert await stored() == {"first_name": "Alice", "last_name": "Smith"}
    client.first_name, client.last_name = "Alicia", None  # renamed; last name removed
    await client.send("/history")
    assert await stored() == {"first_name": "Alicia", "last_name": None}
    client.first_name = "\u202eecilA"  # a bidi override is not kept
    await client.send("/history")
    assert await stored() == {"first_name": "ecilA", "last_name": None}
