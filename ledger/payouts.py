"""Money out: refunds of held transfers and withdrawals of balances, sent by one hot wallet.

Each use case is one SQL function in ledger/sql/payouts.sql, one transaction:

- `request_withdrawal`: the destination canonicalised and checked (ledger/addresses.py), the
  balance debited and the order written together; over the day's limit or the balance:
  refused, nothing written; above the approval threshold it waits for the operator.
- `refund_held_transfer`: a held transfer's holding released as 'refunded' and an order to
  send it back to the transfer's source; a holding is released once.
- `approve` / `reject`: the operator's decision on a waiting order (reject gives it back).
- the sender's steps (watchers/payout_sender.py): `next_to_send`, `mark_signed` (seqno,
  valid_until, message hash and BOC stored BEFORE broadcast), `mark_sent`, `landed` (the hot
  wallet's transaction carrying the message: confirmed), `expire_unlanded` (past valid_until
  on chain with the wallet's seqno unmoved: the same order queued again), `alert`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, Decimal
from typing import Any, Final

from ledger.addresses import check_destination
from ledger.db import Executor, fetch_all, fetch_one
from ledger.errors import (
    InvalidAmount,
    PayoutNotFound,
    UnsupportedAsset,
)
from ledger.transfer_admin import normalize_tx_hash

ASSETS: Final = {"TON": 9, "USDT": 6}  # what the hot wallet sends, and its decimals
STATUSES: Final = ("pending_approval", "queued", "signed", "sent", "confirmed", "failed",
                   "rejected")
KEY_MAX: Final = 200


@dataclass(frozen=True, slots=True)
class Payout:
    id: int
    kind: str  # refund | withdrawal
    asset: str
    amount: int  # the asset's minor units
    destination: str  # raw 0:hex
    destination_given: str
    bounceable: bool
    user_id: int | None
    transfer_id: int | None
    debit_currency: str | None
    debit_amount: int | None
    status: str
    note: str | None
    seqno: int | None
    valid_until: int | None
    ext_msg_hash: str | None
    tx_hash: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Payout:
        return cls(**{f: row[f] for f in cls.__slots__})  # type: ignore[attr-defined]

    @property
    def in_flight(self) -> bool:
        return self.status in ("signed", "sent")


@dataclass(frozen=True, slots=True)
class PayoutPolicy:
    """What the settings say about payouts, handed down from the composition root."""

    network: str = "mainnet"
    own_addresses: tuple[str, ...] = ()  # the shop's, the hot wallet's, our jetton wallets
    daily_limit: Mapping[str, int] = field(default_factory=dict)  # per user and UTC day
    approval_above: Mapping[str, int] = field(default_factory=dict)
    balance_currency: str = "LIQ"
    ton_rate: Decimal = Decimal("5.00")  # balance units per TON (LEDGER_TON_RATE)

    def debit_for(self, asset: str, amount: int) -> int:
        """What the balance pays for `amount` of `asset`: the same when the balance is in the
        asset; TON at the ledger's rate, rounded up to the balance's minor unit (the house
        never pays the rounding); USDT 1:1 for Liquid $ (a withdrawal in whole cents)."""
        if asset == self.balance_currency:
            return amount
        if self.balance_currency != "LIQ":
            raise UnsupportedAsset(f"{asset} from a {self.balance_currency} balance")
        if asset == "USDT":
            cents, rest = divmod(amount, 10**4)
            if rest:
                raise InvalidAmount("a USDT withdrawal is whole cents")
            return cents
        value = (Decimal(amount) * self.ton_rate / 10**9 * 100).to_integral_value(ROUND_CEILING)
        return int(value)


_COLUMNS = """id, kind, asset, amount, destination, destination_given, bounceable, user_id,
    transfer_id, debit_currency, debit_amount, status, note, seqno, valid_until, ext_msg_hash,
    tx_hash, attempts, created_at, updated_at"""


async def _one(db: Executor, sql: str, **params: Any) -> Payout:
    row = await fetch_one(db, f"SELECT {_COLUMNS} FROM {sql}", **params)
    assert row is not None
    return Payout.from_row(row)


async def request_withdrawal(
    db: Executor, user_id: int, asset: str, amount: int, address: str, policy: PayoutPolicy,
    *, key: str | None = None,
) -> Payout:
    """Debit the user's balance and order the payout, in one transaction. Refused with
    nothing written: an unsupported asset, a bad amount, a malformed, wrong-network or own
    address (ledger/addresses.py), over the day's limit (WithdrawalLimit) or the balance
    (InsufficientFunds). `key` makes a repeated request return the first order."""
    if asset not in ASSETS or asset not in policy.daily_limit:
        raise UnsupportedAsset(str(asset)[:20])
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidAmount(str(amount)[:40])
    if key is not None and not 0 < len(key) <= KEY_MAX:
        raise InvalidAmount("the idempotency key must be 1 to 200 characters")
    dest = check_destination(address, network=policy.network, own=policy.own_addresses)
    return await _one(
        db,
        """paybot_payout_withdraw(:user, :asset, :amount, :dest, :given, :bounce, :currency,
                                  :debit, :limit, :above, :key)""",
        user=user_id, asset=asset, amount=amount, dest=dest.raw, given=dest.given[:100],
        bounce=dest.bounceable, currency=policy.balance_currency,
        debit=policy.debit_for(asset, amount), limit=policy.daily_limit[asset],
        above=policy.approval_above.get(asset, policy.daily_limit[asset]), key=key,
    )


async def refund_held_transfer(db: Executor, tx_hash: str, *, note: str | None = None) -> Payout:
    """Send what a transfer left held back to its sender: the holding released as
    'refunded' and the order written together. Once: again -> NothingHeld."""
    return await _one(db, "paybot_payout_refund(:hash, :note)",
                      hash=normalize_tx_hash(tx_hash), note=(note or "").strip()[:500] or None)


async def excess_held(db: Executor, public_id: str) -> dict[str, int]:
    """What an invoice's payers sent too much, still held, per asset (minor units)."""
    rows = await fetch_all(
        db, """SELECT x.asset, sum(x.amount_nano) AS amount FROM ton_holds x
                 JOIN invoices i ON i.id = x.invoice_id
                WHERE i.public_id = upper(:p) AND x.reason = 'excess' AND x.released_at IS NULL
                GROUP BY x.asset ORDER BY x.asset""", p=public_id[:40])
    return {str(r["asset"]): int(r["amount"]) for r in rows}


