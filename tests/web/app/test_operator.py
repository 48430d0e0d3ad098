"""The Mini App's operator view (/app/api/operator/...): what `paybot admin` shows — held
transfers, failed callbacks, payouts to approve, system balances, the invariants — and its
actions through the same ledger use cases, for OPERATOR_TELEGRAM_IDS only: anyone else gets a
403 and changes nothing; unknown ids are 404, a second resolution 409, bad bodies 422."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.settings import OperatorSettings, Settings
from bot.web.app import operator as operator_view
from ledger import payouts
from ledger.accounts import balance
from ledger.core import Ledger
from ledger.migrate import upgrade
from ledger.models import User
from ledger.payments import pay_from_balance
from ledger.postgres import make_engine
from ledger.transfers import ChainTransfer, record_transfer, start_cursor
from ledger.users import ensure_user
from tests.conftest import run_sql
from tests.test_payouts import POLICY, TON, USER_WALLET
from tests.web.conftest import make_app, make_settings, sign_init_data, tg_user, tma
from watchers.alerts import record_state

BASE = "/app/api/operator"


# --- making what an operator looks at ---------------------------------------------------------


async def held_transfer(engine: AsyncEngine, value: int, comment: str | None = None) -> str:
    """An incoming TON transfer naming no invoice: held in suspense (`unmatched`)."""
    address = "0:" + secrets.token_hex(32)  # its own account: no cursor shared with others
    await start_cursor(engine, address, 0, "0" * 64)
    tx_hash = secrets.token_hex(32)
    result = await record_transfer(engine, ChainTransfer(
        address=address, tx_hash=tx_hash, lt=1000, utime=int(time.time()), prev_lt=0,
        prev_hash="0" * 64, incoming=True, source="0:" + "ab" * 32, value_nano=value,
        body_kind="text" if comment else "empty", comment=comment,
    ), currency="LIQ", ton_rate=Decimal("5.00"))
    assert result.outcome == "unmatched" and result.held_nano == value
    return tx_hash


async def failed_callback(engine: AsyncEngine, make_user, make_invoice) -> tuple[str, User]:  # type: ignore[no-untyped-def]
    """A paid invoice whose callback gave up (as watchers/callbacks.py leaves it)."""
    seller = await make_user(username="hooks_shop")
    buyer = await make_user(balance=5000)
    inv = await make_invoice(seller, payload={"callback_url": "https://shop.example/paid"})
    await pay_from_balance(engine, inv.public_id, buyer.id, f"op-{inv.public_id}")
    [row] = await run_sql(
        engine, "UPDATE outbox SET failed_at = now(), attempts = 6,"
                " last_error = 'gave up after 6 attempts: [Errno 111] 10.0.0.7:8443 refused'"
                " WHERE topic = 'callback' AND payload ->> 'invoice' = :i RETURNING event_id",
        i=inv.public_id)
    return str(row["event_id"]), seller


async def held_transfer_state(engine: AsyncEngine, tx_hash: str) -> list[dict[str, object]]:
    return await run_sql(engine, "SELECT h.released_at, h.release FROM ton_holds h"
                                 " JOIN ton_transfers t ON t.id = h.transfer_id"
                                 " WHERE t.tx_hash = :h", h=tx_hash)


async def callback_state(engine: AsyncEngine, event_id: str) -> dict[str, object]:
    [row] = await run_sql(engine, "SELECT failed_at, delivered_at, attempts FROM outbox"
                                  " WHERE event_id = CAST(:e AS uuid)", e=event_id)
    return row


def operator_settings(*operators: User) -> Settings:
    settings = make_settings()
    settings.operator = OperatorSettings(telegram_ids=[u.telegram_id for u in operators])
    settings.web.rate_pay_per_user = "50/s:100"  # the tests below act many times in a row
    return settings


@pytest.fixture
async def desk(client_for, make_user) -> tuple[TestClient, dict[str, str]]:  # type: ignore[no-untyped-def]
    """A client of the pay pages with one operator, and the operator's headers."""
    op = await make_user(username="night_shift")
    client = await client_for(operator_settings(op))
    return client, tma(sign_init_data(tg_user(op)))


async def post(client: TestClient, headers: dict[str, str], path: str,
               body: Any = None, **kw: Any) -> tuple[int, dict[str, Any]]:
    r = await client.post(BASE + path, headers=headers, json=body, **kw)
    return r.status, await r.json()


