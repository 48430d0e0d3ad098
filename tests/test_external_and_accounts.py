"""Money from outside: external settlement (watcher, operator), deposits, adjustments, claims."""

import asyncio

import pytest

from ledger.accounts import adjust_balance, balance, credit_deposit, statement
from ledger.errors import (
    ClaimAlreadyUsed,
    ClaimNotFound,
    InsufficientFunds,
    InvalidAmount,
    InvoiceAlreadyPaid,
    OwnInvoice,
    ReferenceReused,
)
from ledger.invariants import check_invariants
from ledger.invoice_reads import get_invoice
from ledger.invoices import create_invoice
from ledger.outbox import claim_due, mark_delivered, mark_failed, mark_retry, redeliver
from ledger.payments import claim_grant, grants_of_user, settle_external_payment
from tests.conftest import run_sql


async def test_external_payment_settles_once_per_reference(engine, make_user) -> None:
    seller, buyer = await make_user(), await make_user()
    inv = await create_invoice(engine, seller_id=seller.id, title="Tea", amount=700,
                               payload={"item_id": "tea"})
    first = await settle_external_payment(engine, inv.public_id, method="ton",
                                          reference="tx-aaa", payer_id=buyer.id)
    again = await settle_external_payment(engine, inv.public_id, method="ton",
                                          reference="tx-aaa", payer_id=buyer.id)
    assert again.replayed and again.payment_id == first.payment_id
    assert await balance(engine, seller.id) == 700
    assert (await get_invoice(engine, inv.public_id)).status == "paid"
    assert [g.item_id for g in await grants_of_user(engine, buyer.id)] == ["tea"]
    # A second, different transfer for the paid one-time invoice is not a second payment.
    with pytest.raises(InvoiceAlreadyPaid):
        await settle_external_payment(engine, inv.public_id, method="ton", reference="tx-bbb")
    assert await balance(engine, seller.id) == 700
    assert await check_invariants(engine) == []


