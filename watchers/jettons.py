"""Our jetton wallets, and what a jetton message to the shop or to them means for the ledger.

Trust (TEP-74): a `transfer_notification` is just a message; anyone can send one claiming any
amount. It counts only from OUR jetton wallet of a configured master: the address the master's
`get_wallet_address(shop address)` returns, asked of the chain once and remembered in the ledger
(`jetton_wallets`, never changed), then compared with the notification's source.

While a master's wallet is not known yet (the chain unreachable at start), a notification from
an unknown address cannot be judged: it may be the real one. The watcher then settles the
shop's transactions up to it and no further — the cursor follows chain order, so nothing after
it can be recorded either — and takes it up at the first poll after the address is known.
Waiting a few polls costs less than either counting a fake or turning away a real payment.

Our jetton wallet's own transactions are followed too (its own cursor): a transfer in sent
without a forward amount has no notification, and would otherwise never be seen.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import transfers
from ledger.money import DECIMALS
from ledger.transfers import ChainTransfer
from watchers.jetton_decode import (
    INTERNAL_TRANSFER,
    NOTIFICATION,
    OP_EXCESSES,
    OP_TRANSFER,
    JettonMessage,
    decode_jetton,
)
from watchers.ton_decode import DecodedTransaction
from watchers.ton_links import normalize_address
from watchers.ton_match import match_comment
from watchers.ton_sources import SourceError

log = logging.getLogger(__name__)

__all__ = [
    "JettonWallet",
    "LedgerWalletStore",
    "OurJettonWallets",
    "Unjudged",
    "WalletAddressSource",
    "WalletStore",
    "jetton_wallet_transfer",
    "shop_jetton_transfer",
]

_BIGINT_MAX: Final = 2**63 - 1


class Unjudged(Exception):
    """A notification from an address that may be our jetton wallet, not known yet."""


class WalletStore(Protocol):
    """Where our jetton wallets are remembered (the Ledger)."""

    async def jetton_wallet(self, master_raw: str, owner_raw: str) -> str | None: ...

    async def remember_jetton_wallet(self, symbol: str, master_raw: str, owner_raw: str,
                                     wallet_raw: str) -> str: ...


class LedgerWalletStore:
    """The ledger's `jetton_wallets` through the watcher's engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def jetton_wallet(self, master_raw: str, owner_raw: str) -> str | None:
        return await transfers.jetton_wallet(self._engine, master_raw, owner_raw)

    async def remember_jetton_wallet(self, symbol: str, master_raw: str, owner_raw: str,
                                     wallet_raw: str) -> str:
        return await transfers.remember_jetton_wallet(self._engine, symbol, master_raw,
                                                      owner_raw, wallet_raw)


class WalletAddressSource(Protocol):
    """The chain's answer to the master's `get_wallet_address(owner)` (raw "wc:hex")."""

    async def get_wallet_address(self, master: str, owner: str) -> str: ...


@dataclass(frozen=True, slots=True)
class JettonWallet:
    symbol: str
    master: str  # raw "0:hex"
    owner: str  # the shop address, raw
    address: str  # our jetton wallet, raw


class OurJettonWallets:
    """The configured masters and, once known, our wallet of each."""

    def __init__(self, masters: Mapping[str, str], owner: str, store: WalletStore,
                 source: WalletAddressSource, *, retry_base: float = 1.0,
                 retry_max: float = 300.0) -> None:
        self.owner = normalize_address(owner)
        # symbol -> master, raw; a bad master address or a symbol the ledger does not hold is
        # a ValueError at start (not a poll failing forever).
        for symbol in masters:
            if symbol not in DECIMALS or symbol == "TON":
                raise ValueError(f"jetton {symbol!r} is not a ledger currency")
        self.masters = {sym: normalize_address(m) for sym, m in masters.items()}
        self._store = store
        self._source = source
        self._by_address: dict[str, JettonWallet] = {}
        self._failures = 0
        self._resume_at = 0.0
        self.retry_base = retry_base
        self.retry_max = retry_max
        self._symbols = "/".join(sorted(self.masters))

    @property
    def known(self) -> list[JettonWallet]:
        return list(self._by_address.values())

    @property
    def complete(self) -> bool:
        return len(self._by_address) == len(self.masters)

    def of(self, address: str | None) -> JettonWallet | None:
        return self._by_address.get(address) if address else None

    async def resolve(self) -> None:
        """Learn the wallets not known yet: from the ledger, else from the chain (then
        remembered). The chain unreachable: logged, asked again after a backoff; never raises
        a SourceError (TON payments go on meanwhile)."""
        known = {w.symbol for w in self._by_address.values()}
        for symbol, master in self.masters.items():
            if symbol in known:
                continue
            wallet = await self._store.jetton_wallet(master, self.owner)
            if wallet is None:
                loop = asyncio.get_running_loop()
                if loop.time() < self._resume_at:
                    continue
                try:
                    wallet = normalize_address(
                        await self._source.get_wallet_address(master, self.owner))
                except (SourceError, ValueError) as e:
                    self._failures += 1
                    delay = min(self.retry_max, self.retry_base * 2 ** min(self._failures, 16))
                    self._resume_at = loop.time() + delay
                    log.warning("our %s jetton wallet: get_wallet_address failed (%s); "
                                "asking again in %.1fs; its notifications wait", symbol, e, delay)
                    continue
                self._failures = 0
                # The first answer stored wins (it is what every notification is judged by).
                wallet = await self._store.remember_jetton_wallet(symbol, master, self.owner,
                                                                  wallet)
                log.info("our %s jetton wallet is %s", symbol, wallet)
            self._by_address[wallet] = JettonWallet(symbol, master, self.owner, wallet)

    def fake_reason(self) -> str:
        return f"fake jetton: notification not from our {self._symbols} wallet"


