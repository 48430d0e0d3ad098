"""The payout sender: one hot wallet sends the ledger's payout orders, each exactly once.

Every pass (APScheduler, every PAYOUTS_POLL_SECONDS) holds a PostgreSQL advisory lock on its
own connection — one sender at a time, a second process stands by — and then:

1. reads the hot wallet from the chain: its seqno (from the account's data), its balance and
   the chain's time (the last masterchain block's);
2. with a message in flight (one at a time: its seqno decides what lands), looks for it among
   the wallet's recent transactions by the external message's hash: found -> confirmed (or,
   if the wallet took it and sent nothing, queued again); not found and still valid -> the
   stored BOC is broadcast again (the same message lands at most once); not found, the
   chain's time past its valid_until and the wallet's seqno still the message's -> it can
   never land, and only then is the order queued again, to be signed anew;
3. with nothing in flight, takes the oldest queued order; not enough TON in the hot wallet ->
   it waits and the operator is told once; else signs it with the chain's seqno and a
   valid_until, stores the message's hash and BOC (ledger: mark_signed), and only then
   broadcasts it.

So a sender killed at any point resumes from the database: before the broadcast the stored
message is broadcast; after it, the chain says whether it landed; nothing is signed twice for
a seqno that may still take the first message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from pytoniq.contract.contract import Contract
from pytoniq.contract.wallets.wallet import WALLET_V4_R2_CODE
from pytoniq.contract.wallets.wallet_v5 import WALLET_V5_R1_CODE, WalletV5R1, WalletV5WalletID
from pytoniq_core.boc import Builder, Cell, begin_cell
from pytoniq_core.boc.address import Address
from pytoniq_core.crypto.keys import (
    mnemonic_is_valid,
    mnemonic_to_private_key,
    private_key_to_public_key,
)
from pytoniq_core.crypto.signature import sign_message
from pytoniq_core.tlb.account import StateInit
from pytoniq_core.tlb.custom.wallet import WalletMessage, WalletV4Data, WalletV5R1Data
from pytoniq_core.tlb.transaction import ExternalMsgInfo, MessageAny, Transaction
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger import payouts
from ledger.errors import PayoutStateChanged
from ledger.payouts import Payout
from watchers.jettons import LedgerWalletStore, OurJettonWallets, WalletAddressSource
from watchers.session_lock import SessionLock
from watchers.ton_links import friendly_address

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = logging.getLogger(__name__)

V4R2_WALLET_ID: Final = 698983191  # the default subwallet of workchain 0
V5R1_NETWORK_ID: Final = {"mainnet": -239, "testnet": -3}
FEE_RESERVE: Final = 50_000_000  # TON kept beyond a payout for the wallet's own fees
JETTON_TRANSFER_TON: Final = 50_000_000  # attached to a jetton transfer; the rest comes back
JETTON_FORWARD_TON: Final = 1  # nanoton: the recipient's wallet sends a notification
JETTON_TRANSFER_OP: Final = 0x0F8A7EA5
SEND_MODE: Final = 3  # pay fees separately, ignore errors: a failed send still uses the seqno
# The chain's time is the last masterchain block's; a shard block may carry a slightly later
# one. A message counts as unable to land only this long after its valid_until.
EXPIRY_MARGIN: Final = 30


class ChainError(Exception):
    """The chain could not be read or written now (retried on the next pass)."""


@dataclass(frozen=True, slots=True)
class WalletState:
    seqno: int  # what the wallet accepts next (0 before it is deployed)
    balance: int  # nanotons
    active: bool  # deployed (else the first message carries the StateInit)
    now: int  # the chain's time: the last masterchain block's unix time


@dataclass(frozen=True, slots=True)
class WalletTx:
    """One transaction of the hot wallet, as far as payouts care."""

    tx_hash: str  # 64 hex
    lt: int
    ext_in_hash: str | None  # the external message it executed (cell hash), if any
    sent: int  # messages its action phase sent
    aborted: bool
    detail: str  # why nothing was sent, for the operator


class WalletChain(Protocol):
    name: str

    async def wallet_state(self, address: str) -> WalletState: ...

    async def recent_transactions(self, address: str, limit: int) -> list[WalletTx]:
        """Newest first."""
        ...

    async def send_boc(self, boc: bytes) -> None: ...

    async def jetton_balance(self, jetton_wallet: str) -> int:
        """A jetton wallet's balance (get_wallet_data); 0 when it is not deployed."""
        ...

    async def account_active(self, address: str) -> bool:
        """Whether a contract is deployed there (else a bounceable transfer comes back)."""
        ...

    async def close(self) -> None: ...


