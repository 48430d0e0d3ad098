"""Sellers issue invoices: validated, numbered per seller, amount and TON quote fixed at issue."""

from datetime import timedelta
from decimal import Decimal

import pytest

from ledger.errors import (
    InvalidAmount,
    InvalidInvoice,
    InvoiceAlreadyPaid,
    InvoiceNotFound,
    NotInvoiceSeller,
)
from ledger.invoice_reads import get_invoice
from ledger.invoices import cancel_invoice, create_invoice, expire_due_invoices
from ledger.payments import pay_from_balance
from tests.conftest import run_sql


async def test_invoice_numbers_count_per_seller_and_year(engine, make_user) -> None:
    alice, bob = await make_user(), await make_user()
    a1 = await create_invoice(engine, seller_id=alice.id, title="Tea", amount=100)
    a2 = await create_invoice(engine, seller_id=alice.id, title="Cake", amount=200)
    b1 = await create_invoice(engine, seller_id=bob.id, title="Book", amount=300)
    year = a1.created_at.year
    assert (a1.number, a2.number, b1.number) == (
        f"INV-{year}-0001", f"INV-{year}-0002", f"INV-{year}-0001"
    )
    assert a1.public_id != a2.public_id
    assert a1.comment == f"INV-{a1.public_id}"


async def test_lookup_is_case_insensitive_and_unknown_ids_are_not_found(engine, make_user) -> None:
    seller = await make_user()
    inv = await create_invoice(engine, seller_id=seller.id, title="Tea", amount=100)
    assert (await get_invoice(engine, inv.public_id.lower())).id == inv.id
    for bad in ("", "nope", "0" * 13, inv.public_id + "0", "'; DROP TABLE invoices; --"):
        with pytest.raises(InvoiceNotFound):
            await get_invoice(engine, bad)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"title": ""}, InvalidInvoice),
        ({"title": "   "}, InvalidInvoice),
        ({"title": "x" * 129}, InvalidInvoice),
        ({"amount": 0}, InvalidAmount),
        ({"amount": -5}, InvalidAmount),
        ({"amount": 10**16}, InvalidAmount),
        ({"currency": "USD"}, InvalidInvoice),
        ({"kind": "forever"}, InvalidInvoice),
        ({"max_uses": 3}, InvalidInvoice),  # max uses only for multi-use
        ({"kind": "multi_use", "max_uses": 0}, InvalidInvoice),
        ({"expires_in": timedelta(seconds=5)}, InvalidInvoice),
        ({"expires_in": timedelta(days=400)}, InvalidInvoice),
        ({"payload": {"shell": "rm -rf"}}, InvalidInvoice),
        ({"payload": {"callback_url": "ftp://example.com/x"}}, InvalidInvoice),
        ({"description": "d" * 1025}, InvalidInvoice),
    ],
)
async def test_bad_invoice_input_is_rejected_and_nothing_is_stored(
    engine, make_user, kwargs, error
) -> None:
    seller = await make_user()
    args = {"seller_id": seller.id, "title": "Tea", "amount": 100} | kwargs
    with pytest.raises(error):
        await create_invoice(engine, **args)
    rows = await run_sql(engine, "SELECT count(*) AS n FROM invoices WHERE seller_id = :s",
                         s=seller.id)
    assert rows[0]["n"] == 0


async def test_ton_quote_is_locked_at_issue(engine, make_user) -> None:
    seller = await make_user()
    inv = await create_invoice(engine, seller_id=seller.id, title="Tea", amount=1000,
                               ton_rate=Decimal("5"))
    assert inv.ton_amount == 2_000_000_000  # 10.00 Liquid $ at 5 per TON
    later = await create_invoice(engine, seller_id=seller.id, title="Tea", amount=1000,
                                 ton_rate=Decimal("4"))
    assert later.ton_amount == 2_500_000_000
    assert (await get_invoice(engine, inv.public_id)).ton_amount == 2_000_000_000


async def test_an_amount_too_large_to_quote_in_ton_is_refused(engine, make_user) -> None:
    seller = await make_user()
    with pytest.raises(InvalidAmount):
        await create_invoice(engine, seller_id=seller.id, title="Island", amount=10**15,
                             ton_rate=Decimal("0.0001"))


async def test_only_the_seller_cancels_and_a_cancelled_invoice_cannot_be_paid(
    engine, make_user
) -> None:
    seller, stranger = await make_user(), await make_user(balance=1000)
    inv = await create_invoice(
        engine, seller_id=seller.id, title="Tea", amount=100,
        payload={"callback_url": "https://shop.example/hook"},
    )
    with pytest.raises(NotInvoiceSeller):
        await cancel_invoice(engine, inv.public_id, stranger.id)
    cancelled = await cancel_invoice(engine, inv.public_id, seller.id)
    assert cancelled.status == "cancelled"
    again = await cancel_invoice(engine, inv.public_id, seller.id)
    assert again.status == "cancelled"
    events = await run_sql(
        engine, "SELECT event_type FROM outbox WHERE payload->>'invoice' = :id", id=inv.public_id
    )
    assert [e["event_type"] for e in events] == ["invoice_cancelled"]  # once, not twice


async def test_a_paid_invoice_cannot_be_cancelled(engine, make_user) -> None:
    seller, buyer = await make_user(), await make_user(balance=1000)
    inv = await create_invoice(engine, seller_id=seller.id, title="Tea", amount=100)
    await pay_from_balance(engine, inv.public_id, buyer.id, "k")
    with pytest.raises(InvoiceAlreadyPaid):
        await cancel_invoice(engine, inv.public_id, seller.id)
    assert (await get_invoice(engine, inv.public_id)).status == "paid"


async def test_due_invoices_expire_and_the_seller_backend_hears_of_it(engine, make_user) -> None:
    seller = await make_user()
    due = await create_invoice(engine, seller_id=seller.id, title="Old", amount=100,
                               payload={"callback_url": "https://shop.example/hook"})
    fresh = await create_invoice(engine, seller_id=seller.id, title="New", amount=100)
    await run_sql(engine, "UPDATE invoices SET expires_at = now() - interval '1 second' "
                          "WHERE id = :id", id=due.id)
    expired = await expire_due_invoices(engine)
    assert due.public_id in {i.public_id for i in expired}
    assert (await get_invoice(engine, due.public_id)).status == "expired"
    assert (await get_invoice(engine, fresh.public_id)).status == "pending"
    assert due.public_id not in {i.public_id for i in await expire_due_invoices(engine)}
    events = await run_sql(engine, "SELECT event_type FROM outbox WHERE payload->>'invoice' = :id",
                           id=due.public_id)
    assert [e["event_type"] for e in events] == ["invoice_expired"]
