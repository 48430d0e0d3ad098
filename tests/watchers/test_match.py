"""Reading `INV-<id>` / `DEP-<code>` out of a transfer comment."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from watchers.ton_match import CommentMatch, match_comment

INV = CommentMatch("invoice", "7Q4M2X9KTBHWA")


@pytest.mark.parametrize("comment", [
    "INV-7Q4M2X9KTBHWA",
    "  inv-7q4m2x9ktbhwa  ",
    "INV-7Q4M2X9KTBHWA Order for the whole team, thanks!",
    "Payment for INV-7Q4M2X9KTBHWA.",
    "оплата INV-7Q4M2X9KTBHWA ☕",
    "INV-7Q4M2X9KTBHWA INV-7q4m2x9ktbhwa",  # the same one twice is not ambiguous
    "\nINV-7Q4M2X9KTBHWA\n",
])
def test_invoice_reference_found(comment: str) -> None:
    assert match_comment(comment) == INV


def test_look_alike_letters_are_mapped() -> None:
    assert match_comment("INV-7Q4M2X9KTBHWA".replace("1", "I")) == INV  # nothing to map
    assert match_comment("INV-1C3D5E7F9G0HJ".replace("1", "l").replace("0", "O")) == \
        CommentMatch("invoice", "1C3D5E7F9G0HJ")


def test_deposit_reference_found() -> None:
    assert match_comment("DEP-7Q4M2X9KTB") == CommentMatch("deposit", "7Q4M2X9KTB")
    assert match_comment(" dep-7q4m2x9ktb ") == CommentMatch("deposit", "7Q4M2X9KTB")


@pytest.mark.parametrize("comment", [
    None, "", "Спасибо за кофе ☕", "INV-", "INV-7Q4M2X9KTBHW", "INV-7Q4M2X9KTBHWAX",
    "XINV-7Q4M2X9KTBHWA", "INV-7Q4M2X9KTBHW!", "INV-7Q4M2X9KTBHWU",  # U is not Crockford
    "INV-7Q4M2X9KTBHWA INV-3N8P5R1CVD6YE",  # two different invoices: ambiguous
    "INV-7Q4M2X9KTBHWA DEP-7Q4M2X9KTB",  # an invoice and a deposit: ambiguous
    "DEP-7Q4M2X9KT", "DEP-7Q4M2X9KTBB",
])
def test_no_match(comment: str | None) -> None:
    assert match_comment(comment) is None


@given(st.text())
def test_never_raises(comment: str) -> None:
    match_comment(comment)


# --- payer tags: INV-<id>-<tag> ------------------------------------------------------------


@pytest.mark.parametrize("comment", [
    "INV-7Q4M2X9KTBHWA-K3M9P",
    "  inv-7q4m2x9ktbhwa-k3m9p  ",
    "INV-7Q4M2X9KTBHWA-K3M9P thanks!",
    "INV-7Q4M2X9KTBHWA-K3M9P INV-7Q4M2X9KTBHWA",  # the tag once, the bare id again
])
def test_payer_tag_found(comment: str) -> None:
    assert match_comment(comment) == CommentMatch("invoice", "7Q4M2X9KTBHWA", "K3M9P")


def test_payer_tag_look_alikes_are_mapped() -> None:
    assert match_comment("inv-7q4m2x9ktbhwa-g7hlo") == CommentMatch(
        "invoice", "7Q4M2X9KTBHWA", "G7H10")


@pytest.mark.parametrize("comment", [
    "INV-7Q4M2X9KTBHWA",
    "INV-7Q4M2X9KTBHWA-K3M9",  # too short: no tag
    "INV-7Q4M2X9KTBHWA-K3M9PX",  # too long
    "INV-7Q4M2X9KTBHWA-K3M9U",  # U is not Crockford
    "INV-7Q4M2X9KTBHWA-thanks",
    "INV-7Q4M2X9KTBHWA-K3M9P INV-7Q4M2X9KTBHWA-G7H10",  # two different tags: nobody named
])
def test_bare_or_malformed_tag_still_names_the_invoice(comment: str) -> None:
    assert match_comment(comment) == INV


def test_tagged_references_to_two_invoices_match_nothing() -> None:
    assert match_comment("INV-7Q4M2X9KTBHWA-K3M9P INV-3N8P5R1CVD6YE-K3M9P") is None