def wallet_tx(cell: Cell | Transaction) -> WalletTx:
    """A transaction (its root cell, or pytoniq's parse of it) -> WalletTx. The external
    message's hash is the hash of the very cell the transaction carries (what we broadcast),
    never of a re-serialisation (pytoniq's Transaction.serialize is not a round trip)."""
    tx_cell = cell.cell if isinstance(cell, Transaction) else cell
    tx = Transaction.deserialize(tx_cell.begin_parse())
    msgs = tx_cell.refs[0].begin_parse()
    in_cell = msgs.load_ref() if msgs.load_bit() else None
    ext_in = None
    if in_cell is not None and tx.in_msg is not None and not tx.in_msg.is_internal:
        ext_in = in_cell.hash.hex()
    desc = tx.description
    aborted = bool(getattr(desc, "aborted", False))
    compute = getattr(desc, "compute_ph", None)
    action = getattr(desc, "action", None)
    detail = "sent" if tx.outmsg_cnt else (
        f"nothing sent (compute: {getattr(compute, 'exit_code', getattr(compute, 'type_', '?'))},"
        f" action: {getattr(action, 'result_code', '-')})")
    return WalletTx(tx_cell.hash.hex(), tx.lt, ext_in, int(tx.outmsg_cnt), aborted, detail)


# --- the hot wallet: keys, address, signed external messages ----------------------------------


@dataclass(frozen=True, slots=True)
class Signed:
    boc: bytes
    ext_msg_hash: str  # the external message cell's hash: what its transaction will carry
    seqno: int
    valid_until: int


class HotWallet:
    """A wallet v4r2 or v5r1 of a 24-word mnemonic, signing offline with pytoniq's layouts
    (the same bytes for the same seqno, valid_until and messages)."""

    def __init__(self, private_key: bytes, version: str = "v4r2", *,
                 network: str = "mainnet") -> None:
        if version not in ("v4r2", "v5r1"):
            raise ValueError(f"unsupported hot wallet version {version!r}")
        self.version = version
        self.network = network
        self._private_key = private_key
        public_key = private_key_to_public_key(private_key)
        if version == "v4r2":
            self.wallet_id = V4R2_WALLET_ID
            code = WALLET_V4_R2_CODE
            data = WalletV4Data(seqno=0, wallet_id=self.wallet_id, public_key=public_key,
                                plugins=None).serialize()
        else:
            self.wallet_id = WalletV5WalletID(
                workchain=0, subwallet_number=0, network_global_id=V5R1_NETWORK_ID[network]
            ).pack()
            code = WALLET_V5_R1_CODE
            data = WalletV5R1Data(seqno=0, wallet_id=self.wallet_id, public_key=public_key,
                                  extensions=None, is_signature_allowed=True).serialize()
        self.state_init = StateInit(code=code, data=data)
        self.address = Address((0, self.state_init.serialize().hash))
        self.raw = self.address.to_str(is_user_friendly=False)

    @classmethod
    def from_mnemonic(cls, words: str | Sequence[str], version: str = "v4r2", *,
                      network: str = "mainnet") -> HotWallet:
        parts = words.split() if isinstance(words, str) else list(words)
        if len(parts) != 24 or not mnemonic_is_valid(parts):
            raise ValueError("the hot wallet mnemonic is not 24 valid words")
        return cls(mnemonic_to_private_key(parts)[1], version, network=network)

    def seqno_of(self, data: Cell) -> int:
        """The seqno in this wallet's account data."""
        kind = WalletV4Data if self.version == "v4r2" else WalletV5R1Data
        return int(kind.deserialize(data.begin_parse()).seqno)

    def sign(self, seqno: int, valid_until: int, messages: Sequence[WalletMessage], *,
             with_init: bool) -> Signed:
        body = Builder()
        if self.version == "v5r1":
            signing = (begin_cell().store_uint(0x7369676E, 32).store_uint(self.wallet_id, 32)
                       .store_uint(valid_until, 32).store_uint(seqno, 32)
                       .store_cell(WalletV5R1.pack_actions(list(messages))).end_cell())
            body.store_cell(signing).store_bytes(sign_message(signing.hash, self._private_key))
        else:
            b = (Builder().store_uint(self.wallet_id, 32).store_uint(valid_until, 32)
                 .store_uint(seqno, 32).store_uint(0, 8))
            for m in messages:
                b.store_cell(m.serialize())
            signing = b.end_cell()
            body.store_bytes(sign_message(signing.hash, self._private_key)).store_cell(signing)
        msg = MessageAny(info=ExternalMsgInfo(None, self.address, 0),
                         init=self.state_init if with_init else None, body=body.end_cell())
        cell = msg.serialize()
        return Signed(cell.to_boc(), cell.hash.hex(), seqno, valid_until)


