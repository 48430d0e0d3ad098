"""Races a real payment product meets: many taps on one invoice, poor buyers racing, rings."""

import asyncio
import random
from collections.abc import Awaitable, Callable

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.accounts import balance
from ledger.core import Ledger
from ledger.errors import InsufficientFunds, InvoiceAlreadyPaid
from ledger.invariants import check_invariants
from ledger.invoice_reads import get_invoice
from ledger.invoices import create_invoice
from ledger.models import PaymentResult
from ledger.postgres import make_engine
from tests.conftest import run_sql
from tests.waiting import wait_until


def payments(engine: AsyncEngine) -> Callable[[str, int, str], Awaitable[PaymentResult]]:
    """Pay the way every edge pays: through the process's one Ledger (concurrent payments
    share batches, and a batch a deadlock aborted is sent again)."""
    return Ledger(engine).pay_from_balance


async def test_200_concurrent_attempts_on_one_invoice_exactly_one_succeeds(
    database_url, engine, make_user
) -> None:
    seller = await make_user()
    buyers = [await make_user(balance=1000) for _ in range(200)]
    inv = await create_invoice(engine, seller_id=seller.id, title="Last one", amount=1000,
                               payload={"item_id": "unique-thing"})
    wide = make_engine(database_url, pool_size=35)  # up to 70 connections at once
    pay = payments(wide)
    try:
        results = await asyncio.gather(
            *(pay(inv.public_id, b.id, f"k{b.id}") for b in buyers),
            return_exceptions=True,
        )
    finally:
        await wide.dispose()
    ok = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, InvoiceAlreadyPaid)]
    assert len(ok) == 1
    assert len(refused) == 199, [r for r in results if not isinstance(r, InvoiceAlreadyPaid)]
    assert await balance(engine, seller.id) == 1000
    assert sum([await balance(engine, b.id) for b in buyers]) == 199 * 1000
    grants = await run_sql(engine, "SELECT count(*) AS n FROM grants WHERE invoice_id = :i",
                           i=inv.id)
    assert grants[0]["n"] == 1
    assert await check_invariants(engine) == []


async def test_buyers_with_too_little_money_racing_never_go_negative(
    database_url, engine, make_user
) -> None:
    seller = await make_user()
    # Each buyer can afford 3 of the 10 invoices it races for.
    buyers = [await make_user(balance=300) for _ in range(8)]
    attempts = []
    for b in buyers:
        for n in range(10):
            inv = await create_invoice(engine, seller_id=seller.id, title=f"Item {n}", amount=100)
            attempts.append((inv.public_id, b.id))
    random.Random(7).shuffle(attempts)
    wide = make_engine(database_url, pool_size=20)
    pay = payments(wide)
    try:
        results = await asyncio.gather(
            *(pay(inv, buyer, f"{inv}") for inv, buyer in attempts),
            return_exceptions=True,
        )
    finally:
        await wide.dispose()
    assert all(isinstance(r, InsufficientFunds) for r in results if isinstance(r, BaseException))
    assert sum(1 for r in results if not isinstance(r, BaseException)) == 8 * 3
    for b in buyers:
        assert await balance(engine, b.id) == 0
    assert await balance(engine, seller.id) == 8 * 300
    assert await check_invariants(engine) == []


async def test_transfers_in_a_ring_run_concurrently_without_deadlocks(
    database_url, engine, make_user
) -> None:
    people = [await make_user(balance=10_000) for _ in range(3)]
    rounds = 40
    jobs = []
    for r in range(rounds):
        for i, payer in enumerate(people):
            payee = people[(i + 1) % len(people)]  # A->B, B->C, C->A
            inv = await create_invoice(engine, seller_id=payee.id, title=f"ring {r}", amount=7)
            jobs.append((inv.public_id, payer.id))
    wide = make_engine(database_url, pool_size=30)
    pay = payments(wide)
    try:
        results = await asyncio.gather(
            *(pay(inv, payer, f"ring-{inv}") for inv, payer in jobs),
            return_exceptions=True,
        )
    finally:
        await wide.dispose()
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not [e for e in errors if isinstance(e, DBAPIError)], errors[:3]  # no deadlock
    assert errors == []
    for p in people:  # each paid and received the same amount
        assert await balance(engine, p.id) == 10_000
    assert await check_invariants(engine) == []