async def refund_excess(db: Executor, public_id: str, *, seller_id: int,
                        note: str | None = None) -> list[Payout]:
    """The seller sends every overpayment of their invoice back to its sender, in one
    transaction (NothingHeld when there is none; another seller's invoice: InvoiceNotFound)."""
    rows = await fetch_all(db, f"SELECT {_COLUMNS} FROM paybot_payout_refund_excess(:p, :s, :n)",
                           p=public_id[:40], s=seller_id, n=(note or "").strip()[:500] or None)
    return [Payout.from_row(r) for r in rows]


async def approve(db: Executor, payout_id: int, *, note: str | None = None) -> Payout:
    return await _one(db, "paybot_payout_decide(:id, true, :note)", id=payout_id, note=note)


async def reject(db: Executor, payout_id: int, *, note: str | None = None) -> Payout:
    """The order is not sent; its money goes back to the user's balance."""
    return await _one(db, "paybot_payout_decide(:id, false, :note)", id=payout_id, note=note)


async def get_payout(db: Executor, payout_id: int) -> Payout:
    row = await fetch_one(db, f"SELECT {_COLUMNS} FROM payouts WHERE id = :id", id=payout_id)
    if row is None:
        raise PayoutNotFound(str(payout_id))
    return Payout.from_row(row)


async def list_payouts(
    db: Executor, *, statuses: Iterable[str] | None = None, user_id: int | None = None,
    limit: int = 50,
) -> list[Payout]:
    """Newest first; optionally only some statuses, or one user's."""
    if not 1 <= limit <= 1000:
        raise ValueError("limit must be between 1 and 1000")
    wanted = list(statuses) if statuses is not None else list(STATUSES)
    unknown = set(wanted) - set(STATUSES)
    if unknown:
        raise ValueError(f"unknown payout status {sorted(unknown)[0]!r}")
    rows = await fetch_all(
        db,
        f"""SELECT {_COLUMNS} FROM payouts
             WHERE status = ANY(:statuses)
               AND (CAST(:user AS bigint) IS NULL OR user_id = :user)
             ORDER BY id DESC LIMIT :limit""",
        statuses=wanted, user=user_id, limit=limit,
    )
    return [Payout.from_row(r) for r in rows]


