"""The document's words, from the text catalog (bot/locales), in the document's language."""

from __future__ import annotations

from datetime import date

from babel.dates import format_date

from bot import locales


def N_(key: str) -> str:  # gettext's name: "extract this key, translate later"
    return key


KEYS = (
    N_("doc.invoice"), N_("doc.number"), N_("doc.issued"), N_("doc.due"), N_("doc.seller"),
    N_("doc.buyer"), N_("doc.tax_id"), N_("doc.description"),
    N_("doc.quantity"), N_("doc.unit_price"), N_("doc.discount"), N_("doc.tax"),
    N_("doc.amount"), N_("doc.how_to_pay"), N_("doc.pay_online"), N_("doc.scan"),
    N_("doc.ton"), N_("doc.ton_comment"), N_("doc.bank"), N_("doc.stamp.PAID"),
    N_("doc.stamp.VOID"), N_("doc.total_due"), N_("doc.stamp.UNCOLLECTIBLE"),
    N_("doc.stamp.DRAFT"), N_("doc.draft"), N_("doc.subtotal"), N_("doc.total"),
    N_("doc.paid"), N_("doc.amount_due"), N_("doc.tax_included"), N_("doc.note"),
    N_("doc.ton_amount"),
)


def label(lang: str, key: str) -> str:
    return locales.gettext(lang, key)


def day(lang: str, value: date) -> str:
    """A date as people of the language write it in a letter: "27 ноября 2026 г."."""
    return format_date(value, "long", locale=lang)
