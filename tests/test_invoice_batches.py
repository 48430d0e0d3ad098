"""Invoices issued and read concurrently share database calls, and each still gets its own,
correct answer: numbers stay gap-free per seller, a key creates one invoice, a bad request
fails alone, and a read never returns an older state than the one committed before it."""

import asyncio
import re

import pytest

from ledger.accounts import adjust_balance
from ledger.core import Ledger
from ledger.errors import IdempotencyKeyReused, InvoiceNotFound
from ledger.invoices import new_invoice
from ledger.models import Invoice
from tests.conftest import run_sql


async def create(ledger: Ledger, **request: object) -> Invoice:
    """An invoice issued the way the edges issue one: through the process's Ledger."""
    return (await ledger.issue_invoice(new_invoice(**request)))[0]  # type: ignore[arg-type]


async def test_concurrent_invoices_of_one_seller_get_every_number_once(
    ledger, engine, make_user
) -> None:
    shop, other = await make_user(), await make_user()
    made = await asyncio.gather(*(
        create(ledger, seller_id=(shop if n % 4 else other).id, title=f"Item {n}",
                       amount=100 + n)
        for n in range(200)
    ))
    numbers = {s.id: sorted(int(i.number.rsplit("-", 1)[1]) for i in made if i.seller_id == s.id)
               for s in (shop, other)}
    assert numbers[shop.id] == list(range(1, 151))
    assert numbers[other.id] == list(range(1, 51))
    assert len({i.public_id for i in made}) == 200
    # each caller got its own invoice back, not a neighbour's
    assert sorted(i.amount for i in made) == [100 + n for n in range(200)]
    assert all(i.title == f"Item {i.amount - 100}" for i in made)


async def test_one_key_sent_many_times_at_once_creates_one_invoice(
    ledger, engine, make_user
) -> None:
    shop = await make_user()

    def request(title: str) -> object:
        return new_invoice(seller_id=shop.id, title=title, amount=500,
                           idempotency_key="order-1", request_hash=title.encode())

    same = await asyncio.gather(*(ledger.issue_invoice(request("Lamp")) for _ in range(20)))
    assert len({inv.public_id for inv, _ in same}) == 1
    assert sorted(replayed for _, replayed in same) == [False] + [True] * 19
    with pytest.raises(IdempotencyKeyReused):
        await ledger.issue_invoice(request("Another lamp"))
    rows = await run_sql(engine, "SELECT count(*) AS n FROM invoices WHERE seller_id = :s",
                         s=shop.id)
    assert rows[0]["n"] == 1


async def test_a_request_the_database_refuses_fails_alone(
    ledger, engine, make_user
) -> None:
    shop = await make_user()
    taken = await create(ledger, seller_id=shop.id, title="First", amount=100)
    results = await asyncio.gather(
        *(create(ledger, seller_id=shop.id, title=f"Fine {n}", amount=100)
          for n in range(10)),
        create(ledger, seller_id=shop.id, title="Clash", amount=100,
                       public_id=taken.public_id),
        return_exceptions=True,
    )
    assert all(not isinstance(r, BaseException) for r in results[:10])
    assert isinstance(results[10], Exception)
    numbers = sorted(int(r.number.rsplit("-", 1)[1]) for r in results[:10])
    assert numbers == list(range(2, 12))  # the refused one took no number


async def test_a_read_after_a_payment_sees_the_payment(
    ledger, engine, make_user
) -> None:
    shop, buyer = await make_user(), await make_user()
    await adjust_balance(engine, buyer.id, 10_000, "LIQ", reason="test")
    invoices = [await create(ledger, seller_id=shop.id, title=f"T{n}", amount=100)
                for n in range(20)]

    async def pay_then_read(n: int) -> str:
        # reads of other invoices are in flight all the time, so this read joins a batch
        await ledger.pay_from_balance(invoices[n].public_id, buyer.id, f"k{n}")
        return (await ledger.seller_invoice(shop.id, invoices[n].public_id)).status

    async def keep_reading() -> None:
        for _ in range(20):
            await asyncio.gather(*(ledger.seller_invoice(shop.id, i.public_id)
                                   for i in invoices))

    statuses, _ = await asyncio.gather(
        asyncio.gather(*(pay_then_read(n) for n in range(20))), keep_reading())
    assert statuses == ["paid"] * 20


async def test_a_batched_read_answers_each_seller_only_with_their_own(
    ledger, engine, make_user
) -> None:
    alice, bob = await make_user(), await make_user()
    a = await create(ledger, seller_id=alice.id, title="A", amount=100)
    b = await create(ledger, seller_id=bob.id, title="B", amount=100)
    found = await asyncio.gather(
        ledger.seller_invoice(alice.id, a.public_id.lower()),
        ledger.seller_invoice(bob.id, a.public_id),
        ledger.seller_invoice(bob.id, b.public_id),
        ledger.seller_invoice(alice.id, "not-an-id"),
        return_exceptions=True,
    )
    assert found[0].public_id == a.public_id and found[2].public_id == b.public_id
    assert isinstance(found[1], InvoiceNotFound) and isinstance(found[3], InvoiceNotFound)
    assert re.fullmatch(r"INV-\d{4}-0001", found[2].number)


async def test_without_a_database_each_request_fails_promptly() -> None:
    from ledger.postgres import make_engine

    unreachable = make_engine("postgresql://paybot@127.0.0.1:9/paybot")  # nothing listens
    down = Ledger(unreachable)
    try:
        results = await asyncio.wait_for(asyncio.gather(
            *(create(down, seller_id=1, title=f"T{n}", amount=100) for n in range(5)),
            down.seller_invoice(1, "0123456789ABC"),
            return_exceptions=True), timeout=30)
    finally:
        await unreachable.dispose()
    assert all(isinstance(r, OSError) for r in results), results
