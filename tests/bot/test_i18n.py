"""Every text the bot uses exists in both languages, with the same placeholders."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from bot.telegram.i18n import TEXTS, Translator, language_of, translator

SOURCES = [p for p in sorted((Path(__file__).parents[2] / "bot" / "telegram").glob("*.py"))
           if p.name != "i18n.py"]
DYNAMIC = {
    "status.": ("pending", "paid", "cancelled", "expired"),
    "kind.": ("invoice_payment", "external_payment", "deposit", "adjustment", "excess",
              "suspense", "release"),
    "method.": ("internal", "ton", "manual"),
    "invoice.kind.": ("one_time", "multi_use"),
    "form.kind.": ("one_time", "multi_use"),
}


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_key_used_in_the_code_exists() -> None:
    used = set()
    for path in SOURCES:
        used |= set(re.findall(r"""\btr\(\s*["']([a-z_.]+)["']""", path.read_text()))
    for prefix, names in DYNAMIC.items():
        used |= {prefix + n for n in names}
    assert used - set(TEXTS) == set()


@pytest.mark.parametrize("key", sorted(TEXTS))
def test_both_languages_have_the_same_placeholders(key: str) -> None:
    en, ru = TEXTS[key]
    assert en and ru
    assert _fields(en) == _fields(ru)


def test_language_choice() -> None:
    assert language_of("ru-RU") == "ru" and language_of("RU") == "ru"
    assert language_of("de") == language_of(None) == language_of("") == "en"
    assert translator("uk")("status.paid") == "✅ paid"
    assert Translator("ru")("status.paid") == "✅ оплачен"
    assert translator("en")("no.such.key") == "no.such.key"  # shown, never a crash
