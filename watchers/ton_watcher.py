"""The TON watcher: follows the receiving address and settles every transfer exactly once.

Each poll (APScheduler, every few seconds):
1. holds a PostgreSQL advisory lock for the address on its own connection — a second watcher
   (another process or replica) stands by until the first one goes away;
2. reads the cursor from the database: the newest transaction up to which every transaction
   of the account is settled;
3. walks back from the account's newest transaction to the cursor, page by page, following
   each transaction's link to its predecessor, so a burst larger than a page is read whole
   and a gap is noticed instead of skipped;
4. settles the new transactions oldest first, each in one database transaction that also
   records it as its predecessor's successor — the cursor advance
   (ledger.transfers.record_transfer). Transactions naming different invoices/depositors are
   settled a few at a time, so their commits share disk flushes; those naming the same one
   go strictly in chain order. A hash is settled once, and the cursor never passes a
   transaction that is not recorded: killed at any point, the watcher resumes where the
   database says, nothing lost or counted twice.

Jettons (watchers/jettons.py): a transfer notification counts only from our jetton wallet of a
configured master (asked of the chain once, remembered in the ledger); while that address is
not known, the shop's transactions are settled up to the first notification and no further.
Our jetton wallet is followed too, with its own cursor, for transfers sent without a forward
amount (no notification comes).

Network trouble (refused, timeouts, liteserver 651, HTTP 429/5xx) is retried with backoff and
logged; after a failed poll the next ones back off further. Nothing here raises into the
scheduler, so `paybot run` keeps serving whatever the chain does.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Final

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger.transfers import (
    ChainTransfer,
    TransferResult,
    get_cursor,
    record_transfer,
    start_cursor,
)
from watchers.jetton_decode import (
    OP_BOUNCE,
    OP_EXCESSES,
    OP_TRANSFER,
    OP_TRANSFER_NOTIFICATION,
    body_op,
    decode_jetton,
)
from watchers.jettons import (
    JettonWallet,
    LedgerWalletStore,
    OurJettonWallets,
    Unjudged,
    WalletStore,
    jetton_wallet_transfer,
    shop_jetton_transfer,
)
from watchers.session_lock import SessionLock
from watchers.ton_decode import BODY_BINARY, DecodedTransaction
from watchers.ton_links import friendly_address, normalize_address
from watchers.ton_match import match_comment
from watchers.ton_sources import (
    TONCENTER_URLS,
    HttpApiSource,
    LiteserverSource,
    SourceError,
    TransactionSource,
    liteserver_connector,
)

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from bot.settings import Settings, TonSettings

log = logging.getLogger(__name__)

__all__ = ["ChainGap", "TonWatcher", "make_source", "start_ton_watcher", "to_chain_transfer"]

_BIGINT_MAX: Final = 2**63 - 1
_ZERO_HASH: Final = "0" * 64
OnSettled = Callable[[ChainTransfer, TransferResult], Awaitable[None]]


class ChainGap(SourceError):
    """The walk back did not arrive at the cursor (a source returned an incomplete history)."""


class _Stopped(Exception):
    """Not started because the watcher is closing."""


def to_chain_transfer(tx: DecodedTransaction, address: str,
                      jettons: OurJettonWallets | None = None) -> ChainTransfer:
    """What the ledger needs of one decoded transaction of the shop: the facts, why it is not
    a customer payment (if so), and which invoice or deposit its comment names. A jetton
    notification is judged by `jettons` (watchers/jettons.py); raises Unjudged for one that
    may come from our wallet not known yet."""
    # Only a binary body can be a jetton message: one 32-bit peek for the rest.
    op = body_op(tx.body) if tx.body_kind == BODY_BINARY else None
    if op in (OP_TRANSFER_NOTIFICATION, OP_EXCESSES) and tx.incoming and not tx.bounced:
        msg = decode_jetton(tx.body)
        if msg is not None:
            return shop_jetton_transfer(tx, address, msg, jettons)
    ignore = None
    if not tx.incoming:
        ignore = "no incoming transfer (outgoing or external message)"
    elif tx.bounced:
        ignore = "bounced jetton transfer: our jetton wallet refused it" \
            if op == OP_BOUNCE and _bounced_op(tx) == OP_TRANSFER \
            else "bounced: our own transfer came back"
    elif tx.aborted:
        ignore = "aborted transaction"
    elif tx.value_nano <= 0:
        ignore = "zero value"
    elif tx.value_nano > _BIGINT_MAX:
        ignore = "value out of range"
    match = match_comment(tx.comment) if ignore is None else None
    return ChainTransfer(
        address=address, tx_hash=tx.hash_hex, lt=tx.lt, utime=tx.utime, prev_lt=tx.prev_lt,
        prev_hash=tx.prev_hash_hex, incoming=tx.incoming, source=tx.source,
        value_nano=min(tx.value_nano, _BIGINT_MAX), body_kind=tx.body_kind, comment=tx.comment,
        ignore_reason=ignore,
        invoice_id=match.code if match and match.kind == "invoice" else None,
        deposit_code=match.code if match and match.kind == "deposit" else None,
        payer_tag=match.tag if match else None,
    )


def _wallet_transfers(txs: list[DecodedTransaction],
                      wallet: JettonWallet) -> list[ChainTransfer]:
    return [jetton_wallet_transfer(tx, wallet) for tx in txs]


def _bounced_op(tx: DecodedTransaction) -> int | None:
    """The op of the message that bounced (after the 0xffffffff prefix)."""
    body = tx.body
    if body is None or len(body.bits) < 64:
        return None
    return body.begin_parse().skip_bits(32).preload_uint(32)


class TonWatcher:
    def __init__(
        self,
        engine: AsyncEngine,
        source: TransactionSource,
        address: str,
        *,
        currency: str,
        ton_rate: Decimal,
        start_lt: int = 0,
        page_size: int | None = None,
        retry_attempts: int = 5,
        retry_base: float = 0.5,
        retry_max: float = 60.0,
        concurrency: int = 8,
        on_settled: OnSettled | None = None,
        after_commit: Callable[[], None] | None = None,
        jettons: Mapping[str, str] | None = None,
        wallet_store: WalletStore | None = None,
    ) -> None:
        self.address = normalize_address(address)  # ValueError for a bad address
        self.source = source
        self.currency = currency
        self.ton_rate = ton_rate
        self.start_lt = start_lt  # with no cursor yet: settle only transactions after this lt
        self.page_size = page_size or source.page_size
        self._engine = engine
        self._session = SessionLock(engine, "paybot.ton-watcher:" + self.address,
                                    "TON watcher", self.address)
        # Attempts per page request, and the backoff between them (and between failed polls).
        self.retry_attempts = retry_attempts
        self.retry_base = retry_base
        self.retry_max = retry_max
        # Database transactions in flight at once (each its own connection): lets commits
        # share a disk flush. 1 settles strictly one after the other.
        self.concurrency = max(1, concurrency)
        self._on_settled = on_settled
        # Wakes this process's delivery after a settlement queued notices: paybot_ton_receive
        # does not NOTIFY (its lock would serialize the concurrent settlements' commits).
        self._after_commit = after_commit
        self._tick_lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._failures = 0
        self._resume_at = 0.0
        self.settled = 0  # transactions settled by this watcher (not replays)
        # What the last poll of the shop's account saw, for /metrics and the lag alert
        # (bot/metrics.py, watchers/alerts.py): the newest chain transaction (lt, utime), the
        # cursor's lt after the poll, the transactions seen but not settled, and the wall
        # time up to which everything is known settled (lag = now - caught_up_at).
        self.head: tuple[int, int] | None = None
        self.cursor_lt: int | None = None
        self.behind = 0
        self.caught_up_at: float | None = None
        # Jettons taken (symbol -> master): our wallet of each is learned at the first polls
        # (watchers/jettons.py) and then followed as a second account with its own cursor.
        self.jettons: OurJettonWallets | None = None
        if jettons:
            self.jettons = OurJettonWallets(jettons, self.address,
                                            wallet_store or LedgerWalletStore(engine), source,
                                            retry_base=retry_base, retry_max=retry_max)
        self._waiting_logged: str | None = None

    @property
    def active(self) -> bool:
        """True while this watcher holds the address's advisory lock."""
        return self._session.held

    def lag_seconds(self, now: float | None = None) -> float | None:
        """Seconds since this watcher last had settled every transaction it saw; None while
        it does not follow the chain here (standing by, or no poll finished yet)."""
        if not self.active or self.caught_up_at is None:
            return None
        return max(0.0, (time.time() if now is None else now) - self.caught_up_at)

    # --- the scheduled entry point -----------------------------------------------------

    async def tick(self) -> None:
        """One scheduled poll; logs and backs off on any failure, never raises."""
        loop = asyncio.get_running_loop()
        # A tick while a poll is still in flight (a long burst, retries) has nothing to do.
        if self._stop.is_set() or self._tick_lock.locked() or loop.time() < self._resume_at:
            return
        try:
            await self.poll_once()
        except SourceError as e:
            self._failed(f"reading the chain failed: {e}")
        except Exception as e:  # the database or a bug: log it loudly, keep the process up
            log.exception("TON watcher poll failed")
            await self._drop_conn()
            self._failed(f"poll failed: {e!r}")
        else:
            self._failures = 0

    def _failed(self, what: str) -> None:
        self._failures += 1
        delay = min(self.retry_max, self.retry_base * 2 ** min(self._failures, 16))
        self._resume_at = asyncio.get_running_loop().time() + delay
        log.warning("TON watcher: %s; next attempt in %.1fs", what, delay)

    # --- one poll ------------------------------------------------------------------------

    async def poll_once(self) -> int:
        """Settle every new transaction, oldest first. Returns how many were settled now
        (0 when there was nothing new, or when another watcher holds the address)."""
        async with self._tick_lock:
            conn = await self._acquire()
            if conn is None:
                return 0
            jettons = self.jettons
            if jettons is not None and not jettons.complete:
                await jettons.resolve()
            settled = await self._follow(conn, self.address, self._shop_transfers)
            for wallet in jettons.known if jettons is not None else ():
                settled += await self._follow(conn, wallet.address,
                                              partial(_wallet_transfers, wallet=wallet))
            return settled

    async def _follow(self, conn: AsyncConnection, address: str,
                      judge: Callable[[list[DecodedTransaction]], list[ChainTransfer]]) -> int:
        """Settle the new transactions of one followed account (its own cursor)."""
        polled_at = time.time()  # everything before this is on the chain we read below
        cursor = await get_cursor(conn, address)
        txs = await self._collect(address, cursor)
        shop = address == self.address
        if not txs:
            if shop:
                self._observed(polled_at, cursor[0] if cursor else None, [], 0)
            return 0
        if cursor is None:  # the first run on this address: settle from here on
            await start_cursor(conn, address, txs[0].prev_lt, txs[0].prev_hash_hex)
        transfers = judge(txs)
        if shop:  # until the settlements below end, all of them are behind
            self._observed(None, cursor[0] if cursor else txs[0].prev_lt, txs, len(txs))
        settled = await self._settle(transfers)
        if shop:
            self._observed(polled_at, transfers[-1].lt if transfers else self.cursor_lt, txs,
                           len(txs) - len(transfers))
        return settled

    def _observed(self, polled_at: float | None, cursor_lt: int | None,
                  txs: list[DecodedTransaction], behind: int) -> None:
        """Record what a poll of the shop's account saw (attributes only; see __init__)."""
        if txs:
            self.head = (txs[-1].lt, txs[-1].utime)
        self.cursor_lt, self.behind = cursor_lt, behind
        if polled_at is not None:
            # Waiting on a transaction: caught up only to just before it was made.
            self.caught_up_at = polled_at if behind == 0 else min(
                polled_at, float(txs[len(txs) - behind].utime))

    def _shop_transfers(self, txs: list[DecodedTransaction]) -> list[ChainTransfer]:
        """The shop's transactions up to the first notification that cannot be judged yet
        (our jetton wallet not known): the cursor never passes it, the next polls take it."""
        out = []
        for tx in txs:
            try:
                out.append(to_chain_transfer(tx, self.address, self.jettons))
            except Unjudged:
                if self._waiting_logged != tx.hash_hex:
                    log.warning("TON %s lt=%d: a jetton notification waits until our jetton "
                                "wallet is known", tx.hash_hex[:16], tx.lt)
                    self._waiting_logged = tx.hash_hex
                break
        return out

    async def _settle(self, transfers: list[ChainTransfer]) -> int:
        """Settle oldest first; transfers naming the same invoice or depositor strictly in
        order, the others up to `concurrency` at a time. Raises the first failure once every
        started settlement has ended (the ones behind a failed one of the same key do not
        start: the next poll takes them, in order)."""
        gate = asyncio.Semaphore(self.concurrency)
        last_of_key: dict[str, asyncio.Task[TransferResult]] = {}

        async def settle(t: ChainTransfer,
                         after: asyncio.Task[TransferResult] | None) -> TransferResult:
            if after is not None:
                await after  # its failure is this one's too: never overtake it
            async with gate:
                if self._stop.is_set():
                    raise _Stopped
                async with self._engine.connect() as conn:
                    result = await record_transfer(conn, t, currency=self.currency,
                                                   ton_rate=self.ton_rate)
                if not result.replayed:
                    self.settled += 1
                    if self._after_commit is not None and result.outcome != "ignored":
                        self._after_commit()
                log.info("TON %s lt=%d %s -> %s%s", t.tx_hash[:16], t.lt,
                         f"{t.value_nano} nanoton" if t.asset_amount is None
                         else f"{t.asset_amount} {t.asset} minor units", result.outcome,
                         f" ({t.invoice_id or t.deposit_code})"
                         if t.invoice_id or t.deposit_code else "")
                if self._on_settled is not None:
                    await self._on_settled(t, result)
            return result

        tasks = []
        for t in transfers:
            key = f"inv:{t.invoice_id}" if t.invoice_id else \
                f"dep:{t.deposit_code}" if t.deposit_code else None
            task = asyncio.ensure_future(settle(t, last_of_key.get(key) if key else None))
            if key:
                last_of_key[key] = task
            tasks.append(task)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, _Stopped):
                raise r
        return sum(1 for r in results if isinstance(r, TransferResult) and not r.replayed)

    async def _collect(self, address: str,
                       cursor: tuple[int, str] | None) -> list[DecodedTransaction]:
        """New transactions of `address` since the cursor, oldest first, verified to chain up
        to it."""
        account_hex = address.split(":")[1]
        stop_lt = cursor[0] if cursor else self.start_lt
        newest_first: list[DecodedTransaction] = []
        from_lt: int | None = None
        from_hash: str | None = None
        while True:
            if self._stop.is_set():
                return []  # closing: settle nothing of a half-read history
            page = await self._fetch(address, from_lt, from_hash, stop_lt)
            reached = False
            for tx in page:
                if tx.account_hex != account_hex:
                    raise ChainGap(f"transaction {tx.lt} belongs to another account")
                if tx.lt <= stop_lt:
                    reached = True
                    break
                if newest_first and (newest_first[-1].prev_lt, newest_first[-1].prev_hash_hex) \
                        != (tx.lt, tx.hash_hex):
                    raise ChainGap(f"transaction {tx.lt} does not link to the next one")
                newest_first.append(tx)
            if not page or reached or not newest_first:
                break
            oldest = newest_first[-1]
            if oldest.prev_lt == 0 or oldest.prev_lt <= stop_lt:
                break
            from_lt, from_hash = oldest.prev_lt, oldest.prev_hash_hex
        newest_first.reverse()
        oldest_first = newest_first
        if oldest_first:
            first = oldest_first[0]
            if cursor is not None and (first.prev_lt, first.prev_hash_hex) != cursor:
                raise ChainGap(f"the walk back did not reach the cursor at lt {cursor[0]} "
                               f"(stopped at lt {first.lt}, which follows {first.prev_lt})")
            if cursor is None and (first.prev_lt > self.start_lt or (
                    self.start_lt == 0 and first.prev_hash_hex != _ZERO_HASH)):
                raise ChainGap(f"the walk back did not reach the start (lt {self.start_lt}; "
                               f"stopped at lt {first.lt}, which follows {first.prev_lt})")
        return oldest_first

    async def _fetch(self, address: str, from_lt: int | None, from_hash: str | None,
                     to_lt: int) -> list[DecodedTransaction]:
        """One page from the source, retried with backoff on network errors."""
        attempt = 0
        while True:
            try:
                return await self.source.get_transactions(address, self.page_size, from_lt,
                                                          from_hash, to_lt)
            except SourceError as e:
                attempt += 1
                if attempt >= self.retry_attempts or self._stop.is_set():
                    raise
                delay = min(self.retry_max, e.retry_after if e.retry_after is not None
                            else self.retry_base * 2 ** (attempt - 1))
                delay *= random.uniform(0.8, 1.2)  # spread replicas apart
                log.warning("TON %s source: %s; retry %d/%d in %.1fs", self.source.name, e,
                            attempt, self.retry_attempts - 1, delay)
                await self._sleep(delay)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            pass

    # --- the advisory lock ---------------------------------------------------------------

    async def _acquire(self) -> AsyncConnection | None:
        """This watcher's own connection, holding the address's advisory lock; None while
        another watcher holds it (watchers/session_lock.py)."""
        conn, fresh = await self._session.acquire()
        if fresh:
            log.info("TON watcher active on %s (%s source)", friendly_address(self.address),
                     self.source.name)
        return conn

    async def _drop_conn(self) -> None:
        await self._session.release()

    async def close(self, wait_seconds: float = 10.0) -> None:
        """Stop: the settlements in flight finish (each logged), none starts, the poll ends
        (waited for up to `wait_seconds`); then release the lock and close the source."""
        self._stop.set()
        try:
            await asyncio.wait_for(self._tick_lock.acquire(), wait_seconds)
        except TimeoutError:
            log.warning("TON watcher did not stop within %.0fs", wait_seconds)
        else:
            self._tick_lock.release()
        await self._drop_conn()
        await self.source.close()
        log.info("TON watcher stopped; %d transactions settled since start", self.settled)