async def get_overview(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    r = await client.get(f"{BASE}/overview", headers=headers)
    assert r.status == 200, await r.text()
    return await r.json()


# --- who may look ---------------------------------------------------------------------------


async def test_only_operators_reach_the_desk_and_nobody_else_changes_anything(
        client_for, engine, make_user, make_invoice) -> None:
    op = await make_user(username="desk_op")
    buyer = await make_user(username="only_buys")
    tx = await held_transfer(engine, 2_500_000_000, "hello")
    event_id, seller = await failed_callback(engine, make_user, make_invoice)
    wallet = await make_user(balance=50_00)
    payout = await payouts.request_withdrawal(engine, wallet.id, "TON", 5 * TON, USER_WALLET,
                                              POLICY)
    client = await client_for(operator_settings(op))
    routes: list[tuple[str, str, Any]] = [
        ("GET", "/overview", None),
        ("POST", f"/transfers/{tx}/resolve", {"action": "credit",
                                              "telegram_id": buyer.telegram_id}),
        ("POST", f"/callbacks/{event_id}/redeliver", {}),
        ("POST", f"/payouts/{payout.id}/approve", {}),
        ("POST", f"/payouts/{payout.id}/reject", {"note": "no"}),
    ]
    for who, lang in ((buyer, "en"), (seller, "ru")):
        headers = tma(sign_init_data(tg_user(who, lang)))
        for method, path, body in routes:
            r = await client.request(method, BASE + path, headers=headers, json=body,
                                     params={"lang": lang})  # as app.js asks
            answer = await r.json()
            assert r.status == 403 and answer["error"]["code"] == "not_an_operator", path
            assert ("операторов" if lang == "ru" else "operators") in answer["error"]["message"]
    [hold] = await held_transfer_state(engine, tx)
    assert hold["released_at"] is None
    assert await balance(engine, buyer.id) == 0
    assert (await callback_state(engine, event_id))["failed_at"] is not None
    assert (await payouts.get_payout(engine, payout.id)).status == "pending_approval"


# --- held transfers -------------------------------------------------------------------------


async def test_a_held_transfer_is_shown_and_credited_once_like_the_cli(
        desk, engine, make_user) -> None:
    client, headers = desk
    tx = await held_transfer(engine, 2_500_000_000, "for my order, thanks")
    user = await make_user(username="gets_it")

    seen = await get_overview(client, headers)
    [row] = [t for t in seen["held_transfers"] if t["tx_hash"] == tx]
    assert row["amount"]["text"] == "2.5" and row["amount"]["currency"] == "TON"
    assert (row["reason"], row["comment"]) == ("unmatched", "for my order, thanks")
    assert set(seen["resolve_actions"]) == {"apply", "credit", "refund", "refund_note"}

    body = {"action": "credit", "telegram_id": user.telegram_id, "note": "ticket 7"}
    status, done = await post(client, headers, f"/transfers/{tx}/resolve", body)
    assert status == 200, done
    # As `paybot admin resolve --credit`: 2.5 TON at 5.00 Liquid $ per TON.
    assert done["action"] == "credit" and done["credited"]["minor"] == 1250
    assert await balance(engine, user.id) == 1250
    [hold] = await held_transfer_state(engine, tx)
    assert hold["release"] == "credited"

    status, again = await post(client, headers, f"/transfers/{tx}/resolve", body)
    assert status == 409 and again["error"]["code"] == "nothing_held"
    assert "already resolved" in again["error"]["message"]
    assert await balance(engine, user.id) == 1250
    seen = await get_overview(client, headers)
    assert tx not in {t["tx_hash"] for t in seen["held_transfers"]}


async def test_a_held_transfer_pays_the_invoice_it_was_meant_for(
        desk, engine, make_invoice) -> None:
    client, headers = desk
    tx = await held_transfer(engine, 2_500_000_000, "forgot the reference")
    invoice = await make_invoice()  # 12.50 Liquid $, quoted 2.5 TON
    status, done = await post(client, headers, f"/transfers/{tx}/resolve",
                              {"action": "apply", "invoice": invoice.comment.lower()})
    assert status == 200, done
    assert (done["action"], done["invoice_status"]) == ("apply", "paid")
    assert (await Ledger(engine).invoice(invoice.public_id)).invoice.status == "paid"
    status, again = await post(client, headers, f"/transfers/{tx}/resolve",
                               {"action": "apply", "invoice": invoice.public_id})
    assert status == 409 and again["error"]["code"] == "nothing_held"


async def test_a_refund_note_records_the_money_as_sent_back(desk, engine) -> None:
    client, headers = desk
    tx = await held_transfer(engine, 700_000_000)
    status, _ = await post(client, headers, f"/transfers/{tx}/resolve",
                           {"action": "refund_note"})
    assert status == 422  # a refund needs a note, as the CLI's --refund-note
    status, done = await post(client, headers, f"/transfers/{tx}/resolve",
                              {"action": "refund_note", "note": "sent back in 4f3c"})
    assert status == 200 and done["action"] == "refund"
    [hold] = await held_transfer_state(engine, tx)
    assert hold["release"] == "refunded"


async def test_a_held_stars_payment_is_listed_in_its_own_currency(
        desk, ledger, make_user) -> None:
    client, headers = desk
    buyer = await make_user()
    held = await ledger.settle_rail_payment(
        rail="stars", channel="telegram", reference=f"op-forged-{secrets.token_hex(4)}",
        provider_reference=None, token="INV-0000000000000", currency="XTR", amount=5,
        payer_id=buyer.id, details={})
    seen = await get_overview(client, headers)
    [row] = [p for p in seen["held_rail_payments"] if p["id"] == held.rail_payment_id]
    assert (row["amount"]["text"], row["amount"]["currency"]) == ("5", "XTR")
    assert (row["rail"], row["reason"]) == ("stars", "unknown_quote")
    # Stars are booked too: their system accounts are listed in Stars, not refused.
    assert any(b["balance"]["currency"] == "XTR" for b in seen["system_balances"])


# --- callbacks ------------------------------------------------------------------------------


async def test_a_failed_callback_is_shown_in_public_form_and_sent_again_once(
        desk, engine, make_user, make_invoice) -> None:
    client, headers = desk
    event_id, seller = await failed_callback(engine, make_user, make_invoice)
    seen = await get_overview(client, headers)
    [row] = [c for c in seen["failed_callbacks"] if c["event_id"] == event_id]
    assert row["event"] == "invoice_paid" and row["attempts"] == 6
    assert row["endpoint"] == "https://shop.example/paid"
    assert row["seller"] == {"telegram_id": seller.telegram_id, "username": "hooks_shop"}
    assert row["last_error"] == "gave up after 6 attempts: connection failed"  # no address

    status, done = await post(client, headers, f"/callbacks/{event_id}/redeliver")
    assert status == 200 and done["callback"]["status"] == "pending"
    state = await callback_state(engine, event_id)
    assert state["failed_at"] is None and state["attempts"] == 0
    status, again = await post(client, headers, f"/callbacks/{event_id}/redeliver")
    assert status == 409 and again["error"]["code"] == "callback_pending"
    await run_sql(engine, "UPDATE outbox SET delivered_at = now()"
                          " WHERE event_id = CAST(:e AS uuid)",
                  e=event_id)  # as watchers/callbacks.py records a delivery
    status, again = await post(client, headers, f"/callbacks/{event_id}/redeliver")
    assert status == 409 and again["error"]["code"] == "callback_delivered"
    seen = await get_overview(client, headers)
    assert event_id not in {c["event_id"] for c in seen["failed_callbacks"]}


# --- payouts --------------------------------------------------------------------------------


async def test_a_payout_waiting_for_approval_is_approved_or_rejected_once(
        desk, engine, make_user) -> None:
    client, headers = desk
    user = await make_user(balance=100_00)
    first = await payouts.request_withdrawal(engine, user.id, "TON", 5 * TON, USER_WALLET,
                                             POLICY)
    second = await payouts.request_withdrawal(engine, user.id, "TON", 5 * TON, USER_WALLET,
                                              POLICY)
    seen = await get_overview(client, headers)
    waiting = {p["id"]: p for p in seen["payouts_to_approve"]}
    assert first.id in waiting and waiting[first.id]["amount"]["text"] == "5"
    assert await balance(engine, user.id) == 50_00

    status, done = await post(client, headers, f"/payouts/{first.id}/approve", {})
    assert status == 200 and done["payout"]["status"] == "queued"
    status, _ = await post(client, headers, f"/payouts/{second.id}/reject", {})
    assert status == 422  # the user is told why: a note is required, as in the CLI
    status, done = await post(client, headers, f"/payouts/{second.id}/reject",
                              {"note": "looks like fraud"})
    assert status == 200 and done["payout"]["status"] == "rejected"
    assert await balance(engine, user.id) == 75_00  # the rejected one came back
    status, again = await post(client, headers, f"/payouts/{first.id}/reject",
                               {"note": "too late"})
    assert status == 409 and again["error"]["code"] == "payout_not_pending"


# --- system balances and invariants ---------------------------------------------------------


@pytest.fixture
async def own_ledger(scratch_database) -> AsyncIterator[AsyncEngine]:  # type: ignore[no-untyped-def]
    """A database of this test's own (the invariants are about the whole ledger)."""
    url = await scratch_database()
    await upgrade(url)
    engine = make_engine(url, pool_size=3)
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_invariants_ok_then_broken_then_not_checkable_in_time(
        own_ledger: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = own_ledger
    op = await ensure_user(engine, 4_200_001, username="op")
    client = TestClient(TestServer(make_app(engine, operator_settings(op))))
    await client.start_server()
    try:
        headers = tma(sign_init_data(tg_user(op)))
        await held_transfer(engine, 1_000_000_000)
        seen = await get_overview(client, headers)
        assert seen["invariants"]["status"] == "ok" and seen["invariants"]["violations"] == []
        assert seen["invariants"]["checked_at"]
        balances = {(b["account"], b["balance"]["currency"]): b["balance"]["minor"]
                    for b in seen["system_balances"]}
        assert balances[("suspense", "TON")] == 1_000_000_000  # what is held
        assert balances[("chain_inflow", "TON")] == -1_000_000_000

        user = await ensure_user(engine, 4_200_002)
        async with engine.connect() as conn:  # a balance changed behind the ledger's back
            await conn.exec_driver_sql(
                f"INSERT INTO accounts (user_id, currency, balance) VALUES ({user.id}, 'LIQ', 5)")
            await conn.commit()
        seen = await get_overview(client, headers)
        assert seen["invariants"]["status"] == "broken"
        assert any(v.startswith("balance_equals_applied_entries")
                   for v in seen["invariants"]["violations"])

        # The check waits on a lock past its timeout: "could not check now", not a hang.
        monkeypatch.setattr(operator_view, "INVARIANTS_TIMEOUT_MS", 200)
        locking = engine.execution_options(isolation_level="READ COMMITTED")
        async with locking.connect() as locker, locker.begin():
            # a table only the check reads (the rest of the overview does not wait on it)
            await locker.exec_driver_sql(
                "LOCK TABLE payment_reversals IN ACCESS EXCLUSIVE MODE")
            seen = await get_overview(client, headers)
        assert seen["invariants"]["status"] == "unknown"
        assert seen["invariants"]["scheduled"] is None  # the scheduled check never told
        # What the scheduled check (no time limit of this page's) last told the operators.
        await record_state(engine, "invariants", "open", "balance_equals_applied_entries: …")
        async with locking.connect() as locker, locker.begin():
            await locker.exec_driver_sql(
                "LOCK TABLE payment_reversals IN ACCESS EXCLUSIVE MODE")
            seen = await get_overview(client, headers)
        assert seen["invariants"]["status"] == "unknown"
        assert seen["invariants"]["scheduled"]["broken"] is True
    finally:
        await client.close()


# --- bad input ------------------------------------------------------------------------------


async def test_unknown_ids_are_404(desk) -> None:
    client, headers = desk
    credit = {"action": "refund_note", "note": "x"}
    for path, body, code in [
        (f"/transfers/{secrets.token_hex(32)}/resolve", credit, "transfer_not_found"),
        ("/transfers/zz/resolve", credit, "transfer_not_found"),
        (f"/callbacks/{uuid.uuid4()}/redeliver", {}, "callback_not_found"),
        ("/callbacks/not-a-uuid/redeliver", {}, "callback_not_found"),
        ("/payouts/987654321/approve", {}, "payout_not_found"),
        ("/payouts/abc/reject", {"note": "x"}, "payout_not_found"),
        ("/payouts/99999999999999999999/approve", {}, "payout_not_found"),
    ]:
        status, answer = await post(client, headers, path, body)
        assert (status, answer["error"]["code"]) == (404, code), path
        assert answer["error"]["message"]


async def test_bad_bodies_are_422_and_change_nothing(desk, engine, make_user) -> None:
    client, headers = desk
    tx = await held_transfer(engine, 1_000_000_000)
    user = await make_user()
    path = f"{BASE}/transfers/{tx}/resolve"
    for raw in (b"{not json", b"[1, 2]", b'"credit"'):
        r = await client.post(path, headers=headers, data=raw)
        assert r.status == 422 and (await r.json())["error"]["code"] == "invalid_body"
    for body in ({"action": "burn"}, {},
                 {"action": "credit", "telegram_id": str(user.telegram_id)},
                 {"action": "credit", "telegram_id": True},
                 {"action": "credit", "telegram_id": user.telegram_id, "amount": 5},
                 {"action": "credit", "telegram_id": user.telegram_id, "note": "x" * 501},
                 {"action": "apply"}, {"action": "apply", "invoice": 7}):
        status, answer = await post(client, headers, f"/transfers/{tx}/resolve", body)
        assert status == 422 and answer["error"]["code"] == "invalid_field", body
    status, answer = await post(client, headers, f"/transfers/{tx}/resolve",
                                {"action": "credit", "telegram_id": 1})
    assert status == 404 and answer["error"]["code"] == "user_not_found"
    r = await client.get(f"{BASE}/overview", headers=headers, params={"status": "all"})
    assert r.status == 422
    [hold] = await held_transfer_state(engine, tx)
    assert hold["released_at"] is None and await balance(engine, user.id) == 0
