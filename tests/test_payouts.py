"""Payouts in the ledger (ledger/payouts.py -> ledger/sql/payouts.sql) on a real PostgreSQL:
the debit and the order are one transaction; bad input and refusals change nothing; a held
transfer is refunded once; a message is given up only when it can no longer land."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import payouts
from ledger.accounts import balance
from ledger.addresses import friendly
from ledger.errors import (
    IdempotencyKeyReused,
    InsufficientFunds,
    InvalidAddress,
    InvalidAmount,
    NothingHeld,
    OwnAddress,
    PayoutNotPending,
    PayoutStateChanged,
    UnsupportedAsset,
    WithdrawalLimit,
    WrongNetwork,
)
from ledger.invariants import check_invariants
from ledger.payouts import PayoutPolicy
from ledger.transfer_admin import resolve_transfer
from ledger.transfers import ChainTransfer, record_transfer, start_cursor
from tests.conftest import run_sql

TON = 10**9
RATE = Decimal("5")  # Liquid $ per TON: 1 TON costs 5.00 from the balance
SHOP = "0:" + "5a" * 32
HOT = "0:" + "6b" * 32
SENDER = "0:" + "ab" * 32
USER_WALLET = friendly("0:" + "cd" * 32, bounceable=False)  # UQ…, mainnet
POLICY = PayoutPolicy(
    network="mainnet", own_addresses=(SHOP, HOT),
    daily_limit={"TON": 10 * TON, "USDT": 500 * 10**6},
    approval_above={"TON": 4 * TON, "USDT": 100 * 10**6},
    balance_currency="LIQ", ton_rate=RATE,
)


async def payout_rows(engine: AsyncEngine, user_id: int) -> int:
    rows = await run_sql(engine, "SELECT count(*) AS n FROM payouts WHERE user_id = :u",
                         u=user_id)
    return int(rows[0]["n"])  # type: ignore[call-overload]


# --- withdrawals ------------------------------------------------------------------------------


async def test_a_withdrawal_debits_the_balance_and_orders_the_payout_together(
        engine: AsyncEngine, make_user) -> None:
    user = await make_user(balance=2000)  # 20.00 Liquid $
    p = await payouts.request_withdrawal(engine, user.id, "TON", 3 * TON, USER_WALLET, POLICY)
    assert (p.kind, p.asset, p.amount, p.status) == ("withdrawal", "TON", 3 * TON, "queued")
    assert p.destination == "0:" + "cd" * 32 and p.destination_given == USER_WALLET
    assert p.bounceable is False  # the UQ form says: do not bounce
    assert (p.debit_currency, p.debit_amount) == ("LIQ", 1500)
    assert await balance(engine, user.id) == 500
    assert await check_invariants(engine) == []


async def test_the_same_request_key_orders_once(engine: AsyncEngine, make_user) -> None:
    user = await make_user(balance=2000)
    first = await payouts.request_withdrawal(engine, user.id, "TON", TON, USER_WALLET, POLICY,
                                             key="w:1")
    again = await payouts.request_withdrawal(engine, user.id, "TON", TON, USER_WALLET, POLICY,
                                             key="w:1")
    assert again.id == first.id
    assert await balance(engine, user.id) == 1500
    with pytest.raises(IdempotencyKeyReused):
        await payouts.request_withdrawal(engine, user.id, "TON", 2 * TON, USER_WALLET, POLICY,
                                         key="w:1")
    assert await balance(engine, user.id) == 1500


@pytest.mark.parametrize(("asset", "amount", "address", "error"), [
    ("TON", 5 * TON, USER_WALLET, InsufficientFunds),  # 25.00 from 20.00
    ("TON", TON, "UQ-not-an-address", InvalidAddress),
    ("TON", TON, USER_WALLET[:-1] + ("A" if USER_WALLET[-1] != "A" else "B"), InvalidAddress),
    ("TON", TON, friendly("0:" + "cd" * 32, bounceable=False, testnet=True), WrongNetwork),
    ("TON", TON, friendly(HOT, bounceable=True), OwnAddress),
    ("TON", TON, SHOP, OwnAddress),
    ("BTC", TON, USER_WALLET, UnsupportedAsset),
    ("JUNK", 1, USER_WALLET, UnsupportedAsset),
])
async def test_bad_withdrawals_are_refused_with_the_balance_unchanged(
        engine: AsyncEngine, make_user, asset: str, amount: int, address: str,
        error: type[Exception]) -> None:
    user = await make_user(balance=2000)
    with pytest.raises(error):
        await payouts.request_withdrawal(engine, user.id, asset, amount, address, POLICY)
    assert await balance(engine, user.id) == 2000
    assert await payout_rows(engine, user.id) == 0


async def test_addresses_paybot_holds_are_refused_whatever_the_settings_say(
        engine: AsyncEngine, make_user) -> None:
    """The ledger knows the addresses it follows, our jetton wallets and the hot wallets."""
    bare = PayoutPolicy(network="mainnet", daily_limit=POLICY.daily_limit,
                        approval_above=POLICY.approval_above, ton_rate=RATE)
    await held_transfer(engine, TON)  # SHOP is followed from here on
    hot = "0:" + "7c" * 32
    await payouts.register_hot_wallet(engine, hot, "v4r2")
    user = await make_user(balance=2000)
    for ours in (SHOP, friendly(SHOP, bounceable=False), friendly(hot, bounceable=True)):
        with pytest.raises(OwnAddress):
            await payouts.request_withdrawal(engine, user.id, "TON", TON, ours, bare)
    assert await balance(engine, user.id) == 2000
    assert await payout_rows(engine, user.id) == 0


async def test_the_daily_limit_counts_the_days_withdrawals(engine: AsyncEngine, make_user) -> None:
    user = await make_user(balance=100_00)
    for _ in range(3):
        await payouts.request_withdrawal(engine, user.id, "TON", 3 * TON, USER_WALLET, POLICY)
    with pytest.raises(WithdrawalLimit) as err:  # 9 of 10 TON used today
        await payouts.request_withdrawal(engine, user.id, "TON", 2 * TON, USER_WALLET, POLICY)
    assert (err.value.needed, err.value.available) == (2 * TON, TON)
    assert await balance(engine, user.id) == 100_00 - 3 * 15_00
    assert await payout_rows(engine, user.id) == 3


async def test_racing_withdrawals_never_pass_the_limit(engine: AsyncEngine, make_user) -> None:
    user = await make_user(balance=100_00)

    async def one() -> object:
        try:
            return await payouts.request_withdrawal(engine, user.id, "TON", 3 * TON,
                                                    USER_WALLET, POLICY)
        except WithdrawalLimit as e:
            return e

    results = await asyncio.gather(*(one() for _ in range(8)))
    assert sum(isinstance(r, payouts.Payout) for r in results) == 3
    assert await balance(engine, user.id) == 100_00 - 3 * 15_00


async def test_above_the_threshold_waits_for_the_operator_and_a_rejection_gives_it_back(
        engine: AsyncEngine, make_user) -> None:
    user = await make_user(balance=50_00)
    p = await payouts.request_withdrawal(engine, user.id, "TON", 5 * TON, USER_WALLET, POLICY)
    assert p.status == "pending_approval"
    assert await balance(engine, user.id) == 25_00  # held by the order meanwhile
    told = await run_sql(engine, "SELECT payload FROM outbox WHERE event_type = 'operator.payout'"
                                 " AND (payload->>'payout_id')::bigint = :id", id=p.id)
    assert len(told) == 1
    rejected = await payouts.reject(engine, p.id, note="looks like fraud")
    assert (rejected.status, rejected.note) == ("rejected", "looks like fraud")
    assert await balance(engine, user.id) == 50_00
    for decide in (payouts.reject, payouts.approve):
        with pytest.raises(PayoutNotPending):
            await decide(engine, p.id)
    assert await balance(engine, user.id) == 50_00
    assert (await payouts.get_payout(engine, p.id)).status == "rejected"
    # a rejected withdrawal does not count toward the day's limit
    again = await payouts.request_withdrawal(engine, user.id, "TON", 5 * TON, USER_WALLET, POLICY)
    approved = await payouts.approve(engine, again.id)
    assert approved.status == "queued"
    assert await check_invariants(engine) == []


async def test_the_balance_in_ton_pays_ton_one_to_one(engine: AsyncEngine, make_user) -> None:
    user = await make_user(balance=3 * TON, currency="TON")
    policy = PayoutPolicy(network="mainnet", daily_limit={"TON": 10 * TON},
                          approval_above={"TON": 10 * TON}, balance_currency="TON")
    p = await payouts.request_withdrawal(engine, user.id, "TON", 2 * TON, USER_WALLET, policy)
    assert (p.debit_currency, p.debit_amount) == ("TON", 2 * TON)
    assert await balance(engine, user.id, "TON") == TON


# --- refunds of held transfers -----------------------------------------------------------------

_tx_ids = itertools.count(1)


async def held_transfer(engine: AsyncEngine, value: int, comment: str | None = None, *,
                        asset: str = "TON") -> str:
    """An unmatched transfer from SENDER to the shop: held in suspense (in `asset`: a jetton
    carries `value` jetton units and 0.05 TON). Returns its hash."""
    await start_cursor(engine, SHOP, 0, "0" * 64)
    last = await run_sql(engine, "SELECT lt, tx_hash FROM ton_transfers WHERE address = :a "
                                 "ORDER BY lt DESC LIMIT 1", a=SHOP)
    prev = (int(last[0]["lt"]), str(last[0]["tx_hash"])) if last else (0, "0" * 64)  # type: ignore[call-overload]
    tx_hash = hashlib.sha256(f"payout-test-{next(_tx_ids)}".encode()).hexdigest()
    t = ChainTransfer(address=SHOP, tx_hash=tx_hash, lt=prev[0] + 1000, utime=1_800_000_000,
                      prev_lt=prev[0], prev_hash=prev[1], incoming=True, source=SENDER,
                      value_nano=value if asset == "TON" else 50_000_000,
                      body_kind="text" if comment else "empty", comment=comment, asset=asset,
                      asset_amount=None if asset == "TON" else value)
    result = await record_transfer(engine, t, currency="LIQ", ton_rate=RATE)
    assert result.outcome == "unmatched" and result.held_nano == value
    return tx_hash


async def test_a_held_transfer_is_refunded_to_its_sender_once(engine: AsyncEngine) -> None:
    tx = await held_transfer(engine, 700_000_000)
    p = await payouts.refund_held_transfer(engine, tx, note="customer asked")
    assert (p.kind, p.asset, p.amount, p.status) == ("refund", "TON", 700_000_000, "queued")
    assert p.destination == SENDER and p.bounceable is False
    hold = await run_sql(engine, "SELECT h.release, h.released_at IS NOT NULL AS released "
                                 "FROM ton_holds h JOIN ton_transfers t ON t.id = h.transfer_id "
                                 "WHERE t.tx_hash = :h", h=tx)
    assert hold == [{"release": "refunded", "released": True}]
    with pytest.raises(NothingHeld):
        await payouts.refund_held_transfer(engine, tx)
    with pytest.raises(NothingHeld):  # nor can the operator resolve it another way now
        await resolve_transfer(engine, tx, refund_note="sent by hand", currency="LIQ",
                               ton_rate=RATE)
    refunds = await run_sql(engine, "SELECT count(*) AS n FROM payouts WHERE transfer_id = "
                                    "(SELECT id FROM ton_transfers WHERE tx_hash = :h)", h=tx)
    assert refunds == [{"n": 1}]
    assert await check_invariants(engine) == []


async def test_a_held_jetton_transfer_is_refunded_in_its_jetton(engine: AsyncEngine) -> None:
    tx = await held_transfer(engine, 7_500_000, asset="USDT")  # 7.5 USDT
    p = await payouts.refund_held_transfer(engine, tx)
    assert (p.asset, p.amount, p.destination) == ("USDT", 7_500_000, SENDER)
    assert await check_invariants(engine) == []


async def test_a_usdt_withdrawal_costs_its_dollars_one_to_one(engine: AsyncEngine,
                                                             make_user) -> None:
    user = await make_user(balance=30_00)
    p = await payouts.request_withdrawal(engine, user.id, "USDT", 12_340_000, USER_WALLET,
                                         POLICY)
    assert (p.asset, p.amount, p.debit_currency, p.debit_amount) == ("USDT", 12_340_000,
                                                                      "LIQ", 12_34)
    assert await balance(engine, user.id) == 30_00 - 12_34
    with pytest.raises(InvalidAmount):  # a fraction of a cent is not a balance's money
        await payouts.request_withdrawal(engine, user.id, "USDT", 1_000_001, USER_WALLET,
                                         POLICY)
    assert await balance(engine, user.id) == 30_00 - 12_34
    assert await check_invariants(engine) == []


async def test_two_refunds_of_one_transfer_at_once_order_one_payout(engine: AsyncEngine) -> None:
    tx = await held_transfer(engine, 300_000_000)
    results = await asyncio.gather(
        *(payouts.refund_held_transfer(engine, tx) for _ in range(5)), return_exceptions=True)
    assert sum(isinstance(r, payouts.Payout) for r in results) == 1
    assert all(isinstance(r, (payouts.Payout, NothingHeld)) for r in results), results


# --- the sender's rules -------------------------------------------------------------------------


async def queued_refund(engine: AsyncEngine) -> payouts.Payout:
    return await payouts.refund_held_transfer(engine, await held_transfer(engine, TON))


async def drain_in_flight(engine: AsyncEngine) -> None:
    """Earlier tests may leave a message in flight (one at a time): confirm it."""
    p = await payouts.in_flight(engine)
    if p is not None and p.ext_msg_hash:
        await payouts.landed(engine, p.ext_msg_hash, hashlib.sha256(b"drain%d" % p.id).hexdigest(),
                             sent=True)


async def test_a_message_is_given_up_only_when_it_can_no_longer_land(engine: AsyncEngine) -> None:
    await drain_in_flight(engine)
    p = await queued_refund(engine)
    h = hashlib.sha256(b"msg-1-%d" % p.id).hexdigest()
    signed = await payouts.mark_signed(engine, p.id, seqno=7, valid_until=1_800_000_120,
                                       ext_msg_hash=h, boc=b"boc-1")
    assert (signed.status, signed.seqno, signed.valid_until) == ("signed", 7, 1_800_000_120)
    assert await payouts.message_boc(engine, h) == b"boc-1"
    # still valid on chain, or the wallet's seqno moved (something landed): not given up
    for seqno, now in ((7, 1_800_000_120), (7, 1_800_000_000), (8, 1_800_000_500)):
        with pytest.raises(PayoutStateChanged):
            await payouts.expire_unlanded(engine, p.id, h, wallet_seqno=seqno, chain_now=now)
    assert (await payouts.get_payout(engine, p.id)).status == "signed"
    again = await payouts.expire_unlanded(engine, p.id, h, wallet_seqno=7,
                                          chain_now=1_800_000_121)
    assert (again.id, again.status, again.ext_msg_hash) == (p.id, "queued", None)
    h2 = hashlib.sha256(b"msg-2-%d" % p.id).hexdigest()
    await payouts.mark_signed(engine, p.id, seqno=7, valid_until=1_800_000_300,
                              ext_msg_hash=h2, boc=b"boc-2")
    await payouts.mark_sent(engine, p.id, h2)
    tx = hashlib.sha256(b"landed-%d" % p.id).hexdigest()
    done = await payouts.landed(engine, h2, tx, sent=True)
    assert done is not None and (done.status, done.tx_hash, done.attempts) == ("confirmed", tx, 2)
    assert (await payouts.landed(engine, h2, tx, sent=True)) == done  # seen again: nothing new
    assert await payouts.landed(engine, "f" * 64, tx, sent=True) is None  # not ours
    moved = await run_sql(engine, "SELECT count(*) AS n FROM ledger_transactions "
                                  "WHERE reference = :r", r=f"payout-sent:{p.id}")
    assert moved == [{"n": 1}]
    assert await check_invariants(engine) == []


async def test_one_message_in_flight_at_a_time(engine: AsyncEngine) -> None:
    await drain_in_flight(engine)
    a, b = await queued_refund(engine), await queued_refund(engine)
    await payouts.mark_signed(engine, a.id, seqno=1, valid_until=2_000_000_000,
                              ext_msg_hash=hashlib.sha256(b"a%d" % a.id).hexdigest(), boc=b"a")
    with pytest.raises(PayoutStateChanged):
        await payouts.mark_signed(engine, b.id, seqno=1, valid_until=2_000_000_000,
                                  ext_msg_hash=hashlib.sha256(b"b%d" % b.id).hexdigest(),
                                  boc=b"b")
    assert (await payouts.get_payout(engine, b.id)).status == "queued"
    await drain_in_flight(engine)


async def test_a_message_the_wallet_took_without_sending_queues_the_order_again(
        engine: AsyncEngine) -> None:
    await drain_in_flight(engine)
    p = await queued_refund(engine)
    h = hashlib.sha256(b"nosend-%d" % p.id).hexdigest()
    await payouts.mark_signed(engine, p.id, seqno=3, valid_until=2_000_000_000, ext_msg_hash=h,
                              boc=b"x")
    back = await payouts.landed(engine, h, "e" * 64, sent=False, detail="action phase failed")
    assert back is not None and (back.status, back.note) == ("queued", "action phase failed")
    assert await check_invariants(engine) == []


# --- the operator's commands ------------------------------------------------------------------


@pytest.fixture
def paybot(database_url: str, monkeypatch: pytest.MonkeyPatch,
           capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """`paybot admin …` as the operator runs it (its `main`, in a thread)."""
    from bot.cli import main

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("LEDGER_TON_RATE", "5")
    monkeypatch.setenv("LEDGER_CURRENCY", "LIQ")

    async def run(*args: str) -> tuple[int, str, str]:
        try:
            code = await asyncio.to_thread(main, ["admin", *args])
        except SystemExit as e:  # argparse
            code = int(e.code or 0)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


async def test_the_operator_refunds_a_held_transfer_as_a_payout_order(
        engine: AsyncEngine, paybot) -> None:  # type: ignore[no-untyped-def]
    tx = await held_transfer(engine, 250_000_000)
    code, out, _ = await paybot("resolve", tx, "--refund", "--note", "ticket 12")
    assert code == 0 and f"0.25 TON back to {SENDER}, queued" in out
    payout_id = int(out.split()[1].rstrip(":"))
    code, out, _ = await paybot("payouts", "--status", "pending")
    line = next(x for x in out.splitlines() if x.startswith(f"{payout_id}\t"))
    assert "refund" in line and "0.25 TON" in line and "queued" in line and "ticket 12" in line
    code, _, err = await paybot("resolve", tx, "--refund")  # released once
    assert code == 2 and "nothing_held" in err
    code, _, err = await paybot("payouts", "reject", str(payout_id), "--note", "no")
    assert code == 2 and "payout_not_pending" in err  # a refund is not waiting for anyone
    assert (await payouts.get_payout(engine, payout_id)).status == "queued"


async def test_the_operator_approves_or_rejects_a_large_withdrawal(
        engine: AsyncEngine, make_user, paybot) -> None:  # type: ignore[no-untyped-def]
    user = await make_user(balance=50_00)
    big = await payouts.request_withdrawal(engine, user.id, "TON", 5 * TON, USER_WALLET, POLICY)
    other = await payouts.request_withdrawal(engine, user.id, "TON", 5 * TON, USER_WALLET,
                                             POLICY)
    code, out, _ = await paybot("payouts", "--status", "approval")
    ids = {int(x.split("\t")[0]) for x in out.splitlines()[1:]}
    assert code == 0 and {big.id, other.id} <= ids
    code, out, _ = await paybot("payouts", "approve", str(big.id))
    assert code == 0 and out.strip() == f"payout {big.id} approved: queued"
    code, out, _ = await paybot("payouts", "reject", str(other.id), "--note", "too much")
    assert code == 0
    assert out.strip() == f"payout {other.id} rejected: 25.00 LIQ back to user {user.id}"
    assert await balance(engine, user.id) == 25_00
    code, _, err = await paybot("payouts", "approve", str(other.id))
    assert code == 2 and "payout_not_pending" in err
    code, _, err = await paybot("payouts", "approve", "999999999")
    assert code == 2 and "payout_not_found" in err
    assert await balance(engine, user.id) == 25_00
