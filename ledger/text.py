"""Text a seller writes and others read (titles, descriptions): what may be shown.

Invisible characters let a seller make a title look like something it is not: bidi overrides
(U+202A–U+202E, U+2066–U+2069) reverse what follows, control characters break layouts and
logs, and a title of zero-width characters passes "title is empty" while showing nothing.
Unicode's own classes decide: every control (Cc) and format (Cf) character is removed, except
the zero-width joiners that emoji and some scripts need (kept inside visible text, never
counted as visible themselves); line breaks survive only where several lines may.
"""

from __future__ import annotations

import unicodedata

# Format characters that carry meaning inside visible text: ZWNJ (Persian, Indic scripts),
# ZWJ (emoji sequences such as 👨‍👩‍👧).
_JOINERS = frozenset("\u200c\u200d")
# Letters and symbols that render as blank space although their class says otherwise.
_BLANK = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e")


def _keep(ch: str, multiline: bool) -> bool:
    if multiline and ch == "\n":
        return True
    if ch in _JOINERS:
        return True
    return unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn")


def _visible(ch: str) -> bool:
    if ch in _JOINERS or ch in _BLANK or ch.isspace():
        return False
    return unicodedata.category(ch) not in ("Mn", "Me")  # combining marks need a base


def clean_line(text: str) -> str:
    """One line of display text: invisible characters removed, runs of space made one, and
    empty when nothing visible is left."""
    # isprintable() is False for every Cc/Cf/Cs/Co/Cn character (and line separators): the
    # common title has none, and skips the per-character pass (~3 µs an invoice otherwise).
    kept = text if text.isprintable() else "".join(
        ch for ch in text if _keep(ch, multiline=False))
    clean = " ".join(kept.split())
    if clean.isascii():  # printable ASCII that is not a space is visible
        return clean
    return clean if any(_visible(ch) for ch in clean) else ""


def clean_block(text: str) -> str:
    """Several lines of display text (a description): as clean_line, keeping line breaks."""
    if "\n" not in text and "\r" not in text:
        return clean_line(text)
    kept = "".join(ch for ch in text if _keep(ch, multiline=True))
    lines = [" ".join(line.split()) for line in kept.split("\n")]
    clean = "\n".join(lines).strip()
    return clean if any(_visible(ch) for ch in clean) else ""