def payout_message(p: Payout, *, hot_wallet: str, jetton_wallet: str | None = None,
                   bounce: bool | None = None) -> WalletMessage:
    """The internal message a payout is: TON to the destination with a comment (bounceable
    as the address's form says, unless `bounce` decides), or a jetton `transfer` to our own
    jetton wallet, which moves the jettons to the destination's."""
    comment = begin_cell().store_uint(0, 32).store_snake_string(f"paybot payout {p.id}").end_cell()
    if p.asset == "TON":
        dest = Address(p.destination)
        info_msg = _internal(dest, p.amount, bounce=p.bounceable if bounce is None else bounce,
                             body=comment)
        return WalletMessage(send_mode=SEND_MODE, message=info_msg)
    if jetton_wallet is None:
        raise ChainError(f"our {p.asset} jetton wallet is not known yet")
    body = (begin_cell().store_uint(JETTON_TRANSFER_OP, 32).store_uint(p.id, 64)
            .store_coins(p.amount).store_address(Address(p.destination))
            .store_address(Address(hot_wallet)).store_bit(0)
            .store_coins(JETTON_FORWARD_TON).store_bit(1).store_ref(comment).end_cell())
    return WalletMessage(send_mode=SEND_MODE,
                         message=_internal(Address(jetton_wallet), JETTON_TRANSFER_TON,
                                           bounce=True, body=body))


def _internal(dest: Address, value: int, *, bounce: bool, body: Cell) -> MessageAny:
    return Contract.create_internal_msg(dest=dest, value=value, bounce=bounce, body=body)


def ton_needed(p: Payout) -> int:
    """TON the hot wallet must hold to send this payout."""
    return (p.amount if p.asset == "TON" else JETTON_TRANSFER_TON) + FEE_RESERVE


# --- the sender ---------------------------------------------------------------------------------


JettonWalletOf = Callable[[str], Awaitable[str | None]]


