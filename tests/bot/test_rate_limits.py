"""Per-user limits in the bot: /invoice, paying and confirming (TELEGRAM_RATE_PER_USER)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from bot.settings import TelegramSettings
from bot.telegram import create_dispatcher
from ledger.core import Ledger
from ledger.invoices import create_invoice
from tests.bot.client import TgClient
from tests.bot.conftest import bot_settings

SLOW_DOWN = "Too many requests"


def limited_dispatcher(engine, bot_api, rate: str):  # type: ignore[no-untyped-def]
    settings = bot_settings(bot_api.url, bot_api.token)
    settings.telegram = TelegramSettings(**{**settings.telegram.model_dump(),
                                            "rate_per_user": rate})
    return create_dispatcher(Ledger(engine), settings)


async def test_invoice_command_is_limited_per_user(engine, bot_api, bot, make_user) -> None:
    dp = limited_dispatcher(engine, bot_api, "1/h:2")
    seller = TgClient(bot_api, dp, bot, await make_user(username="tea_shop"), language="en",
                      username="tea_shop")
    other = TgClient(bot_api, dp, bot, await make_user(username="cafe"), language="en",
                     username="cafe")
    for _ in range(2):
        [reply] = await seller.send("/invoice 1.00 Tea")
        assert SLOW_DOWN not in reply.plain
    [refused] = await seller.send("/invoice 1.00 Tea")
    assert SLOW_DOWN in refused.plain
    [reply] = await other.send("/invoice 1.00 Tea")  # someone else is not affected
    assert SLOW_DOWN not in reply.plain
    # Reading is not limited.
    assert all(SLOW_DOWN not in m.plain for m in await seller.send("/invoices"))


async def test_pay_taps_are_limited_per_user(engine, bot_api, bot, make_user) -> None:
    dp = limited_dispatcher(engine, bot_api, "1/h:1")
    seller = await make_user(username="bean_shop")
    buyer = TgClient(bot_api, dp, bot, await make_user(balance=5000), language="en")
    invoice = await create_invoice(engine, seller_id=seller.id, title="Beans", amount=100,
                                   ton_rate=Decimal("5.00"), expires_in=timedelta(days=1))
    [card] = await buyer.send(f"/start pay_{invoice.public_id}")
    first = await buyer.tap(card, "from balance")
    assert not first.alert or SLOW_DOWN not in (first.answer_text or "")
    confirm = await buyer.tap(card, "Confirm payment")  # the card now asks to confirm
    assert confirm.alert and SLOW_DOWN in (confirm.answer_text or "")
    assert confirm.sent == [] and confirm.edited == []  # nothing paid, nothing changed
