"""Jettons in (issue 15): the TEP-74 messages decoded, trusted only from our jetton wallet, and
settled through the same ledger path as TON — read through both chain sources from the
@ton/sandbox jetton fixtures (a real minter and jetton wallets in the emulator)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from pytoniq_core import Address, Cell, begin_cell
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.accounts import balance
from ledger.invariants import check_invariants
from ledger.invoice_reads import get_invoice
from ledger.invoices import create_invoice
from ledger.migrate import upgrade
from ledger.postgres import make_engine
from ledger.transfers import jetton_wallet
from ledger.users import ensure_user
from tests.conftest import run_sql
from tests.watchers.conftest import RATE
from tests.watchers.jetton_fixtures import (
    DATA,
    DESTINATION,
    JETTON_WALLET_TXS,
    MASTER_RAW,
    SHOP_JETTON_WALLET_RAW,
    SHOP_TXS,
)
from tests.watchers.standins import Chain, FixtureLiteBalancer, toncenter_app
from watchers.jetton_decode import (
    EXCESSES,
    INTERNAL_TRANSFER,
    MALFORMED,
    NOTIFICATION,
    OP_EXCESSES,
    OP_INTERNAL_TRANSFER,
    OP_TRANSFER_NOTIFICATION,
    decode_jetton,
)
from watchers.ton_decode import decode_transaction
from watchers.ton_sources import HttpApiSource, LiteserverSource, TransactionSource
from watchers.ton_watcher import TonWatcher

USDT = 1_000_000  # micro-USDT
SYMBOL: str = DATA["symbol"]
MASTER_FRIENDLY: str = DATA["master"]["bounceable"]
SHOP_WALLET = SHOP_JETTON_WALLET_RAW  # ours: the master's get_wallet_address(shop)
WALLET_TXS = JETTON_WALLET_TXS
CASE_OF: dict[tuple[str, str], str] = {
    **{(DESTINATION, t["hash_hex"]): t["case"] for t in SHOP_TXS},
    **{(SHOP_WALLET, t["hash_hex"]): t["case"] for t in WALLET_TXS},
}


def chains() -> tuple[Chain, Chain]:
    """The shop's chain (which also answers get_wallet_address, for each master in the
    fixture) and its USDT jetton wallet's."""
    wallets = {(e["request"]["address"], e["owner_raw"]): e["wallet_raw"]
               for e in DATA["get_wallet_address"].values()}
    return (Chain(list(SHOP_TXS), address=DESTINATION, wallets=wallets),
            Chain(list(WALLET_TXS), address=SHOP_WALLET))
PAYER = "0:" + "ab" * 32
DEPOSIT_CODE = "7Q4M2X9KTB"

# --- the decoder, on bodies laid out exactly as TEP-74 says ---------------------------------


def _comment(text: str) -> Cell:
    return begin_cell().store_uint(0, 32).store_snake_string(text).end_cell()


def notification(amount: int, payload: Cell | None, *, in_ref: bool,
                 sender: str = PAYER) -> Cell:
    b = (begin_cell().store_uint(OP_TRANSFER_NOTIFICATION, 32).store_uint(7, 64)
         .store_coins(amount).store_address(Address(sender)))
    if in_ref:
        assert payload is not None
        return b.store_bit(1).store_ref(payload).end_cell()
    b.store_bit(0)
    if payload is not None:
        b.store_cell(payload)
    return b.end_cell()


def internal_transfer(amount: int, forward_ton: int, payload: Cell | None) -> Cell:
    b = (begin_cell().store_uint(OP_INTERNAL_TRANSFER, 32).store_uint(9, 64).store_coins(amount)
         .store_address(Address(PAYER)).store_address(Address(PAYER)).store_coins(forward_ton))
    return (b.store_bit(1).store_ref(payload) if payload is not None else b.store_bit(0)).end_cell()


def test_a_notification_with_an_inline_or_a_referenced_comment() -> None:
    for in_ref in (False, True):
        msg = decode_jetton(notification(1_500_000, _comment("INV-7Q4M2X9KTBHWA"), in_ref=in_ref))
        assert msg is not None
        assert (msg.kind, msg.query_id, msg.amount, msg.sender) == (
            NOTIFICATION, 7, 1_500_000, PAYER)
        assert (msg.body_kind, msg.comment) == ("text", "INV-7Q4M2X9KTBHWA")


