"""TON addresses, payment deep links and the message bodies TON Connect asks a wallet to sign.

Wallet apps open `ton://transfer/...` (and Tonkeeper also the https form) with the amount in
nanotons (or a jetton's minor units with `jetton=<master>`) and the comment pre-filled, so the
payer cannot mistype the invoice reference. TON Connect's `sendTransaction` takes the same
comment as a cell (op 0 + snake string: what `watchers/ton_decode.py` reads back), and for a
jetton the TEP-74 `transfer` body sent to the payer's own jetton wallet.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from typing import Final
from urllib.parse import quote

from pytoniq_core import begin_cell
from pytoniq_core.boc.address import Address
from pytoniq_core.boc.cell import Cell
from pytoniq_core.crypto.crc import crc16

__all__ = [
    "JETTON_ATTACHED_NANO",
    "JETTON_FORWARD_NANO",
    "comment_payload",
    "friendly_address",
    "is_testnet_address",
    "jetton_transfer_link",
    "jetton_transfer_payload",
    "normalize_address",
    "ton_transfer_link",
    "tonkeeper_jetton_link",
    "tonkeeper_link",
]

JETTON_TRANSFER_OP: Final = 0x0F8A7EA5  # TEP-74 `transfer`, to the sender's own jetton wallet
# TON sent on to the destination with the `transfer_notification`: must be at least 1 nanoton
# or no notification is sent (and the watcher sees the payment only as unmatched). 1 nanoton
# is enough and is all the shop gets in TON; wallets commonly choose 1 nanoton to 0.05 TON.
JETTON_FORWARD_NANO: Final = 1
# TON attached to the jetton transfer for the jetton wallets' gas and forwarding; what is not
# spent comes back to the payer (response_destination) as `excesses`. 0.05 TON covers USDT's
# wallet (its transfer costs about 0.03 TON) with room, as Tonkeeper and Wallet attach.
JETTON_ATTACHED_NANO: Final = 50_000_000

_RAW_RE: Final = re.compile(r"(-?\d+):([0-9a-fA-F]{64})")
_FRIENDLY_RE: Final = re.compile(r"[A-Za-z0-9+/_-]{48}")
_BOUNCEABLE_TAG: Final = 0x11
_NON_BOUNCEABLE_TAG: Final = 0x51
_TEST_ONLY_FLAG: Final = 0x80
_WORKCHAINS: Final = frozenset({0, -1})  # basechain and masterchain: the only ones in use


def _parse(address: str) -> tuple[Address, bool]:
    """Strictly parse any address form -> (address, test_only flag of a friendly form).

    pytoniq's own parser is lenient (it accepts short hex hashes and ignores junk characters in
    base64), so the shape and checksum are validated here first.
    """
    if not isinstance(address, str):
        raise ValueError(f"TON address must be a string, got {type(address).__name__}")
    text = address.strip()

    if m := _RAW_RE.fullmatch(text):
        wc = int(m.group(1))
        if wc not in _WORKCHAINS:
            raise ValueError(f"unsupported workchain {wc} in TON address {address!r}")
        return Address((wc, bytes.fromhex(m.group(2)))), False

    if _FRIENDLY_RE.fullmatch(text) and not ({"+", "/"} & set(text) and {"-", "_"} & set(text)):
        try:
            data = base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_"))
        except (binascii.Error, ValueError) as e:
            raise ValueError(f"invalid TON address {address!r}") from e
        tag = data[0] & ~_TEST_ONLY_FLAG
        if tag not in (_BOUNCEABLE_TAG, _NON_BOUNCEABLE_TAG):
            raise ValueError(f"invalid TON address tag in {address!r}")
        if crc16(data[:34]) != data[34:36]:
            raise ValueError(f"bad checksum in TON address {address!r}")
        wc = int.from_bytes(data[1:2], "big", signed=True)
        if wc not in _WORKCHAINS:
            raise ValueError(f"unsupported workchain {wc} in TON address {address!r}")
        return Address((wc, bytes(data[2:34]))), bool(data[0] & _TEST_ONLY_FLAG)

    raise ValueError(f"not a TON address: {address!r}")


def normalize_address(address: str) -> str:
    """Any form (raw `0:…`, `EQ…`, `UQ…`, url-safe or standard base64) -> raw lowercase `wc:hex`.

    The raw form is what transactions carry and what we store, so comparisons are exact.
    """
    return _parse(address)[0].to_str(is_user_friendly=False)


def friendly_address(address: str, bounceable: bool = False) -> str:
    """User-friendly url-safe form. Non-bounceable (`UQ…`) by default: a payment to a wallet
    must not bounce back just because the wallet is not deployed yet.

    A testnet (test-only) friendly input keeps its flag (`0Q…`/`kQ…`), so testnet setups get
    links their wallets accept; a raw input has no such flag and gives the mainnet form.
    """
    parsed, test_only = _parse(address)
    return parsed.to_str(
        is_user_friendly=True, is_url_safe=True, is_bounceable=bounceable, is_test_only=test_only
    )


def is_testnet_address(address: str) -> bool:
    """Whether a friendly address carries the test-only flag (`0Q…`, `kQ…`); raw forms do not."""
    return _parse(address)[1]


def _query(amount_nano: int, text: str) -> str:
    # bool is an int subclass; `amount=True` is a bug, not 1 nanoton.
    if not isinstance(amount_nano, int) or isinstance(amount_nano, bool):
        raise TypeError(f"amount_nano must be an int, got {type(amount_nano).__name__}")
    if amount_nano <= 0:
        raise ValueError(f"amount_nano must be positive, got {amount_nano}")
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    # safe="" so "/", "&", "=", "+" and "#" in a comment can't break the URL; spaces -> %20.
    return f"amount={amount_nano}&text={quote(text, safe='')}"


def ton_transfer_link(address: str, amount_nano: int, text: str) -> str:
    """`ton://transfer/<addr>?amount=<nano>&text=<comment>` understood by TON wallets."""
    query = _query(amount_nano, text)
    return f"ton://transfer/{friendly_address(address)}?{query}"


def tonkeeper_link(address: str, amount_nano: int, text: str) -> str:
    """The https universal link for Tonkeeper (opens the app, or the web page without it)."""
    query = _query(amount_nano, text)
    return f"https://app.tonkeeper.com/transfer/{friendly_address(address)}?{query}"


def jetton_transfer_link(address: str, master: str, amount: int, text: str) -> str:
    """`ton://transfer/<addr>?jetton=<master>&amount=<minor>&text=<comment>`: a jetton payment
    (amount in the jetton's minor units, e.g. micro-USDT); the wallet sets the forward amount
    so that the destination is notified."""
    query = _query(amount, text)
    return f"ton://transfer/{friendly_address(address)}?jetton={_master(master)}&{query}"


def tonkeeper_jetton_link(address: str, master: str, amount: int, text: str) -> str:
    """The same jetton payment as Tonkeeper's https universal link."""
    query = _query(amount, text)
    return (f"https://app.tonkeeper.com/transfer/{friendly_address(address)}"
            f"?jetton={_master(master)}&{query}")


def _master(master: str) -> str:
    # A master is a contract: its bounceable form, as wallets and explorers show it.
    return friendly_address(master, bounceable=True)


def _comment_cell(text: str) -> Cell:
    """A wallet text comment: op 0, then the UTF-8 bytes as a snake (more cells past 127)."""
    if not isinstance(text, str) or not text:
        raise ValueError("a comment is a non-empty string")
    return begin_cell().store_uint(0, 32).store_snake_string(text).end_cell()


def _boc64(cell: Cell) -> str:
    return base64.b64encode(cell.to_boc()).decode()


def comment_payload(text: str) -> str:
    """The comment as TON Connect's `payload` (a base64 BOC): exactly what the watcher reads."""
    return _boc64(_comment_cell(text))


def jetton_transfer_payload(amount: int, destination: str, response_destination: str,
                            text: str, *, query_id: int | None = None,
                            forward_ton_amount: int = JETTON_FORWARD_NANO) -> str:
    """A TEP-74 jetton `transfer` body (base64 BOC) for the payer's own jetton wallet:
    `amount` minor units to `destination` (its owner address, not its jetton wallet), the
    excess TON back to `response_destination` (the payer), no custom payload, and
    `forward_ton_amount` with the comment as `forward_payload` (in a ref, so any comment
    fits) — the destination's jetton wallet hands both on in its `transfer_notification`."""
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise ValueError(f"a jetton amount is a positive int, got {amount!r}")
    if forward_ton_amount < 1:
        raise ValueError("forward_ton_amount below 1 nanoton: no notification would be sent")
    body = (
        begin_cell()
        .store_uint(JETTON_TRANSFER_OP, 32)
        .store_uint(secrets.randbits(64) if query_id is None else query_id, 64)
        .store_coins(amount)
        .store_address(_parse(destination)[0])
        .store_address(_parse(response_destination)[0])
        .store_bit(0)  # custom_payload: none
        .store_coins(forward_ton_amount)
        .store_bit(1)  # forward_payload in a ref
        .store_ref(_comment_cell(text))
        .end_cell()
    )
    return _boc64(body)
