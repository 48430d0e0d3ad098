"""`make messages`: extract every message key from the code into `messages.pot` and merge it
into each language's .po with Babel's API (`python -m bot.locales.extract`).

Keys are found in `tr("key")`, `tr.n("key", n)`, `N_("key")` (Python), and as page texts in
`t(lang, "name")`, `tn(lang, "name", n)` (Python), `T("name")`, `TN("name", n)` (pay.js),
`app.t("name")`, `app.tn("name", n)` (the Mini App's scripts),
`$t_name` and `data-t="name"` (page templates); page names become `page.<name>` here, as in
`bot/web/i18n.py`. New keys arrive in every .po empty (the test then names them); keys no
longer used become obsolete entries (`#~`), never silently reused (no fuzzy matching)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir, extract_javascript, extract_python
from babel.messages.pofile import read_po, write_po

from bot import locales

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
POT = HERE / "messages.pot"
PAGE = "page."

# name -> argument positions of the key (two equal positions: a plural entry keyed alike).
KEYWORDS: dict[str, tuple[int, ...]] = {
    "tr": (1,), "n": (1, 1), "N_": (1,),  # the bot's Translator; `tr.n` is seen as `n`
    "t": (2,), "tn": (2, 2),  # page texts from Python
    "Refusal": (3,),  # a Mini App view's refusal: Refusal(status, code, "page text name")
    "P_": (1,),  # a page text's name kept in a table (bot/web/i18n.py)
    "T": (1,), "TN": (1, 1),  # page texts from pay.js
}
# In the scripts the key is the first argument: pay.js's T/TN, the Mini App's app.t/app.tn.
JS_KEYWORDS: dict[str, tuple[int, ...]] = {"T": (1,), "TN": (1, 1), "t": (1,), "tn": (1, 1)}
_PAGE_CALLS = {"t", "tn", "T", "TN", "Refusal", "P_"}
# Where to look, and how (the methods below); the order is babel's mapping order.
METHODS = [
    ("bot/**.py", "bot.locales.extract.python"),
    ("watchers/**.py", "bot.locales.extract.python"),
    ("bot/web/static/**.js", "bot.locales.extract.javascript"),
    ("bot/web/templates/**.html", "bot.locales.extract.template"),
]
_TEMPLATE_KEY = re.compile(r"\$t_([a-z0-9_]+)|data-t=\"([a-z0-9_]+)\"")

Result = tuple[int, str | None, Any, list[str]]


def _paged(results: Iterator[Result]) -> Iterator[Result]:
    for lineno, funcname, messages, comments in results:
        if funcname in _PAGE_CALLS:
            if isinstance(messages, tuple):
                messages = tuple(PAGE + m if isinstance(m, str) else m for m in messages)
            elif isinstance(messages, str):
                messages = PAGE + messages
        yield lineno, funcname, messages, comments


def python(fileobj: IO[bytes], keywords: Any, comment_tags: Any, options: Any
           ) -> Iterator[Result]:
    return _paged(extract_python(fileobj, keywords, comment_tags, options))


def javascript(fileobj: IO[bytes], keywords: Any, comment_tags: Any, options: Any
               ) -> Iterator[Result]:
    # Babel checks each call against the shared KEYWORDS after this, where `t` takes the key
    # second (Python's t(lang, key)): the scripts' t/tn are handed on as T/TN.
    for lineno, funcname, messages, comments in _paged(
            extract_javascript(fileobj, JS_KEYWORDS, comment_tags, options)):
        yield lineno, {"t": "T", "tn": "TN"}.get(funcname or "", funcname), messages, comments


def template(fileobj: IO[bytes], keywords: Any, comment_tags: Any, options: Any
             ) -> Iterator[Result]:
    """`$t_name` (filled by the server) and `data-t="name"` (switched by the script)."""
    for lineno, line in enumerate(fileobj.read().decode("utf-8").splitlines(), 1):
        for match in _TEMPLATE_KEY.finditer(line):
            yield lineno, None, PAGE + (match[1] or match[2]), []


def extracted() -> Catalog:
    """Every key the code uses, as a catalog (plural entries as (key, key))."""
    found = Catalog(domain="messages")
    for filename, lineno, message, _comments, context in extract_from_dir(
            ROOT, METHODS, keywords=KEYWORDS, strip_comment_tags=True):
        found.add(message, locations=[(filename, lineno)], context=context)
    return found


def main() -> None:
    """Write messages.pot from the code and merge it into every language's .po (what
    `pybabel extract` and `pybabel update --no-fuzzy-matching` do, with this module's keywords
    and methods, in key order)."""
    template = extracted()
    template.project, template.version = "paybot", "1"
    # Keep the creation date: a run that finds nothing new changes no file.
    template.creation_date = locales.catalog(locales.DEFAULT).creation_date
    with POT.open("wb") as f:
        write_po(f, template, sort_output=True, no_location=True)
    for lang in locales.LANGUAGES:
        path = locales.po_path(lang)
        with path.open("rb") as f:
            messages = read_po(f, locale=lang, domain=locales.DOMAIN)
        messages.update(template, no_fuzzy_matching=True, update_creation_date=False)
        with path.open("wb") as f:
            write_po(f, messages, sort_output=True, no_location=True)


if __name__ == "__main__":
    main()
