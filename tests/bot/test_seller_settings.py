"""/settings: a seller's legal and bank details, logo, default tax rate and reminder schedule,
each saved through the ledger; a logo that is not an image or is too big is one sentence."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from io import BytesIO
from typing import Any

from PIL import Image

from tests.bot.botapi import ChatMessage
from tests.bot.client import TgClient


def _png(size: int = 64) -> bytes:
    out = BytesIO()
    Image.new("RGB", (size, size), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


async def _send_file(person: TgClient, data: bytes, *, photo: bool = False,
                     mime: str = "image/png", name: str = "logo.png",
                     size: int | None = None) -> list[ChatMessage]:
    """The person sends a photo or a file (as Telegram delivers it: file ids and a size)."""
    file_id = person.api.user_file(data)
    before = {m.message_id for m in person.api.messages(person.id)}
    message: dict[str, Any] = {
        "message_id": person.api.user_message(person.id, "").message_id,
        "date": int(datetime.now(UTC).timestamp()), "chat": person._chat(),
        "from": person._from()}
    sized = {"file_id": file_id, "file_unique_id": f"u{file_id}",
             "file_size": len(data) if size is None else size}
    if photo:
        message["photo"] = [{**sized, "width": 64, "height": 64}]
    else:
        message["document"] = {**sized, "file_name": name, "mime_type": mime}
    await person._feed({"message": message})
    return [m for m in person.api.messages(person.id) if m.message_id not in before]


async def test_settings_are_shown_and_saved(person, ledger) -> None:
    seller = await person()
    [shown] = await seller.send("/settings")
    assert "Legal name: —" in shown.plain and "Reminders, days before due: 7, 1" in shown.plain
    assert "Overdue reminders: on" in shown.plain

    [asked] = (await seller.tap(shown, "Legal name")).sent
    assert "legal name" in asked.plain
    [saved] = await seller.send("ACME Trading Ltd")
    assert "✅ Saved." in saved.plain and "Legal name: ACME Trading Ltd" in saved.plain
    await seller.tap(saved, "Bank details")
    [saved] = await seller.send("Bank of Tests\nIBAN DE89 3704 0044 0532 0130 00")
    await seller.tap(saved, "Default tax")
    [saved] = await seller.send("VAT 20% incl")
    await seller.tap(saved, "Reminder days")
    [saved] = await seller.send("14, 3,1")
    tap = await seller.tap(saved, "Daily overdue digest: on")
    assert "Daily overdue digest: off" in tap.edited[0].plain

    settings = await ledger.seller_settings(seller.user.id)
    assert settings.legal_name == "ACME Trading Ltd"
    assert settings.bank_details == "Bank of Tests\nIBAN DE89 3704 0044 0532 0130 00"
    assert (settings.default_tax_name, settings.default_tax_percent,
            settings.default_tax_inclusive) == ("VAT 20 %", Decimal(20), True)
    assert (settings.reminder_days, settings.remind_overdue, settings.overdue_digest) == (
        (14, 3, 1), True, False)

    await seller.tap(saved, "Legal name")
    tap = await seller.tap(seller.last, "Clear")
    assert "Legal name: —" in tap.sent[0].plain
    assert (await ledger.seller_settings(seller.user.id)).legal_name is None


async def test_bad_settings_are_one_sentence_and_change_nothing(person, ledger) -> None:
    seller = await person(language="ru")
    [shown] = await seller.send("/settings")
    await seller.tap(shown, "Дни напоминаний")
    [refused] = await seller.send("90")
    assert refused.plain == "Пришлите до 5 чисел дней от 1 до 60, например 7,1."
    await seller.send("/settings")
    await seller.tap(seller.last, "Налог по умолчанию")
    [refused] = await seller.send("НДС 120%")
    assert "от 0 до 100 %" in refused.plain
    settings = await ledger.seller_settings(seller.user.id)
    assert (settings.updated_at, settings.reminder_days, settings.default_tax) == (
        None, (7, 1), None)


async def test_a_logo_as_a_photo_or_a_file_and_what_is_refused(person, ledger) -> None:
    seller = await person()
    [shown] = await seller.send("/settings")
    await seller.tap(shown, "Logo")
    [refused] = await _send_file(seller, b"just some text", mime="text/plain", name="a.txt")
    assert refused.plain == ("That is not a PNG or JPEG image: send the logo as a photo or a "
                             "PNG/JPEG file.")
    [refused] = await _send_file(seller, b"\x89PNG\r\n\x1a\n not really")  # a forged PNG
    assert "not a PNG or JPEG image" in refused.plain
    [refused] = await _send_file(seller, _png(), size=600 * 1024)  # refused before download
    assert refused.plain == "That file is too big: a logo can be up to 512 KB."
    assert (await ledger.seller_settings(seller.user.id)).logo is None

    logo = _png()
    [saved] = await _send_file(seller, logo)
    assert "✅ Saved." in saved.plain and "Logo: set" in saved.plain
    assert (await ledger.seller_settings(seller.user.id)).logo == logo
    await seller.tap(saved, "Logo")
    [saved] = await _send_file(seller, _png(32), photo=True)
    settings = await ledger.seller_settings(seller.user.id)
    assert settings.logo == _png(32) and settings.logo_type == "image/png"


async def test_the_default_tax_is_offered_in_the_invoice_form(person, engine) -> None:
    from ledger.invoices import list_invoices

    seller = await person()
    await seller.send("/settings")
    await seller.tap(seller.last, "Default tax")
    await seller.send("VAT 10%")
    await seller.send("/invoice")
    await seller.send("Repairs")
    [question] = await seller.send("50")
    [asked] = (await seller.tap(question, "Tax")).sent
    [question] = (await seller.tap(asked, "Use VAT 10 %")).sent
    assert "VAT 10 %: 5.00 Liquid $" in question.plain
    tap = await seller.tap(question, "One buyer")
    tap = await seller.tap(tap.sent[0], "24 h")
    await seller.tap(tap.sent[0], "Skip")
    [invoice] = await list_invoices(engine, seller.user.id)
    assert invoice.amount == 5500
