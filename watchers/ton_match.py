"""Read a payment reference out of a transfer comment: `INV-<invoice id>` or `DEP-<code>`.

Pure string work, no database: the ledger then finds the invoice or user by its unique key, so
matching costs the same whatever the number of pending invoices. Comments are typed by people
(or pasted), so the reference is found case-insensitively anywhere in the text as a whole word
(`"  inv-3n8p…  "`, `"INV-9F2G… order for the whole team"`), with Crockford's look-alike
letters mapped (I/L -> 1, O -> 0). Two different references in one comment are ambiguous and
match nothing: the transfer is recorded as unmatched for the operator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from ledger.ids import DEPOSIT_CODE_LENGTH, INVOICE_ID_LENGTH, normalize_code, parse_invoice_id

__all__ = ["CommentMatch", "match_comment"]

# The id part is checked afterwards (alphabet, length), so any letters/digits are taken here.
_REFERENCE: Final = re.compile(
    rf"(?<![0-9A-Za-z])(INV|DEP)-([0-9A-Za-z]{{{min(INVOICE_ID_LENGTH, DEPOSIT_CODE_LENGTH)},}})"
    r"(?![0-9A-Za-z])",
    re.IGNORECASE,
)
_DEPOSIT_RE: Final = re.compile(rf"[0-9A-HJKMNP-TV-Z]{{{DEPOSIT_CODE_LENGTH}}}")


@dataclass(frozen=True, slots=True)
class CommentMatch:
    kind: str  # "invoice" | "deposit"
    code: str  # canonical invoice public id or deposit code


def match_comment(comment: str | None) -> CommentMatch | None:
    """The invoice or deposit a comment refers to, or None (no, unknown-shaped or ambiguous)."""
    if not comment or ("-" not in comment):
        return None
    found: set[CommentMatch] = set()
    for prefix, raw in _REFERENCE.findall(comment):
        if prefix.upper() == "INV":
            code = parse_invoice_id(raw)
            if code is not None:
                found.add(CommentMatch("invoice", code))
        else:
            code = normalize_code(raw)
            if _DEPOSIT_RE.fullmatch(code):
                found.add(CommentMatch("deposit", code))
    return found.pop() if len(found) == 1 else None
