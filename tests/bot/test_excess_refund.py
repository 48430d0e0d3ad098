"""The seller's "refund the difference": an overpayment still held goes back to the wallet that
sent it, by a payout — after a confirmation, once."""

from __future__ import annotations

from bot.telegram.excess_refunds import ExcessCb
from ledger.core import Ledger
from ledger.invoices import create_invoice
from tests.bot.botapi import BotApiStandIn
from tests.conftest import run_sql
from tests.test_jettons_ledger import Shop


async def test_the_seller_sends_the_overpayment_back(person, ledger: Ledger, engine,
                                                     bot_api: BotApiStandIn) -> None:
    seller = await person(username="coffee_shop")
    invoice = await create_invoice(engine, seller_id=seller.user.id, title="Beans", amount=1250)
    await Shop(engine).receive(13_000_000, f"INV-{invoice.public_id}",
                               invoice=invoice.public_id)  # 0.50 USDT too much

    [card] = await seller.send(f"/start pay_{invoice.public_id}")
    assert "↩️ Refund the overpayment (0.5 USDT)" in card.button_texts
    [ask] = (await seller.tap(card, "Refund the overpayment")).sent
    assert ask.plain.startswith("Send 0.5 USDT back to the wallet that paid it?")
    assert await run_sql(engine, "SELECT count(*) AS n FROM payouts WHERE transfer_id IN"
                                 " (SELECT id FROM ton_transfers WHERE invoice_id = :i)",
                         i=invoice.id) == [{"n": 0}]  # nothing before the confirmation

    [done] = (await seller.tap(ask, "Yes, send it back")).edited
    assert done.plain.startswith("↩️ 0.5 USDT is on its way back to the payer's wallet")
    [payout] = await run_sql(engine, "SELECT kind, asset, amount, status FROM payouts WHERE"
                                     " transfer_id IN (SELECT id FROM ton_transfers WHERE"
                                     " invoice_id = :i)", i=invoice.id)
    assert payout == {"kind": "refund", "asset": "USDT", "amount": 500_000, "status": "queued"}
    # the old confirmation again: nothing is sent twice
    again = await seller.press(ask, ExcessCb(action="do", invoice=invoice.public_id).pack())
    assert again.alert and again.answer_text == "Nothing of this invoice is held any more."
    [card] = await seller.send(f"/start pay_{invoice.public_id}")
    assert not [t for t in card.button_texts if "overpayment" in t]
