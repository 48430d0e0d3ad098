"""Paying with USDT from the bot: the invoice card's "💵 Pay with USDT" where USDT can pay
(Liquid $ invoices, 1:1), and the wallet links it hands out — the jetton transfer of exactly
what is due with the buyer's own comment (the forward payload the watcher matches)."""

from __future__ import annotations

from decimal import Decimal

from bot.qr import qr_png
from ledger.invoices import create_invoice
from ledger.payers import tag_for_user
from tests.bot.conftest import TON_WALLET
from tests.conftest import run_sql
from watchers.ton_links import (
    friendly_address,
    jetton_transfer_link,
    tonkeeper_jetton_link,
)

USDT_MASTER = "EQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_sDs"  # the default TON_JETTONS


async def _coffee(engine, seller, **kw):  # type: ignore[no-untyped-def]
    args = dict(seller_id=seller.user.id, title="Coffee <beans>", amount=1250,
                ton_rate=Decimal("5.00"), payload={"item_id": "coffee-1"})
    return await create_invoice(engine, **(args | kw))


async def test_pay_with_usdt_sends_the_jetton_links_with_the_buyers_comment(
    person, engine
) -> None:
    seller, buyer = await person(), await person()
    invoice = await _coffee(engine, seller)
    [card] = await buyer.send(f"/start pay_{invoice.public_id}")
    assert "💵 Pay with USDT" in card.button_texts
    [usdt] = (await buyer.tap(card, "Pay with USDT")).sent
    payer = await tag_for_user(engine, invoice.public_id, buyer.user.id)
    comment = f"INV-{invoice.public_id}-{payer.tag}"
    # 12.50 Liquid $ = 12.5 USDT = 12 500 000 micro-USDT, to the shop, in the USDT jetton.
    link = (f"ton://transfer/{TON_WALLET}?jetton={USDT_MASTER}&amount=12500000"
            f"&text={comment}")
    assert "Pay 12.5 USDT for Coffee <beans>" in usdt.plain
    assert f"To: {TON_WALLET}" in usdt.plain
    assert f"Comment (required): {comment}\n" in usdt.plain
    assert link in usdt.plain
    assert usdt.photo == qr_png(link)
    assert usdt.button("Open in wallet")["url"] == (
        f"https://app.tonkeeper.com/transfer/{TON_WALLET}?jetton={USDT_MASTER}"
        f"&amount=12500000&text={comment}")
    assert await run_sql(engine, "SELECT 1 FROM payments WHERE invoice_id = :id",
                         id=invoice.id) == []


async def test_no_usdt_button_for_a_ton_invoice_or_without_a_master(
    person, engine, cfg
) -> None:
    seller, buyer = await person(), await person()
    in_ton = await _coffee(engine, seller, amount=2_500_000_000, currency="TON",
                           ton_rate=None)
    [card] = await buyer.send(f"/start pay_{in_ton.public_id}")
    assert not any("USDT" in text for text in card.button_texts)
    # An old button of a TON invoice (or a forged one) is refused with a sentence.
    tap = await buyer.press(card, f"pay:usdt:{in_ton.public_id}")
    assert tap.answer_text == "USDT payments are not available for this invoice."
    assert tap.sent == []
    cfg.usdt_master = None
    liquid = await _coffee(engine, seller)
    [card] = await buyer.send(f"/start pay_{liquid.public_id}")
    assert not any("USDT" in text for text in card.button_texts)


def test_jetton_links_take_any_address_form_and_escape_the_comment() -> None:
    raw = "0:" + "83dfd552e63729b472fcbcc8c45ebcc6691702558b68ec7527e1ba403a0f31a8"
    master_raw = "0:b113a994b5024a16719f69139328eb759596c38a25f59028b146fecdc3621dfe"
    link = jetton_transfer_link(raw, master_raw, 1, "INV-1 & 2")
    assert link == (f"ton://transfer/{friendly_address(raw)}?jetton={USDT_MASTER}"
                    "&amount=1&text=INV-1%20%26%202")
    assert tonkeeper_jetton_link(raw, master_raw, 1, "x").startswith(
        f"https://app.tonkeeper.com/transfer/{friendly_address(raw)}?jetton={USDT_MASTER}&")
