"""TON addresses and payment deep links.

Wallet apps open `ton://transfer/...` (and Tonkeeper also the https form) with the amount in
nanotons and the comment pre-filled, so the payer cannot mistype the invoice reference.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Final
from urllib.parse import quote

from pytoniq_core.boc.address import Address
from pytoniq_core.crypto.crc import crc16

__all__ = [
    "friendly_address",
    "normalize_address",
    "ton_transfer_link",
    "tonkeeper_link",
]

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
