"""QR images: valid PNG and SVG whose modules are the QR code of the expected text."""

from __future__ import annotations

import re
import struct
import zlib
from xml.etree import ElementTree

import pytest
import qrcode
from qrcode.constants import ERROR_CORRECT_M

from bot import qr
from ledger.payments import pay_from_balance
from tests.web.conftest import DEST, make_settings


def expected_matrix(text: str) -> list[list[bool]]:
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=qr.BORDER)
    code.add_data(text)
    code.make(fit=True)
    return code.get_matrix()


def decode_png(data: bytes) -> tuple[int, int, list[list[int]]]:
    """A minimal PNG reader for what bot.qr writes (1-bit greyscale, filter 0)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    idat = b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        chunks[kind] = body
        if kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert next(iter(chunks)) == b"IHDR" and list(chunks)[-1] == b"IEND"
    width, height, depth, colour, _c, _f, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, colour, interlace) == (1, 0, 0)
    raw = zlib.decompress(idat)
    stride = 1 + (width + 7) // 8
    assert len(raw) == stride * height
    rows = []
    for y in range(height):
        line = raw[y * stride:(y + 1) * stride]
        assert line[0] == 0
        bits = "".join(f"{b:08b}" for b in line[1:])[:width]
        rows.append([int(c) for c in bits])
    return width, height, rows


def svg_modules(data: bytes) -> list[list[bool]]:
    root = ElementTree.fromstring(data)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    n = int(root.attrib["viewBox"].split()[2])
    grid = [[False] * n for _ in range(n)]
    path = root.find("{http://www.w3.org/2000/svg}path").attrib["d"]
    for x, y, w in re.findall(r"M(\d+) (\d+)h(\d+)v1h-\d+z", path):
        for i in range(int(w)):
            grid[int(y)][int(x) + i] = True
    return grid


def test_png_pixels_are_the_modules_of_the_text():
    text = "ton://transfer/UQAXX_WUst_hR3xxt50SVHBA20_oEM-cp-VO1TlyqIrOQpWO?amount=1&text=INV-X"
    matrix = expected_matrix(text)
    width, height, rows = decode_png(qr.qr_png(text))
    assert width == height == len(matrix) * qr.PNG_SCALE
    for my, row in enumerate(matrix):
        for mx, dark in enumerate(row):
            px = rows[my * qr.PNG_SCALE + 3][mx * qr.PNG_SCALE + 3]
            assert px == (0 if dark else 1), (mx, my)


def test_svg_modules_are_the_modules_of_the_text():
    text = "https://pay.example.com/pay/0123456789ABC"
    assert svg_modules(qr.qr_svg(text)) == expected_matrix(text)


def test_same_text_same_bytes_and_cache():
    qr.clear_cache()
    first = qr.qr_png("hello")
    assert qr.qr_png("hello") is first  # served from the cache
    assert qr.qr_png.cache_info().hits == 1
    assert qr.qr_etag("hello") == qr.qr_etag("hello") != qr.qr_etag("hello!")


@pytest.mark.parametrize("text", ["", "x" * (qr.MAX_TEXT + 1)])
def test_refuses_empty_or_huge_text(text):
    with pytest.raises(ValueError):
        qr.qr_png(text)


async def test_qr_endpoints_encode_the_wallet_link(client, make_invoice):
    invoice = await make_invoice()
    link = (f"ton://transfer/{DEST['non_bounceable']}?amount=2500000000"
            f"&text=INV-{invoice.public_id}")
    resp = await client.get(f"/pay/{invoice.public_id}/qr.png")
    assert resp.status == 200 and resp.content_type == "image/png"
    assert "max-age" in resp.headers["Cache-Control"]
    assert resp.headers["ETag"] == qr.qr_etag(link)
    width, _h, rows = decode_png(await resp.read())
    assert rows[0][0] == 1  # white quiet zone
    assert width == len(expected_matrix(link)) * qr.PNG_SCALE

    resp = await client.get(f"/pay/{invoice.public_id}/qr.svg")
    assert resp.status == 200 and resp.content_type == "image/svg+xml"
    assert svg_modules(await resp.read()) == expected_matrix(link)

    again = await client.get(f"/pay/{invoice.public_id}/qr.svg",
                             headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status == 304


async def test_qr_is_the_page_link_without_ton_or_once_paid(client, client_for, make_invoice,
                                                           make_user, engine):
    no_ton = await client_for(make_settings(address=None))
    invoice = await make_invoice()
    page = f"https://pay.example.com/pay/{invoice.public_id}"
    resp = await no_ton.get(f"/pay/{invoice.public_id}/qr.svg")
    assert svg_modules(await resp.read()) == expected_matrix(page)

    buyer = await make_user(balance=5000)
    await pay_from_balance(engine, invoice.public_id, buyer.id, "qr-paid")
    resp = await client.get(f"/pay/{invoice.public_id}/qr.png")
    assert resp.headers["ETag"] == qr.qr_etag(page)  # a paid invoice's QR never sends money


async def test_qr_of_unknown_invoice_is_404(client):
    for raw in ("0000000000000", "nope"):
        assert (await client.get(f"/pay/{raw}/qr.png")).status == 404
        assert (await client.get(f"/pay/{raw}/qr.svg")).status == 404