async def test_concurrent_settlements_of_one_transfer_count_once(engine, make_user) -> None:
    seller = await make_user()
    inv = await create_invoice(engine, seller_id=seller.id, title="Tea", amount=700,
                               kind="multi_use")
    results = await asyncio.gather(*(
        settle_external_payment(engine, inv.public_id, method="ton", reference="tx-same")
        for _ in range(10)
    ))
    assert len({r.payment_id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert await balance(engine, seller.id) == 700


async def test_a_reference_cannot_settle_two_invoices(engine, make_user) -> None:
    seller = await make_user()
    one = await create_invoice(engine, seller_id=seller.id, title="A", amount=100)
    two = await create_invoice(engine, seller_id=seller.id, title="B", amount=100)
    await settle_external_payment(engine, one.public_id, method="manual", reference="bank-17")
    with pytest.raises(ReferenceReused):
        await settle_external_payment(engine, two.public_id, method="manual", reference="bank-17")
    assert (await get_invoice(engine, two.public_id)).status == "pending"


async def test_seller_cannot_settle_own_invoice_as_payer(engine, make_user) -> None:
    seller = await make_user()
    inv = await create_invoice(engine, seller_id=seller.id, title="A", amount=100)
    with pytest.raises(OwnInvoice):
        await settle_external_payment(engine, inv.public_id, method="ton", reference="tx-own",
                                      payer_id=seller.id)


async def test_a_guest_purchase_is_claimed_once_by_whoever_opens_the_link(
    engine, make_user
) -> None:
    seller, guest, other = await make_user(), await make_user(), await make_user()
    inv = await create_invoice(engine, seller_id=seller.id, title="E-book", amount=300,
                               payload={"item_id": "ebook", "achievement_id": "reader"})
    paid = await settle_external_payment(engine, inv.public_id, method="ton", reference="tx-g")
    assert paid.claim_token and len(paid.claim_token) >= 32
    assert await grants_of_user(engine, guest.id) == []
    grant = await claim_grant(engine, paid.claim_token, guest.id)
    assert grant.user_id == guest.id and grant.item_id == "ebook"
    assert (await claim_grant(engine, paid.claim_token, guest.id)).id == grant.id  # reopen: same
    with pytest.raises(ClaimAlreadyUsed):
        await claim_grant(engine, paid.claim_token, other.id)
    with pytest.raises(ClaimNotFound):
        await claim_grant(engine, "forged-token", other.id)
    items = await run_sql(engine, "SELECT user_id FROM inventory WHERE grant_id = :g", g=grant.id)
    assert [r["user_id"] for r in items] == [guest.id]


async def test_deposit_credits_once_per_reference(engine, make_user) -> None:
    user = await make_user()
    first = await credit_deposit(engine, user.id, 3_000_000_000, "TON", "tx-dep-1")
    again = await credit_deposit(engine, user.id, 3_000_000_000, "TON", "tx-dep-1")
    assert again.replayed and again.ledger_tx_id == first.ledger_tx_id
    assert await balance(engine, user.id, "TON") == 3_000_000_000
    with pytest.raises(InvalidAmount):
        await credit_deposit(engine, user.id, 0, "TON", "tx-dep-0")


async def test_adjustments_need_a_reason_and_never_overdraw(engine, make_user) -> None:
    user = await make_user(balance=500)
    with pytest.raises(InvalidAmount):
        await adjust_balance(engine, user.id, 100, "LIQ", reason="  ")
    with pytest.raises(InsufficientFunds):
        await adjust_balance(engine, user.id, -501, "LIQ", reason="chargeback")
    await adjust_balance(engine, user.id, -200, "LIQ", reason="chargeback")
    assert await balance(engine, user.id) == 300
    lines = await statement(engine, user.id)
    assert [(line.amount, line.reason) for line in lines] == [
        (-200, "chargeback"), (500, "test funding")
    ]
    assert lines[0].balance_after == 300
    assert await check_invariants(engine) == []


async def test_outbox_events_are_leased_retried_failed_and_redelivered(engine, make_user) -> None:
    seller = await make_user()
    inv = await create_invoice(engine, seller_id=seller.id, title="A", amount=100,
                               payload={"callback_url": "https://shop.example/h"})
    await settle_external_payment(engine, inv.public_id, method="manual", reference="ob-1")
    mine = [e for e in await claim_due(engine, "callback", limit=1000)
            if e.payload["invoice"] == inv.public_id]
    assert [e.event_type for e in mine] == ["invoice_paid"]
    event = mine[0]
    # Leased: a second worker does not get it while the first is delivering.
    assert event.id not in {e.id for e in await claim_due(engine, "callback", limit=1000)}
    await mark_retry(engine, event.id, "HTTP 500", delay_seconds=0)
    retried = [e for e in await claim_due(engine, "callback", limit=1000) if e.id == event.id]
    assert retried and retried[0].attempts == 2
    await mark_failed(engine, event.id, "gave up")
    assert await redeliver(engine, event.id)
    again = [e for e in await claim_due(engine, "callback", limit=1000) if e.id == event.id]
    assert again and again[0].attempts == 1  # a fresh retry schedule
    await mark_delivered(engine, event.id)
    assert not await redeliver(engine, event.id)


async def test_pending_credits_fold_in_order_with_audit_balances(engine, make_user) -> None:
    from ledger.accounts import apply_pending_credits

    seller = await make_user()
    buyers = [await make_user(balance=amount) for amount in (100, 250, 40)]
    for b, amount in zip(buyers, (100, 250, 40), strict=True):
        inv = await create_invoice(engine, seller_id=seller.id, title="x", amount=amount)
        await settle_external_payment(engine, inv.public_id, method="manual",
                                      reference=f"fold-{inv.public_id}", payer_id=b.id)
    assert await balance(engine, seller.id) == 390  # counted before folding
    while await apply_pending_credits(engine):
        pass
    rows = await run_sql(
        engine,
        "SELECT e.amount, e.balance_before, e.balance_after FROM entries e JOIN accounts a "
        "ON a.id = e.account_id WHERE a.user_id = :u ORDER BY e.id", u=seller.id,
    )
    assert [(r["amount"], r["balance_before"], r["balance_after"]) for r in rows] == [
        (100, 0, 100), (250, 100, 350), (40, 350, 390)
    ]
    assert await check_invariants(engine) == []
