"""Nothing in the money tables is ever deleted or rewritten."""

import pytest

from ledger.db import fetch_all
from ledger.errors import ImmutableRecord
from ledger.invoices import create_invoice
from ledger.payments import pay_from_balance


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM entries",
        "DELETE FROM payments",
        "DELETE FROM invoices",
        "DELETE FROM accounts",
        "DELETE FROM users",
        "DELETE FROM ledger_transactions",
        "DELETE FROM grants",
        "DELETE FROM outbox",
        "TRUNCATE entries CASCADE",
        "UPDATE entries SET amount = amount + 1",
        "UPDATE payments SET amount = 1",
        "UPDATE ledger_transactions SET kind = 'deposit'",
    ],
)
async def test_money_records_refuse_delete_and_rewrite(engine, make_user, sql) -> None:
    seller, buyer = await make_user(), await make_user(balance=500)
    inv = await create_invoice(engine, seller_id=seller.id, title="Tea", amount=500)
    await pay_from_balance(engine, inv.public_id, buyer.id, "k")
    with pytest.raises(ImmutableRecord):
        await fetch_all(engine, sql)


async def test_an_applied_entry_cannot_be_applied_again(engine, make_user) -> None:
    seller, buyer = await make_user(), await make_user(balance=500)
    inv = await create_invoice(engine, seller_id=seller.id, title="Tea", amount=500)
    await pay_from_balance(engine, inv.public_id, buyer.id, "k")
    with pytest.raises(ImmutableRecord):
        await fetch_all(engine, "UPDATE entries SET balance_before = 0, balance_after = amount "
                                "WHERE balance_after IS NOT NULL")
