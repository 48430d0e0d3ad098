"""watchers.ton_decode against real transactions from the @ton/sandbox emulator.

The fixture (tests/fixtures/ton/transactions.json, made by generate.mjs) records what the
generator *sent*; here we check the decoder reads the same facts back from the raw BOCs.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
from pathlib import Path
from typing import Any

import pytest
from pytoniq_core import Builder, Cell
from pytoniq_core.tlb.transaction import Transaction

from watchers.ton_decode import (
    DecodedTransaction,
    UndecodableTransaction,
    decode_comment,
    decode_transaction,
    decode_transaction_cell,
)

FIXTURE = Path(__file__).parent / "fixtures" / "ton" / "transactions.json"
DATA: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
TXS: list[dict[str, Any]] = DATA["transactions"]
BY_CASE: dict[str, dict[str, Any]] = {t["case"]: t for t in TXS}

# The scenarios the payment tests rely on, in the order they happened on chain.
REQUIRED_ORDER = [
    "plain",
    "lowercase_spaces",
    "non_ascii",
    "long_comment",
    "no_comment",
    "binary_body",
    "invalid_utf8",
    "wrong_comment",
    "under_1",
    "under_2",
    "over",
    "duplicate",
    "late",
    "deposit",
    "bounced",
    "outgoing",
]
# Written out by hand (not derived from `expect`) so a fixture regeneration that changes the
# meaning of a case is noticed.
PAYMENTS = {
    "user_tag", "guest_tag", "foreign_tag", "unknown_tag",  # INV-<id>-<payer tag>
    "plain",
    "lowercase_spaces",
    "non_ascii",
    "long_comment",
    "no_comment",
    "binary_body",
    "invalid_utf8",
    "wrong_comment",
    "under_1",
    "under_2",
    "over",
    "duplicate",
    "late",
    "deposit",
}


def _boc(tx: dict[str, Any]) -> bytes:
    return base64.b64decode(tx["boc_b64"])


def _text_body(data: bytes, op: int = 0) -> Cell:
    return Builder().store_uint(op, 32).store_snake_bytes(data).end_cell()


# --- the fixture itself -------------------------------------------------------------------


def test_fixture_has_every_case_in_chronological_order() -> None:
    cases = [t["case"] for t in TXS]
    assert len(cases) == len(set(cases))
    positions = [cases.index(c) for c in REQUIRED_ORDER]
    assert positions == sorted(positions)
    lts = [int(t["lt"]) for t in TXS]
    assert lts == sorted(lts) and len(set(lts)) == len(lts)


def test_fixture_transactions_all_belong_to_destination() -> None:
    dest_hash = DATA["destination"]["raw"].split(":")[1]
    for t in TXS:
        tx = Transaction.deserialize(Cell.one_from_boc(_boc(t)).begin_parse())
        assert tx.account_addr_hex == dest_hash, t["case"]


# --- every fixture transaction --------------------------------------------------------------


@pytest.mark.parametrize("tx", TXS, ids=[t["case"] for t in TXS])
def test_decode_matches_what_was_sent(tx: dict[str, Any]) -> None:
    d = decode_transaction(_boc(tx))
    e = tx["expect"]

    assert d.hash_hex == tx["hash_hex"]
    assert bytes.fromhex(d.hash_hex) == base64.b64decode(tx["hash_b64"])
    assert d.lt == int(tx["lt"])
    assert d.utime == tx["utime"]
    assert d.prev_lt == int(tx["prev_lt"])
    assert bytes.fromhex(d.prev_hash_hex) == base64.b64decode(tx["prev_hash_b64"])

    assert d.incoming is e["incoming"]
    assert d.bounced is e["bounced"]
    assert d.aborted is e["aborted"]
    assert d.value_nano == int(e["value_nano"])
    assert d.source == e["source_raw"]
    assert d.body_kind == e["body"]
    assert d.comment == e["comment"]
    assert d.is_payment is (tx["case"] in PAYMENTS)

    # amounts and times are exact integers, never floats
    for value in (d.lt, d.utime, d.value_nano, d.prev_lt):
        assert type(value) is int


@pytest.mark.parametrize("tx", TXS, ids=[t["case"] for t in TXS])
def test_all_entry_points_agree(tx: dict[str, Any]) -> None:
    from_bytes = decode_transaction(_boc(tx))
    assert decode_transaction(tx["boc_b64"]) == from_bytes  # toncenter's base64 `data`
    cell = Cell.one_from_boc(_boc(tx))
    assert decode_transaction_cell(cell) == from_bytes
    # the liteserver client hands out parsed pytoniq Transaction objects
    parsed = Transaction.deserialize(cell.begin_parse())
    assert decode_transaction_cell(parsed) == from_bytes


def test_prev_links_chain_the_account_history() -> None:
    decoded = [decode_transaction(_boc(t)) for t in TXS]
    for older, newer in itertools.pairwise(decoded):
        assert newer.prev_lt == older.lt
        assert newer.prev_hash_hex == older.hash_hex


def test_long_comment_really_spans_several_cells() -> None:
    tx = Transaction.deserialize(Cell.one_from_boc(_boc(BY_CASE["long_comment"])).begin_parse())
    assert tx.in_msg is not None and tx.in_msg.body.refs  # snake continuation cell
    comment = decode_transaction(_boc(BY_CASE["long_comment"])).comment
    assert comment is not None
    assert comment.startswith("INV-9F2G7H4JKM0NQ ")
    assert len(comment.encode()) > 127
    assert "Доставка" in comment


def test_exact_values_of_key_cases() -> None:
    plain = decode_transaction(_boc(BY_CASE["plain"]))
    assert (plain.value_nano, plain.comment) == (1_000_000_000, "INV-7Q4M2X9KTBHWA")
    under = decode_transaction(_boc(BY_CASE["under_1"]))
    top_up = decode_transaction(_boc(BY_CASE["under_2"]))
    assert under.value_nano + top_up.value_nano == 1_000_000_000
    bounced = decode_transaction(_boc(BY_CASE["bounced"]))
    assert bounced.bounced and not bounced.is_payment and bounced.body_kind == "binary"
    outgoing = decode_transaction(_boc(BY_CASE["outgoing"]))
    assert (outgoing.incoming, outgoing.value_nano, outgoing.source) == (False, 0, None)
    assert outgoing.body_kind == "none" and outgoing.comment is None


def test_is_payment_rules() -> None:
    base = decode_transaction(_boc(BY_CASE["plain"]))
    fields = {f: getattr(base, f) for f in DecodedTransaction.__slots__}
    assert DecodedTransaction(**fields).is_payment
    assert not DecodedTransaction(**{**fields, "bounced": True}).is_payment
    assert not DecodedTransaction(**{**fields, "aborted": True}).is_payment
    assert not DecodedTransaction(**{**fields, "value_nano": 0}).is_payment
    assert not DecodedTransaction(**{**fields, "incoming": False}).is_payment


# --- bodies built by hand ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(None, ("empty", None), id="none"),
        pytest.param(Cell.empty(), ("empty", None), id="empty-cell"),
        pytest.param(Builder().store_uint(0, 16).end_cell(), ("binary", None), id="short-op"),
        pytest.param(Builder().store_uint(0, 31).end_cell(), ("binary", None), id="31-bits"),
        pytest.param(
            Builder().store_ref(_text_body(b"INV-X")).end_cell(), ("binary", None), id="only-ref"
        ),
        pytest.param(_text_body(b""), ("text", ""), id="op0-no-text"),
        pytest.param(_text_body(b"INV-7Q4M2X9KTBHWA"), ("text", "INV-7Q4M2X9KTBHWA"), id="text"),
        pytest.param(_text_body(b"INV-X", op=0x12345678), ("binary", None), id="nonzero-op"),
        pytest.param(_text_body(b"INV-X", op=0xFFFFFFFF), ("binary", None), id="bounce-prefix"),
        pytest.param(_text_body(b"\xff\xfe\xfd"), ("invalid_utf8", None), id="bad-utf8"),
        pytest.param(_text_body(b"\xd0"), ("invalid_utf8", None), id="truncated-utf8"),
        pytest.param(
            Builder().store_uint(0, 32).store_uint(1, 5).end_cell(),
            ("invalid_utf8", None),
            id="misaligned-bits",
        ),
        pytest.param(
            Builder()
            .store_uint(0, 32)
            .store_bytes(b"a")
            .store_ref(Cell.empty())
            .store_ref(Cell.empty())
            .end_cell(),
            ("invalid_utf8", None),
            id="two-refs",
        ),
    ],
)
def test_decode_comment_odd_bodies(body: Cell | None, expected: tuple[str, str | None]) -> None:
    assert decode_comment(body) == expected


def test_decode_comment_joins_bytes_before_utf8_decoding() -> None:
    text = "x" + "Кофе " * 60  # 2-byte letters: some land split across a cell boundary
    data = text.encode()
    # 123 bytes fit next to the op in the first cell, an odd offset into 2-byte letters
    assert (data[123] & 0xC0) == 0x80
    body = _text_body(data)
    assert body.refs
    assert decode_comment(body) == ("text", text)


def test_decode_comment_invalid_utf8_in_a_continuation_cell() -> None:
    body = _text_body(b"A" * 200 + b"\xff")
    assert decode_comment(body) == ("invalid_utf8", None)


def test_decode_comment_does_not_consume_a_slice() -> None:
    cs = _text_body(b"INV-7Q4M2X9KTBHWA").begin_parse()
    assert decode_comment(cs) == ("text", "INV-7Q4M2X9KTBHWA")
    assert decode_comment(cs) == ("text", "INV-7Q4M2X9KTBHWA")
    assert cs.remaining_bits == 32 + 17 * 8


def test_decode_comment_deepest_possible_chain_is_iterated_not_recursed() -> None:
    # 1000 cells is deeper than Python's default recursion limit (pytoniq's own
    # load_snake_bytes recurses) and close to the on-chain maximum depth of 1023.
    chunk = b"0123456789" * 12 + b"abcdefg"  # 127 bytes: a full continuation cell
    cell = Builder().store_bytes(chunk).end_cell()
    for _ in range(998):
        cell = Builder().store_bytes(chunk).store_ref(cell).end_cell()
    body = Builder().store_uint(0, 32).store_bytes(b"INV-").store_ref(cell).end_cell()
    kind, comment = decode_comment(body)
    assert kind == "text"
    assert comment == "INV-" + chunk.decode() * 999


# --- not a transaction ------------------------------------------------------------------------


def _garbage() -> list[Any]:
    rng = random.Random(20240601)
    plain_boc = _boc(BY_CASE["plain"])
    return [
        b"",
        b"garbage",
        b"\x00" * 64,
        bytes(rng.randrange(256) for _ in range(300)),
        b"\xb5\xee\x9cr" + bytes(rng.randrange(256) for _ in range(200)),  # BOC magic, junk
        plain_boc[: len(plain_boc) // 2],  # truncated
        plain_boc[:-1],
        _text_body(b"INV-7Q4M2X9KTBHWA").to_boc(),  # a valid BOC of some other cell
        Cell.empty().to_boc(),
        "not base64 !!!",
        "aGVsbG8=",  # valid base64, not a BOC
        12345,
        None,
    ]


@pytest.mark.parametrize("junk", _garbage())
def test_garbage_raises_undecodable(junk: Any) -> None:
    with pytest.raises(UndecodableTransaction):
        decode_transaction(junk)


def test_undecodable_is_a_value_error() -> None:
    assert issubclass(UndecodableTransaction, ValueError)
    with pytest.raises(UndecodableTransaction):
        decode_transaction_cell(_text_body(b"x"))
    with pytest.raises(UndecodableTransaction):
        decode_transaction_cell("not a cell")  # type: ignore[arg-type]


def test_random_corruption_never_escapes_as_another_error() -> None:
    rng = random.Random(7)
    boc = bytearray(_boc(BY_CASE["long_comment"]))
    for _ in range(300):
        mutated = bytearray(boc)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        try:
            d = decode_transaction(bytes(mutated))
        except UndecodableTransaction:
            continue
        # a flip inside a body or padding may still decode; then the result is well-formed
        assert isinstance(d, DecodedTransaction)
        assert d.body_kind in {"text", "empty", "binary", "invalid_utf8", "none"}
        assert type(d.value_nano) is int and d.value_nano >= 0