# --- the decision table ---------------------------------------------------------------------


def _transfer(tx: DecodedTransaction, address: str, *, source: str | None, body_kind: str,
              comment: str | None, ignore: str | None, asset: str = "TON",
              asset_amount: int | None = None, no_notification: bool = False) -> ChainTransfer:
    match = match_comment(comment) if ignore is None and not no_notification else None
    return ChainTransfer(
        address=address, tx_hash=tx.hash_hex, lt=tx.lt, utime=tx.utime, prev_lt=tx.prev_lt,
        prev_hash=tx.prev_hash_hex, incoming=tx.incoming, source=source,
        value_nano=min(tx.value_nano, _BIGINT_MAX), body_kind=body_kind, comment=comment,
        ignore_reason=ignore,
        invoice_id=match.code if match and match.kind == "invoice" else None,
        deposit_code=match.code if match and match.kind == "deposit" else None,
        payer_tag=match.tag if match else None,
        asset=asset, asset_amount=asset_amount, no_notification=no_notification,
    )


def shop_jetton_transfer(tx: DecodedTransaction, address: str, msg: JettonMessage,
                         wallets: OurJettonWallets | None) -> ChainTransfer:
    """A transaction of the shop whose incoming message (not bounced) is a transfer
    notification or jetton excesses.
    Raises Unjudged for a notification that may come from a wallet not known yet."""
    if msg.op == OP_EXCESSES:
        return _transfer(tx, address, source=tx.source, body_kind=tx.body_kind, comment=None,
                         ignore="jetton excesses")
    ours = wallets.of(tx.source) if wallets is not None else None
    if ours is None:
        if wallets is not None and not wallets.complete:
            raise Unjudged(tx.hash_hex)
        reason = wallets.fake_reason() if wallets is not None else \
            "fake jetton: no jetton is configured"
        return _transfer(tx, address, source=tx.source, body_kind=tx.body_kind, comment=None,
                         ignore=reason)
    # From our wallet, the jettons are ours whatever became of this transaction (an aborted
    # one included): our jetton wallet credited them before it sent the notification.
    if msg.kind != NOTIFICATION:
        return _transfer(tx, address, source=tx.source, body_kind=tx.body_kind, comment=None,
                         ignore=f"malformed jetton notification: {msg.error or msg.kind}")
    ignore = None
    if msg.amount <= 0:
        ignore = "zero jetton amount"
    elif msg.amount > _BIGINT_MAX:
        ignore = "jetton amount out of range"
    return _transfer(tx, address, source=msg.sender, body_kind=msg.body_kind,
                     comment=msg.comment, ignore=ignore, asset=ours.symbol,
                     asset_amount=min(msg.amount, _BIGINT_MAX))


def jetton_wallet_transfer(tx: DecodedTransaction, wallet: JettonWallet) -> ChainTransfer:
    """A transaction of our jetton wallet: only a transfer in without a forward amount (no
    notification comes) is for the ledger, held unmatched; the rest is recorded, ignored."""
    address = wallet.address

    def ignored(reason: str) -> ChainTransfer:
        return _transfer(tx, address, source=tx.source, body_kind=tx.body_kind,
                         comment=tx.comment, ignore=reason)

    if not tx.incoming:
        return ignored("no incoming transfer (outgoing or external message)")
    if tx.bounced:
        return ignored("bounced: a jetton transfer of ours came back")
    if tx.aborted:  # the wallet refused it (e.g. not from a wallet of its master): no credit
        return ignored("aborted transaction")
    msg = decode_jetton(tx.body)
    if msg is None:
        if tx.body is not None and tx.body_kind == "binary" and len(tx.body.bits) >= 32 \
                and tx.body.begin_parse().preload_uint(32) == OP_TRANSFER:
            return ignored("our own jetton transfer out")
        return ignored("not a jetton transfer in")
    if msg.kind != INTERNAL_TRANSFER:
        return ignored(f"jetton {msg.kind}" + (f": {msg.error}" if msg.error else ""))
    if msg.forward_ton_amount > 0:
        return ignored("counted by its notification")
    if not 0 < msg.amount <= _BIGINT_MAX:
        return ignored("jetton amount out of range" if msg.amount else "zero jetton amount")
    return _transfer(tx, address, source=msg.sender, body_kind=msg.body_kind,
                     comment=msg.comment, ignore=None, asset=wallet.symbol,
                     asset_amount=msg.amount, no_notification=True)
