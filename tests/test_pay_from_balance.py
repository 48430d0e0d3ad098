"""Paying from the internal balance: all of it happens, or none of it."""

from datetime import timedelta

import pytest

from ledger.accounts import balance
from ledger.errors import (
    IdempotencyKeyReused,
    InsufficientFunds,
    InvoiceAlreadyPaid,
    InvoiceCancelled,
    InvoiceExpired,
    InvoiceNotFound,
    OwnInvoice,
)
from ledger.invariants import check_invariants
from ledger.invoice_reads import get_invoice
from ledger.invoices import cancel_invoice, create_invoice
from ledger.payments import pay_from_balance
from tests.conftest import run_sql


async def _snapshot(engine, *users) -> dict[str, object]:
    """Everything a failed payment must leave untouched."""
    counts = await run_sql(
        engine,
        "SELECT (SELECT count(*) FROM payments) AS payments, (SELECT count(*) FROM entries) AS "
        "entries, (SELECT count(*) FROM outbox) AS outbox, (SELECT count(*) FROM grants) AS grants,"
        " (SELECT count(*) FROM inventory) AS inventory",
    )
    return counts[0] | {f"balance_{u.id}": await balance(engine, u.id) for u in users}


async def test_payment_moves_money_marks_invoice_grants_item_and_queues_notices(
    engine, make_user
) -> None:
    seller, buyer = await make_user(), await make_user(balance=5000)
    inv = await create_invoice(
        engine, seller_id=seller.id, title="Coffee beans", amount=1250,
        payload={"item_id": "beans-1kg", "achievement_id": "first-coffee",
                 "callback_url": "https://shop.example/paid"},
    )
    result = await pay_from_balance(engine, inv.public_id, buyer.id, "tap-1")
    assert result.replayed is False
    assert result.invoice_status == "paid"
    assert result.buyer_balance == 3750
    assert await balance(engine, buyer.id) == 3750
    assert await balance(engine, seller.id) == 1250
    paid = await get_invoice(engine, inv.public_id)
    assert (paid.status, paid.uses) == ("paid", 1)
    assert paid.paid_at is not None
    inventory = await run_sql(engine, "SELECT item_id FROM inventory WHERE user_id = :u",
                              u=buyer.id)
    assert [r["item_id"] for r in inventory] == ["beans-1kg"]
    achievements = await run_sql(
        engine, "SELECT achievement_id FROM achievements WHERE user_id = :u", u=buyer.id
    )
    assert [r["achievement_id"] for r in achievements] == ["first-coffee"]
    events = await run_sql(
        engine,
        "SELECT topic, event_type, payload->>'role' AS role, (payload->>'recipient')::bigint AS to"
        " FROM outbox WHERE payload->>'invoice' = :id ORDER BY id",
        id=inv.public_id,
    )
    assert {(e["topic"], e["role"], e["to"]) for e in events} == {
        ("telegram", "seller", seller.id), ("telegram", "buyer", buyer.id),
        ("callback", None, None),
    }
    assert await check_invariants(engine) == []


async def test_same_idempotency_key_returns_first_result_without_second_effect(
    engine, make_user
) -> None:
    seller, buyer = await make_user(), await make_user(balance=5000)
    inv = await create_invoice(engine, seller_id=seller.id, title="Tea", amount=1000,
                               kind="multi_use")
    first = await pay_from_balance(engine, inv.public_id, buyer.id, "double-tap")
    again = await pay_from_balance(engine, inv.public_id, buyer.id, "double-tap")
    assert again.replayed and again.payment_id == first.payment_id
    assert await balance(engine, buyer.id) == 4000
    assert (await get_invoice(engine, inv.public_id)).uses == 1


async def test_a_used_key_for_a_different_invoice_is_an_error_and_changes_nothing(
    engine, make_user
) -> None:
    seller, buyer = await make_user(), await make_user(balance=5000)
    one = await create_invoice(engine, seller_id=seller.id, title="Tea", amount=1000)
    two = await create_invoice(engine, seller_id=seller.id, title="Cake", amount=1000)
    await pay_from_balance(engine, one.public_id, buyer.id, "key-A")
    before = await _snapshot(engine, buyer, seller)
    with pytest.raises(IdempotencyKeyReused):
        await pay_from_balance(engine, two.public_id, buyer.id, "key-A")
    assert await _snapshot(engine, buyer, seller) == before
    assert (await get_invoice(engine, two.public_id)).status == "pending"


async def test_insufficient_funds_says_how_much_and_changes_nothing(engine, make_user) -> None:
    seller, buyer = await make_user(), await make_user(balance=999)
    inv = await create_invoice(engine, seller_id=seller.id, title="Tea", amount=1000,
                               payload={"item_id": "tea"})
    before = await _snapshot(engine, buyer, seller)
    with pytest.raises(InsufficientFunds) as err:
        await pay_from_balance(engine, inv.public_id, buyer.id, "k")
    assert (err.value.needed, err.value.available) == (1000, 999)
    assert await _snapshot(engine, buyer, seller) == before
    assert (await get_invoice(engine, inv.public_id)).status == "pending"


