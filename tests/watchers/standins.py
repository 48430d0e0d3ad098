"""Local stand-ins for the two TON sources, serving the @ton/sandbox fixtures.

- `toncenter_app`: an aiohttp app speaking the TON HTTP API v2 `getTransactions`
  (address, limit, lt, hash, to_lt, archival), with toncenter's semantics: newest first,
  starting at (lt, hash) inclusive, stopping before lt <= to_lt. Each item carries the real
  `data` BOC — and deliberately wrong pre-decoded fields, which a watcher must not trust.
- `FixtureLiteBalancer`: the part of pytoniq's LiteBalancer the watcher calls
  (`raw_get_account_state`, `get_transactions`, `close_all`), returning pytoniq_core objects
  parsed from the same BOCs, with pytoniq's paging semantics.

Both can hide the newest transactions (`visible`) to emulate transfers arriving over time,
and inject failures (`fail_next`). Both serve more than one account (the shop and its jetton
wallet: `Chain(txs, address=...)` each) and the jetton master's `get_wallet_address`
(`runGetMethod` / `run_get_method`, from `Chain.wallets`; `Chain.get_method_down` makes it
unreachable).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from pytoniq.liteclient.client import LiteServerError, RunGetMethodError
from pytoniq_core import Address, Cell, Slice, begin_cell
from pytoniq_core.tlb.account import ShardAccount
from pytoniq_core.tlb.transaction import Transaction

from watchers.ton_links import normalize_address

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "ton" / "transactions.json"
DATA: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
TXS: list[dict[str, Any]] = DATA["transactions"]  # oldest first
DESTINATION: str = DATA["destination"]["raw"]


@dataclass
class Chain:
    """An account's history (the shop's by default); only the first `visible` transactions
    exist "now"."""

    txs: list[dict[str, Any]] = field(default_factory=lambda: list(TXS))
    visible: int = -1  # -1: all of them
    address: str = DESTINATION
    # (master raw, owner raw) -> jetton wallet raw: what get_wallet_address answers
    wallets: dict[tuple[str, str], str] = field(default_factory=dict)
    get_method_down: bool = False
    get_method_calls: int = 0
    failures: deque[Any] = field(default_factory=deque)  # what the next requests do instead
    requests: list[dict[str, str]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    released: asyncio.Event = field(default_factory=asyncio.Event)  # ends "hang" failures

    def fail_next(self, *failures: Any) -> None:
        self.failures.extend(failures)

    def __post_init__(self) -> None:
        if self.visible < 0:
            self.visible = len(self.txs)

    def page(self, limit: int, lt: int | None, hash_hex: str | None,
             to_lt: int) -> list[dict[str, Any]]:
        shown = self.txs[: self.visible]
        newest_first = list(reversed(shown))
        if lt is not None:
            start = next((i for i, t in enumerate(newest_first)
                          if int(t["lt"]) == lt and t["hash_hex"] == hash_hex), None)
            if start is None:
                return []
            newest_first = newest_first[start:]
        out = []
        for t in newest_first[:limit]:
            if int(t["lt"]) <= to_lt:
                break
            out.append(t)
        return out


def _hash_param(value: str) -> str:
    if len(value) == 64:
        return value.lower()
    return base64.b64decode(value.replace("-", "+").replace("_", "/")).hex()


def toncenter_app(chain: Chain, *more: Chain) -> web.Application:
    """`chain` is the shop's (failures, requests, get-method answers); `more` other accounts."""
    by_address = {c.address: c for c in (chain, *more)}

    async def get_transactions(request: web.Request) -> web.Response:
        q = request.query
        chain.requests.append(dict(q))
        chain.headers.append(dict(request.headers))
        if chain.failures:
            failure = chain.failures.popleft()
            if failure == "429":
                return web.json_response({"ok": False, "error": "Ratelimit exceed", "code": 429},
                                         status=429, headers={"Retry-After": "0"})
            if failure == "500":
                return web.json_response({"ok": False, "code": 500,
                                          "error": "LITE_SERVER_UNKNOWN: block is not in db"},
                                         status=500)
            if failure == "garbage":
                return web.Response(text="<html>bad gateway</html>", status=502)
            if failure == "hang":
                await chain.released.wait()
        try:
            address = normalize_address(q["address"])
            limit = int(q.get("limit", "10"))
        except (KeyError, ValueError):
            return web.json_response({"ok": False, "error": "bad address", "code": 416},
                                     status=416)
        account = by_address.get(address)
        if account is None:
            return web.json_response({"ok": True, "result": []})
        lt = int(q["lt"]) if "lt" in q else None
        hash_hex = _hash_param(q["hash"]) if "hash" in q else None
        page = account.page(min(limit, 100), lt, hash_hex, int(q.get("to_lt", "0")))
        return web.json_response({"ok": True, "result": [_item(t) for t in page]})

    async def run_get_method(request: web.Request) -> web.Response:
        """toncenter's `runGetMethod` for `get_wallet_address(owner slice)` on a master."""
        chain.get_method_calls += 1
        if chain.get_method_down:
            return web.json_response({"ok": False, "code": 504,
                                      "error": "LITE_SERVER_NETWORK timeout"}, status=504)
        q = await request.json()
        [[kind, arg]] = q["stack"]
        assert q["method"] == "get_wallet_address" and kind == "tvm.Slice"
        owner = Cell.one_from_boc(base64.b64decode(arg)).begin_parse().load_address()
        wallet = chain.wallets.get((normalize_address(q["address"]),
                                    owner.to_str(is_user_friendly=False)))
        if wallet is None:  # not a jetton master: the get-method does not exist
            return web.json_response({"ok": False, "code": 500, "error": "Exit code 11 != 0"},
                                     status=500)
        boc = begin_cell().store_address(Address(wallet)).end_cell().to_boc()
        return web.json_response({"ok": True, "result": {
            "@type": "smc.runResult", "gas_used": 2961, "exit_code": 0,
            "stack": [["cell", {"bytes": base64.b64encode(boc).decode(), "object": {}}]]}})

    app = web.Application()
    app.router.add_get("/api/v2/getTransactions", get_transactions)
    app.router.add_post("/api/v2/runGetMethod", run_get_method)
    return app


