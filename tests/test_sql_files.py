"""What the SQL files promise: one table of errors, one fulfilment, one after-commit wake."""

import asyncio
import json
import re

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

import ledger.sql
from ledger.errors import BY_CODE, BY_SQLSTATE, ERRORS, from_db_error
from ledger.invoices import create_invoice
from ledger.payments import pay_from_balance, settle_external_payment
from ledger.postgres import libpq_url
from tests.conftest import run_sql

SOURCES = "\n".join(p.read_text(encoding="utf-8") for p in ledger.sql.files())


def test_every_error_the_sql_names_is_in_the_one_table() -> None:
    sqlstates = set(re.findall(r"'(PB\d{3})'", SOURCES))
    assert sqlstates <= BY_SQLSTATE.keys()
    codes = set(re.findall(r"paybot_(?:raise|error_sqlstate)\('(\w+)'", SOURCES))
    assert len(codes) > 15, "the files raise by code"
    assert codes <= BY_CODE.keys(), codes - BY_CODE.keys()


async def test_each_error_raised_in_sql_reaches_python_as_its_own_class(
        engine: AsyncEngine) -> None:
    raised = {}
    for cls in ERRORS:
        if cls.sqlstate is None:
            continue
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError) as caught:
                await conn.execute(text("SELECT paybot_raise(:code, :detail)"),
                                   {"code": cls.code, "detail": '{"needed": 5, "available": 2}'})
        raised[cls.code] = from_db_error(caught.value)
    assert {code: type(err) for code, err in raised.items()} == {
        cls.code: cls for cls in ERRORS if cls.sqlstate}
    assert raised["insufficient_funds"].needed == 5  # type: ignore[attr-defined]


def test_a_purchase_is_completed_in_one_place() -> None:
    payments = (ledger.sql.SQL_DIR / "payments.sql").read_text(encoding="utf-8")
    assert payments.count("INSERT INTO grants") == 1
    assert len(re.findall(r"paybot_paid_events\(", SOURCES)) == 2  # its definition, one call
    for path in ("process_invoice_payments", "settle_external_payment"):
        body = payments[payments.index(f"FUNCTION {path}("):]
        body = body[:body.index("END $$;")]
        assert "PERFORM paybot_fulfil(" in body, path


async def test_paid_from_the_balance_or_from_outside_a_purchase_completes_alike(
        engine: AsyncEngine, make_user) -> None:
    seller = await make_user()
    buyers = [await make_user(balance=1000), await make_user()]
    payload = {"item_id": "ebook", "achievement_id": "reader",
               "callback_url": "https://shop.example/paid"}
    by_balance = await create_invoice(engine, seller_id=seller.id, title="Book", amount=300,
                                      payload=payload)
    from_outside = await create_invoice(engine, seller_id=seller.id, title="Book", amount=300,
                                        payload=payload)
    paid = [await pay_from_balance(engine, by_balance.public_id, buyers[0].id, "k1"),
            await settle_external_payment(engine, from_outside.public_id, method="manual",
                                          reference="bank-1", payer_id=buyers[1].id)]

    def completion(payment_id: int, buyer: int, grants: list, events: list,
                   achievements: list) -> tuple:
        [grant] = [g for g in grants if g["payment_id"] == payment_id]
        sent = sorted((e["topic"], e["event_type"], e["payload"].get("role"),
                       e["payload"].get("url"), e["payload"]["grant_id"] == grant["id"],
                       e["payload"]["payer_id"] == buyer)
                      for e in events if e["payload"].get("payment_id") == payment_id)
        return ((grant["user_id"] == buyer, grant["item_id"], grant["achievement_id"],
                 grant["claim_token"]), sent,
                [a["achievement_id"] for a in achievements if a["user_id"] == buyer])

    grants = await run_sql(engine, "SELECT * FROM grants WHERE invoice_id IN (:a, :b)",
                           a=by_balance.id, b=from_outside.id)
    events = await run_sql(engine, "SELECT topic, event_type, payload FROM outbox"
                           " WHERE payload ->> 'invoice' IN (:a, :b)",
                           a=by_balance.public_id, b=from_outside.public_id)
    for e in events:
        e["payload"] = e["payload"] if isinstance(e["payload"], dict) else json.loads(e["payload"])
    achievements = await run_sql(engine, "SELECT * FROM achievements WHERE grant_id IN"
                                 " (SELECT id FROM grants WHERE invoice_id IN (:a, :b))",
                                 a=by_balance.id, b=from_outside.id)
    alike = [completion(p.payment_id, b.id, grants, events, achievements)
             for p, b in zip(paid, buyers, strict=True)]
    assert alike[0] == alike[1] == (
        (True, "ebook", "reader", None),
        [("callback", "invoice_paid", None, "https://shop.example/paid", True, True),
         ("telegram", "invoice.paid", "buyer", None, True, True),
         ("telegram", "invoice.paid", "seller", None, True, True)],
        ["reader"])


async def test_an_outbox_row_wakes_delivery_after_commit_and_never_before(
        engine: AsyncEngine, database_url: str, make_user) -> None:
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(libpq_url(database_url))
    try:
        await listener.add_listener("paybot_outbox", lambda *args: heard.put_nowait(args[-1]))
        writer = await asyncpg.connect(libpq_url(database_url))
        try:  # written, then rolled back: no wake
            transaction = writer.transaction()
            await transaction.start()
            await writer.execute("INSERT INTO outbox (topic, event_type, payload)"
                                 " VALUES ('callback', 'test', '{}')")
            await transaction.rollback()
        finally:
            await writer.close()
        seller, buyer = await make_user(), await make_user(balance=500)
        tea, cake = [await create_invoice(engine, seller_id=seller.id, title=t, amount=200)
                     for t in ("Tea", "Cake")]
        # A balance payment does not notify (its process's Ledger wakes delivery: the commits
        # of notifying transactions are serialized); a chain payment does.
        await pay_from_balance(engine, tea.public_id, buyer.id, "tea-1")
        await settle_external_payment(engine, cake.public_id, method="ton",
                                      reference=f"tx-{cake.public_id}")
        # notifications arrive in commit order: the first is the chain payment's
        assert await asyncio.wait_for(heard.get(), timeout=30) == "outbox"
        assert heard.empty()
    finally:
        await listener.close()
