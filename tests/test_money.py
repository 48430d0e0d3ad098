"""Amounts typed by people become exact integers, or a clear error."""

from decimal import Decimal

import pytest

from ledger.errors import InvalidAmount
from ledger.ids import new_invoice_id, parse_invoice_id
from ledger.money import format_amount, from_ton, parse_amount, quote_ton


@pytest.mark.parametrize(
    ("text", "minor"), [("12.50", 1250), ("12,5", 1250), ("0.01", 1), ("7", 700), (" 3.00 ", 300)]
)
def test_parses_decimal_text_into_cents(text: str, minor: int) -> None:
    assert parse_amount(text, "LIQ") == minor


@pytest.mark.parametrize(
    "text", ["abc", "-5", "0", "0.00", "1e9999", "1.005", "", "  ", "1.2.3", "NaN", "inf", "+5",
             "10000000000000000"]
)
def test_rejects_what_is_not_a_valid_amount(text: str) -> None:
    with pytest.raises(InvalidAmount):
        parse_amount(text, "LIQ")


def test_ton_amounts_keep_nine_decimals() -> None:
    assert parse_amount("0.000000001", "TON") == 1
    assert format_amount(1_500_000_000, "TON") == "1.5"
    assert format_amount(1250, "LIQ") == "12.50"


def test_ton_quote_rounds_up_so_paying_the_quote_never_underpays() -> None:
    rate = Decimal("3")  # 3 Liquid $ per TON
    nano = quote_ton(100, "LIQ", rate)  # 1.00 Liquid $
    assert nano == 333_333_334
    assert from_ton(nano, "LIQ", rate) >= 100
    assert from_ton(nano - 1, "LIQ", rate) < 100


def test_invoice_ids_are_long_random_and_case_insensitive() -> None:
    ids = {new_invoice_id() for _ in range(1000)}
    assert len(ids) == 1000
    some = next(iter(ids))
    assert len(some) == 13  # 13 base32 symbols = 65 bits
    assert parse_invoice_id(some.lower()) == some
    assert parse_invoice_id(f"  {some}  ") == some
    assert parse_invoice_id("not-an-id") is None
    assert parse_invoice_id(some + "X") is None


def test_ids_use_every_symbol_evenly() -> None:
    from collections import Counter

    from ledger.ids import ALPHABET

    counts = Counter(ch for _ in range(4000) for ch in new_invoice_id())
    assert set(counts) == set(ALPHABET)
    expected = 4000 * 13 / 32
    assert all(0.8 * expected < n < 1.2 * expected for n in counts.values())


def test_a_forked_process_never_issues_the_parents_next_ids() -> None:
    import os

    from ledger import ids

    ids._random_bytes.forget()
    new_invoice_id()  # a fresh 4 KiB of random bytes is now buffered in this process
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report the ids it would issue, and leave at once
        os.write(write, "".join(new_invoice_id() for _ in range(5)).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 1000).decode()
    os.waitpid(pid, 0)
    os.close(read)
    parent = "".join(new_invoice_id() for _ in range(5))
    assert len(child) == len(parent) == 65 and child != parent
