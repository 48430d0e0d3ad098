"""Decode the jetton messages (TEP-74) the watcher meets, from an incoming message body.

    transfer_notification#7362d09c query_id:uint64 amount:(VarUInteger 16)
        sender:MsgAddress forward_payload:(Either Cell ^Cell) = InternalMsgBody;
    internal_transfer#178d4519 query_id:uint64 amount:(VarUInteger 16) from:MsgAddress
        response_address:MsgAddress forward_ton_amount:(VarUInteger 16)
        forward_payload:(Either Cell ^Cell) = InternalMsgBody;
    excesses#d53276db query_id:uint64 = InternalMsgBody;

The forward payload's text comment follows the wallet comment rules (op 0 + snake string,
`ton_decode.decode_comment`), inline or in the ref. Bodies are attacker-controlled (anyone can
send a "notification"), so nothing here raises: a body that starts with a jetton op but does
not parse is `MALFORMED`, with the reason. Cheap on purpose: one 32-bit peek decides whether a
body is a jetton message at all (the watcher's benchmark holds decode + match to the raw parse).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pytoniq_core import Cell, Slice

from watchers.ton_decode import BODY_EMPTY, decode_comment

__all__ = [
    "EXCESSES",
    "INTERNAL_TRANSFER",
    "MALFORMED",
    "NOTIFICATION",
    "OP_BOUNCE",
    "OP_EXCESSES",
    "OP_INTERNAL_TRANSFER",
    "OP_TRANSFER",
    "OP_TRANSFER_NOTIFICATION",
    "JettonMessage",
    "body_op",
    "decode_jetton",
]

OP_TRANSFER: Final = 0x0F8A7EA5  # the owner asks its jetton wallet to send
OP_TRANSFER_NOTIFICATION: Final = 0x7362D09C
OP_INTERNAL_TRANSFER: Final = 0x178D4519
OP_EXCESSES: Final = 0xD53276DB
OP_BOUNCE: Final = 0xFFFFFFFF  # a bounced message's body: this, then the original's start

NOTIFICATION: Final = "notification"
INTERNAL_TRANSFER: Final = "internal_transfer"
EXCESSES: Final = "excesses"
MALFORMED: Final = "malformed"  # starts with a jetton op, does not parse

_KIND_OF_OP: Final = {OP_TRANSFER_NOTIFICATION: NOTIFICATION,
                      OP_INTERNAL_TRANSFER: INTERNAL_TRANSFER, OP_EXCESSES: EXCESSES}


@dataclass(frozen=True, slots=True)
class JettonMessage:
    kind: str  # notification | internal_transfer | excesses | malformed
    op: int
    query_id: int = 0
    amount: int = 0  # jetton minor units
    sender: str | None = None  # notification: the original sender; internal_transfer: from
    forward_ton_amount: int = 0  # internal_transfer only
    body_kind: str = BODY_EMPTY  # of the forward payload: text | empty | binary | invalid_utf8
    comment: str | None = None
    error: str | None = None  # malformed: what did not parse


def body_op(body: Cell | None) -> int | None:
    """The body's leading 32-bit op, or None when it has fewer bits."""
    if body is None or len(body.bits) < 32:
        return None
    # From the bits, not a Slice (which would copy the whole cell).
    return int.from_bytes(body.bits[:32].tobytes(), "big")


def decode_jetton(body: Cell | None) -> JettonMessage | None:
    """The jetton message a body carries, or None when it is not one (another op, too short)."""
    op = body_op(body)
    kind = _KIND_OF_OP.get(op) if op is not None else None
    if kind is None or body is None or op is None:
        return None
    try:
        return _decode(body.begin_parse(), op, kind)
    except Exception as e:  # pytoniq raises a zoo of types on a short or odd slice
        return JettonMessage(MALFORMED, op, error=f"{kind}: {type(e).__name__}")


def _decode(cs: Slice, op: int, kind: str) -> JettonMessage:
    cs.skip_bits(32)
    query_id = _uint(cs, 64)
    if kind == EXCESSES:
        return JettonMessage(EXCESSES, op, query_id)
    amount = _coins(cs)
    sender = _address(cs)
    forward_ton = 0
    if kind == INTERNAL_TRANSFER:
        _address(cs)  # response_address: where the excesses go, nothing of ours
        forward_ton = _coins(cs)
    payload_kind, comment, error = _forward_payload(cs)
    if error is not None:
        return JettonMessage(MALFORMED, op, query_id, amount, sender, forward_ton, error=error)
    return JettonMessage(kind, op, query_id, amount, sender, forward_ton, payload_kind, comment)


class _Short(ValueError):
    pass


# pytoniq's loads do not check the length (a short slice yields a smaller number), so each
# field is checked before it is read.
def _uint(cs: Slice, bits: int) -> int:
    if cs.remaining_bits < bits:
        raise _Short
    return cs.load_uint(bits)


def _coins(cs: Slice) -> int:
    length = _uint(cs, 4)
    return _uint(cs, length * 8) if length else 0


def _address(cs: Slice) -> str | None:
    """MsgAddress as raw "wc:hex": addr_none is None; only addr_std (no anycast) is taken."""
    tag = _uint(cs, 2)
    if tag == 0:
        return None
    if tag != 2 or cs.remaining_bits < 265 or cs.preload_uint(1):
        raise _Short  # addr_extern / addr_var / anycast / truncated: no jetton wallet sends it
    cs.skip_bits(1)
    workchain = cs.load_int(8)
    return f"{workchain}:{cs.load_bytes(32).hex()}"


def _forward_payload(cs: Slice) -> tuple[str, str | None, str | None]:
    """(body_kind, comment, error) of `forward_payload:(Either Cell ^Cell)`."""
    if cs.remaining_bits == 0:
        # Nothing at all, not even the Either bit: older wallets send it so; no payload.
        return (BODY_EMPTY, None, None) if cs.remaining_refs == 0 else \
            (BODY_EMPTY, None, "forward payload: refs without the Either bit")
    if cs.load_bit():  # right: the payload is the ref
        if cs.remaining_refs == 0:
            return BODY_EMPTY, None, "forward payload: in a ref, but there is no ref"
        kind, comment = decode_comment(cs.load_ref())
        return kind, comment, None
    kind, comment = decode_comment(cs)  # left: the rest of this cell (decode_comment copies)
    return kind, comment, None