class PayoutSender:
    def __init__(self, engine: AsyncEngine, chain: WalletChain, wallet: HotWallet, *,
                 valid_seconds: int = 120, recent: int = 16,
                 jetton_wallet_of: JettonWalletOf | None = None,
                 clock: Callable[[], float] = time.time,
                 expiry_margin: int = EXPIRY_MARGIN) -> None:
        self._engine = engine
        self.chain = chain
        self.wallet = wallet
        self.valid_seconds = valid_seconds
        self.recent = recent  # the wallet's transactions read per pass (one message in flight)
        self._jetton_wallet_of = jetton_wallet_of
        self._clock = clock
        self.expiry_margin = expiry_margin
        self._session = SessionLock(engine, "paybot.payout-sender:" + wallet.raw,
                                    "payout sender")
        self._lock = asyncio.Lock()
        self._stopped = False

    @property
    def active(self) -> bool:
        return self._session.held

    async def tick(self) -> None:
        """One scheduled pass; logs every failure, never raises."""
        if self._stopped or self._lock.locked():
            return
        try:
            await self.run_once()
        except ChainError as e:
            log.warning("payout sender: the chain: %s; next pass retries", e)
        except Exception:
            log.exception("payout sender pass failed")
            await self._drop_conn()

    async def run_once(self) -> str:
        """One pass; returns what it did (for logs and tests)."""
        async with self._lock:
            if await self._acquire() is None:
                return "standby"
            state = await self.chain.wallet_state(self.wallet.raw)
            current = await payouts.in_flight(self._engine)
            if current is not None:
                return await self._follow(current, state)
            heads = await payouts.queue_heads(self._engine)
            if not heads:
                return "idle"
            waiting = "waiting_funds"
            # The oldest order of each asset, oldest first: the first that can go is sent; one
            # that cannot (its asset short, its jetton wallet not known yet) waits its turn
            # without holding up the other assets' orders.
            for queued in heads:
                try:
                    short = await self._shortfall(queued, state)
                except ChainError as e:
                    log.warning("payout %s waits for the chain: %s", queued.id, e)
                    waiting = "waiting_chain"
                    continue
                if short is not None:
                    if await payouts.alert(self._engine, queued, "payout_funds", short):
                        log.warning("payout %s waits: %s", queued.id, short)
                    continue
                return await self._send(queued, state)
            return waiting

    async def _shortfall(self, p: Payout, state: WalletState) -> str | None:
        """What the hot wallet lacks to send `p` now (None: nothing)."""
        where = friendly_address(self.wallet.raw)
        if state.balance < ton_needed(p):
            return (f"the hot wallet {where} holds {state.balance} nanoton; payout {p.id} "
                    f"needs {ton_needed(p)}")
        if p.asset == "TON":
            return None
        jetton_wallet = await self._jetton_wallet(p.asset)
        held = await self.chain.jetton_balance(jetton_wallet)
        if held < p.amount:
            return (f"the hot wallet {where} holds {held} {p.asset} units; payout {p.id} "
                    f"needs {p.amount}")
        return None

    async def _jetton_wallet(self, asset: str) -> str:
        found = await self._jetton_wallet_of(asset) if self._jetton_wallet_of else None
        if found is None:
            raise ChainError(f"the hot wallet's {asset} jetton wallet is not known yet")
        return found

    async def _follow(self, p: Payout, state: WalletState) -> str:
        """The message in flight: landed, still able to land, or never able to."""
        assert p.ext_msg_hash is not None and p.seqno is not None and p.valid_until is not None
        for tx in reversed(await self.chain.recent_transactions(self.wallet.raw, self.recent)):
            if tx.ext_in_hash != p.ext_msg_hash:
                continue
            done = await payouts.landed(self._engine, tx.ext_in_hash, tx.tx_hash,
                                        sent=tx.sent > 0 and not tx.aborted, detail=tx.detail)
            if done is not None and done.status == "confirmed":
                log.info("payout %s confirmed in %s", p.id, tx.tx_hash)
                return "confirmed"
            log.warning("payout %s: the wallet took its message but sent nothing (%s); "
                        "queued again", p.id, tx.detail)
            return "requeued"
        if state.seqno > p.seqno:
            # Something took the seqno: ours (its transaction not visible yet) or a message
            # sent by hand from this wallet. Never sign again on a guess.
            log.warning("payout %s: the wallet's seqno moved to %d but its transaction is not "
                        "seen yet", p.id, state.seqno)
            return "waiting_landing"
        if state.now > p.valid_until + self.expiry_margin and state.seqno == p.seqno:
            await payouts.expire_unlanded(self._engine, p.id, p.ext_msg_hash,
                                          wallet_seqno=state.seqno, chain_now=state.now)
            log.info("payout %s: message %s expired unlanded; queued again", p.id,
                     p.ext_msg_hash)
            return "expired"
        # Still valid: broadcast the stored message (again): it lands at most once.
        boc = await payouts.message_boc(self._engine, p.ext_msg_hash)
        await self.chain.send_boc(boc)
        if p.status == "signed":
            await payouts.mark_sent(self._engine, p.id, p.ext_msg_hash)
        return "rebroadcast"

    async def _send(self, p: Payout, state: WalletState) -> str:
        if p.destination == self.wallet.raw and p.kind == "withdrawal":
            # Ordered before this wallet was known to the ledger: never pay ourselves.
            await payouts.fail(self._engine, p.id, "the destination is paybot's hot wallet")
            return "failed"
        jetton_wallet = await self._jetton_wallet(p.asset) if p.asset != "TON" else None
        bounce = p.bounceable
        if bounce and p.asset == "TON" and not await self.chain.account_active(p.destination):
            # Nobody deployed it yet: a bounceable transfer would come straight back to us
            # while the payout reads as sent. Wallets send such transfers non-bounceable.
            bounce = False
        message = payout_message(p, hot_wallet=self.wallet.raw, jetton_wallet=jetton_wallet,
                                 bounce=bounce)
        valid_until = max(state.now, int(self._clock())) + self.valid_seconds
        signed = self.wallet.sign(state.seqno, valid_until, [message], with_init=not state.active)
        try:
            await payouts.mark_signed(self._engine, p.id, seqno=signed.seqno,
                                      valid_until=signed.valid_until,
                                      ext_msg_hash=signed.ext_msg_hash, boc=signed.boc)
        except PayoutStateChanged:
            return "raced"  # rejected or taken meanwhile: nothing was broadcast
        # Stored before it leaves: from here on a crash only ever re-sends this message.
        await self.chain.send_boc(signed.boc)
        await payouts.mark_sent(self._engine, p.id, signed.ext_msg_hash)
        log.info("payout %s sent: seqno %d, valid until %d, message %s", p.id, signed.seqno,
                 signed.valid_until, signed.ext_msg_hash)
        return "sent"

    # --- the advisory lock (as the TON watcher's) -------------------------------------------

    async def _acquire(self) -> AsyncConnection | None:
        """The sender's own connection, holding the hot wallet's advisory lock; None while
        another sender holds it (watchers/session_lock.py)."""
        conn, fresh = await self._session.acquire()
        if fresh:
            # Before anything is sent: a withdrawal to this wallet is refused from now on.
            await payouts.register_hot_wallet(self._engine, self.wallet.raw, self.wallet.version)
            log.info("payout sender active for hot wallet %s", friendly_address(self.wallet.raw))
        return conn

    async def _drop_conn(self) -> None:
        await self._session.release()

    async def close(self, wait_seconds: float = 10.0) -> None:
        self._stopped = True
        try:
            await asyncio.wait_for(self._lock.acquire(), wait_seconds)
        except TimeoutError:
            log.warning("payout sender did not stop within %.0fs", wait_seconds)
        else:
            self._lock.release()
        await self._drop_conn()
        await self.chain.close()