async def test_a_paid_one_time_invoice_cannot_be_paid_again(engine, make_user) -> None:
    seller = await make_user()
    first, second = await make_user(balance=1000), await make_user(balance=1000)
    inv = await create_invoice(engine, seller_id=seller.id, title="Tea", amount=1000)
    await pay_from_balance(engine, inv.public_id, first.id, "k1")
    before = await _snapshot(engine, second, seller)
    with pytest.raises(InvoiceAlreadyPaid):
        await pay_from_balance(engine, inv.public_id, second.id, "k2")
    assert await _snapshot(engine, second, seller) == before


async def test_cancelled_and_expired_invoices_refuse_payment(engine, make_user) -> None:
    seller, buyer = await make_user(), await make_user(balance=5000)
    cancelled = await create_invoice(engine, seller_id=seller.id, title="A", amount=100)
    await cancel_invoice(engine, cancelled.public_id, seller.id)
    # Past its expiry but not yet swept by the job: still refused.
    overdue = await create_invoice(engine, seller_id=seller.id, title="B", amount=100,
                                   expires_in=timedelta(minutes=1))
    await run_sql(engine, "UPDATE invoices SET expires_at = now() - interval '1 second' "
                          "WHERE id = :id", id=overdue.id)
    before = await _snapshot(engine, buyer, seller)
    with pytest.raises(InvoiceCancelled):
        await pay_from_balance(engine, cancelled.public_id, buyer.id, "k1")
    with pytest.raises(InvoiceExpired):
        await pay_from_balance(engine, overdue.public_id, buyer.id, "k2")
    assert await _snapshot(engine, buyer, seller) == before


async def test_paying_your_own_invoice_is_refused(engine, make_user) -> None:
    seller = await make_user(balance=5000)
    inv = await create_invoice(engine, seller_id=seller.id, title="Tea", amount=100)
    with pytest.raises(OwnInvoice):
        await pay_from_balance(engine, inv.public_id, seller.id, "k")
    assert await balance(engine, seller.id) == 5000


@pytest.mark.parametrize("bad_id", ["ZZZZZZZZZZZZZ", "short", "", "INV-ABC", "ü" * 13])
async def test_unknown_or_malformed_invoice_ids_are_not_found(engine, make_user, bad_id) -> None:
    buyer = await make_user(balance=100)
    with pytest.raises(InvoiceNotFound):
        await pay_from_balance(engine, bad_id, buyer.id, "k")
    assert await balance(engine, buyer.id) == 100


async def test_multi_use_invoice_takes_payments_up_to_max_uses(engine, make_user) -> None:
    seller = await make_user()
    buyers = [await make_user(balance=500) for _ in range(4)]
    inv = await create_invoice(engine, seller_id=seller.id, title="Ticket", amount=500,
                               kind="multi_use", max_uses=3, payload={"item_id": "ticket"})
    for i, b in enumerate(buyers[:3]):
        result = await pay_from_balance(engine, inv.public_id, b.id, "k")
        assert result.invoice_status == ("paid" if i == 2 else "pending")
    with pytest.raises(InvoiceAlreadyPaid):
        await pay_from_balance(engine, inv.public_id, buyers[3].id, "k")
    assert await balance(engine, seller.id) == 1500
    assert await balance(engine, buyers[3].id) == 500
    assert (await get_invoice(engine, inv.public_id)).uses == 3


async def test_money_received_can_be_spent_at_once(engine, make_user) -> None:
    """A seller's credit is folded into the balance by the next debit, not only by the job."""
    alice, bob, carol = await make_user(balance=1000), await make_user(), await make_user()
    inv_bob = await create_invoice(engine, seller_id=bob.id, title="A", amount=1000)
    inv_carol = await create_invoice(engine, seller_id=carol.id, title="B", amount=600)
    await pay_from_balance(engine, inv_bob.public_id, alice.id, "k")
    await pay_from_balance(engine, inv_carol.public_id, bob.id, "k")
    assert (await balance(engine, bob.id), await balance(engine, carol.id)) == (400, 600)
    rows = await run_sql(
        engine,
        "SELECT e.amount, e.balance_before, e.balance_after FROM entries e JOIN accounts a "
        "ON a.id = e.account_id WHERE a.user_id = :u ORDER BY e.id", u=bob.id,
    )
    assert [(r["amount"], r["balance_before"], r["balance_after"]) for r in rows] == [
        (1000, 0, 1000), (-600, 1000, 400)
    ]


async def test_inside_a_callers_transaction_the_same_rules_hold(engine, make_user) -> None:
    """Without the batcher (a connection in a transaction) the SQL is the same, errors too."""
    from ledger.db import transaction

    seller, buyer = await make_user(), await make_user(balance=100)
    inv = await create_invoice(engine, seller_id=seller.id, title="Tea", amount=100)
    async with transaction(engine) as conn:
        result = await pay_from_balance(conn, inv.public_id, buyer.id, "k")
        assert result.invoice_status == "paid" and result.buyer_balance == 0
        again = await pay_from_balance(conn, inv.public_id, buyer.id, "k")
        assert again.replayed and again.payment_id == result.payment_id
    with pytest.raises(InvoiceAlreadyPaid):
        async with transaction(engine) as conn:
            await pay_from_balance(conn, inv.public_id, buyer.id, "k2")
    assert await balance(engine, buyer.id) == 0
