"""The bot's texts, chosen by the user's Telegram language; English is the fallback.

The texts live in the shared gettext catalogs (`bot/locales/<lang>/LC_MESSAGES/messages.po`),
keyed like `pay.done`. They are HTML (the bot's parse mode): values that come from people
(titles, usernames, item ids) are escaped by the callers before they are put in."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from types import MappingProxyType
from typing import Final

from bot import locales
from bot.locales import DEFAULT, LANGUAGES

__all__ = ["DEFAULT", "LANGUAGES", "TEXTS", "Translator", "has_text", "language_of",
           "translator"]


def N_(key: str) -> str:  # gettext's name: "extract this key, translate later"
    return key


# Keys extraction cannot see in the code (built at run time like f"status.{status}", or called
# indirectly), listed here so that `make messages` keeps them in the catalog.
DYNAMIC: Final = (
    N_("error.generic"), N_("form.oneline.usage"), N_("credit.deposit"), N_("credit.excess"),
    N_("cmd.start"), N_("cmd.invoice"), N_("cmd.invoices"), N_("cmd.balance"),
    N_("cmd.inventory"), N_("cmd.history"), N_("cmd.api"), N_("cmd.cancel"),
    N_("status.pending"), N_("status.paid"), N_("status.cancelled"), N_("status.expired"),
    N_("invoice.kind.one_time"), N_("invoice.kind.multi_use"),
    N_("form.kind.one_time"), N_("form.kind.multi_use"),
    N_("method.internal"), N_("method.ton"), N_("method.manual"),
    N_("kind.invoice_payment"), N_("kind.external_payment"), N_("kind.deposit"),
    N_("kind.adjustment"), N_("kind.excess"), N_("kind.suspense"), N_("kind.release"),
    N_("err.invoice_not_found"), N_("err.invoice_not_payable"), N_("err.invoice_already_paid"),
    N_("err.invoice_cancelled"), N_("err.invoice_expired"), N_("err.own_invoice"),
    N_("err.idempotency_key_reused"), N_("err.invalid_amount"), N_("err.not_invoice_seller"),
    N_("err.invalid_invoice"), N_("err.claim_not_found"), N_("err.claim_already_used"),
    N_("err.claim_revoked"), N_("err.proration_unfunded"),
    N_("err.tag_taken"), N_("err.unknown_tag"), N_("err.invalid_guest_key"),
    N_("err.too_many_tokens"), N_("err.user_not_found"),
    # invoices as documents
    N_("cmd.settings"), N_("status.draft"), N_("status.void"), N_("status.uncollectible"),
    N_("form.line"), N_("form.discount"), N_("form.tax"), N_("form.due"),
    N_("form.extra.line"), N_("form.extra.discount"), N_("form.extra.tax"),
    N_("form.extra.due"), N_("settings.ask.legal_name"), N_("settings.ask.legal_details"),
    N_("settings.ask.bank_details"), N_("settings.ask.tax"), N_("settings.ask.days"),
    N_("err.invoice_draft"), N_("err.invoice_void"), N_("err.invoice_uncollectible"),
    N_("err.invoice_not_draft"), N_("err.invoice_partly_paid"),
    N_("err.manual_payment_too_large"), N_("err.payment_not_reversible"),
    N_("err.recipient_not_found"), N_("err.payment_not_found"),
    N_("err.manual_payment_multi_use"), N_("err.invalid_settings"),
)


def _bot_keys() -> dict[str, tuple[str, ...]]:
    """key -> its text in each language (LANGUAGES order), for the one-form bot messages."""
    tables = [locales.texts(lang) for lang in LANGUAGES]
    return {key: tuple(str(table[key]) for table in tables)
            for key, text in tables[0].items()
            if isinstance(text, str) and not key.startswith("page.")}


# A read-only view for tests and tools; the code asks `has_text` and `Translator`.
TEXTS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(_bot_keys())


def has_text(key: str) -> bool:
    """Whether the catalog has a one-form text under `key` (e.g. `err.<code>` of a new error)."""
    return key in TEXTS


def language_of(code: str | None) -> str:
    """'ru', 'ru-RU' -> 'ru'; anything unsupported or missing -> English."""
    lang = (code or DEFAULT).split("-")[0].lower()
    return lang if lang in LANGUAGES else DEFAULT


class Translator:
    """`tr("key", name=value)` in one language; `tr.n("key", count, name=value)` picks the
    plural form for `count`. Missing keys show the key (never crash)."""

    __slots__ = ("_gettext", "_ngettext", "lang")

    def __init__(self, lang: str) -> None:
        self.lang = language_of(lang)
        found = locales.translations(self.lang)
        self._gettext = found.gettext
        self._ngettext = found.ngettext

    def __call__(self, key: str, /, **values: object) -> str:
        text = self._gettext(key)
        return text.format(**values) if values else text

    def n(self, key: str, count: int, /, **values: object) -> str:
        text = self._ngettext(key, key, count)
        return text.format(**values) if values else text


@cache
def _translator(lang: str) -> Translator:
    return Translator(lang)


def translator(code: str | None) -> Translator:
    return _translator(language_of(code))