# --- composition --------------------------------------------------------------------------


def make_source(ton: TonSettings, data_dir: Path | None) -> TransactionSource:
    """The source the settings ask for (no network I/O here)."""
    if ton.source == "http":
        url = ton.api_url or TONCENTER_URLS.get(ton.network)
        if url is None:
            raise ValueError(f"no TON API URL for network {ton.network!r}: set TON_API_URL")
        key = ton.api_key.get_secret_value() if ton.api_key else None
        return HttpApiSource(url, key)
    if ton.source == "liteserver":
        return LiteserverSource(liteserver_connector(
            ton.global_config, ton.network, data_dir,
            trust_level=ton.liteserver_trust_level,
        ))
    raise ValueError(f"unknown TON_SOURCE {ton.source!r} (liteserver or http)")


def start_ton_watcher(
    scheduler: AsyncIOScheduler, engine: AsyncEngine, settings: Settings,
    after_commit: Callable[[], None] | None = None,
) -> TonWatcher | None:
    """Schedule the watcher when TON_DESTINATION_ADDRESS is set. Never raises and never waits
    on the network: a bad setting is logged and the rest of paybot starts anyway."""
    ton = settings.ton
    if not ton.destination_address:
        return None
    try:
        watcher = TonWatcher(
            engine, make_source(ton, settings.database.data_dir), ton.destination_address,
            currency=settings.ledger.currency, ton_rate=settings.ledger.ton_rate,
            start_lt=ton.start_lt, after_commit=after_commit, jettons=ton.jettons,
        )
    except Exception as e:
        log.error("TON watcher not started: %s", e)
        return None
    # A poll can outlast the interval (a burst, retries with backoff). Two instances: the
    # tick that comes meanwhile returns at once (tick() skips while a poll is in flight),
    # instead of APScheduler warning "maximum number of running instances" at every tick.
    # No misfire limit: a tick delayed by a busy loop still runs, once (coalesce).
    scheduler.add_job(
        watcher.tick, "interval", seconds=ton.poll_seconds, id="ton_watcher", coalesce=True,
        max_instances=2, misfire_grace_time=None, next_run_time=datetime.now(UTC),
    )
    log.info("TON watcher scheduled every %.0fs for %s via %s", ton.poll_seconds,
             friendly_address(watcher.address), watcher.source.name)
    return watcher
