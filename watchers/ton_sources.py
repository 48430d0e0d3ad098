"""Where the watcher reads the chain: liteservers through pytoniq, or a toncenter-v2-compatible
TON HTTP API. Both sit behind one small interface and hand back decoded transactions.

    get_transactions(address, limit, from_lt, from_hash, to_lt) -> newest first
        from (from_lt, from_hash) inclusive, or from the account's last transaction when both are
        None; stops after `limit` transactions or before the first one with lt <= to_lt.
    get_wallet_address(master, owner) -> the owner's jetton wallet of that master, raw "wc:hex"
        (the master's get-method: toncenter `runGetMethod`, liteserver `run_get_method`).

Whatever goes wrong on the network side (connection refused, timeouts, liteserver errors such as
651 "block not in db", HTTP 429/5xx, garbage in a response) becomes a `SourceError`; the watcher
retries those with backoff and never dies of them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final, Protocol

import aiohttp
from pytoniq_core import Address, Cell, Slice, begin_cell

from watchers.ton_decode import (
    DecodedTransaction,
    UndecodableTransaction,
    decode_transaction,
    decode_transaction_cell,
)

log = logging.getLogger(__name__)

__all__ = [
    "GLOBAL_CONFIG_URLS",
    "TONCENTER_URLS",
    "HttpApiSource",
    "LiteserverSource",
    "SourceError",
    "TransactionSource",
    "liteserver_connector",
    "load_global_config",
]

GLOBAL_CONFIG_URLS: Final = {
    "mainnet": "https://ton.org/global-config.json",
    "testnet": "https://ton.org/testnet-global.config.json",
}
TONCENTER_URLS: Final = {
    "mainnet": "https://toncenter.com/api/v2",
    "testnet": "https://testnet.toncenter.com/api/v2",
}
_MAX_RESPONSE: Final = 32 * 1024 * 1024  # a page of 100 transactions is far below this


class SourceError(Exception):
    """The chain could not be read right now. Retrying later may help."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TransactionSource(Protocol):
    name: str
    page_size: int

    async def get_transactions(
        self, address: str, limit: int, from_lt: int | None, from_hash: str | None, to_lt: int
    ) -> list[DecodedTransaction]: ...

    async def get_wallet_address(self, master: str, owner: str) -> str: ...

    async def close(self) -> None: ...


# --- TON HTTP API (toncenter v2) ------------------------------------------------------------


class HttpApiSource:
    """`GET {base}/getTransactions?address=&limit=&lt=&hash=&to_lt=&archival=true`.

    Each transaction is decoded from its `data` BOC (the serialized Transaction cell), and
    checked against the `transaction_id` the API states; the pre-decoded JSON fields are never
    trusted.
    """

    name = "http"

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float = 20.0,
                 page_size: int = 50) -> None:
        self._base = base_url.rstrip("/")
        self._headers = {"X-API-Key": api_key} if api_key else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self.page_size = page_size

    async def get_transactions(
        self, address: str, limit: int, from_lt: int | None, from_hash: str | None, to_lt: int
    ) -> list[DecodedTransaction]:
        params = {"address": address, "limit": str(limit), "archival": "true"}
        if from_lt is not None and from_hash is not None:
            params |= {"lt": str(from_lt), "hash": from_hash}
        if to_lt > 0:
            params["to_lt"] = str(to_lt)
        body = await self._get("getTransactions", params)
        result = body.get("result")
        if not isinstance(result, list):
            raise SourceError("TON API: `result` is not a list")
        return [self._decode(item) for item in result]

    async def get_wallet_address(self, master: str, owner: str) -> str:
        """`POST {base}/runGetMethod` get_wallet_address(owner) on the master."""
        arg = base64.b64encode(owner_slice_cell(owner).to_boc()).decode()
        body = await self._get("runGetMethod", json_body={
            "address": master, "method": "get_wallet_address", "stack": [["tvm.Slice", arg]]})
        result = body.get("result")
        if not isinstance(result, dict) or result.get("exit_code") not in (0, 1):
            raise SourceError(f"TON API: get_wallet_address failed: {str(result)[:200]}")
        stack = result.get("stack")
        try:
            kind, value = stack[0]  # type: ignore[index]
            if isinstance(value, dict):
                value = value["bytes"]  # toncenter: ["cell", {"bytes": <BOC>, "object": ...}]
            if kind not in ("cell", "slice", "tvm.Cell", "tvm.Slice"):
                raise ValueError(kind)
            return address_from_stack_item(Cell.one_from_boc(base64.b64decode(value)))
        except Exception as e:
            raise SourceError(f"TON API: get_wallet_address answered {str(stack)[:200]}") from e

    async def _get(self, method: str, params: dict[str, str] | None = None, *,
                   json_body: dict[str, Any] | None = None) -> dict[str, Any]:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        url = f"{self._base}/{method}"
        try:
            async with (self._session.get(url, params=params) if json_body is None
                        else self._session.post(url, json=json_body)) as resp:
                raw = await resp.content.read(_MAX_RESPONSE + 1)
                status, retry_after = resp.status, resp.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise SourceError(f"TON API unreachable: {e!r}") from e
        if len(raw) > _MAX_RESPONSE:
            raise SourceError("TON API: response too large")
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        if status == 429:
            raise SourceError(f"TON API rate limit (429): {error or ''}".strip(),
                              retry_after=_seconds(retry_after))
        if status != 200 or not isinstance(body, dict) or body.get("ok") is not True:
            raise SourceError(f"TON API answered {status}: {error or raw[:200]!s}")
        return body

    @staticmethod
    def _decode(item: Any) -> DecodedTransaction:
        if not isinstance(item, dict) or not isinstance(item.get("data"), str):
            raise SourceError("TON API: a transaction without its `data` BOC")
        try:
            tx = decode_transaction(item["data"])
        except UndecodableTransaction as e:
            raise SourceError(f"TON API: undecodable transaction BOC: {e}") from e
        tid = item.get("transaction_id")
        if isinstance(tid, dict):
            # The id the API states must be the BOC's own: otherwise the page is corrupt.
            if str(tid.get("lt")) != str(tx.lt) or _hash_hex(tid.get("hash")) != tx.hash_hex:
                raise SourceError(f"TON API: transaction_id does not match its BOC ({tx.lt})")
        return tx

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def owner_slice_cell(owner: str) -> Cell:
    """The get_wallet_address argument: a cell holding the owner's MsgAddress."""
    return begin_cell().store_address(Address(owner)).end_cell()