def test_a_long_comment_in_a_snake_and_payloads_that_are_not_comments() -> None:
    text = "INV-9F2G7H4JKM0NQ " + "Доставка к 9:30 " * 30  # over several cells
    msg = decode_jetton(notification(1, _comment(text), in_ref=True))
    assert msg is not None and msg.comment == text
    binary = begin_cell().store_uint(0x12345678, 32).store_uint(1, 64).end_cell()
    cases: list[tuple[Cell, str]] = [
        (notification(5, None, in_ref=False), "empty"),  # Either bit 0, nothing after it
        (notification(5, binary, in_ref=True), "binary"),
        (notification(5, begin_cell().store_uint(0, 32).store_bytes(b"\xff\xfe").end_cell(),
                      in_ref=False), "invalid_utf8"),
        # Older wallets stop after the sender, without the Either bit: no payload.
        (begin_cell().store_uint(OP_TRANSFER_NOTIFICATION, 32).store_uint(1, 64).store_coins(5)
         .store_address(Address(PAYER)).end_cell(), "empty"),
    ]
    for body, kind in cases:
        msg = decode_jetton(body)
        assert msg is not None and (msg.kind, msg.amount, msg.body_kind, msg.comment) == (
            NOTIFICATION, 5, kind, None)


def test_internal_transfer_and_excesses() -> None:
    msg = decode_jetton(internal_transfer(2 * USDT, 0, _comment("DEP-7Q4M2X9KTB")))
    assert msg is not None
    assert (msg.kind, msg.amount, msg.sender, msg.forward_ton_amount, msg.comment) == (
        INTERNAL_TRANSFER, 2 * USDT, PAYER, 0, "DEP-7Q4M2X9KTB")
    msg = decode_jetton(internal_transfer(1, 10_000_000, None))
    assert msg is not None and msg.forward_ton_amount == 10_000_000 and msg.body_kind == "empty"
    msg = decode_jetton(begin_cell().store_uint(OP_EXCESSES, 32).store_uint(3, 64).end_cell())
    assert msg is not None and (msg.kind, msg.query_id) == (EXCESSES, 3)


def test_malformed_bodies_are_classified_never_raised() -> None:
    """Anyone can send the shop any body: truncated or odd ones say what is wrong."""
    op = begin_cell().store_uint(OP_TRANSFER_NOTIFICATION, 32)
    truncated = [
        op.end_cell(),  # no query_id
        begin_cell().store_uint(OP_TRANSFER_NOTIFICATION, 32).store_uint(1, 64)
        .store_uint(15, 4).store_uint(1, 16).end_cell(),  # coins cut short
        begin_cell().store_uint(OP_TRANSFER_NOTIFICATION, 32).store_uint(1, 64).store_coins(5)
        .store_uint(2, 2).store_uint(0, 100).end_cell(),  # address cut short
        begin_cell().store_uint(OP_TRANSFER_NOTIFICATION, 32).store_uint(1, 64).store_coins(5)
        .store_uint(3, 2).store_uint(0, 300).end_cell(),  # addr_var
        begin_cell().store_uint(OP_TRANSFER_NOTIFICATION, 32).store_uint(1, 64).store_coins(5)
        .store_address(Address(PAYER)).store_bit(1).end_cell(),  # payload "in a ref", no ref
        begin_cell().store_uint(OP_EXCESSES, 32).store_uint(1, 20).end_cell(),
        begin_cell().store_uint(OP_INTERNAL_TRANSFER, 32).store_uint(1, 64).store_coins(5)
        .store_address(Address(PAYER)).end_cell(),  # no response address / forward amount
    ]
    for body in truncated:
        msg = decode_jetton(body)
        assert msg is not None and msg.kind == MALFORMED and msg.error, body
    assert decode_jetton(None) is None
    assert decode_jetton(_comment("INV-7Q4M2X9KTBHWA")) is None  # a text comment
    assert decode_jetton(begin_cell().store_uint(0x7362, 16).end_cell()) is None  # short op
    assert decode_jetton(begin_cell().store_uint(0x12345678, 32).end_cell()) is None


