"""One catalog of texts (bot/locales/<lang>/LC_MESSAGES/messages.po) for the bot and the pages:
every message in every language, the same placeholders, balanced HTML for the bot, all of a
language's plural forms, and no key in the code the catalog lacks."""

from __future__ import annotations

import json
import shutil
import string
import subprocess
from html.parser import HTMLParser

import pytest
from babel.messages.catalog import Message
from babel.messages.plurals import get_plural

from bot import locales
from bot.locales.extract import extracted
from bot.telegram import parse
from bot.telegram.i18n import has_text, language_of, translator
from bot.web.i18n import plural_script, t, tn

KEYS = sorted(locales.texts(locales.DEFAULT))
# The tags Telegram's HTML parse mode knows.
BOT_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "code", "pre", "a",
            "tg-spoiler", "span", "blockquote"}


def _messages(lang: str) -> dict[str, Message]:
    return {(m.id[0] if isinstance(m.id, tuple) else m.id): m
            for m in locales.catalog(lang) if m.id}


def _forms(message: Message) -> tuple[str, ...]:
    return message.string if isinstance(message.string, tuple) else (message.string,)


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.seen: list[str] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self.open.append(tag)
        self.seen.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open.pop() != tag:
            self.problems.append(f"</{tag}> closes nothing open")


def _tags(text: str) -> _Tags:
    parser = _Tags()
    parser.feed(text)
    parser.close()
    return parser


def test_every_message_exists_in_every_language_and_nothing_else() -> None:
    english = _messages(locales.DEFAULT)
    for lang in locales.LANGUAGES:
        messages = _messages(lang)
        assert set(messages) == set(english), lang
        empty = [key for key, m in messages.items() if not all(_forms(m))]
        fuzzy = [key for key, m in messages.items() if m.fuzzy]
        assert (empty, fuzzy) == ([], []), lang


@pytest.mark.parametrize("key", KEYS)
def test_every_form_has_the_same_placeholders(key: str) -> None:
    english = _fields(_forms(_messages(locales.DEFAULT)[key])[-1])
    for lang in locales.LANGUAGES:
        for form in _forms(_messages(lang)[key]):
            assert _fields(form) == english, (lang, form)


@pytest.mark.parametrize("key", KEYS)
def test_bot_texts_are_balanced_telegram_html_and_page_texts_plain(key: str) -> None:
    for lang in locales.LANGUAGES:
        for form in _forms(_messages(lang)[key]):
            tags = _tags(form)
            if key.startswith("page."):  # escaped into the page: a tag would show as text
                assert tags.seen == [], (lang, form)
            else:
                assert tags.problems == [] and tags.open == [], (lang, form)
                assert set(tags.seen) <= BOT_TAGS, (lang, form)


def test_plural_entries_have_every_form_of_their_language() -> None:
    for lang in locales.LANGUAGES:
        catalog = locales.catalog(lang)
        rule = get_plural(lang)  # CLDR's rule, as gettext writes it
        assert (catalog.num_plurals, catalog.plural_expr) == (rule.num_plurals, rule.plural_expr)
        for key, message in _messages(lang).items():
            if message.pluralizable:
                assert len(_forms(message)) == catalog.num_plurals == len(
                    locales.texts(lang)[key]), (lang, key)
    assert locales.catalog("ru").num_plurals == 3


def test_extraction_finds_every_key_of_the_code_in_the_catalog() -> None:
    """What `make messages` would do changes nothing: the code's keys are the catalog's, and a
    counted text is called as one (`tr.n`, `tn`, `TN`)."""
    in_code = {(m.id[0] if isinstance(m.id, tuple) else m.id): m for m in extracted() if m.id}
    catalog = _messages(locales.DEFAULT)
    assert sorted(set(in_code) - set(catalog)) == [], "keys missing from the catalog"
    assert sorted(set(catalog) - set(in_code)) == [], "keys no code uses (run make messages)"
    assert [key for key in in_code if in_code[key].pluralizable != catalog[key].pluralizable
            ] == []


def test_counts_take_the_right_plural_form() -> None:
    assert [tn("en", "uses", n, uses=n) for n in (1, 2)] == ["Paid 1 time", "Paid 2 times"]
    ru = translator("ru")
    too_long = [ru.n("title.too_long", n, length=n, max=100) for n in (101, 102, 105, 111)]
    assert [text.split(": ")[1].split(",")[0] for text in too_long] == [
        "101 символ", "102 символа", "105 символов", "111 символов"]


def test_a_too_long_title_is_counted_in_russian() -> None:
    with pytest.raises(parse.InputProblem) as problem:
        parse.title("я" * 201, translator("ru"))
    assert "201 символ," in str(problem.value)
    with pytest.raises(parse.InputProblem) as problem:
        parse.title("x" * 201, translator("en"))
    assert "201 characters" in str(problem.value)


def test_fallbacks_and_lookups() -> None:
    assert language_of("ru-RU") == "ru" and language_of("RU") == "ru"
    assert language_of("de") == language_of(None) == language_of("") == "en"
    assert translator("uk")("status.paid") == "✅ paid"
    assert translator("ru")("status.paid") == "✅ оплачен"
    assert translator("de")("status.paid") == "✅ paid" and t("de", "status_paid") == "Paid"
    assert t("ru", "footer") == "Платежи через paybot"
    assert t("en", "no_such_text") == "page.no_such_text"  # shown, never a crash
    assert has_text("err.invoice_expired") and not has_text("err.no_such_code")
    assert not has_text("title.too_long")  # a counted text is asked with tr.n


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_browser_counts_as_the_server_does() -> None:
    counts = [0, 1, 2, 4, 5, 11, 12, 14, 21, 22, 25, 101, 111, 112, 121]
    script = f"var P={plural_script()};console.log(JSON.stringify(" \
             f"{{en:{counts}.map(P.en),ru:{counts}.map(P.ru)}}))"
    found = json.loads(subprocess.run(["node", "-e", script], capture_output=True, text=True,
                                      check=True).stdout)
    for lang in locales.LANGUAGES:
        assert found[lang] == [locales.translations(lang).plural(n) for n in counts]