# --- the chain through liteservers --------------------------------------------------------------


class LiteserverWalletChain:
    """WalletChain over pytoniq's LiteBalancer (connected lazily, like the watcher's source)."""

    name = "liteserver"

    def __init__(self, connect: Callable[[], Awaitable[Any]], wallet: HotWallet) -> None:
        self._connect = connect
        self._wallet = wallet
        self._client: Any = None

    async def _get(self) -> Any:
        if self._client is None:
            try:
                self._client = await self._connect()
            except Exception as e:
                raise ChainError(f"cannot reach liteservers: {e}") from e
        return self._client

    async def wallet_state(self, address: str) -> WalletState:
        client = await self._get()
        try:
            account = await client.get_account_state(address)
            info = await client.get_masterchain_info_ext()
        except Exception as e:
            raise ChainError(str(e)) from e
        active = account.state.type_ == "active"
        seqno = self._wallet.seqno_of(account.state.state_init.data) if active else 0
        return WalletState(seqno, int(account.balance), active, int(info["last_utime"]))

    async def recent_transactions(self, address: str, limit: int) -> list[WalletTx]:
        client = await self._get()
        try:
            txs = await client.get_transactions(address, limit)
        except Exception as e:
            raise ChainError(str(e)) from e
        return [wallet_tx(tx) for tx in txs]

    async def send_boc(self, boc: bytes) -> None:
        client = await self._get()
        try:
            await client.raw_send_message(boc)
        except Exception as e:
            raise ChainError(str(e)) from e

    async def account_active(self, address: str) -> bool:
        client = await self._get()
        try:
            account = await client.get_account_state(address)
        except Exception as e:
            raise ChainError(str(e)) from e
        return bool(account.state.type_ == "active")

    async def jetton_balance(self, jetton_wallet: str) -> int:
        client = await self._get()
        try:
            account = await client.get_account_state(jetton_wallet)
            if account.state.type_ != "active":
                return 0
            stack = await client.run_get_method(jetton_wallet, "get_wallet_data", [])
        except Exception as e:
            raise ChainError(str(e)) from e
        return int(stack[0])

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.close_all()
            except Exception:
                log.debug("closing the liteserver client failed", exc_info=True)


