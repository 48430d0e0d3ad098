"""Where a TON transfer is matched and settled: the ledger side of the TON watcher.

The watcher (watchers/ton_watcher.py) reads and decodes the chain and parses the comment; here
each transaction becomes one call of the SQL function `paybot_ton_receive` = one database
transaction that records the transfer (unique hash) with its outcome and its predecessor —
which advances the cursor — and moves the money through balanced entries, settling invoices
through `settle_external_payment`. The cursor is a base row followed along those records, so
it never passes a transaction that is not recorded (get_cursor). The SQL is
ledger/sql/ton_transfers.sql (holds: ledger/sql/ton_holds.sql).

Outcomes: paid | excess (paid, more than the quote arrived) | partial | late_or_duplicate |
unmatched | deposit | ignored (not a customer payment: bounced, aborted, outgoing...).
Lateness is judged by the transfer's block time: sent before the invoice's expiry, it pays even
when settled after ("paid late", note says so; the invoice is expired first and stays closed
for new payments, see settle_external_payment in ledger/sql/payments.sql); sent at or after,
it is late.
Money that cannot go anywhere yet sits in `suspense` as a holding, released once by
`resolve_transfer` (operator, ledger/transfer_admin.py) or ledger.payers.bind_user (a guest
proves the tag that paid).
The payer is named by the comment's payer tag (`INV-<id>-<tag>`, ledger/payers.py, SQL in
ledger/sql/payers.sql); a bare `INV-<id>` pays with nobody known.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from decimal import Decimal

from ledger.db import Executor, fetch_one, typed_errors
from ledger.ids import normalize_code
from ledger.money import DECIMALS

HEX64 = re.compile(r"[0-9a-f]{64}")  # a transaction hash as we store it
COMMENT_MAX = 2000  # stored characters of a comment (a comment can be ~127 KB on chain)

OUTCOMES = ("paid", "partial", "excess", "late_or_duplicate", "unmatched", "deposit", "ignored")

# --- what the watcher hands in, and what it gets back --------------------------------------

@dataclass(frozen=True, slots=True)
class ChainTransfer:
    """One transaction of the followed account, decoded and matched by the watcher."""

    address: str  # the followed account, raw "0:hex"
    tx_hash: str  # 64 lowercase hex
    lt: int
    utime: int
    prev_lt: int  # the account's previous transaction: what the cursor follows
    prev_hash: str
    incoming: bool
    source: str | None
    value_nano: int
    body_kind: str
    comment: str | None
    ignore_reason: str | None = None  # not a customer payment (bounced, aborted, outgoing...)
    invoice_id: str | None = None  # canonical public id found in the comment
    deposit_code: str | None = None  # canonical deposit code found in the comment
    payer_tag: str | None = None  # canonical payer tag of `INV-<id>-<tag>` (ledger/payers.py)
    # A jetton (issue 15): its symbol (a ledger currency, e.g. USDT) and amount in its minor
    # units, which is what counts; value_nano is then the TON its message carried, and
    # `source` the jetton's original sender. no_notification: read from our jetton wallet's own
    # transaction (sent without a forward amount, so no notification said what it pays): held.
    asset: str = "TON"
    asset_amount: int | None = None
    no_notification: bool = False

@dataclass(frozen=True, slots=True)
class TransferResult:
    transfer_id: int
    outcome: str
    replayed: bool  # this transaction had been settled before: nothing happened now
    invoice_status: str | None
    payment_id: int | None
    claim_token: str | None
    held_nano: int
    credited: int | None

def _clean_comment(comment: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL; a comment is attacker-controlled and must never make the
    # insert (and so the watcher) fail. The full text stays on chain.
    if comment is None:
        return None
    return comment.replace("\x00", "\ufffd")[:COMMENT_MAX]

def check_rate(currency: str, ton_rate: Decimal) -> None:
    if currency not in DECIMALS:
        raise ValueError(f"unknown balance currency {currency!r}")
    if not isinstance(ton_rate, Decimal) or not ton_rate > 0:
        raise ValueError(f"the TON rate must be a positive Decimal, got {ton_rate!r}")

async def record_transfer(
    db: Executor, t: ChainTransfer, *, currency: str, ton_rate: Decimal
) -> TransferResult:
    """Settle one chain transaction exactly once, recording it after its predecessor (the
    cursor advance) in the same database transaction.

    `currency`/`ton_rate`: the internal balance currency and its rate (units per TON) for
    deposits and excess credits. The same transaction again returns the first outcome
    (`replayed`), also when two calls race. A transaction at or before the cursor's base that
    was never recorded raises BelowCursor (start the cursor first: `start_cursor`).
    """
    check_rate(currency, ton_rate)
    if not HEX64.fullmatch(t.tx_hash) or not HEX64.fullmatch(t.prev_hash):
        raise ValueError("transaction hashes must be 64 lowercase hex characters")
    if t.value_nano < 0:
        raise ValueError("a transfer value cannot be negative")
    if t.asset not in DECIMALS or (t.asset == "TON") != (t.asset_amount is None) \
            or (t.asset_amount is not None and t.asset_amount < 0):
        raise ValueError("a jetton transfer names a known asset and a non-negative amount")
    with typed_errors():
        row = await fetch_one(
            db,
            """
            SELECT * FROM paybot_ton_receive(:address, :hash, :lt, :utime, :prev_lt, :prev_hash,
                :incoming, :source, :value, :body_kind, :comment, :ignore, :invoice, :deposit,
                :currency, :rate, :claim, :tag, :asset, :asset_amount, :no_notification)
            """,
            address=t.address, hash=t.tx_hash, lt=t.lt, utime=t.utime, prev_lt=t.prev_lt,
            prev_hash=t.prev_hash, incoming=t.incoming, source=t.source, value=t.value_nano,
            body_kind=t.body_kind, comment=_clean_comment(t.comment), ignore=t.ignore_reason,
            invoice=t.invoice_id, deposit=t.deposit_code, currency=currency, rate=ton_rate,
            claim=secrets.token_urlsafe(24),
            tag=normalize_code(t.payer_tag)[:16] if t.invoice_id and t.payer_tag else None,
            asset=t.asset, asset_amount=t.asset_amount, no_notification=t.no_notification,
        )
    assert row is not None
    return TransferResult(
        transfer_id=row["transfer_id"], outcome=row["outcome"], replayed=row["replayed"],
        invoice_status=row["invoice_status"], payment_id=row["payment_id"],
        claim_token=row["claim_token"], held_nano=row["held_nano"], credited=row["credited"],
    )

async def get_cursor(db: Executor, address: str) -> tuple[int, str] | None:
    """(lt, hash) of the newest transaction of `address` up to which every transaction is
    settled, or None when the watcher never started there. Moves the base row up to it."""
    row = await fetch_one(db, "SELECT * FROM paybot_ton_cursor(:a, true)", a=address)
    return None if row is None else (int(row["cursor_lt"]), str(row["cursor_hash"]))

async def start_cursor(db: Executor, address: str, lt: int, tx_hash: str) -> None:
    """Where settling starts on `address`: after transaction (lt, hash) — (0, "0"*64) for the
    account's first. Does nothing when the address already has a cursor."""
    if not HEX64.fullmatch(tx_hash) or lt < 0:
        raise ValueError("a cursor is a non-negative lt and a 64-hex transaction hash")
    await fetch_one(
        db,
        "INSERT INTO ton_cursors (address, lt, hash) VALUES (:a, :lt, :h) "
        "ON CONFLICT (address) DO NOTHING RETURNING address",
        a=address, lt=lt, h=tx_hash,
    )

