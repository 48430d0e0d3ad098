"""The jetton fixture: real TEP-74 transactions from @ton/sandbox (tests/fixtures/ton/jettons.json,
made by generate_jettons.mjs; see tests/fixtures/ton/README.md for the cases and `expect`).

Two account histories, oldest first: the shop wallet (`SHOP_TXS`, same shape as
transactions.json) and the shop's USDT jetton wallet (`JETTON_WALLET_TXS`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "ton" / "jettons.json"
DATA: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))

SHOP_TXS: list[dict[str, Any]] = DATA["transactions"]
JETTON_WALLET_TXS: list[dict[str, Any]] = DATA["jetton_wallet_transactions"]
DESTINATION: str = DATA["destination"]["raw"]  # the shop wallet, raw 0:hex
MASTER_RAW: str = DATA["master_raw"]  # the configured USDT master
SHOP_JETTON_WALLET_RAW: str = DATA["shop_jetton_wallet_raw"]
FAKE_MASTER_RAW: str = DATA["fake_master_raw"]  # a genuine minter nobody configured
SHOP_FAKE_JETTON_WALLET_RAW: str = DATA["shop_fake_jetton_wallet_raw"]


def case(name: str, txs: list[dict[str, Any]] = SHOP_TXS) -> dict[str, Any]:
    """The one transaction of `txs` recorded for case `name`."""
    found = [tx for tx in txs if tx["case"] == name]
    if len(found) != 1:
        raise KeyError(f"{name}: {len(found)} transactions")
    return found[0]


def run_get_method_answer(master_raw: str, owner_raw: str) -> dict[str, Any] | None:
    """What toncenter v2 `runGetMethod` answers for `get_wallet_address(owner)` on `master`
    (the whole JSON body, `{"ok": true, "result": {...}}`); None for a pair not in the fixture."""
    for entry in DATA["get_wallet_address"].values():
        if entry["request"]["address"] == master_raw and entry["owner_raw"] == owner_raw:
            response: dict[str, Any] = entry["response"]
            return response
    return None