def jetton_wallets_of(engine: AsyncEngine, masters: dict[str, str], owner: str,
                      source: WalletAddressSource) -> JettonWalletOf:
    """The hot wallet's own jetton wallet of a symbol: asked of the master once, remembered
    in the ledger (watchers/jettons.py), None while the chain has not answered."""
    wallets = OurJettonWallets(masters, owner, LedgerWalletStore(engine), source)

    async def of(symbol: str) -> str | None:
        await wallets.resolve()
        return next((w.address for w in wallets.known if w.symbol == symbol), None)

    return of


def start_payout_sender(scheduler: AsyncIOScheduler, engine: AsyncEngine, settings: Any,
                        wallet_address_source: WalletAddressSource | None = None
                        ) -> PayoutSender | None:
    """Schedule the sender when PAYOUTS_HOT_WALLET_MNEMONIC is set; never raises (a bad
    setting is logged: orders wait, the rest of paybot starts). `wallet_address_source`
    answers get_wallet_address for USDT payouts (the TON watcher's source)."""
    cfg = settings.payouts
    if cfg.hot_wallet_mnemonic is None:
        return None
    try:
        from watchers.ton_sources import liteserver_connector

        wallet = HotWallet.from_mnemonic(cfg.hot_wallet_mnemonic.get_secret_value(),
                                         cfg.hot_wallet_version, network=settings.ton.network)
        chain = LiteserverWalletChain(liteserver_connector(
            settings.ton.global_config, settings.ton.network, settings.database.data_dir,
            trust_level=settings.ton.liteserver_trust_level), wallet)
        jettons = (jetton_wallets_of(engine, dict(settings.ton.jettons), wallet.raw,
                                     wallet_address_source)
                   if wallet_address_source is not None else None)
        sender = PayoutSender(engine, chain, wallet, valid_seconds=cfg.valid_seconds,
                              jetton_wallet_of=jettons)
    except Exception as e:
        log.error("payout sender not started: %s", e)
        return None
    scheduler.add_job(sender.tick, "interval", seconds=cfg.poll_seconds, id="payout_sender",
                      coalesce=True, max_instances=2, misfire_grace_time=None)
    log.info("payout sender scheduled every %.0fs for hot wallet %s", cfg.poll_seconds,
             friendly_address(wallet.raw))
    return sender
