"""Pay page texts in English and Russian. English is the fallback for every other language.

The texts live in the shared gettext catalogs (`bot/locales/<lang>/LC_MESSAGES/messages.po`)
as `page.<name>`; the page code calls them by name (`t(lang, "uses")`). The same table goes to
the browser (a script with JSON), so the script can switch to the Telegram user's language
without another request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from aiohttp import web

from bot import locales
from bot.locales import DEFAULT, LANGUAGES, Text

__all__ = ["DEFAULT", "LANGUAGES", "P_", "TEXTS", "from_accept_language", "normalize",
           "plural_script", "request_language", "t", "tn"]

PREFIX: Final = "page."


def N_(key: str) -> str:  # gettext's name: "extract this key, translate later"
    return key


def P_(name: str) -> str:
    """A page text's name (without `page.`) kept in a table and looked up later: marks it for
    extraction as `t(lang, name)` would."""
    return name


# Page texts the code names at run time (f"status_{status}", tables of error codes), listed
# here so that extraction (`make messages`) keeps them in the catalog.
DYNAMIC: Final = (
    N_("page.status_pending"), N_("page.status_paid"), N_("page.status_cancelled"),
    N_("page.status_expired"), N_("page.cancelled_text"), N_("page.expired_text"),
    N_("page.session_expired"), N_("page.err_auth"), N_("page.err_already_paid"),
    N_("page.err_busy"), N_("page.err_cancelled"), N_("page.err_contact"), N_("page.err_expired"),
    N_("page.err_key_reused"), N_("page.err_not_found"), N_("page.err_own_invoice"),
    N_("page.err_rate_limited"), N_("page.err_tag_taken"), N_("page.err_too_large"),
    N_("page.err_too_slow"), N_("page.err_unknown_tag"), N_("page.err_unreadable"),
    N_("page.status_draft"), N_("page.status_void"), N_("page.status_uncollectible"),
    N_("page.void_text"), N_("page.uncollectible_text"),
    N_("page.err_own_plan"), N_("page.err_already_subscribed"), N_("page.err_period_not_offered"),
)


def _page_table(lang: str) -> dict[str, Text]:
    return {key.removeprefix(PREFIX): text for key, text in locales.texts(lang).items()
            if key.startswith(PREFIX)}


# lang -> name -> text (a list of plural forms for counted texts): what the browser gets.
TEXTS: Final[Mapping[str, Mapping[str, Text]]] = {lang: _page_table(lang) for lang in LANGUAGES}


# What a gettext Plural-Forms expression may hold: it is C, and the same text is JavaScript.
_PLURAL_EXPR = re.compile(r"[n0-9\s%=!<>&|?:()+\-*/]+")


def plural_script() -> str:
    """A JavaScript object: lang -> function(n) giving the index of the plural form, made from
    each catalog's Plural-Forms, so the browser counts as the server does."""
    functions = []
    for lang in LANGUAGES:
        expr = locales.plural_expr(lang)
        if not _PLURAL_EXPR.fullmatch(expr):  # only ever our own catalog; never run text
            raise ValueError(f"unexpected Plural-Forms for {lang}: {expr!r}")
        functions.append(f'"{lang}":function(n){{return Number({expr});}}')
    return "{" + ",".join(functions) + "}"


def normalize(code: str | None) -> str | None:
    """'ru-RU' -> 'ru'; None for languages we do not have."""
    lang = (code or "").strip().split("-")[0].split("_")[0].lower()
    return lang if lang in LANGUAGES else None


def from_accept_language(header: str | None) -> str:
    """The best supported language of an Accept-Language header, by quality."""
    best, best_q = DEFAULT, -1.0
    for position, part in enumerate((header or "").split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        lang = normalize(tag)
        # Ties keep the first listed language; the position term only breaks them.
        if lang is not None and q - position * 1e-6 > best_q:
            best, best_q = lang, q - position * 1e-6
    return best


def request_language(request: web.Request) -> str:
    """?lang= wins (the Mini App passes the Telegram language), then Accept-Language."""
    return normalize(request.query.get("lang")) or from_accept_language(
        request.headers.get("Accept-Language")
    )


def t(lang: str, key: str, **params: object) -> str:
    text = locales.gettext(lang, PREFIX + key)
    return text.format(**params) if params else text


def tn(lang: str, key: str, n: int, **params: object) -> str:
    """The plural form of `key` for the count `n` (Russian has three)."""
    text = locales.ngettext(lang, PREFIX + key, n)
    return text.format(**params) if params else text
