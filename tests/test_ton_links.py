"""watchers.ton_links: address forms and wallet deep links."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from pytoniq_core.boc.address import Address

from watchers.ton_links import (
    friendly_address,
    normalize_address,
    ton_transfer_link,
    tonkeeper_link,
)

FIXTURE = Path(__file__).parent / "fixtures" / "ton" / "transactions.json"
# Three forms of one address, written by @ton/core in the generator: an independent reference.
DEST: dict[str, str] = json.loads(FIXTURE.read_text(encoding="utf-8"))["destination"]
RAW = DEST["raw"]
EQ = DEST["bounceable"]
UQ = DEST["non_bounceable"]


def _std_b64(friendly: str) -> str:
    return friendly.replace("-", "+").replace("_", "/")


# --- addresses ---------------------------------------------------------------------------------


def test_fixture_forms_look_right() -> None:
    assert RAW.startswith("0:") and len(RAW) == 66
    assert EQ.startswith("EQ") and UQ.startswith("UQ")


@pytest.mark.parametrize(
    "form",
    [RAW, RAW.upper().replace("0X", "0x"), EQ, UQ, _std_b64(EQ), _std_b64(UQ), f"  {UQ}\n"],
    ids=["raw", "raw-upper", "eq", "uq", "eq-std-b64", "uq-std-b64", "whitespace"],
)
def test_normalize_any_form_to_raw(form: str) -> None:
    assert normalize_address(form) == RAW


def test_friendly_forms_match_ton_core() -> None:
    assert friendly_address(RAW) == UQ
    assert friendly_address(RAW, bounceable=False) == UQ
    assert friendly_address(RAW, bounceable=True) == EQ
    assert friendly_address(EQ) == UQ
    assert friendly_address(UQ, bounceable=True) == EQ


def test_round_trip() -> None:
    for form in (RAW, EQ, UQ):
        assert normalize_address(friendly_address(form)) == RAW
        assert normalize_address(friendly_address(form, bounceable=True)) == RAW


def test_masterchain_address() -> None:
    raw = "-1:" + "ab" * 32
    assert normalize_address(friendly_address(raw)) == raw
    assert friendly_address(raw, bounceable=True).startswith("Ef")


def test_testnet_flag_is_kept_in_friendly_form() -> None:
    addr = Address(RAW)
    test_uq = addr.to_str(is_bounceable=False, is_test_only=True)
    assert test_uq.startswith("0Q")
    assert normalize_address(test_uq) == RAW
    assert friendly_address(test_uq) == test_uq
    assert friendly_address(test_uq, bounceable=True).startswith("kQ")


def _bad_checksum(friendly: str) -> str:
    last = friendly[-1]
    return friendly[:-1] + ("A" if last != "A" else "B")


@pytest.mark.parametrize(
    "junk",
    [
        "",
        "   ",
        "hello",
        "0:abcd",  # hash too short (pytoniq alone would accept it)
        "0:" + "g" * 64,
        "0:" + "a" * 63,
        "0:" + "a" * 65,
        "5:" + "a" * 64,  # no such workchain
        ":" + "a" * 64,
        _bad_checksum(EQ),
        _bad_checksum(UQ),
        EQ[:-1],
        EQ + "A",
        EQ[:10] + "+" + EQ[11:20] + "_" + EQ[21:],  # mixes both base64 alphabets
        "AQ" + EQ[2:],  # unknown tag
        "EQ" + "!" * 46,
    ],
)
def test_garbage_address_raises_value_error(junk: str) -> None:
    with pytest.raises(ValueError):
        normalize_address(junk)
    with pytest.raises(ValueError):
        friendly_address(junk)


@pytest.mark.parametrize("junk", [None, 123, b"0:abc"])
def test_non_string_address_raises_value_error(junk: Any) -> None:
    with pytest.raises(ValueError):
        normalize_address(junk)


# --- links ---------------------------------------------------------------------------------------


def test_ton_transfer_link_exact() -> None:
    link = ton_transfer_link(RAW, 1_000_000_000, "INV-7Q4M2X9KTBHWA")
    assert link == f"ton://transfer/{UQ}?amount=1000000000&text=INV-7Q4M2X9KTBHWA"


def test_tonkeeper_link_exact() -> None:
    link = tonkeeper_link(EQ, 1_500_000_000, "INV-1C3D5E7F9G0HJ")
    assert link == (
        f"https://app.tonkeeper.com/transfer/{UQ}?amount=1500000000&text=INV-1C3D5E7F9G0HJ"
    )


def test_text_is_percent_encoded() -> None:
    link = ton_transfer_link(UQ, 1, "a b&c=d+e/f#g?h%")
    assert link.endswith("?amount=1&text=a%20b%26c%3Dd%2Be%2Ff%23g%3Fh%25")
    assert " " not in link and "+" not in link.split("text=")[1]


@pytest.mark.parametrize("make", [ton_transfer_link, tonkeeper_link])
@pytest.mark.parametrize(
    "text",
    ["INV-7Q4M2X9KTBHWA", "  inv-3N8P5R1CVD6YE  ", "Спасибо за кофе ☕", "DEP-7Q4M2X9KTB", ""],
)
def test_links_round_trip(make: Any, text: str) -> None:
    link = make(EQ, 990_000_000, text)
    parts = urlsplit(link)
    address = parts.path.rsplit("/", 1)[1] if parts.scheme == "https" else parts.path.lstrip("/")
    assert normalize_address(address) == RAW
    assert address == UQ  # wallet payments go to the non-bounceable form
    query = parse_qs(parts.query, keep_blank_values=True)
    assert query["amount"] == ["990000000"]
    # unquote (not unquote_plus): the encoding must not rely on "+" meaning space
    assert unquote(parts.query.split("text=", 1)[1]) == text


@pytest.mark.parametrize("make", [ton_transfer_link, tonkeeper_link])
@pytest.mark.parametrize("amount", [0, -1])
def test_non_positive_amount_rejected(make: Any, amount: int) -> None:
    with pytest.raises(ValueError):
        make(UQ, amount, "INV-7Q4M2X9KTBHWA")


@pytest.mark.parametrize("make", [ton_transfer_link, tonkeeper_link])
@pytest.mark.parametrize("amount", [1.5, Decimal(1), True, "1000"])
def test_non_int_amount_rejected(make: Any, amount: Any) -> None:
    with pytest.raises(TypeError):
        make(UQ, amount, "INV-7Q4M2X9KTBHWA")


def test_link_rejects_garbage_address() -> None:
    with pytest.raises(ValueError):
        ton_transfer_link("not-an-address", 1, "x")
    with pytest.raises(ValueError):
        tonkeeper_link("0:abcd", 1, "x")