async def test_many_buyers_paying_one_hot_seller_all_succeed(
    database_url, engine, make_user
) -> None:
    seller = await make_user()
    buyers = [await make_user(balance=250) for _ in range(100)]
    invoices = [
        await create_invoice(engine, seller_id=seller.id, title="Hot", amount=250)
        for _ in buyers
    ]
    wide = make_engine(database_url, pool_size=25)
    pay = payments(wide)
    try:
        results = await asyncio.gather(
            *(pay(inv.public_id, b.id, "k") for inv, b in zip(
                invoices, buyers, strict=True))
        )
    finally:
        await wide.dispose()
    assert all(r.invoice_status == "paid" for r in results)
    assert await balance(engine, seller.id) == 100 * 250
    assert all([(await get_invoice(engine, i.public_id)).status == "paid" for i in invoices])
    assert await check_invariants(engine) == []


async def test_the_same_tap_arriving_twice_at_once_pays_once(
    database_url, engine, make_user
) -> None:
    """Telegram retries, a double tap on two devices: same key, concurrently."""
    seller = await make_user()
    buyer = await make_user(balance=10_000)
    inv = await create_invoice(engine, seller_id=seller.id, title="Ticket", amount=100,
                               kind="multi_use")
    one_time = await create_invoice(engine, seller_id=seller.id, title="Once", amount=100)
    wide = make_engine(database_url, pool_size=10)
    pay = payments(wide)
    try:
        for invoice in (inv, one_time):
            results = await asyncio.gather(
                *(pay(invoice.public_id, buyer.id, f"tap-{invoice.public_id}")
                  for _ in range(10))
            )
            assert len({r.payment_id for r in results}) == 1
            assert sum(not r.replayed for r in results) == 1
    finally:
        await wide.dispose()
    assert await balance(engine, buyer.id) == 10_000 - 200
    assert (await get_invoice(engine, inv.public_id)).uses == 1
    assert await check_invariants(engine) == []


async def test_a_batch_caught_in_a_deadlock_is_sent_again_and_pays(engine, make_user) -> None:
    """Something else (an operator's manual SQL, say) holds the buyer's account and then
    wants the invoice the batch holds: PostgreSQL aborts the batch; nothing of it happened,
    so the batcher sends it again and the payment goes through once."""
    from sqlalchemy import text

    from ledger.db import transaction

    seller, buyer = await make_user(), await make_user(balance=500)
    inv = await create_invoice(engine, seller_id=seller.id, title="Tea", amount=500)
    await balance(engine, buyer.id)
    async with transaction(engine) as other:
        await other.execute(text("SELECT apply_pending_credits(id) FROM accounts "
                                 "WHERE user_id = :u"), {"u": buyer.id})  # locks the account
        # The batch must be the one PostgreSQL picks to abort: whichever waiter's
        # deadlock_timeout runs out first finds the cycle and is cancelled, so ours waits longer.
        await other.execute(text("SET LOCAL deadlock_timeout = '60s'"))
        other_pid = (await other.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        payment = asyncio.ensure_future(payments(engine)(inv.public_id, buyer.id, "k"))

        async def batch_waits_for_the_account() -> bool:
            return bool(await run_sql(engine, "SELECT 1 FROM pg_stat_activity "
                                              "WHERE :p = ANY(pg_blocking_pids(pid))", p=other_pid))

        # the batch now holds the invoice and waits for the account
        await wait_until(batch_waits_for_the_account, "the batch blocked on the buyer's account",
                         task=payment)
        await other.execute(text("UPDATE invoices SET title = title WHERE id = :i"),
                            {"i": inv.id})
    result = await asyncio.wait_for(payment, 30)
    assert result.invoice_status == "paid" and result.replayed is False
    assert await balance(engine, buyer.id) == 0
    assert await balance(engine, seller.id) == 500
    assert await check_invariants(engine) == []