@pytest.mark.parametrize("t", SHOP_TXS + WALLET_TXS, ids=lambda t: t["case"])
def test_the_decoder_reads_every_fixture_as_the_emulator_sent_it(t: dict[str, Any]) -> None:
    expect = t["expect"]
    tx = decode_transaction(t["boc_b64"])
    msg = decode_jetton(tx.body)
    if expect["op_name"] not in ("transfer_notification", "internal_transfer", "excesses") \
            or expect["bounced"]:
        assert msg is None or expect["bounced"]
        return
    assert msg is not None
    assert msg.query_id == int(expect["query_id"])
    if expect["op_name"] == "excesses":
        assert msg.kind == EXCESSES
        return
    assert msg.kind == {"transfer_notification": NOTIFICATION,
                        "internal_transfer": INTERNAL_TRANSFER}[expect["op_name"]]
    assert (msg.amount, msg.sender) == (int(expect["jetton_amount"]), expect["sender_raw"])
    assert (msg.body_kind, msg.comment) == (expect["payload"], expect["comment"])
    if msg.kind == INTERNAL_TRANSFER:
        assert msg.forward_ton_amount == int(expect["forward_ton_amount"])


# --- the watcher on the fixtures -----------------------------------------------------------

# Liquid $ invoices (USDT pays them 1:1), named by the fixture comments.
INVOICES: dict[str, int] = {
    "7Q4M2X9KTBHWA": 150,  # inline_comment 1.5 USDT, then duplicate
    "3N8P5R1CVD6YE": 150,  # ref_comment
    "9F2G7H4JKM0NQ": 100,  # long_comment 1.0
    "5T6V8W2XYZ4AB": 100,  # under_1 0.99 + under_2 0.01
    "1C3D5E7F9G0HJ": 150,  # over: 2.0 -> 0.5 excess
    "4A6C8E0G2J4KM": 150,  # tiny_forward: the shop's transaction aborted, the USDT is ours
    "0R2T4V6X8Z0B1": 150,  # no_forward: no notification, held unmatched (never paid)
    "6D8F0H2K4M6PR": 150,  # lowercase_spaces
}
SHOP_EXPECTED: dict[str, str] = {
    "prefund": "ignored", "deploy": "ignored",
    "inline_comment": "paid", "ref_comment": "paid", "long_comment": "paid",
    "no_comment": "unmatched", "binary_payload": "unmatched", "tiny_forward": "paid",
    "deposit": "deposit", "deposit_odd": "deposit",
    "under_1": "partial", "under_2": "paid", "over": "excess",
    "duplicate": "late_or_duplicate", "wrong_comment": "unmatched", "lowercase_spaces": "paid",
    "fake_notification": "ignored", "foreign_jetton": "ignored",
    "shop_send": "ignored", "excesses": "ignored", "bounce_send": "ignored", "bounced": "ignored",
}
WALLET_EXPECTED: dict[str, str] = {t["case"]: "ignored" for t in WALLET_TXS} | {
    "no_forward": "unmatched"}
# What came in, in micro-USDT: every notification from our wallet, and the one transfer
# without a notification. The forged 1000 USDT and the foreign jetton are not in it.
REAL_USDT = sum(int(t["expect"]["jetton_amount"]) for t in SHOP_TXS
                if t["expect"]["jetton"] == SYMBOL and t["expect"]["op_name"]
                == "transfer_notification") + 1_500_000


@dataclass
class JettonWorld:
    url: str
    engine: AsyncEngine
    seller_id: int
    depositor_id: int

    def watcher(self, source: TransactionSource, **kw: Any) -> TonWatcher:
        kw.setdefault("retry_base", 0.001)
        kw.setdefault("retry_max", 0.01)
        return TonWatcher(self.engine, source, DESTINATION, currency="LIQ", ton_rate=RATE,
                          jettons={SYMBOL: MASTER_FRIENDLY}, **kw)

    async def rows(self) -> dict[tuple[str, str], dict[str, Any]]:
        rows = await run_sql(self.engine, "SELECT * FROM ton_transfers")
        return {(CASE_OF[(str(r["address"]), str(r["tx_hash"]))], str(r["address"])): dict(r)
                for r in rows}

    async def outcomes(self, address: str) -> dict[str, str]:
        return {case: str(r["outcome"]) for (case, a), r in (await self.rows()).items()
                if a == address}

    async def sums(self) -> dict[tuple[str, str], int]:
        rows = await run_sql(self.engine, """
            SELECT coalesce(a.system_name, 'user:' || a.user_id) AS owner, a.currency,
                   coalesce(sum(e.amount), 0) AS total
              FROM accounts a LEFT JOIN entries e ON e.account_id = a.id GROUP BY 1, 2""")
        return {(str(r["owner"]), str(r["currency"])): int(r["total"]) for r in rows}


