"""Where money may be sent: a TON address as a user gives it, canonicalised, then checked.

A withdrawal's destination is typed by a person, so it is parsed strictly (raw `wc:hex`, or the
48-character user-friendly form in either base64 alphabet with its CRC16), put in the raw form
every transaction carries, and only then checked: the friendly form's testnet flag must match
the network paybot runs on, and paybot's own addresses (the shop's, the hot wallet's, its
jetton wallets') are refused — money sent there would come back as an unmatched transfer.
The friendly form also says how to send: bounceable (`EQ…`/`kQ…`) or not (`UQ…`/`0Q…`); a
raw address says nothing, and is sent bounceable (an address nobody deployed returns it).

Pure Python (the ledger imports no TON library); TON's checksum is CRC16-XMODEM, which is
`binascii.crc_hqx(data, 0)`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from ledger.errors import InvalidAddress, OwnAddress, WrongNetwork

_RAW: Final = re.compile(r"(-?\d{1,3}):([0-9a-fA-F]{64})")
_FRIENDLY: Final = re.compile(r"[A-Za-z0-9+/_-]{48}")
_BOUNCEABLE: Final = 0x11
_NON_BOUNCEABLE: Final = 0x51
_TEST_ONLY: Final = 0x80
NETWORKS: Final = ("mainnet", "testnet")


@dataclass(frozen=True, slots=True)
class Destination:
    raw: str  # "0:<64 hex>", what transactions carry and what is compared and stored
    given: str  # as the user typed it (trimmed), shown back to them
    bounceable: bool
    test_only: bool | None  # the friendly form's flag; None for a raw address

    def friendly(self, *, testnet: bool = False) -> str:
        """The user-friendly url-safe form with this destination's bounce flag."""
        return friendly(self.raw, bounceable=self.bounceable, testnet=testnet)


def parse(text: str) -> Destination:
    """Any address form -> Destination; InvalidAddress for anything else."""
    if not isinstance(text, str):
        raise InvalidAddress()
    given = text.strip()
    if m := _RAW.fullmatch(given):
        wc = int(m.group(1))
        if wc not in (0, -1):
            raise InvalidAddress(f"unsupported workchain {wc}")
        return Destination(f"{wc}:{m.group(2).lower()}", given, True, None)
    if not _FRIENDLY.fullmatch(given) or ({"+", "/"} & set(given) and {"-", "_"} & set(given)):
        raise InvalidAddress(given[:64])
    try:
        data = base64.urlsafe_b64decode(given.replace("+", "-").replace("/", "_"))
    except (binascii.Error, ValueError):
        raise InvalidAddress(given[:64]) from None
    tag = data[0] & ~_TEST_ONLY
    if len(data) != 36 or tag not in (_BOUNCEABLE, _NON_BOUNCEABLE):
        raise InvalidAddress(given[:64])
    if binascii.crc_hqx(data[:34], 0).to_bytes(2, "big") != data[34:]:
        raise InvalidAddress("bad checksum")
    wc = int.from_bytes(data[1:2], "big", signed=True)
    if wc not in (0, -1):
        raise InvalidAddress(f"unsupported workchain {wc}")
    return Destination(f"{wc}:{data[2:34].hex()}", given, tag == _BOUNCEABLE,
                       bool(data[0] & _TEST_ONLY))


def raw_form(text: str) -> str:
    """Any valid form -> raw `wc:hex` (InvalidAddress otherwise)."""
    return parse(text).raw


def friendly(raw: str, *, bounceable: bool, testnet: bool = False) -> str:
    d = parse(raw)
    wc, account = d.raw.split(":")
    tag = (_BOUNCEABLE if bounceable else _NON_BOUNCEABLE) | (_TEST_ONLY if testnet else 0)
    body = bytes([tag]) + int(wc).to_bytes(1, "big", signed=True) + bytes.fromhex(account)
    return base64.urlsafe_b64encode(body + binascii.crc_hqx(body, 0).to_bytes(2, "big")).decode()


def check_destination(text: str, *, network: str, own: Iterable[str] = ()) -> Destination:
    """Canonicalise, then check: the network flag of a friendly form, and not one of ours."""
    if network not in NETWORKS:
        raise ValueError(f"unknown TON network {network!r}")
    d = parse(text)
    if d.test_only is not None and d.test_only != (network == "testnet"):
        raise WrongNetwork(f"a {'testnet' if d.test_only else 'mainnet'} address on {network}")
    if d.raw in {raw_form(a) for a in own if a}:
        raise OwnAddress()
    return d
