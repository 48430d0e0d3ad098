"""Decode raw TON transactions (BOC) into the few facts the payment watcher needs.

Both transaction sources end up here: toncenter hands us base64 BOCs (its `data` field), the
liteserver client hands us parsed `pytoniq_core` Transaction objects. Either way the result is a
flat, immutable `DecodedTransaction` with integer amounts only.

Only a BOC that is not a transaction raises (`UndecodableTransaction`). Message bodies are
attacker-controlled (anyone can send us 1 nanoton with any payload), so `decode_comment` never
raises: odd bodies are classified instead.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any, Final

from pytoniq_core import Cell, Slice
from pytoniq_core.boc.address import Address
from pytoniq_core.tlb.transaction import InternalMsgInfo, Transaction

__all__ = [
    "BODY_BINARY",
    "BODY_EMPTY",
    "BODY_INVALID_UTF8",
    "BODY_NONE",
    "BODY_TEXT",
    "DecodedTransaction",
    "UndecodableTransaction",
    "decode_comment",
    "decode_transaction",
    "decode_transaction_cell",
]

BODY_TEXT: Final = "text"  # op 0 + UTF-8 snake string: a wallet text comment
BODY_EMPTY: Final = "empty"  # no bits and no refs: a plain transfer
BODY_BINARY: Final = "binary"  # anything else: non-zero op, truncated op, bounce payloads...
BODY_INVALID_UTF8: Final = "invalid_utf8"  # op 0 but the payload is not readable as UTF-8 text
BODY_NONE: Final = "none"  # the transaction has no incoming internal message at all

TEXT_COMMENT_OP: Final = 0
# A cell tree is at most 1024 levels deep on-chain (pytoniq enforces it too); the cap only
# bounds the loop, it never cuts a real comment.
_MAX_SNAKE_CELLS: Final = 1024


class UndecodableTransaction(ValueError):
    """The bytes are not a (complete) serialized TON transaction."""


@dataclass(frozen=True, slots=True)
class DecodedTransaction:
    hash_hex: str  # 64 lowercase hex of the transaction cell hash
    lt: int
    utime: int
    incoming: bool  # has an incoming *internal* message to this account
    bounced: bool  # that incoming message has the bounced flag
    aborted: bool  # description.aborted (compute/action phase failed or was skipped)
    value_nano: int  # incoming message value in nanotons (0 if not incoming)
    source: str | None  # sender, raw form "0:hex"
    body_kind: str  # "text" | "empty" | "binary" | "invalid_utf8" | "none"
    comment: str | None  # decoded text comment when body_kind == "text"
    prev_lt: int  # previous transaction of the account (for paging back)
    prev_hash_hex: str
    account_hex: str = ""  # the account's address hash (64 hex); the workchain is not in a tx
    # The incoming internal message's body, for the jetton decoder (watchers/jetton_decode).
    body: Cell | None = field(default=None, compare=False, repr=False)

    @property
    def is_payment(self) -> bool:
        # A bounce is our own money coming back and an aborted transaction may have been
        # refunded by the bounce phase, so neither counts as a customer payment.
        return self.incoming and not self.bounced and not self.aborted and self.value_nano > 0


def decode_comment(body_cell: Cell | Slice | None) -> tuple[str, str | None]:
    """Classify a message body and extract its text comment: `(body_kind, comment)`.

    A text comment is a 32-bit zero op followed by UTF-8 bytes laid out as a "snake": each cell
    holds whole bytes and at most one ref to the continuation. The bytes are joined *before*
    UTF-8 decoding because wallets cut the string at cell boundaries without caring about
    multi-byte characters. A missing body (None) is an empty body.
    """
    try:
        return _decode_comment(body_cell)
    except Exception:
        # Defensive: a body is untrusted input and must not break the watcher loop.
        return BODY_BINARY, None


def _decode_comment(body_cell: Cell | Slice | None) -> tuple[str, str | None]:
    if body_cell is None:
        return BODY_EMPTY, None
    # Work on a fresh slice so a caller's cell/slice is never consumed.
    cs = body_cell.copy() if isinstance(body_cell, Slice) else body_cell.begin_parse()
    if cs.remaining_bits == 0 and cs.remaining_refs == 0:
        return BODY_EMPTY, None
    if cs.remaining_bits < 32:
        return BODY_BINARY, None
    if cs.load_uint(32) != TEXT_COMMENT_OP:
        return BODY_BINARY, None

    chunks: list[bytes] = []
    cell_slice: Slice | None = cs
    # Iterate, don't recurse: a snake can be ~1000 cells deep, past Python's recursion limit.
    while cell_slice is not None:
        if len(chunks) >= _MAX_SNAKE_CELLS:
            return BODY_INVALID_UTF8, None
        if cell_slice.remaining_bits % 8 or cell_slice.remaining_refs > 1:
            return BODY_INVALID_UTF8, None  # not a snake string
        chunks.append(cell_slice.load_bytes(cell_slice.remaining_bits // 8))
        cell_slice = cell_slice.load_ref().begin_parse() if cell_slice.remaining_refs else None

    try:
        return BODY_TEXT, b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        return BODY_INVALID_UTF8, None


def decode_transaction(boc: bytes | str) -> DecodedTransaction:
    """Decode one transaction BOC (bytes, or the base64 string toncenter returns)."""
    if isinstance(boc, str):
        try:
            boc = base64.b64decode(boc, validate=True)
        except (binascii.Error, ValueError) as e:
            raise UndecodableTransaction(f"transaction BOC is not valid base64: {e}") from e
    if not isinstance(boc, bytes | bytearray | memoryview):
        raise UndecodableTransaction(f"expected BOC bytes, got {type(boc).__name__}")
    try:
        cell = Cell.one_from_boc(bytes(boc))
    except Exception as e:  # pytoniq raises a zoo of types (BocError, IndexError, ...)
        raise UndecodableTransaction(f"not a valid BOC: {e!r}") from e
    return decode_transaction_cell(cell)


def decode_transaction_cell(cell: Cell | Transaction) -> DecodedTransaction:
    """Decode a transaction root cell, or an already parsed pytoniq Transaction."""
    if isinstance(cell, Transaction):
        tx = cell
        root: Cell = tx.cell
    elif isinstance(cell, Cell):
        root = cell
        try:
            parsed: Any = Transaction.deserialize(root.begin_parse())
        except Exception as e:
            raise UndecodableTransaction(f"cell is not a transaction: {e!r}") from e
        if not isinstance(parsed, Transaction):
            # pytoniq returns exotic (e.g. pruned) cells as-is instead of a Transaction.
            raise UndecodableTransaction("cell is an exotic cell, not a full transaction")
        tx = parsed
    else:
        raise UndecodableTransaction(f"expected a Cell or Transaction, got {type(cell).__name__}")

    in_msg = tx.in_msg
    info = in_msg.info if in_msg is not None else None
    if isinstance(info, InternalMsgInfo):
        incoming = True
        bounced = bool(info.bounced)
        value_nano = int(info.value.grams)
        source = _raw_address(info.src)
        body_kind, comment = decode_comment(in_msg.body)
    else:
        # External-in (our own wallet sending) or no message (tick-tock): not money in.
        incoming, bounced, value_nano, source = False, False, 0, None
        body_kind, comment = BODY_NONE, None

    return DecodedTransaction(
        hash_hex=root.hash.hex(),
        lt=int(tx.lt),
        utime=int(tx.now),
        incoming=incoming,
        bounced=bounced,
        # Storage/split/merge descriptions have no `aborted`; they never carry a payment.
        aborted=bool(getattr(tx.description, "aborted", False)),
        value_nano=value_nano,
        source=source,
        body_kind=body_kind,
        comment=comment,
        prev_lt=int(tx.prev_trans_lt),
        prev_hash_hex=bytes(tx.prev_trans_hash).hex(),
        account_hex=bytes(tx.account_addr).hex(),
        body=in_msg.body if incoming and in_msg is not None else None,
    )


def _raw_address(addr: object) -> str | None:
    if isinstance(addr, Address):
        return addr.to_str(is_user_friendly=False)
    return None  # addr_none / external: no internal sender to credit