# --- our jetton wallets ------------------------------------------------------------------------

_RAW = re.compile(r"-?[0-9]+:[0-9a-f]{64}")


async def jetton_wallet(db: Executor, master: str, owner: str) -> str | None:
    """Our jetton wallet of `master` for `owner` (raw addresses), if it was ever asked."""
    row = await fetch_one(db, "SELECT wallet FROM jetton_wallets WHERE master = :m AND owner = :o",
                          m=master, o=owner)
    return None if row is None else str(row["wallet"])


async def remember_jetton_wallet(db: Executor, symbol: str, master: str, owner: str,
                                 wallet: str) -> str:
    """Store the master's get_wallet_address(owner) answer once; the stored one is returned
    (a later, different answer never replaces it: a notification counts only from it)."""
    for value in (master, owner, wallet):
        if not _RAW.fullmatch(value):
            raise ValueError(f"not a raw address: {value!r}")
    if symbol not in DECIMALS or symbol == "TON":
        raise ValueError(f"unknown jetton {symbol!r}")
    await fetch_one(
        db, "INSERT INTO jetton_wallets (symbol, master, owner, wallet) VALUES (:s, :m, :o, :w)"
            " ON CONFLICT (master, owner) DO NOTHING RETURNING wallet",
        s=symbol, m=master, o=owner, w=wallet)
    stored = await jetton_wallet(db, master, owner)
    assert stored is not None
    return stored