@pytest.fixture
async def jworld(scratch_database: Any) -> AsyncIterator[JettonWorld]:
    url = await scratch_database()
    await upgrade(url)
    engine = make_engine(url, pool_size=5)
    seller = await ensure_user(engine, 2001, "seller")
    depositor = await ensure_user(engine, 2003, "depositor")
    await run_sql(engine, "UPDATE users SET deposit_code = :c WHERE id = :id",
                  c=DEPOSIT_CODE, id=depositor.id)
    for public_id, cents in INVOICES.items():
        await create_invoice(engine, seller_id=seller.id, title=f"Item {public_id}",
                             amount=cents, currency="LIQ", ton_rate=RATE, public_id=public_id,
                             payload={"item_id": f"item-{public_id}"},
                             expires_in=timedelta(days=30))
    yield JettonWorld(url, engine, seller.id, depositor.id)
    await engine.dispose()


@dataclass
class Served:
    shop: Chain
    wallet: Chain
    source: TransactionSource


@pytest.fixture(params=["http", "liteserver"])
async def served(request: pytest.FixtureRequest) -> AsyncIterator[Served]:
    shop, wallet = chains()
    if request.param == "liteserver":
        client = FixtureLiteBalancer(shop, wallet)

        async def connect() -> FixtureLiteBalancer:
            return client

        yield Served(shop, wallet, LiteserverSource(connect, page_size=4))
        return
    runner = web.AppRunner(toncenter_app(shop, wallet))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield Served(shop, wallet, HttpApiSource(f"http://127.0.0.1:{port}/api/v2", page_size=4))
    shop.released.set()
    await runner.cleanup()


async def until_idle(watcher: TonWatcher, max_polls: int = 20) -> int:
    total = 0
    for _ in range(max_polls):
        n = await watcher.poll_once()
        total += n
        if n == 0:
            return total
    raise AssertionError("the watcher never became idle")


async def assert_jetton_world(w: JettonWorld) -> None:
    assert await w.outcomes(DESTINATION) == SHOP_EXPECTED
    assert await w.outcomes(SHOP_WALLET) == WALLET_EXPECTED
    rows = await w.rows()
    shop = {case: r for (case, a), r in rows.items() if a == DESTINATION}
    paid = shop["inline_comment"]
    # In USDT, from the original sender (not the jetton wallet that notified us).
    assert (paid["asset"], paid["asset_amount"]) == (SYMBOL, 1_500_000)
    assert paid["source"] == next(t for t in SHOP_TXS if t["case"] == "inline_comment")[
        "expect"]["sender_raw"]
    assert shop["fake_notification"]["note"] == \
        f"fake jetton: notification not from our {SYMBOL} wallet"
    assert shop["foreign_jetton"]["note"] == shop["fake_notification"]["note"]
    assert (shop["fake_notification"]["asset"], shop["fake_notification"]["asset_amount"]) == (
        "TON", None)  # never counted as USDT
    assert shop["excesses"]["note"] == "jetton excesses"
    assert shop["bounced"]["note"].startswith("bounced jetton transfer")
    wallet = {case: r for (case, a), r in rows.items() if a == SHOP_WALLET}
    assert wallet["inline_comment"]["note"] == "counted by its notification"
    # an internal_transfer not from a wallet of the master: our wallet refused it (aborted)
    assert wallet["forged_internal_transfer"]["note"] == "aborted transaction"
    assert wallet["ton_to_jetton_wallet"]["note"] == "not a jetton transfer in"
    assert wallet["shop_send"]["note"] == "our own jetton transfer out"
    held = wallet["no_forward"]
    assert (held["asset"], held["asset_amount"], held["held_nano"]) == (
        SYMBOL, 1_500_000, 1_500_000)

    status = {pid: (await get_invoice(w.engine, pid)).status for pid in INVOICES}
    assert status == {pid: "pending" if pid == "0R2T4V6X8Z0B1" else "paid" for pid in INVOICES}
    methods = await run_sql(w.engine, "SELECT DISTINCT method FROM payments")
    assert [m["method"] for m in methods] == ["usdt"]
    assert await balance(w.engine, w.seller_id) == sum(INVOICES.values()) - 150
    assert await balance(w.engine, w.depositor_id) == 300 + 123  # 3 USDT + 1.23 of 1.234567
    sums = await w.sums()
    assert sums[("chain_inflow", SYMBOL)] == -REAL_USDT
    # unmatched (no comment, binary, unknown invoice), the duplicate, the excess and the
    # transfer without a notification: held in USDT
    assert sums[("suspense", SYMBOL)] == (300_000 + 200_000 + 1_000_000 + 1_500_000 + 500_000
                                          + 1_500_000)
    assert sums.get(("chain_inflow", "TON"), 0) == 0  # no TON of a jetton message counted
    assert await check_invariants(w.engine) == []