def _item(t: dict[str, Any]) -> dict[str, Any]:
    # Pre-decoded fields are deliberately misleading: the watcher must read the `data` BOC.
    return {
        "@type": "raw.transaction",
        "utime": t["utime"],
        "data": t["boc_b64"],
        "transaction_id": {"@type": "internal.transactionId", "lt": str(t["lt"]),
                           "hash": t["hash_b64"]},
        "fee": "0", "storage_fee": "0", "other_fee": "0",
        "in_msg": {"@type": "raw.message", "source": "", "destination": "",
                   "value": "999000000000", "message": "INV-WRONGWRONGWRONG",
                   "msg_data": {"@type": "msg.dataText", "text": ""}},
        "out_msgs": [],
    }


class FixtureLiteBalancer:
    """Same call signatures as pytoniq.LiteBalancer for what the watcher uses."""

    def __init__(self, chain: Chain, *more: Chain) -> None:
        self.chain = chain
        self.by_address = {c.address: c for c in (chain, *more)}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.closed = False

    def _maybe_fail(self) -> None:
        if self.chain.failures:
            failure = self.chain.failures.popleft()
            if failure == "651":
                raise LiteServerError(651, "block is not in db")
            if failure == "timeout":
                raise TimeoutError()
            if failure == "no_peers":
                from pytoniq.liteclient.balancer import BalancerError

                raise BalancerError("have no alive peers")

    async def raw_get_account_state(self, address: Any, block: Any = None,
                                    **kwargs: Any) -> tuple[Any, ShardAccount | None]:
        self.calls.append(("raw_get_account_state", {"address": address, **kwargs}))
        self._maybe_fail()
        account = self.by_address.get(normalize_address(str(address)))
        shown = account.txs[: account.visible] if account is not None else []
        if not shown:
            return None, None
        last = shown[-1]
        return None, ShardAccount(None, bytes.fromhex(last["hash_hex"]), int(last["lt"]))

    async def get_transactions(self, address: Any, count: int, from_lt: int | None = None,
                               from_hash: bytes | None = None, to_lt: int = 0,
                               **kwargs: Any) -> list[Transaction]:
        self.calls.append(("get_transactions", {"count": count, "from_lt": from_lt,
                                                "to_lt": to_lt, **kwargs}))
        self._maybe_fail()
        assert isinstance(from_hash, bytes) and len(from_hash) == 32  # what pytoniq takes
        page = self.by_address[normalize_address(str(address))].page(count, from_lt,
                                                                     from_hash.hex(), to_lt)
        return [_parse(t) for t in page]

    async def run_get_method(self, address: Any, method: int | str, stack: list[Any],
                             block: Any = None, **kwargs: Any) -> list[Any]:
        """pytoniq's answer: the stack as pytoniq_core objects (a Slice holding the address)."""
        self.calls.append(("run_get_method", {"address": address, "method": method}))
        self.chain.get_method_calls += 1
        if self.chain.get_method_down:
            raise TimeoutError()
        assert method == "get_wallet_address" and isinstance(stack[0], Slice)
        owner = stack[0].copy().load_address().to_str(is_user_friendly=False)
        wallet = self.chain.wallets.get((normalize_address(str(address)), owner))
        if wallet is None:
            raise RunGetMethodError(address=address, method=method, exit_code=11)
        return [begin_cell().store_address(Address(wallet)).end_cell().begin_parse()]

    async def close_all(self) -> None:
        self.closed = True


def _parse(t: dict[str, Any]) -> Transaction:
    cell = Cell.one_from_boc(base64.b64decode(t["boc_b64"]))
    return Transaction.deserialize(cell.begin_parse())
