"""A legal entity pays part of an invoice by bank transfer (recorded by the seller) and the rest
in TON: the watcher asks only for what is still due, in the invoice's locked rate."""

from datetime import UTC, datetime, timedelta

from ledger.core import Ledger
from ledger.invoices import new_invoice
from tests.watchers.conftest import RATE, TON, World
from tests.watchers.test_ledger_transfers import SyntheticChain, settle


async def test_manual_part_then_ton_for_the_rest(world: World) -> None:
    ledger = Ledger(world.engine)
    invoice, _ = await ledger.issue_invoice(new_invoice(
        seller_id=world.seller.id, title="Audit", amount=1000, currency="LIQ", ton_rate=RATE,
        expires_in=timedelta(days=30)))
    assert invoice.ton_amount == 2 * TON  # 10.00 at 5.00 per TON
    await ledger.record_manual_payment(invoice.public_id, seller_id=world.seller.id,
                                       amount=300, received_on=datetime.now(UTC).date(),
                                       reference="WIRE-9")
    chain = SyntheticChain()
    # 7.00 of 10.00 is due: 1.4 TON. Less than that is partial and held ...
    short = await settle(world, chain.next(TON, invoice=invoice.public_id))
    assert short.outcome == "partial"
    # ... and the rest completes it.
    done = await settle(world, chain.next(TON * 4 // 10, invoice=invoice.public_id))
    assert done.outcome == "paid"
    paid = (await ledger.invoice(invoice.public_id)).invoice
    assert (paid.status, paid.amount_paid, paid.amount_due) == ("paid", 1000, 0)
    payments = await ledger.payments_of_invoice(invoice.public_id, world.seller.id)
    assert [(p.method, p.amount) for p in payments] == [("manual", 300), ("ton", 700)]
    assert await world.invariants() == []
