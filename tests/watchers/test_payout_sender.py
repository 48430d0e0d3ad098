"""The payout sender (watchers/payout_sender.py) against a stand-in of the hot wallet that keeps
a wallet v4r2's rules: it takes an external message only with a valid signature, its current
seqno and a valid_until after the chain's time, once; a broadcast waits in a mempool until the
next block, or is lost. The sender is killed (a BaseException out of its pass, its database
session dropped, a new sender started) before the broadcast, after it, and before the
confirmation: every payout is sent exactly once, and the ledger's invariants hold."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pytoniq_core.boc import Cell
from pytoniq_core.boc.address import Address
from pytoniq_core.crypto.signature import verify_sign
from pytoniq_core.tlb.account import SimpleAccount, SimpleAccountState, StateInit
from pytoniq_core.tlb.custom.wallet import WalletV4Data
from pytoniq_core.tlb.transaction import MessageAny, Transaction
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import payouts
from ledger.accounts import balance
from ledger.addresses import friendly
from ledger.errors import OwnAddress
from ledger.invariants import check_invariants
from ledger.migrate import upgrade
from ledger.payouts import PayoutPolicy
from ledger.postgres import make_engine
from tests.conftest import run_sql
from watchers.payout_sender import (
    EXPIRY_MARGIN,
    JETTON_TRANSFER_TON,
    ChainError,
    HotWallet,
    LiteserverWalletChain,
    PayoutSender,
    WalletState,
    WalletTx,
    wallet_tx,
)
from watchers.ton_links import friendly_address

TON = 10**9
MNEMONIC = ("collect coffee color phone illness later there cousin net foster depart insect "
            "throw bench glare pioneer sail coast critic satoshi galaxy aisle consider angle")
T0 = 1_800_000_000


class Killed(BaseException):
    """The process died here (not an error the sender could catch)."""


@dataclass
class Sent:
    destination: str
    amount: int
    comment: str


@dataclass
class WalletStandIn:
    """One wallet v4r2 on a chain whose clock and blocks the test drives."""

    wallet: HotWallet
    balance: int = 100 * TON
    seqno: int = 0
    active: bool = False
    now: int = T0
    txs: list[WalletTx] = field(default_factory=list)  # newest first
    mempool: list[bytes] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    visible: bool = True  # False: transactions not served yet (a lagging liteserver)
    lose_next: bool = False  # the next broadcast never reaches a validator
    kill_on: str | None = None  # "before_send" | "after_send" | "read_txs"
    name: str = "standin"
    jetton_calls: list[tuple[str, int]] = field(default_factory=list)  # (jetton wallet, TON)
    jettons: int = 0  # what the hot wallet's jetton wallet holds
    deployed: set[str] = field(default_factory=set)  # other accounts with a contract
    bounces: list[bool] = field(default_factory=list)  # each sent message's bounce flag

    async def jetton_balance(self, jetton_wallet: str) -> int:
        return self.jettons

    async def account_active(self, address: str) -> bool:
        return address in self.deployed
    _lt: itertools.count = field(default_factory=lambda: itertools.count(1000, 1000))

    async def wallet_state(self, address: str) -> WalletState:
        assert address == self.wallet.raw
        return WalletState(self.seqno, self.balance, self.active, self.now)

    async def recent_transactions(self, address: str, limit: int) -> list[WalletTx]:
        if self.kill_on == "read_txs":
            self.kill_on = None
            raise Killed()
        return self.txs[:limit] if self.visible else []

    async def send_boc(self, boc: bytes) -> None:
        if self.kill_on == "before_send":
            self.kill_on = None
            raise Killed()
        if self.lose_next:
            self.lose_next = False
        else:
            self.mempool.append(boc)
        if self.kill_on == "after_send":
            self.kill_on = None
            raise Killed()

    async def close(self) -> None:
        pass

    def block(self, seconds: int = 5) -> None:
        """The next block: the clock moves, the mempool is executed, in order."""
        self.now += seconds
        pool, self.mempool = self.mempool, []
        for boc in pool:
            self._execute(boc)

    def _what(self, out: MessageAny, value: int) -> Sent:
        """A TON transfer with its comment, or a jetton `transfer` read as the jetton wallet
        would: to whom, how much, what the recipient is told."""
        body = out.body.begin_parse()
        to = out.info.dest.to_str(is_user_friendly=False)
        if body.load_uint(32) == 0:
            return Sent(to, value, body.load_snake_string())
        self.jetton_calls.append((to, value))
        body.skip_bits(64)  # query_id
        amount = body.load_coins()
        dest = body.load_address().to_str(is_user_friendly=False)
        response = body.load_address().to_str(is_user_friendly=False)
        assert response == self.wallet.raw and not body.load_bit()  # excess back; no custom
        assert body.load_coins() == 1  # forward_ton_amount: the recipient is notified
        comment = body.load_ref().begin_parse() if body.load_bit() else body
        comment.skip_bits(32)
        return Sent(dest, amount, "jetton " + comment.load_snake_string())

    def _execute(self, boc: bytes) -> None:
        cell = Cell.one_from_boc(boc)
        msg = MessageAny.deserialize(cell.begin_parse())
        body = msg.body.begin_parse()
        signature = body.load_bytes(64)
        signing = body.to_cell()
        sc = signing.begin_parse()
        wallet_id, valid_until, seqno, _op = (sc.load_uint(32), sc.load_uint(32),
                                              sc.load_uint(32), sc.load_uint(8))
        if not self.active and msg.init is None:
            return  # nothing to run: an uninitialised account takes no external message
        public_key = self.wallet.state_init.data.begin_parse().skip_bits(64).load_bytes(32)
        if (not verify_sign(public_key, signing.hash, signature)
                or wallet_id != self.wallet.wallet_id or seqno != self.seqno
                or valid_until <= self.now):
            return  # not accepted: no transaction, no fee, nothing happens
        self.active = True
        self.seqno += 1
        sent = 0
        while sc.remaining_refs:
            _mode = sc.load_uint(8)
            out = MessageAny.deserialize(sc.load_ref().begin_parse())
            value = out.info.value.grams
            if self.balance >= value + 10_000_000:
                self.balance -= value + 10_000_000
                self.sent.append(self._what(out, value))
                self.bounces.append(bool(out.info.bounce))
                sent += 1
        tx_hash = hashlib.sha256(b"tx" + cell.hash).hexdigest()
        self.txs.insert(0, WalletTx(tx_hash, next(self._lt), cell.hash.hex(), sent, False,
                                    "sent" if sent else "nothing sent (action: 37)"))


SHOP = "0:" + "5a" * 32
USER_WALLET = friendly("0:" + "cd" * 32, bounceable=False)


@pytest.fixture
def wallet() -> HotWallet:
    return HotWallet.from_mnemonic(MNEMONIC, "v4r2")


@pytest.fixture
def policy(wallet: HotWallet) -> PayoutPolicy:
    return PayoutPolicy(network="mainnet", own_addresses=(SHOP, wallet.raw),
                        daily_limit={"TON": 1000 * TON}, approval_above={"TON": 1000 * TON},
                        balance_currency="TON")


@pytest.fixture
async def engine(scratch_database) -> AsyncIterator[AsyncEngine]:  # type: ignore[no-untyped-def]
    """A database of its own per test: the sender sends the oldest queued order of all."""
    url = await scratch_database()
    await upgrade(url)
    engine = make_engine(url, pool_size=5)
    yield engine
    await engine.dispose()


async def withdraw(engine: AsyncEngine, make_user, policy: PayoutPolicy,  # type: ignore[no-untyped-def]
                   amount: int = 2 * TON) -> payouts.Payout:
    user = await make_user(balance=10 * TON, currency="TON")
    return await payouts.request_withdrawal(engine, user.id, "TON", amount, USER_WALLET, policy)


def sender(engine: AsyncEngine, chain: WalletStandIn) -> PayoutSender:
    return PayoutSender(engine, chain, chain.wallet, valid_seconds=60, clock=lambda: chain.now)


async def restart(engine: AsyncEngine, dead: PayoutSender, chain: WalletStandIn) -> PayoutSender:
    await dead._drop_conn()  # a killed process's session ends, and its lock with it
    return sender(engine, chain)


def sent_for(chain: WalletStandIn, p: payouts.Payout) -> list[Sent]:
    return [s for s in chain.sent if s.comment == f"paybot payout {p.id}"]


async def test_a_payout_is_signed_stored_broadcast_and_confirmed_once(
        engine: AsyncEngine, make_user, wallet: HotWallet, policy: PayoutPolicy) -> None:
    p = await withdraw(engine, make_user, policy)
    chain = WalletStandIn(wallet)
    s = sender(engine, chain)
    assert await s.run_once() == "sent"
    stored = await payouts.get_payout(engine, p.id)
    assert (stored.status, stored.seqno, stored.valid_until) == ("sent", 0, T0 + 60)
    assert await payouts.message_boc(engine, stored.ext_msg_hash or "") == chain.mempool[0]
    chain.block()
    assert await s.run_once() == "confirmed"
    done = await payouts.get_payout(engine, p.id)
    assert done.status == "confirmed" and done.tx_hash == chain.txs[0].tx_hash
    assert sent_for(chain, p) == [Sent("0:" + "cd" * 32, 2 * TON, f"paybot payout {p.id}")]
    assert await s.run_once() == "idle"
    assert await check_invariants(engine) == []
    await s.close()


@pytest.mark.parametrize("kill_on", ["before_send", "after_send", "read_txs"])
async def test_killed_at_any_point_nothing_is_lost_or_sent_twice(
        engine: AsyncEngine, make_user, wallet: HotWallet, policy: PayoutPolicy,
        kill_on: str) -> None:
    p = await withdraw(engine, make_user, policy)
    chain = WalletStandIn(wallet)
    s = sender(engine, chain)
    if kill_on == "read_txs":
        assert await s.run_once() == "sent"
        chain.block()
    chain.kill_on = kill_on
    with pytest.raises(Killed):
        await s.run_once()
    s = await restart(engine, s, chain)
    for _ in range(4):  # restarted: passes and blocks until it is confirmed
        await s.run_once()
        chain.block()
    assert (await payouts.get_payout(engine, p.id)).status == "confirmed"
    assert len(sent_for(chain, p)) == 1
    assert len(chain.txs) == 1 and chain.seqno == 1
    assert await check_invariants(engine) == []
    await s.close()


async def test_a_lost_message_is_signed_again_only_once_it_can_no_longer_land(
        engine: AsyncEngine, make_user, wallet: HotWallet, policy: PayoutPolicy) -> None:
    p = await withdraw(engine, make_user, policy)
    chain = WalletStandIn(wallet, lose_next=True)
    s = sender(engine, chain)
    assert await s.run_once() == "sent"
    first = await payouts.get_payout(engine, p.id)
    chain.block(seconds=60)  # now == valid_until: it could still land
    chain.lose_next = True
    assert await s.run_once() == "rebroadcast"
    assert (await payouts.get_payout(engine, p.id)).ext_msg_hash == first.ext_msg_hash
    chain.block(seconds=EXPIRY_MARGIN)  # valid_until passed, but a shard may lag: not yet
    assert await s.run_once() == "rebroadcast"
    chain.block(seconds=1)  # the chain is past valid_until (and the margin), seqno unmoved
    assert await s.run_once() == "expired"
    assert await s.run_once() == "sent"
    second = await payouts.get_payout(engine, p.id)
    assert second.seqno == first.seqno and second.ext_msg_hash != first.ext_msg_hash
    assert second.attempts == 2
    chain.block()
    assert await s.run_once() == "confirmed"
    assert len(sent_for(chain, p)) == 1
    messages = await run_sql(engine, "SELECT outcome FROM payout_messages WHERE payout_id = :id"
                                     " ORDER BY id", id=p.id)
    assert [m["outcome"] for m in messages] == ["expired", "landed"]
    await s.close()


async def test_a_late_old_message_cannot_land_after_the_new_one(
        engine: AsyncEngine, make_user, wallet: HotWallet, policy: PayoutPolicy) -> None:
    """The first message reaches a validator after it was given up: the wallet refuses it
    (its valid_until passed), so the payout still goes out once."""
    p = await withdraw(engine, make_user, policy)
    chain = WalletStandIn(wallet)
    s = sender(engine, chain)
    await s.run_once()
    held_back, chain.mempool = chain.mempool, []  # stuck somewhere in the network
    chain.block(seconds=61 + EXPIRY_MARGIN)
    assert await s.run_once() == "expired"
    assert await s.run_once() == "sent"
    chain.mempool = held_back + chain.mempool
    chain.block()
    assert await s.run_once() == "confirmed"
    assert len(sent_for(chain, p)) == 1
    await s.close()


async def test_a_moved_seqno_without_its_transaction_is_never_signed_again(
        engine: AsyncEngine, make_user, wallet: HotWallet, policy: PayoutPolicy) -> None:
    p = await withdraw(engine, make_user, policy)
    chain = WalletStandIn(wallet)
    s = sender(engine, chain)
    await s.run_once()
    chain.visible = False  # landed, but the transaction is not served yet
    chain.block()
    chain.now += 600  # long past valid_until: still, the seqno moved
    assert await s.run_once() == "waiting_landing"
    assert (await payouts.get_payout(engine, p.id)).status == "sent"
    chain.visible = True
    assert await s.run_once() == "confirmed"
    assert len(sent_for(chain, p)) == 1
    await s.close()


async def test_not_enough_in_the_hot_wallet_orders_wait_and_the_operator_is_told_once(
        engine: AsyncEngine, make_user, wallet: HotWallet, policy: PayoutPolicy) -> None:
    p = await withdraw(engine, make_user, policy, amount=5 * TON)
    chain = WalletStandIn(wallet, balance=TON)
    s = sender(engine, chain)
    assert await s.run_once() == "waiting_funds"
    assert await s.run_once() == "waiting_funds"
    told = await run_sql(engine, "SELECT payload FROM outbox WHERE event_type = 'operator.payout'"
                                 " AND (payload->>'payout_id')::bigint = :id", id=p.id)
    assert [t["payload"]["kind"] for t in told] == ["payout_funds"]  # type: ignore[index]
    assert (await payouts.get_payout(engine, p.id)).status == "queued"
    chain.balance = 50 * TON
    assert await s.run_once() == "sent"
    chain.block()
    assert await s.run_once() == "confirmed"
    await s.close()


async def test_a_message_the_wallet_took_but_could_not_send_is_sent_again(
        engine: AsyncEngine, make_user, wallet: HotWallet, policy: PayoutPolicy) -> None:
    p = await withdraw(engine, make_user, policy, amount=5 * TON)
    chain = WalletStandIn(wallet, balance=6 * TON)
    s = sender(engine, chain)
    assert await s.run_once() == "sent"
    chain.balance = TON  # spent elsewhere before the block
    chain.block()
    assert await s.run_once() == "requeued"
    assert sent_for(chain, p) == [] and chain.seqno == 1
    chain.balance = 50 * TON
    assert await s.run_once() == "sent"
    assert (await payouts.get_payout(engine, p.id)).seqno == 1
    chain.block()
    assert await s.run_once() == "confirmed"
    assert len(sent_for(chain, p)) == 1
    await s.close()


async def test_a_refund_goes_back_to_the_sender_of_the_held_transfer(
        engine: AsyncEngine, wallet: HotWallet) -> None:
    from tests.test_payouts import SENDER, held_transfer

    tx = await held_transfer(engine, 700_000_000)
    p = await payouts.refund_held_transfer(engine, tx)
    chain = WalletStandIn(wallet)
    s = sender(engine, chain)
    assert await s.run_once() == "sent"
    chain.block()
    assert await s.run_once() == "confirmed"
    assert sent_for(chain, p) == [Sent(SENDER, 700_000_000, f"paybot payout {p.id}")]
    assert await check_invariants(engine) == []
    await s.close()


async def test_one_sender_at_a_time(engine: AsyncEngine, wallet: HotWallet) -> None:
    chain = WalletStandIn(wallet)
    a, b = sender(engine, chain), sender(engine, chain)
    assert await a.run_once() == "idle"
    assert await b.run_once() == "standby"
    await a.close()
    assert await b.run_once() == "idle"
    await b.close()


async def test_a_rejected_withdrawal_is_never_sent(
        engine: AsyncEngine, make_user, wallet: HotWallet) -> None:
    strict = PayoutPolicy(network="mainnet", own_addresses=(wallet.raw,),
                          daily_limit={"TON": 1000 * TON}, approval_above={"TON": TON},
                          balance_currency="TON")
    user = await make_user(balance=10 * TON, currency="TON")
    p = await payouts.request_withdrawal(engine, user.id, "TON", 3 * TON, USER_WALLET, strict)
    chain = WalletStandIn(wallet)
    s = sender(engine, chain)
    assert await s.run_once() == "idle"  # waiting for approval is not queued
    await payouts.reject(engine, p.id)
    assert await s.run_once() == "idle"
    assert chain.sent == [] and await balance(engine, user.id, "TON") == 10 * TON
    await s.close()


# --- the real wallet contract: messages paybot signed, run by @ton/sandbox ----------------------
# tests/fixtures/ton/payout_messages.py signs them, payouts.mjs runs them (payouts.json).

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ton"


def emulated() -> tuple[dict[str, Any], dict[str, Any]]:
    signed = json.loads((FIXTURES / "payout_messages.json").read_text(encoding="utf-8"))
    ran = json.loads((FIXTURES / "payouts.json").read_text(encoding="utf-8"))
    return signed, ran


def test_paybot_still_signs_the_very_messages_the_emulator_ran() -> None:
    from tests.fixtures.ton.payout_messages import messages

    signed, _ = emulated()
    assert messages() == signed


def test_the_wallet_contract_takes_each_signed_message_once_and_only_while_valid() -> None:
    signed, ran = emulated()
    by_case = {r["case"]: r for r in ran["results"]}
    assert {c: r["outcome"] for c, r in by_case.items()} == {
        "first_payout": "accepted", "replayed": "rejected", "expired": "rejected",
        "second_payout": "accepted", "too_large": "accepted", "usdt_payout": "accepted",
        "v5r1_payout": "accepted"}
    assert {m["version"] for m in signed["messages"]} == {"v4r2", "v5r1"}
    for m in signed["messages"]:
        r = by_case[m["case"]]
        if r["outcome"] != "accepted":
            continue
        tx = wallet_tx(Cell.one_from_boc(base64.b64decode(r["tx"]["boc_b64"])))
        assert (tx.ext_in_hash, tx.tx_hash) == (m["ext_msg_hash"], r["tx"]["hash_hex"])
        assert r["tx"]["end_seqno"] == m["seqno"] + 1
        if m["expect"] == "accepted":
            assert tx.sent == 1 and r["tx"]["out"] == [
                {"dest": signed["recipient"], "value_nano": m["amount"]}]
        elif m["expect"] == "accepted_jetton":
            # to our jetton wallet, which moved the jettons and told the recipient
            assert tx.sent == 1 and r["tx"]["out"] == [
                {"dest": signed["hot_jetton_wallet"], "value_nano": str(JETTON_TRANSFER_TON)}]
            assert r["jetton"] == {
                "hot_jetton_balance": str(100 * 10**6 - int(m["amount"])),
                "recipient_jetton_balance": m["amount"],
                "notification": {"amount": m["amount"], "sender": signed["hot_wallet"],
                                 "comment": f"paybot payout {m['payout_id']}"},
                "failed": 0}
        else:  # more than the wallet holds: the seqno is used, nothing leaves
            assert tx.sent == 0 and r["tx"]["out"] == []


@dataclass
class EmulatedChain:
    """Serves what the emulator did with each message paybot broadcasts; a message it never
    ran means paybot signed something else than the fixture (a failure)."""

    wallet: HotWallet
    now: int
    seqno: int = 0
    txs: list[WalletTx] = field(default_factory=list)
    mempool: list[str] = field(default_factory=list)
    kill_after_send: bool = False
    name: str = "emulated"

    def __post_init__(self) -> None:
        _, ran = emulated()
        self.outcomes: dict[str, list[dict[str, Any]]] = {}
        for r in ran["results"]:
            self.outcomes.setdefault(r["ext_msg_hash"], []).append(r)

    async def wallet_state(self, address: str) -> WalletState:
        return WalletState(self.seqno, 10_000 * TON, self.seqno > 0, self.now)

    async def recent_transactions(self, address: str, limit: int) -> list[WalletTx]:
        return self.txs[:limit]

    async def send_boc(self, boc: bytes) -> None:
        h = Cell.one_from_boc(boc).hash.hex()
        assert h in self.outcomes, "paybot broadcast a message the emulator never ran"
        self.mempool.append(h)
        if self.kill_after_send:
            self.kill_after_send = False
            raise Killed()

    async def close(self) -> None:
        pass

    async def account_active(self, address: str) -> bool:
        return False  # the fixture's recipient was never deployed

    def block(self) -> None:
        pool, self.mempool = self.mempool, []
        for h in pool:
            runs = self.outcomes[h]
            r = runs.pop(0) if len(runs) > 1 else runs[0]  # later copies: as the emulator did
            if r["outcome"] == "accepted" and all(t.ext_in_hash != h for t in self.txs):
                self.txs.insert(0, wallet_tx(Cell.one_from_boc(
                    base64.b64decode(r["tx"]["boc_b64"]))))
                self.seqno = r["tx"]["end_seqno"]


async def test_the_sender_end_to_end_on_the_emulators_transactions(
        engine: AsyncEngine, make_user, wallet: HotWallet) -> None:
    signed, _ = emulated()
    policy = PayoutPolicy(network="mainnet", own_addresses=(wallet.raw,),
                          daily_limit={"TON": 10_000 * TON}, approval_above={"TON": 10_000 * TON},
                          balance_currency="TON")
    user = await make_user(balance=2000 * TON, currency="TON")
    to = friendly(signed["recipient"], bounceable=False)
    ids = [(await payouts.request_withdrawal(engine, user.id, "TON", amount, to, policy)).id
           for amount in (TON, TON // 2, 1000 * TON)]
    assert ids == [1, 2, 3]  # as the fixture's messages say
    chain = EmulatedChain(wallet, now=signed["t0"])
    s = PayoutSender(engine, chain, wallet, valid_seconds=60, clock=lambda: chain.now)
    assert await s.run_once() == "sent"
    chain.block()
    assert await s.run_once() == "confirmed"
    chain.kill_after_send = True  # the second payout: killed right after its broadcast
    with pytest.raises(Killed):
        await s.run_once()
    s = await restart(engine, s, chain)
    assert await s.run_once() == "rebroadcast"  # the same stored BOC, not a new signature
    chain.block()
    assert await s.run_once() == "confirmed"
    assert await s.run_once() == "sent"
    chain.block()
    assert await s.run_once() == "requeued"  # the wallet took it, but could not pay 1000 TON
    landed = {p.id: p.tx_hash for p in await payouts.list_payouts(engine, statuses=["confirmed"])}
    by_case = {r["case"]: r for r in emulated()[1]["results"]}
    assert landed == {1: by_case["first_payout"]["tx"]["hash_hex"],
                      2: by_case["second_payout"]["tx"]["hash_hex"]}
    assert (await payouts.get_payout(engine, 3)).status == "queued"
    assert await balance(engine, user.id, "TON") == 2000 * TON - TON - TON // 2 - 1000 * TON
    assert await check_invariants(engine) == []
    await s.close()


async def test_a_withdrawal_to_the_hot_wallet_itself_is_never_sent(
        engine: AsyncEngine, make_user, wallet: HotWallet) -> None:
    """Ordered before the sender first ran (so before the ledger knew the wallet): failed when
    its turn comes, the money back; after that the ledger refuses it at once."""
    loose = PayoutPolicy(network="mainnet", daily_limit={"TON": 1000 * TON},
                         approval_above={"TON": 1000 * TON}, balance_currency="TON")
    user = await make_user(balance=10 * TON, currency="TON")
    to_self = friendly(wallet.raw, bounceable=True)
    p = await payouts.request_withdrawal(engine, user.id, "TON", 2 * TON, to_self, loose)
    chain = WalletStandIn(wallet)
    s = sender(engine, chain)
    assert await s.run_once() == "failed"
    assert (await payouts.get_payout(engine, p.id)).status == "failed"
    assert chain.mempool == [] and await balance(engine, user.id, "TON") == 10 * TON
    with pytest.raises(OwnAddress):
        await payouts.request_withdrawal(engine, user.id, "TON", 2 * TON, to_self, loose)
    told = await run_sql(engine, "SELECT event_type FROM outbox WHERE payload->>'payout_id' = :i",
                         i=str(p.id))
    assert [t["event_type"] for t in told] == ["payout.failed"]
    assert await check_invariants(engine) == []
    await s.close()


async def test_a_usdt_withdrawal_is_a_jetton_transfer_from_our_jetton_wallet(
        engine: AsyncEngine, make_user, wallet: HotWallet) -> None:
    usdt_policy = PayoutPolicy(network="mainnet", own_addresses=(wallet.raw,),
                               daily_limit={"USDT": 500 * 10**6},
                               approval_above={"USDT": 100 * 10**6}, balance_currency="LIQ")
    user = await make_user(balance=50_00)
    p = await payouts.request_withdrawal(engine, user.id, "USDT", 20 * 10**6, USER_WALLET,
                                         usdt_policy)
    our_jetton_wallet = "0:" + "9e" * 32

    async def jetton_wallet_of(symbol: str) -> str | None:
        return our_jetton_wallet if symbol == "USDT" else None

    chain = WalletStandIn(wallet, jettons=19 * 10**6)
    s = PayoutSender(engine, chain, wallet, valid_seconds=60, clock=lambda: chain.now,
                     jetton_wallet_of=jetton_wallet_of)
    assert await s.run_once() == "waiting_funds"  # 19 USDT on hand, 20 to send
    told = await run_sql(engine, "SELECT payload->>'detail' AS d FROM outbox "
                                 "WHERE event_type = 'operator.payout'")
    assert [t["d"] for t in told] == [
        f"the hot wallet {friendly_address(wallet.raw)} holds 19000000 USDT units; "
        f"payout {p.id} needs 20000000"]
    chain.jettons = 100 * 10**6
    assert await s.run_once() == "sent"
    chain.block()
    assert await s.run_once() == "confirmed"
    assert chain.jetton_calls == [(our_jetton_wallet, 50_000_000)]
    assert chain.sent == [Sent("0:" + "cd" * 32, 20 * 10**6, f"jetton paybot payout {p.id}")]
    assert await balance(engine, user.id) == 30_00
    assert await check_invariants(engine) == []
    await s.close()


# --- the liteserver side, on pytoniq's own objects ---------------------------------------------


class LiteClientStandIn:
    """What LiteBalancer answers, as pytoniq objects: the hot wallet's account (seqno in its
    data), the masterchain's time, its transactions (the emulator's, parsed by pytoniq)."""

    def __init__(self, wallet: HotWallet, *, seqno: int, active: bool = True) -> None:
        self.wallet, self.seqno, self.active = wallet, seqno, active
        self.sent: list[bytes] = []
        self.fail = False

    async def get_account_state(self, address: str) -> Any:
        if self.fail:
            raise TimeoutError("liteserver timed out")
        if not self.active:
            return SimpleAccount(Address(address), 10 * TON,
                                 SimpleAccountState("uninitialized"))
        key = self.wallet.state_init.data.begin_parse().skip_bits(64).load_bytes(32)
        data = WalletV4Data(seqno=self.seqno, wallet_id=self.wallet.wallet_id,
                            public_key=key).serialize()
        state = StateInit(code=self.wallet.state_init.code, data=data)
        return SimpleAccount(Address(address), 7 * TON, SimpleAccountState("active",
                                                                            state_init=state))

    async def get_masterchain_info_ext(self) -> dict[str, Any]:
        return {"last_utime": 1_700_000_123, "now": 1_700_000_125}

    async def get_transactions(self, address: str, count: int) -> list[Any]:
        _, ran = emulated()
        cells = [Cell.one_from_boc(base64.b64decode(r["tx"]["boc_b64"]))
                 for r in ran["results"] if "tx" in r]
        return [Transaction.deserialize(c.begin_parse()) for c in reversed(cells)][:count]

    async def raw_send_message(self, boc: bytes) -> None:
        self.sent.append(boc)

    async def run_get_method(self, address: str, method: str, stack: list[Any]) -> list[Any]:
        assert (method, stack) == ("get_wallet_data", [])
        return [42_000_000, None, None, None]  # balance, owner, master, code

    async def close_all(self) -> None:
        pass


async def test_the_liteserver_chain_reads_seqno_time_and_transactions(wallet: HotWallet) -> None:
    client = LiteClientStandIn(wallet, seqno=3)

    async def connect() -> LiteClientStandIn:
        return client

    chain = LiteserverWalletChain(connect, wallet)
    assert await chain.wallet_state(wallet.raw) == WalletState(3, 7 * TON, True, 1_700_000_123)
    _, ran = emulated()
    txs = await chain.recent_transactions(wallet.raw, 16)
    accepted = [r for r in ran["results"] if "tx" in r]
    assert [t.tx_hash for t in txs] == [r["tx"]["hash_hex"] for r in reversed(accepted)]
    assert [t.ext_in_hash for t in txs] == [r["ext_msg_hash"] for r in reversed(accepted)]
    assert [t.sent for t in txs] == [1, 1, 0, 1, 1]  # v5r1, usdt, too_large, second, first
    await chain.send_boc(b"boc")
    assert client.sent == [b"boc"]
    assert await chain.jetton_balance("0:" + "9e" * 32) == 42_000_000
    client.active = False
    assert await chain.wallet_state(wallet.raw) == WalletState(0, 10 * TON, False, 1_700_000_123)
    assert await chain.jetton_balance("0:" + "9e" * 32) == 0  # not deployed: holds nothing
    client.fail = True
    with pytest.raises(ChainError):
        await chain.wallet_state(wallet.raw)
    await chain.close()


async def test_a_bounceable_address_nobody_deployed_is_paid_non_bounceable(
        engine: AsyncEngine, make_user, wallet: HotWallet, policy: PayoutPolicy) -> None:
    """EQ… says "bounce if it fails", but to an address with no contract yet the money would
    only come back while the payout reads as sent: such a transfer goes non-bounceable; to a
    deployed one, as the address says."""
    user = await make_user(balance=10 * TON, currency="TON")
    fresh, live = "0:" + "e1" * 32, "0:" + "e2" * 32
    for raw in (fresh, live):
        await payouts.request_withdrawal(engine, user.id, "TON", TON,
                                         friendly(raw, bounceable=True), policy)
    chain = WalletStandIn(wallet, deployed={live})
    s = sender(engine, chain)
    for _ in range(2):
        assert await s.run_once() == "sent"
        chain.block()
        assert await s.run_once() == "confirmed"
    assert [x.destination for x in chain.sent] == [fresh, live]
    assert chain.bounces == [False, True]
    await s.close()


@pytest.mark.parametrize("usdt_blocked_by", ["jetton_wallet_unknown", "jettons_short"])
async def test_a_usdt_payout_that_cannot_go_does_not_hold_up_ton_payouts(
        engine: AsyncEngine, make_user, wallet: HotWallet, policy: PayoutPolicy,
        usdt_blocked_by: str) -> None:
    usdt_policy = PayoutPolicy(network="mainnet", own_addresses=(wallet.raw,),
                               daily_limit={"USDT": 500 * 10**6},
                               approval_above={"USDT": 100 * 10**6}, balance_currency="LIQ")
    buyer = await make_user(balance=50_00)
    usdt = await payouts.request_withdrawal(engine, buyer.id, "USDT", 20 * 10**6, USER_WALLET,
                                            usdt_policy)
    ton = await withdraw(engine, make_user, policy)  # ordered after the USDT one

    async def jetton_wallet_of(symbol: str) -> str | None:
        return None if usdt_blocked_by == "jetton_wallet_unknown" else "0:" + "9e" * 32

    chain = WalletStandIn(wallet, jettons=0)
    s = PayoutSender(engine, chain, wallet, valid_seconds=60, clock=lambda: chain.now,
                     jetton_wallet_of=jetton_wallet_of)
    assert await s.run_once() == "sent"  # the TON payout goes; the USDT one waits its turn
    chain.block()
    assert await s.run_once() == "confirmed"
    assert (await payouts.get_payout(engine, ton.id)).status == "confirmed"
    assert (await payouts.get_payout(engine, usdt.id)).status == "queued"
    assert await s.run_once() in ("waiting_funds", "waiting_chain")
    assert await check_invariants(engine) == []
    await s.close()
