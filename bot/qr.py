"""QR codes as PNG and SVG, rendered once per distinct text and kept in memory.

`qrcode` computes the module matrix; the images are written here with the standard library
(zlib for PNG, plain text for SVG), so neither Pillow nor pypng is needed. The same text always
gives the same bytes, which makes the results safe to cache and to ETag.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from functools import lru_cache

import qrcode
from qrcode.constants import ERROR_CORRECT_M

MAX_TEXT = 1024  # a TON link with a comment is ~150 characters; refuse anything absurd
BORDER = 4  # the quiet zone the QR standard asks for, in modules
PNG_SCALE = 8  # pixels per module: ~400 px for a wallet link, crisp on phone screens


@lru_cache(maxsize=2048)
def _matrix(text: str) -> tuple[tuple[bool, ...], ...]:
    if not text or len(text) > MAX_TEXT:
        raise ValueError(f"QR text must be 1 to {MAX_TEXT} characters")
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=BORDER)
    code.add_data(text)
    code.make(fit=True)
    return tuple(tuple(row) for row in code.get_matrix())


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


@lru_cache(maxsize=1024)
def qr_png(text: str, scale: int = PNG_SCALE) -> bytes:
    """A 1-bit greyscale PNG of the QR code for `text`."""
    matrix = _matrix(text)
    size = len(matrix) * scale
    raw = bytearray()
    for row in matrix:
        bits = "".join(("0" if dark else "1") * scale for dark in row)  # 0 = black
        bits += "0" * (-len(bits) % 8)
        line = b"\x00" + int(bits, 2).to_bytes(len(bits) // 8, "big")  # filter: none
        raw += line * scale
    header = struct.pack(">IIBBBBB", size, size, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(bytes(raw), 9)) + _png_chunk(b"IEND", b""))


@lru_cache(maxsize=1024)
def qr_svg(text: str) -> bytes:
    """A scalable SVG of the QR code for `text`: one path, horizontal runs merged."""
    matrix = _matrix(text)
    n = len(matrix)
    parts: list[str] = []
    for y, row in enumerate(matrix):
        x = 0
        while x < n:
            if not row[x]:
                x += 1
                continue
            start = x
            while x < n and row[x]:
                x += 1
            parts.append(f"M{start} {y}h{x - start}v1h{start - x}z")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {n} {n}" width="{n * 8}" '
        f'height="{n * 8}" shape-rendering="crispEdges">'
        f'<rect width="{n}" height="{n}" fill="#fff"/>'
        f'<path fill="#000" d="{"".join(parts)}"/></svg>'
    ).encode()


def qr_etag(text: str) -> str:
    """A strong ETag for the images of `text` (same text, same bytes)."""
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'


def clear_cache() -> None:
    """Forget every rendered code (the benchmark measures uncached renders with this)."""
    _matrix.cache_clear()
    qr_png.cache_clear()
    qr_svg.cache_clear()