# --- the sender's steps (watchers/payout_sender.py) -------------------------------------------


async def in_flight(db: Executor) -> Payout | None:
    """The one payout whose message is signed and not yet confirmed or given up, if any."""
    row = await fetch_one(
        db, f"SELECT {_COLUMNS} FROM payouts WHERE status IN ('signed', 'sent')")
    return Payout.from_row(row) if row else None


async def queue_heads(db: Executor) -> list[Payout]:
    """The oldest queued payout of each asset, oldest first: first come, first served within an
    asset, while one asset that cannot go (its jettons short, its jetton wallet not known yet)
    does not hold up the others."""
    rows = await fetch_all(
        db, f"""SELECT * FROM (SELECT DISTINCT ON (asset) {_COLUMNS} FROM payouts
                                 WHERE status = 'queued' ORDER BY asset, id) heads
                 ORDER BY id""")
    return [Payout.from_row(r) for r in rows]


async def message_boc(db: Executor, ext_msg_hash: str) -> bytes:
    """The stored external message (re-broadcast after a restart is the same message)."""
    row = await fetch_one(db, "SELECT boc FROM payout_messages WHERE ext_msg_hash = :h",
                          h=ext_msg_hash)
    if row is None:
        raise PayoutNotFound(ext_msg_hash)
    return bytes(row["boc"])


async def mark_signed(db: Executor, payout_id: int, *, seqno: int, valid_until: int,
                      ext_msg_hash: str, boc: bytes) -> Payout:
    return await _one(db, "paybot_payout_signed(:id, :seqno, :until, :hash, :boc)",
                      id=payout_id, seqno=seqno, until=valid_until, hash=ext_msg_hash, boc=boc)


async def mark_sent(db: Executor, payout_id: int, ext_msg_hash: str) -> Payout:
    return await _one(db, "paybot_payout_sent(:id, :hash)", id=payout_id, hash=ext_msg_hash)


async def landed(db: Executor, ext_msg_hash: str, tx_hash: str, *, sent: bool,
                 detail: str | None = None) -> Payout | None:
    """The hot wallet's transaction with this external message: confirmed when it sent the
    payout's message, queued again when it sent nothing. None: not one of our messages."""
    row = await fetch_one(
        db, f"SELECT {_COLUMNS} FROM paybot_payout_landed(:hash, :tx, :sent, :detail)",
        hash=ext_msg_hash, tx=tx_hash, sent=sent, detail=detail)
    return Payout.from_row(row) if row else None


async def expire_unlanded(db: Executor, payout_id: int, ext_msg_hash: str, *,
                          wallet_seqno: int, chain_now: int) -> Payout:
    """Queue the order again: only when the chain is past the message's valid_until and the
    wallet's seqno is still the message's (else PayoutStateChanged)."""
    return await _one(db, "paybot_payout_expire(:id, :hash, :seqno, :now)", id=payout_id,
                      hash=ext_msg_hash, seqno=wallet_seqno, now=chain_now)


async def register_hot_wallet(db: Executor, address: str, version: str) -> None:
    """Remember a hot wallet's address: withdrawals to it are refused from now on."""
    await fetch_one(db, "INSERT INTO hot_wallets (address, version) VALUES (:a, :v) "
                        "ON CONFLICT (address) DO NOTHING RETURNING address", a=address, v=version)


async def fail(db: Executor, payout_id: int, reason: str) -> Payout:
    """A queued withdrawal that must not be sent: failed, its money back to the user."""
    return await _one(db, "paybot_payout_fail(:id, :reason)", id=payout_id, reason=reason)


async def alert(db: Executor, payout: Payout, kind: str, detail: str) -> bool:
    """Tell the operator about this payout once per kind (True: told now)."""
    row = await fetch_one(
        db, "SELECT paybot_payout_alert(p, :kind, :detail) AS told FROM payouts p WHERE id = :id",
        kind=kind, detail=detail[:500], id=payout.id)
    return bool(row and row["told"])
