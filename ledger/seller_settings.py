"""What a seller's documents say about them (legal name and details, bank details, logo), their
default tax rate, when their buyers are reminded, and whether they get a weekly summary. One row
per seller; defaults until saved.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from io import BytesIO
from typing import Any, Final

from PIL import Image, UnidentifiedImageError

from ledger.db import Executor, fetch_all, fetch_one
from ledger.errors import InvalidSettings
from ledger.text import clean_block, clean_line
from ledger.totals import TaxRate

MAX_LOGO_BYTES: Final = 512 * 1024
MAX_LOGO_PIXELS: Final = 4096  # per side: bigger is a decompression bomb, not a logo
PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC: Final = b"\xff\xd8\xff"
TEXT_LIMITS: Final = {"legal_name": 200, "legal_details": 1000, "bank_details": 1000}
MAX_REMINDER_DAYS: Final = 60
MAX_REMINDERS: Final = 5


@dataclass(frozen=True, slots=True)
class SellerSettings:
    user_id: int
    legal_name: str | None = None
    legal_details: str | None = None
    bank_details: str | None = None
    logo: bytes | None = None
    logo_type: str | None = None
    default_tax_name: str | None = None
    default_tax_percent: Decimal | None = None
    default_tax_inclusive: bool = False
    reminder_days: tuple[int, ...] = (7, 1)
    remind_overdue: bool = True
    overdue_digest: bool = True
    weekly_summary: bool = False  # the week's figures every week (watchers/weekly_summary.py)
    updated_at: datetime | None = None

    @property
    def default_tax(self) -> TaxRate | None:
        if self.default_tax_name is None or self.default_tax_percent is None:
            return None
        return TaxRate(self.default_tax_name, self.default_tax_percent,
                       self.default_tax_inclusive)

    @classmethod
    def from_row(cls, row: Any) -> SellerSettings:
        values = {f.name: row[f.name] for f in fields(cls)}
        values["logo"] = bytes(values["logo"]) if values["logo"] is not None else None
        values["reminder_days"] = tuple(values["reminder_days"] or ())
        return cls(**values)


def logo_type(data: bytes) -> str:
    """The MIME type of a reasonable PNG or JPEG logo, or InvalidSettings saying why not."""
    if len(data) > MAX_LOGO_BYTES:
        raise InvalidSettings(f"the logo is {len(data)} bytes; at most {MAX_LOGO_BYTES} "
                              "are allowed")
    if data.startswith(PNG_MAGIC):
        kind = "image/png"
    elif data.startswith(JPEG_MAGIC):
        kind = "image/jpeg"
    else:
        raise InvalidSettings("the logo must be a PNG or JPEG image")
    # Pillow reads the header: a truncated or forged file, or one whose pixel size would
    # blow up when decoded, is refused here, not mid-render.
    try:
        with Image.open(BytesIO(data)) as image:
            width, height = image.size
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InvalidSettings("the logo is not a readable PNG or JPEG image") from exc
    if max(width, height) > MAX_LOGO_PIXELS:
        raise InvalidSettings(f"the logo is {width}x{height} pixels; at most "
                              f"{MAX_LOGO_PIXELS} a side")
    return kind


async def get_seller_settings(db: Executor, seller_id: int) -> SellerSettings:
    row = await fetch_one(db, "SELECT * FROM seller_settings WHERE user_id = :id", id=seller_id)
    return SellerSettings(seller_id) if row is None else SellerSettings.from_row(row)


def _check(changes: dict[str, Any]) -> dict[str, Any]:
    allowed = {f.name for f in fields(SellerSettings)} - {"user_id", "logo", "logo_type",
                                                         "updated_at"}
    unknown = set(changes) - allowed
    if unknown:
        raise InvalidSettings(f"unknown settings: {', '.join(sorted(unknown))}")
    clean: dict[str, Any] = {}
    for name, limit in TEXT_LIMITS.items():
        if name in changes:
            raw = changes[name]
            value = (clean_line if name == "legal_name" else clean_block)(raw or "") or None
            if value and len(value) > limit:
                raise InvalidSettings(f"{name.replace('_', ' ')} is longer than {limit} "
                                      "characters")
            clean[name] = value
    if "default_tax_name" in changes or "default_tax_percent" in changes:
        name = clean_line(changes.get("default_tax_name") or "") or None
        percent = changes.get("default_tax_percent")
        if (name is None) != (percent is None):
            raise InvalidSettings("a default tax rate needs both a name and a percent")
        if percent is not None:
            if not isinstance(percent, Decimal) or not percent.is_finite() \
                    or not 0 <= percent <= 100 or percent != round(percent, 4):
                raise InvalidSettings("a tax rate is a percent from 0 to 100 with at most "
                                      "four decimal places")
            if len(name or "") > 64:
                raise InvalidSettings("the tax rate's name is longer than 64 characters")
        clean["default_tax_name"] = name
        clean["default_tax_percent"] = percent
    for flag in ("default_tax_inclusive", "remind_overdue", "overdue_digest", "weekly_summary"):
        if flag in changes:
            if not isinstance(changes[flag], bool):
                raise InvalidSettings(f"{flag.replace('_', ' ')} is on or off")
            clean[flag] = changes[flag]
    if "reminder_days" in changes:
        days = changes["reminder_days"]
        if not isinstance(days, list | tuple) or len(days) > MAX_REMINDERS or not all(
                isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= MAX_REMINDER_DAYS
                for d in days):
            raise InvalidSettings(f"reminders are at most {MAX_REMINDERS} numbers of days "
                                  f"before the due date, each 1 to {MAX_REMINDER_DAYS}")
        clean["reminder_days"] = sorted(set(days), reverse=True)
    return clean


async def save_seller_settings(db: Executor, seller_id: int, **changes: Any) -> SellerSettings:
    """Change the named settings (the others stay); InvalidSettings says what is wrong."""
    clean = _check(changes)
    if not clean:
        return await get_seller_settings(db, seller_id)
    columns = ", ".join(clean)
    values = ", ".join(f":{c}" for c in clean)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in clean)
    row = await fetch_one(
        db,
        f"""INSERT INTO seller_settings (user_id, {columns}) VALUES (:user_id, {values})
            ON CONFLICT (user_id) DO UPDATE SET {updates}, updated_at = now()
            RETURNING *""",
        user_id=seller_id, **clean)
    assert row is not None
    return SellerSettings.from_row(row)


async def set_logo(db: Executor, seller_id: int, data: bytes | None) -> SellerSettings:
    """The seller's logo (PNG or JPEG, checked), or None to remove it."""
    kind = logo_type(data) if data is not None else None
    row = await fetch_one(
        db,
        """INSERT INTO seller_settings (user_id, logo, logo_type) VALUES (:id, :logo, :type)
           ON CONFLICT (user_id) DO UPDATE SET logo = EXCLUDED.logo,
                                               logo_type = EXCLUDED.logo_type, updated_at = now()
           RETURNING *""",
        id=seller_id, logo=data, type=kind)
    assert row is not None
    return SellerSettings.from_row(row)


async def weekly_summary_sellers(db: Executor, *, after: int = 0, limit: int = 500) -> list[int]:
    """The ids of the sellers who asked for the weekly summary, above `after`, in id order (a
    page of `limit`: the job walks them in short reads)."""
    rows = await fetch_all(
        db, """SELECT user_id FROM seller_settings WHERE weekly_summary AND user_id > :after
               ORDER BY user_id LIMIT :limit""", after=after, limit=limit)
    return [int(r["user_id"]) for r in rows]
