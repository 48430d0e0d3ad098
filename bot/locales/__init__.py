"""The texts of the bot, the pay pages and the notices: one gettext catalog per language,
`bot/locales/<lang>/LC_MESSAGES/messages.po`, read with Babel.

Message ids are keys (`pay.done`; page texts `page.<name>`), so English lives in `en.po` like
any other language and a reworded text changes no code. English is the fallback for every
language we lack and for every text a catalog lacks; a key no catalog has shows itself, never a
crash. The .po files are read at first use (no compiled .mo to build, commit or forget).
`make messages` re-extracts the keys from the code (`bot/locales/extract.py`)."""

from __future__ import annotations

from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Final

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LANGUAGES: Final = ("en", "ru")
DEFAULT: Final = "en"
DOMAIN: Final = "messages"
HERE: Final = Path(__file__).parent

# A message's forms: one text, or one per plural form of its language.
Text = str | tuple[str, ...]


def po_path(lang: str) -> Path:
    return HERE / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


def supported(lang: str) -> str:
    return lang if lang in LANGUAGES else DEFAULT


def catalog(lang: str) -> Catalog:
    """The parsed .po file of the language (its header carries the Plural-Forms)."""
    return _catalog(supported(lang))


def translations(lang: str) -> Translations:
    """gettext for the language, falling back to English message by message."""
    return _translations(supported(lang))


# The caches hold the supported languages only: a language code is user input.
@cache
def _catalog(lang: str) -> Catalog:
    with po_path(lang).open("rb") as f:
        return read_po(f, locale=lang, domain=DOMAIN)


@cache
def _translations(lang: str) -> Translations:
    buffer = BytesIO()
    write_mo(buffer, catalog(lang))  # in memory: skips empty and fuzzy texts, as gettext does
    buffer.seek(0)
    found = Translations(buffer, domain=DOMAIN)
    if lang != DEFAULT:
        found.add_fallback(translations(DEFAULT))
    return found


def gettext(lang: str, key: str) -> str:
    return translations(lang).gettext(key)


def ngettext(lang: str, key: str, n: int) -> str:
    """The form of `key` for the count `n` under the language's Plural-Forms."""
    return translations(lang).ngettext(key, key, n)


def texts(lang: str) -> dict[str, Text]:
    """Every message of the catalog in the language, English filling in what it lacks: a
    string, or a tuple of the language's plural forms."""
    return _texts(supported(lang))


@cache
def _texts(lang: str) -> dict[str, Text]:
    out: dict[str, Text] = {}
    for message in catalog(DEFAULT):
        if message.id:
            key = message.id[0] if isinstance(message.id, tuple) else message.id
            out[key] = _forms(lang, key, plural=isinstance(message.id, tuple))
    return out


def _forms(lang: str, key: str, *, plural: bool) -> Text:
    if not plural:
        return gettext(lang, key)
    found = translations(lang)
    # One sample count per plural form; a form the language lacks falls back to English.
    samples: dict[int, int] = {}
    for n in range(200):
        samples.setdefault(found.plural(n), n)
    return tuple(found.ngettext(key, key, samples[i]) for i in sorted(samples))


def plural_expr(lang: str) -> str:
    """The C expression of the language's Plural-Forms (valid JavaScript too)."""
    return catalog(lang).plural_expr
