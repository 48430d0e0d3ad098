"""Read a payment reference out of a transfer comment: `INV-<invoice id>[-<payer tag>]` or
`DEP-<code>`.

Pure string work, no database: the ledger then finds the invoice or user by its unique key, so
matching costs the same whatever the number of pending invoices. Comments are typed by people
(or pasted), so the reference is found case-insensitively anywhere in the text as a whole word
(`"  inv-3n8p…  "`, `"INV-9F2G… order for the whole team"`), with Crockford's look-alike
letters mapped (I/L -> 1, O -> 0). Two different references in one comment are ambiguous and
match nothing: the transfer is recorded as unmatched for the operator. The payer tag
(ledger/payers.py) is taken when it is well-formed; a malformed one, or two different tags for
the invoice, leaves the reference bare (it still pays the invoice; nobody is named).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from ledger.ids import DEPOSIT_CODE_LENGTH, INVOICE_ID_LENGTH, normalize_code, parse_invoice_id
from ledger.payers import normalize_tag

__all__ = ["CommentMatch", "match_comment"]

# The id and tag parts are checked afterwards (alphabet, length), so any letters/digits are
# taken here.
_REFERENCE: Final = re.compile(
    rf"(?<![0-9A-Za-z])(INV|DEP)-([0-9A-Za-z]{{{min(INVOICE_ID_LENGTH, DEPOSIT_CODE_LENGTH)},}})"
    r"(?:-([0-9A-Za-z]+))?(?![0-9A-Za-z])",
    re.IGNORECASE,
)
_DEPOSIT_RE: Final = re.compile(rf"[0-9A-HJKMNP-TV-Z]{{{DEPOSIT_CODE_LENGTH}}}")


@dataclass(frozen=True, slots=True)
class CommentMatch:
    kind: str  # "invoice" | "deposit"
    code: str  # canonical invoice public id or deposit code
    tag: str | None = None  # canonical payer tag of an invoice reference


def match_comment(comment: str | None) -> CommentMatch | None:
    """The invoice or deposit a comment refers to, or None (no, unknown-shaped or ambiguous)."""
    if not comment or ("-" not in comment):
        return None
    found: set[tuple[str, str]] = set()
    tags: set[str | None] = set()
    for prefix, raw, raw_tag in _REFERENCE.findall(comment):
        if prefix.upper() == "INV":
            code = parse_invoice_id(raw)
            if code is not None:
                found.add(("invoice", code))
                if raw_tag:
                    tags.add(normalize_tag(raw_tag))
        else:
            code = normalize_code(raw)
            if _DEPOSIT_RE.fullmatch(code):
                found.add(("deposit", code))
    if len(found) != 1:
        return None
    kind, code = found.pop()
    # One well-formed tag names the payer; none, a malformed or two different ones: bare.
    return CommentMatch(kind, code, tags.pop() if len(tags) == 1 else None)