def address_from_stack_item(item: object) -> str:
    """The address a get-method returned as a slice (or a cell), raw "wc:hex"."""
    cs = item.begin_parse() if isinstance(item, Cell) else item
    if not isinstance(cs, Slice):
        raise SourceError(f"get-method result is not a slice: {type(item).__name__}")
    addr = cs.load_address()
    if not isinstance(addr, Address):
        raise SourceError("get-method result is not an internal address")
    return addr.to_str(is_user_friendly=False)


def _hash_hex(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    if len(value) == 64:
        return value.lower()
    try:
        return base64.b64decode(value.replace("-", "+").replace("_", "/"), validate=True).hex()
    except (binascii.Error, ValueError):
        return None


def _seconds(header: str | None) -> float | None:
    try:
        return max(0.0, float(header)) if header else None
    except ValueError:
        return None


# --- liteservers (pytoniq) --------------------------------------------------------------------


class LiteClientLike(Protocol):
    """The part of pytoniq's LiteBalancer the watcher uses (tests pass a stand-in)."""

    async def raw_get_account_state(self, address: Any, block: Any = None,
                                    **kwargs: Any) -> Any: ...

    async def get_transactions(self, address: Any, count: int, from_lt: int | None = None,
                               from_hash: bytes | None = None, to_lt: int = 0,
                               **kwargs: Any) -> list[Any]: ...

    async def run_get_method(self, address: Any, method: int | str, stack: list[Any],
                             block: Any = None, **kwargs: Any) -> list[Any]: ...


class LiteserverSource:
    """`raw_get_account_state` for the head, `get_transactions` to walk back.

    The client is made lazily by `connect` (loading the global config and connecting can take
    a while and fail): nothing here blocks start-up, and a failed connection is retried on the
    next call.
    """

    name = "liteserver"

    def __init__(self, connect: Callable[[], Awaitable[LiteClientLike]], *,
                 timeout: float = 30.0, page_size: int = 16) -> None:
        self._connect = connect
        self._client: LiteClientLike | None = None
        self._timeout = timeout
        self.page_size = page_size

    async def get_transactions(
        self, address: str, limit: int, from_lt: int | None, from_hash: str | None, to_lt: int
    ) -> list[DecodedTransaction]:
        client = await self._get_client()
        try:
            if from_lt is None or from_hash is None:
                _account, shard_account = await self._call(client.raw_get_account_state, address)
                if shard_account is None or not int(shard_account.last_trans_lt):
                    return []  # the account does not exist yet
                from_lt = int(shard_account.last_trans_lt)
                start_hash = bytes(shard_account.last_trans_hash)
            else:
                start_hash = bytes.fromhex(from_hash)
            if from_lt <= to_lt:
                return []
            txs = await self._call(client.get_transactions, address, limit, from_lt, start_hash,
                                   to_lt)
        except SourceError:
            raise
        except Exception as e:  # pytoniq raises many types (LiteServerError, BalancerError...)
            if "alive peers" in str(e):
                await self._drop_client()  # connect afresh next time
            raise SourceError(f"liteserver: {e!r}") from e
        try:
            return [decode_transaction_cell(t) for t in txs]
        except UndecodableTransaction as e:
            raise SourceError(f"liteserver: undecodable transaction: {e}") from e

    async def get_wallet_address(self, master: str, owner: str) -> str:
        """`run_get_method(master, "get_wallet_address", [owner as a slice])`."""
        client = await self._get_client()
        try:
            stack = await self._call(client.run_get_method, master, "get_wallet_address",
                                     [owner_slice_cell(owner).begin_parse()])
            return address_from_stack_item(stack[0])
        except SourceError:
            raise
        except Exception as e:  # exit code != 0, an odd stack, the network
            if "alive peers" in str(e):
                await self._drop_client()
            raise SourceError(f"liteserver: get_wallet_address: {e!r}") from e

    async def _call(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        try:
            return await asyncio.wait_for(fn(*args), self._timeout)
        except TimeoutError as e:
            raise SourceError("liteserver: timed out") from e
        except Exception as e:
            if getattr(e, "code", None) != 651:
                raise
            # 651 "block not in db": this liteserver pruned the block; an archival one has it.
            log.warning("liteserver error 651 (block not in db); asking an archival liteserver")
            try:
                return await asyncio.wait_for(fn(*args, only_archive=True), self._timeout)
            except TimeoutError as e2:
                raise SourceError("liteserver: timed out") from e2

    async def _get_client(self) -> LiteClientLike:
        if self._client is None:
            try:
                self._client = await self._connect()
            except SourceError:
                raise
            except Exception as e:
                raise SourceError(f"liteserver: could not connect: {e!r}") from e
        return self._client

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        close = getattr(client, "close_all", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()

    async def close(self) -> None:
        await self._drop_client()


async def load_global_config(
    location: str | None, network: str, cache_dir: Path | None, *, fetch_seconds: float = 15.0
) -> dict[str, Any]:
    """The liteserver list: from a file, or a URL fetched without blocking the event loop and
    cached on disk (an unreachable URL falls back to the cached copy)."""
    if network not in GLOBAL_CONFIG_URLS and location is None:
        raise SourceError(f"unknown TON network {network!r}")
    location = location or GLOBAL_CONFIG_URLS[network]
    if not location.startswith(("http://", "https://")):
        return _valid_config(await asyncio.to_thread(_read, location), location)
    cache = cache_dir / f"ton-global-config-{network}.json" if cache_dir is not None else None
    try:
        async with aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=fetch_seconds)) as s:
            async with s.get(location) as resp:
                resp.raise_for_status()
                text = (await resp.content.read(_MAX_RESPONSE)).decode("utf-8")
        config = _valid_config(text, location)
    except (aiohttp.ClientError, TimeoutError, OSError, UnicodeDecodeError, SourceError) as e:
        cached = await asyncio.to_thread(_read, cache) if cache is not None else None
        if cached is not None:
            log.warning("TON global config %s unreachable (%r); using the cached copy", location, e)
            return _valid_config(cached, str(cache))
        raise SourceError(f"TON global config {location} unreachable: {e!r}") from e
    if cache is not None:
        await asyncio.to_thread(_write_atomically, cache, text)
    return config


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).expanduser().read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def _valid_config(text: str | None, where: str) -> dict[str, Any]:
    if text is None:
        raise SourceError(f"TON global config {where} does not exist")
    try:
        config = json.loads(text)
    except ValueError as e:
        raise SourceError(f"TON global config {where} is not JSON") from e
    if not isinstance(config, dict) or not config.get("liteservers") or "validator" not in config:
        raise SourceError(f"TON global config {where} has no liteservers")
    return config


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def liteserver_connector(
    location: str | None, network: str, cache_dir: Path | None, *, trust_level: int = 1,
    timeout: float = 10.0, startup_timeout: float = 60.0,
) -> Callable[[], Awaitable[LiteClientLike]]:
    """A `connect` for LiteserverSource: load the config (never `from_mainnet_config`, which
    blocks on `requests.get`), build a LiteBalancer, start it up."""

    async def connect() -> LiteClientLike:
        from pytoniq import LiteBalancer  # heavy import, only when liteservers are used

        config = await load_global_config(location, network, cache_dir)
        client = LiteBalancer.from_config(config, trust_level=trust_level, timeout=int(timeout))
        try:
            await asyncio.wait_for(client.start_up(), startup_timeout)
        except BaseException:
            with contextlib.suppress(Exception):
                await client.close_all()
            raise
        if client.alive_peers_num == 0:
            with contextlib.suppress(Exception):
                await client.close_all()
            raise SourceError("no liteserver answered")
        log.info("connected to %d of %d liteservers (%s)", client.alive_peers_num,
                 client.peers_num, network)
        return client

    return connect
