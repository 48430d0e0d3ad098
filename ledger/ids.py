"""Public identifiers: short, unguessable, case-insensitive, safe in a wallet comment."""

from __future__ import annotations

import os
import re
import threading
from base64 import b32encode

# Crockford base32: no I, L, O, U, so ids survive being read aloud or typed by hand.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
INVOICE_ID_LENGTH = 13  # 65 bits
DEPOSIT_CODE_LENGTH = 10  # 50 bits: guessing one only credits its owner
_CONFUSABLE = str.maketrans({"I": "1", "L": "1", "O": "0"})
INVOICE_ID_RE = re.compile(rf"^[{ALPHABET}]{{{INVOICE_ID_LENGTH}}}$")


class _RandomBytes:
    """Bytes from os.urandom, fetched 4 KiB at a time: the same source as `secrets`, at one
    system call per few hundred ids (a call costs more than the id). Never the same bytes twice:
    threads take turns, and a forked child drops what its parent had fetched."""

    def __init__(self, chunk: int = 4096) -> None:
        self.chunk = chunk
        self.buffer = b""
        self.pos = 0
        self.lock = threading.Lock()
        os.register_at_fork(after_in_child=self.forget)

    def forget(self) -> None:
        self.buffer, self.pos = b"", 0
        self.lock = threading.Lock()  # a lock held at fork time stays held in the child

    def take(self, n: int) -> bytes:
        with self.lock:
            if self.pos + n > len(self.buffer):
                self.buffer, self.pos = os.urandom(max(self.chunk, n)), 0
            out = self.buffer[self.pos:self.pos + n]
            self.pos += n
            return out


_random_bytes = _RandomBytes()


# RFC 4648 base32 (C code) renamed symbol for symbol to Crockford's alphabet
_TO_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", ALPHABET.encode())


def _random_code(length: int) -> str:
    # 5 random bits per character: each of the 32 symbols equally likely.
    raw = b32encode(_random_bytes.take((5 * length + 7) // 8))
    return raw[:length].translate(_TO_CROCKFORD).decode()


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
