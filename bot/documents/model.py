"""What an invoice PDF shows, as plain frozen data: every figure is already formatted text, so
the renderer only lays it out and the document shows exactly what the bot and the pages show.

The model checks what a seller can get wrong before anything is drawn (a logo that is not a
PNG/JPEG or is huge, an unknown language or stamp): its constructor raises a clear ValueError.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from io import BytesIO
from typing import Final, Literal

try:  # Pillow checks a logo more deeply when present (qrcode[pil], fpdf2); magic bytes otherwise
    from PIL import Image, UnidentifiedImageError
except ImportError:  # pragma: no cover - depends on the installed extras
    Image = None  # type: ignore[assignment]

MAX_LOGO_BYTES: Final = 512 * 1024
MAX_LOGO_PIXELS: Final = 4096  # per side: bigger is a decompression bomb, not a logo
LANGUAGES: Final = ("en", "ru")
STAMPS: Final = ("PAID", "VOID")
PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC: Final = b"\xff\xd8\xff"

Stamp = Literal["PAID", "VOID"]


@dataclass(frozen=True, slots=True)
class Party:
    """The seller (name, legal details, logo) or the buyer (name, company, tax id)."""

    name: str
    details: str = ""  # the seller's legal details, several lines
    company: str = ""
    tax_id: str = ""
    logo: bytes | None = None  # PNG or JPEG bytes (the seller's only)

    def __post_init__(self) -> None:
        if self.logo is not None:
            check_logo(self.logo)


@dataclass(frozen=True, slots=True)
class Line:
    description: str
    quantity: str
    unit_price: str
    amount: str
    discount: str = ""
    tax: str = ""


@dataclass(frozen=True, slots=True)
class TotalRow:
    label: str  # already in the document's language: "Subtotal", "VAT 20 %", …
    amount: str
    strong: bool = False  # the total due: drawn bold


@dataclass(frozen=True, slots=True)
class Payment:
    pay_url: str
    ton_address: str = ""
    ton_comment: str = ""
    bank_details: str = ""


@dataclass(frozen=True, slots=True)
class InvoiceDocument:
    number: str
    issued_on: date
    due_on: date | None
    language: str
    seller: Party
    buyer: Party
    lines: tuple[Line, ...]
    totals: tuple[TotalRow, ...]
    payment: Payment
    created_at: datetime  # the invoice version's time: same version, same bytes
    stamp: Stamp | None = None

    def __post_init__(self) -> None:
        if self.language not in LANGUAGES:
            raise ValueError(f"language must be one of {LANGUAGES}, not {self.language!r}")
        if self.stamp is not None and self.stamp not in STAMPS:
            raise ValueError(f"stamp must be None or one of {STAMPS}, not {self.stamp!r}")
        if not self.lines:
            raise ValueError("an invoice document needs at least one line")
        if self.created_at.tzinfo is None:
            raise ValueError("created_at must be timezone-aware")


def check_logo(data: bytes) -> None:
    """Refuse what is not a reasonable PNG or JPEG logo, with a sentence saying why."""
    if len(data) > MAX_LOGO_BYTES:
        raise ValueError(f"the logo is {len(data)} bytes; at most {MAX_LOGO_BYTES} are allowed")
    if not (data.startswith(PNG_MAGIC) or data.startswith(JPEG_MAGIC)):
        raise ValueError("the logo must be a PNG or JPEG image")
    if Image is None:
        return
    # Pillow checks the file: a truncated or forged one, or one whose
    # pixel size would blow up when decoded, is refused here, not mid-render.
    try:
        with Image.open(BytesIO(data)) as image:
            width, height = image.size
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as error:
        raise ValueError("the logo is not a readable PNG or JPEG image") from error
    if max(width, height) > MAX_LOGO_PIXELS:
        raise ValueError(f"the logo is {width}x{height} pixels; at most {MAX_LOGO_PIXELS} a side")
