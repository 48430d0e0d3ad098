"""Public identifiers: short, unguessable, case-insensitive, safe in a wallet comment."""

from __future__ import annotations

import re
import secrets

# Crockford base32: no I, L, O, U, so ids survive being read aloud or typed by hand.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
INVOICE_ID_LENGTH = 13  # 65 bits
DEPOSIT_CODE_LENGTH = 10  # 50 bits: guessing one only credits its owner
_CONFUSABLE = str.maketrans({"I": "1", "L": "1", "O": "0"})
INVOICE_ID_RE = re.compile(rf"^[{ALPHABET}]{{{INVOICE_ID_LENGTH}}}$")


def _random_code(length: int) -> str:
    # One draw of 5 bits per character, split up: the same distribution as a choice per
    # character, with one call to the system's random source instead of `length`.
    bits = secrets.randbits(5 * length)
    return "".join(ALPHABET[(bits >> (5 * i)) & 31] for i in range(length))


def new_invoice_id() -> str:
    return _random_code(INVOICE_ID_LENGTH)


def new_deposit_code() -> str:
    return _random_code(DEPOSIT_CODE_LENGTH)


def normalize_code(raw: str) -> str:
    """Upper-case and map look-alike letters, as Crockford base32 prescribes."""
    return raw.strip().upper().translate(_CONFUSABLE)


def parse_invoice_id(raw: str) -> str | None:
    """The canonical invoice id, or None when `raw` cannot be one."""
    code = normalize_code(raw)
    return code if INVOICE_ID_RE.match(code) else None