async def test_every_jetton_fixture_settles_with_its_outcome(jworld: JettonWorld,
                                                              served: Served) -> None:
    watcher = jworld.watcher(served.source)
    try:
        assert await until_idle(watcher) == len(SHOP_TXS) + len(WALLET_TXS)
    finally:
        await watcher.close()
    await assert_jetton_world(jworld)
    # Our wallet was asked of the chain once and remembered.
    assert served.shop.get_method_calls == 1
    assert await jetton_wallet(jworld.engine, MASTER_RAW, DESTINATION) == SHOP_WALLET


async def test_a_restart_mid_way_counts_nothing_twice(jworld: JettonWorld,
                                                      served: Served) -> None:
    """Stopped with half the history settled, a new watcher settles the rest, once; it reads
    our jetton wallet from the ledger, not the chain."""
    served.shop.visible, served.wallet.visible = len(SHOP_TXS) // 2, len(WALLET_TXS) // 2
    first = jworld.watcher(served.source)
    await until_idle(first)
    await first.close()
    served.shop.visible, served.wallet.visible = len(SHOP_TXS), len(WALLET_TXS)
    served.shop.get_method_down = True  # the chain's get-method is not needed again
    again = jworld.watcher(served.source)  # closed by the first; it opens again
    try:
        assert await until_idle(again) == len(SHOP_TXS) + len(WALLET_TXS) - (
            len(SHOP_TXS) // 2 + len(WALLET_TXS) // 2)
        assert await again.poll_once() == 0
    finally:
        await again.close()
    assert served.shop.get_method_calls == 1
    await assert_jetton_world(jworld)


async def test_notifications_wait_while_our_wallet_is_unknown(jworld: JettonWorld,
                                                              served: Served) -> None:
    """The master's get-method unreachable: the TON history before the first notification is
    settled, the notification is not judged (neither counted nor called fake) and nothing
    passes it; once the chain answers, everything settles exactly as if it never failed."""
    served.shop.get_method_down = True
    watcher = jworld.watcher(served.source)
    try:
        assert await until_idle(watcher) == 2  # prefund, deploy
        assert await jworld.outcomes(DESTINATION) == {"prefund": "ignored",
                                                      "deploy": "ignored"}
        assert await jworld.outcomes(SHOP_WALLET) == {}
        assert served.shop.get_method_calls >= 2  # asked again, with backoff
        served.shop.get_method_down = False
        await until_idle(watcher)
    finally:
        await watcher.close()
    await assert_jetton_world(jworld)


async def test_get_wallet_address_asks_and_reads_toncenter_as_recorded() -> None:
    """The request paybot sends is the one the fixture recorded, and the recorded answer (a
    `cell` stack entry) reads as our wallet."""
    [entry] = [e for e in DATA["get_wallet_address"].values()
               if e["request"]["address"] == MASTER_RAW]
    asked: list[Any] = []

    async def run_get_method(request: web.Request) -> web.Response:
        asked.append(await request.json())
        return web.json_response(entry["response"])

    app = web.Application()
    app.router.add_post("/api/v2/runGetMethod", run_get_method)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    source = HttpApiSource(f"http://127.0.0.1:{runner.addresses[0][1]}/api/v2")
    try:
        assert await source.get_wallet_address(MASTER_RAW, DESTINATION) == SHOP_WALLET
    finally:
        await source.close()
        await runner.cleanup()
    [sent] = asked
    assert {k: sent[k] for k in ("address", "method")} == {
        k: entry["request"][k] for k in ("address", "method")}
    [[kind, arg]], [[want_kind, want_arg]] = sent["stack"], entry["request"]["stack"]
    assert kind == want_kind == "tvm.Slice"
    # the same cell (the BOC flags, e.g. a CRC, may differ)
    assert Cell.one_from_boc(base64.b64decode(arg)).hash == \
        Cell.one_from_boc(base64.b64decode(want_arg)).hash


def test_a_jetton_the_ledger_does_not_hold_is_refused_at_start(jworld: JettonWorld) -> None:
    with pytest.raises(ValueError, match="not a ledger currency"):
        TonWatcher(jworld.engine, HttpApiSource("http://127.0.0.1:9"), DESTINATION,
                   currency="LIQ", ton_rate=RATE, jettons={"NOPE": MASTER_RAW})
