"""TON watcher benchmark: decode + match + settle per second, against the raw parse rate.

    python -m bench.watcher [--database-url URL] [--transactions 10000] [--pending 100000]
                            [--small-transactions 1000] [--small-pending 1000]

Transactions are derived from the @ton/sandbox fixtures (tests/fixtures/ton): real
Transaction cells whose time, lt, previous-transaction link and message body are rewritten,
so each is a distinct, correctly chained transaction with a new hash — 80 % pay a distinct
pending invoice (`INV-<id>`, exactly the quote), 10 % deposits (`DEP-<code>`), 10 % no comment.

Measured in one run, on one core for the Python parts:
- `raw_parse_per_s`: pytoniq_core `Transaction.deserialize(Cell.one_from_boc(boc))` of the BOCs
  (the reference);
- `decode_match_per_s`: the watcher's decode (watchers/ton_decode) + comment match
  (watchers/ton_match) of the same BOCs, and its ratio to the reference;
- `jetton_decode_match_per_s`: the same for jetton transactions (the @ton/sandbox jetton
  fixtures, tests/fixtures/ton/jettons.json: transfer notifications judged against our jetton
  wallet, their forward payload decoded and matched; the fake, excesses and bounces too),
  against the raw parse of those BOCs (`jetton_raw_parse_per_s`, target ratio >= 0.8);
- `settle_per_s`: the whole watcher (TonWatcher.poll_once through an in-memory source serving
  the BOCs: walk back, decode, match, one database transaction per chain transaction with the
  cursor advance) over all `--transactions`, against a database holding `--pending` pending
  invoices; `settle_per_s_median_window` is the median over windows of 250 settlements (the
  machine is shared: bursts of other work, and autovacuum of the growing tables, pull the
  overall figure down);
- matching cost against the number of pending invoices: the first `--small-transactions`
  settlements against `--pending` vs against `--small-pending` invoices (same run length,
  both on a fresh database), and the invoice lookup the settlement does, in µs, at both sizes.
Prints one JSON object. The database runs with its default durability (fsync on);
`commit_ms` is a bare single-row commit on the same server in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
from pytoniq_core import Builder, Cell
from pytoniq_core.tlb.transaction import InternalMsgInfo, Transaction

from bench.common import scratch_database, server
from ledger.ids import new_invoice_id
from ledger.invariants import check_invariants
from ledger.migrate import upgrade
from ledger.postgres import libpq_url, make_engine
from watchers.jettons import OurJettonWallets
from watchers.ton_decode import DecodedTransaction, decode_transaction
from watchers.ton_watcher import TonWatcher, to_chain_transfer

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "ton"
RATE = Decimal("5")
QUOTE = 1_000_000_000  # every bench invoice: 5.00 LIQ = 1 TON
# Bit offsets in a Transaction root cell: transaction$0111 account_addr:bits256 lt:uint64
# prev_trans_hash:bits256 prev_trans_lt:uint64 now:uint32 ...
_LT, _PREV_HASH, _PREV_LT, _NOW, _REST = 260, 324, 580, 644, 676


# --- fixture-derived transactions -------------------------------------------------------


def _templates() -> dict[str, Cell]:
    data = json.loads((FIXTURES / "transactions.json").read_text(encoding="utf-8"))
    by_case = {t["case"]: t for t in data["transactions"]}
    return {k: Cell.one_from_boc(base64.b64decode(by_case[c]["boc_b64"]))
            for k, c in (("invoice", "plain"), ("deposit", "deposit"), ("none", "no_comment"))}


def _with_body(template: Cell, comment: str | None) -> Cell:
    """The template's transaction cell with its incoming message's body replaced."""
    msgs = template.refs[0]
    msg = msgs.refs[0]
    cs = msg.begin_parse()
    InternalMsgInfo.deserialize(cs)
    info_bits = len(msg.bits) - cs.remaining_bits
    b = Builder().store_bits(msg.bits[:info_bits]).store_bit(0)  # no StateInit
    if comment is None:
        new_msg = b.store_bit(0).end_cell()  # empty inline body
    else:
        body = Builder().store_uint(0, 32).store_snake_bytes(comment.encode()).end_cell()
        new_msg = b.store_bit(1).store_ref(body).end_cell()
    new_msgs = Builder().store_bits(msgs.bits)
    new_msgs.refs = [new_msg, *msgs.refs[1:]]
    return Cell(template.bits, [new_msgs.end_cell(), *template.refs[1:]], template.type_)


def derive_chain(items: list[tuple[str, str | None]], templates: dict[str, Cell],
                 start_lt: int = 10**9) -> list[bytes]:
    """BOCs of a chain of transactions, oldest first: (template kind, comment) each."""
    prev_lt, prev_hash = 0, bytes(32)
    bocs = []
    for i, (kind, comment) in enumerate(items):
        base = _with_body(templates[kind], comment)
        lt = start_lt + 1000 * (i + 1)
        bits = base.bits
        new_bits = (bits[:_LT] + _uint(lt, 64) + _bytes(prev_hash) + _uint(prev_lt, 64)
                    + _uint(1_700_000_000 + i, 32) + bits[_REST:])
        cell = Cell(new_bits, base.refs, base.type_)
        bocs.append(cell.to_boc())
        prev_lt, prev_hash = lt, cell.hash
    return bocs


def _uint(value: int, size: int) -> Any:
    return Builder().store_uint(value, size).end_cell().bits


def _bytes(value: bytes) -> Any:
    return Builder().store_bytes(value).end_cell().bits


# --- the database --------------------------------------------------------------------------


def mix(ids: list[str], codes: list[str], n: int, seed: int) -> list[tuple[str, str | None]]:
    """80 % pay a distinct invoice, 10 % deposits, 10 % no comment, shuffled."""
    rng = random.Random(seed)
    paid, deposits = n * 8 // 10, n // 10
    items: list[tuple[str, str | None]] = (
        [("invoice", f"INV-{pid}") for pid in rng.sample(ids, min(paid, len(ids)))]
        + [("deposit", f"DEP-{rng.choice(codes)}") for _ in range(deposits)])
    items += [("none", None)] * (n - len(items))
    rng.shuffle(items)
    return items


def invoice_ids(n: int) -> list[str]:
    ids: set[str] = set()
    while len(ids) < n:
        ids.add(new_invoice_id())
    return sorted(ids)


async def seed(url: str, ids: list[str], codes: list[str]) -> None:
    """A seller, depositors and the pending LIQ invoices, each quoted 1 TON (bulk, untimed)."""
    conn = await asyncpg.connect(libpq_url(url))
    try:
        async with conn.transaction():
            seller = await conn.fetchval(
                "INSERT INTO users (telegram_id, deposit_code) VALUES (1, '0000000000') "
                "RETURNING id")
            await conn.execute(
                "INSERT INTO users (telegram_id, deposit_code) "
                "SELECT 100 + n, code FROM unnest($1::text[]) WITH ORDINALITY AS t(code, n)",
                codes)
            await conn.execute(
                """
                INSERT INTO invoices (public_id, seller_id, number, title, currency, amount,
                                      ton_amount, ton_rate, kind, expires_at)
                SELECT pid, $2, 'INV-B-' || n, 'Bench item', 'LIQ', 500, $3, $4, 'one_time',
                       now() + interval '30 days'
                  FROM unnest($1::text[]) WITH ORDINALITY AS t(pid, n)
                """, ids, seller, QUOTE, RATE)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def lookup_us(url: str, ids: list[str], n: int = 2000, rounds: int = 3) -> float:
    """Time of the invoice lookup the settlement does (by public id), in µs: the mean over
    `n` random ids, best of `rounds`."""
    conn = await asyncpg.connect(libpq_url(url))
    try:
        stmt = await conn.prepare("SELECT id FROM invoices WHERE public_id = $1")
        rng = random.Random(1)
        best = float("inf")
        for _ in range(rounds):
            sample = rng.choices(ids, k=n)
            t = time.perf_counter()
            for pid in sample:
                await stmt.fetchval(pid)
            best = min(best, (time.perf_counter() - t) / n * 1e6)
        return best
    finally:
        await conn.close()


async def commit_ms(url: str, n: int = 200) -> float:
    """One durable single-row commit on this server now: the floor under each settlement."""
    conn = await asyncpg.connect(libpq_url(url))
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS bench_commit_durable (x int)")
        t = time.perf_counter()
        for _ in range(n):
            await conn.execute("INSERT INTO bench_commit_durable VALUES (1)")
        return (time.perf_counter() - t) / n * 1000
    finally:
        await conn.close()


class MemorySource:
    """Serves the BOCs like a TON HTTP API would: decoded per page, newest first."""

    name = "memory"

    def __init__(self, bocs: list[bytes], page_size: int = 100) -> None:
        self.bocs = bocs
        self.page_size = page_size
        self._index: dict[tuple[int, str], int] = {}

    async def get_transactions(self, address: str, limit: int, from_lt: int | None,
                               from_hash: str | None, to_lt: int) -> list[DecodedTransaction]:
        if not self._index:  # lt/hash -> position, from the one decode the walk also does
            for i, boc in enumerate(self.bocs):
                tx = decode_transaction(boc)
                self._index[(tx.lt, tx.hash_hex)] = i
        start = len(self.bocs) - 1 if from_lt is None else \
            self._index[(from_lt, from_hash or "")]
        page = []
        for i in range(start, max(-1, start - limit), -1):
            tx = decode_transaction(self.bocs[i])
            if tx.lt <= to_lt:
                break
            page.append(tx)
        return page

    async def get_wallet_address(self, master: str, owner: str) -> str:
        raise NotImplementedError("the bench follows no jetton")

    async def close(self) -> None:
        pass


@dataclass
class SettleRun:
    per_s: float
    median_window_per_s: float  # the median of 250-settlement windows: robust to load bursts
    first_per_s: float  # over the first `first` settlements only
    outcomes: dict[str, int]
    invariants_ok: bool
    lookup_us: float
    commit_ms: float


async def settle_run(server_url: str, ids: list[str], codes: list[str], bocs: list[bytes],
                     address: str, concurrency: int, first: int) -> SettleRun:
    async with scratch_database(server_url, "paybot_bench_watcher") as url:
        await upgrade(url)
        await seed(url, ids, codes)
        engine = make_engine(url, pool_size=concurrency + 1)
        stamps: list[float] = []

        async def stamp(*_: object) -> None:
            stamps.append(time.perf_counter())

        watcher = TonWatcher(engine, MemorySource(bocs), address, currency="LIQ", ton_rate=RATE,
                             concurrency=concurrency, on_settled=stamp)
        try:
            # Prime the connections/prepared statements on an untimed first transaction.
            watcher.source = MemorySource(bocs[:1])
            await watcher.poll_once()
            watcher.source = MemorySource(bocs)
            stamps.clear()
            t = time.perf_counter()
            settled = await watcher.poll_once()
            elapsed = time.perf_counter() - t
        finally:
            await watcher.close()
        rows = await engine.connect()
        try:
            result = await rows.exec_driver_sql(
                "SELECT outcome, count(*) FROM ton_transfers GROUP BY outcome")
            outcomes = {str(r[0]): int(r[1]) for r in result}
        finally:
            await rows.close()
        invariants = await check_invariants(engine)
        await engine.dispose()
        w = 250
        windows = sorted(w / (stamps[i + w] - stamps[i]) for i in range(0, len(stamps) - w, w))
        median = windows[len(windows) // 2] if windows else settled / elapsed
        # From the first settlement on: the walk back (decoding every BOC) comes before it
        # and is longer for the longer run.
        k = min(first, len(stamps)) - 1
        first_rate = k / (stamps[k] - stamps[0]) if k > 0 else 0.0
        return SettleRun(settled / elapsed, median, first_rate, outcomes, not invariants,
                         await lookup_us(url, ids), await commit_ms(url))


# --- the Python part on one core --------------------------------------------------------


def best_rates(fns: list[Callable[[bytes], object]], bocs: list[bytes],
               repeats: int = 3) -> list[float]:
    """Per second of this process's CPU time (other processes on the machine do not count),
    best of `repeats`, the functions taking turns so a busy moment hits both alike."""
    best = [0.0] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t = time.process_time()
            for boc in bocs:
                fn(boc)
            best[i] = max(best[i], len(bocs) / (time.process_time() - t))
    return best


def raw_parse(boc: bytes) -> object:
    return Transaction.deserialize(Cell.one_from_boc(boc).begin_parse())


class _KnownWallets:
    """A wallet store that already knows our jetton wallet (no database in the Python part)."""

    def __init__(self, wallet: str) -> None:
        self.wallet = wallet

    async def jetton_wallet(self, master_raw: str, owner_raw: str) -> str | None:
        return self.wallet

    async def remember_jetton_wallet(self, symbol: str, master_raw: str, owner_raw: str,
                                     wallet_raw: str) -> str:
        return self.wallet


async def jetton_sample(n: int) -> tuple[list[bytes], str, OurJettonWallets]:
    """`n` BOCs cycling through the jetton fixture's shop transactions with an incoming
    message (mostly genuine notifications), the shop address, and our wallets, known."""
    data = json.loads((FIXTURES / "jettons.json").read_text(encoding="utf-8"))
    pool = [base64.b64decode(t["boc_b64"]) for t in data["transactions"]
            if t["expect"]["incoming"]]
    address = data["destination"]["raw"]
    wallets = OurJettonWallets({data["symbol"]: data["master_raw"]}, address,
                               _KnownWallets(data["shop_jetton_wallet_raw"]), MemorySource([]))
    await wallets.resolve()
    assert wallets.complete
    return [pool[i % len(pool)] for i in range(n)], address, wallets


async def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench.watcher")
    p.add_argument("--database-url", help="a PostgreSQL server (default: an embedded one)")
    p.add_argument("--transactions", type=int, default=10_000)
    p.add_argument("--pending", type=int, default=100_000)
    p.add_argument("--small-transactions", type=int, default=1_000)
    p.add_argument("--small-pending", type=int, default=1_000)
    p.add_argument("--concurrency", type=int, default=8,
                   help="the watcher's settlements in flight (its default)")
    p.add_argument("--jetton-transactions", type=int, default=10_000)
    p.add_argument("--decode-only", action="store_true",
                   help="only the Python parts (decode + match against the raw parse)")
    args = p.parse_args(argv)
    jetton_bocs, shop, wallets = await jetton_sample(args.jetton_transactions)
    jetton_raw, jetton_decode_match = best_rates(
        [raw_parse, lambda b: to_chain_transfer(decode_transaction(b), shop, wallets)],
        jetton_bocs)
    jettons = {
        "jetton_transactions": args.jetton_transactions,
        "jetton_raw_parse_per_s": round(jetton_raw),
        "jetton_decode_match_per_s": round(jetton_decode_match),
        "jetton_decode_match_ratio": round(jetton_decode_match / jetton_raw, 3),
    }
    jetton_target = {"jetton_decode_match_ratio>=0.8": jetton_decode_match / jetton_raw >= 0.8}
    if args.decode_only:
        return jettons | {"targets": jetton_target}
    templates = _templates()
    address = json.loads((FIXTURES / "transactions.json").read_text())["destination"]["raw"]
    codes = [f"{i:010d}" for i in range(1, 101)]  # 100 depositors
    small_ids, large_ids = invoice_ids(args.small_pending), invoice_ids(args.pending)
    t = time.perf_counter()
    small_bocs = derive_chain(mix(small_ids, codes, args.small_transactions, 1), templates)
    large_bocs = derive_chain(mix(large_ids, codes, args.transactions, 2), templates)
    derive_s = time.perf_counter() - t

    # Python only, one core: the very BOCs the large settle run processes.
    raw, decode_match = best_rates(
        [raw_parse, lambda b: to_chain_transfer(decode_transaction(b), address)], large_bocs)

    with server(args.database_url) as server_url:
        small = await settle_run(server_url, small_ids, codes, small_bocs, address,
                                 args.concurrency, args.small_transactions)
        large = await settle_run(server_url, large_ids, codes, large_bocs, address,
                                 args.concurrency, args.small_transactions)
    result = {
        "transactions": args.transactions,
        "pending_invoices": args.pending,
        "raw_parse_per_s": round(raw),
        "decode_match_per_s": round(decode_match),
        "decode_match_ratio": round(decode_match / raw, 3),
        **jettons,
        "settle_per_s": round(large.per_s),
        "settle_per_s_median_window": round(large.median_window_per_s),
        "settle_concurrency": args.concurrency,
        "settle_outcomes": large.outcomes,
        # Same run length on both sides: the first N settlements of each fresh database.
        f"settle_per_s_first_{args.small_transactions}_at_{args.pending}_pending":
            round(large.first_per_s),
        f"settle_per_s_first_{args.small_transactions}_at_{args.small_pending}_pending":
            round(small.first_per_s),
        "settle_ratio_large_vs_small_pending": round(large.first_per_s / small.first_per_s, 3),
        "invoice_lookup_us": {str(args.small_pending): round(small.lookup_us, 1),
                              str(args.pending): round(large.lookup_us, 1)},
        "commit_ms": round((small.commit_ms + large.commit_ms) / 2, 3),
        "load_average_1m": round(os.getloadavg()[0], 2),  # other work on this machine
        "invariants_ok": large.invariants_ok and small.invariants_ok,
        "derive_seconds": round(derive_s, 1),
        "targets": {"decode_match_ratio>=0.8": decode_match / raw >= 0.8,
                    "settle_per_s>=500": large.per_s >= 500,
                    "settle_median_window>=500": large.median_window_per_s >= 500,
                    **jetton_target},
    }
    return result


def run() -> None:
    t = time.perf_counter()
    result = asyncio.run(main())
    result["bench_seconds"] = round(time.perf_counter() - t, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    run()
