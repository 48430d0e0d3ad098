"""A seller's invoices as their dashboard lists them: newest first, filtered, searched, in
pages (the Mini App's seller view).

Cost: every filter walks the index `invoices_seller (seller_id, id DESC)` from the cursor down
and stops at the page's end, so a page reads only this seller's invoices and, for a common
filter, little more than the page. A search (`q`) is a case-insensitive substring test on the
number, the title and the buyer of each row it walks: a term that matches nothing reads all of
this seller's invoices (never another seller's) — linear in one seller's history, no
full-text index needed at the sizes sellers have.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from ledger.db import Executor, fetch_all
from ledger.invoices import check_cursor
from ledger.models import Invoice

STATUSES: Final = ("draft", "pending", "paid", "cancelled", "expired", "void", "uncollectible")
MAX_QUERY: Final = 100


@dataclass(frozen=True, slots=True)
class ListedInvoice:
    invoice: Invoice
    buyer: str | None  # the document's buyer, else the Telegram user it was sent to


def like_pattern(text: str) -> str:
    """`text` as a LIKE substring pattern matching itself only: % _ and \\ escaped."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def search_invoices(
    db: Executor, seller_id: int, *, status: str | None = None, overdue: bool = False,
    q: str | None = None, limit: int = 20, after: str | None = None,
    now: datetime | None = None,
) -> tuple[list[ListedInvoice], str | None]:
    """A page of the seller's invoices and the cursor of the next page (None at the end).

    `status` is the status people see (a pending invoice past its expiry is "expired");
    `overdue` keeps open invoices past their due date; `q` matches the number (also as the
    "INV-<id>" of a TON comment), the title or the buyer ("@name"). The cursor is the public id
    of the page's last invoice: another seller's is refused with InvalidCursor."""
    term = (q or "").strip()
    username = term[1:] if term.startswith("@") else term
    public = term[4:] if term.upper().startswith("INV-") else term
    rows = await fetch_all(
        db,
        r"""
        SELECT i.*, coalesce(nullif(i.document -> 'buyer' ->> 'name', ''),
                             nullif(i.document -> 'buyer' ->> 'company', ''),
                             '@' || u.username, u.first_name) AS buyer
          FROM invoices i
          LEFT JOIN users u ON u.id = i.sent_to
         WHERE i.seller_id = :seller
           AND (CAST(:status AS text) IS NULL OR
                CASE WHEN i.status = 'pending' AND i.expires_at <= :now THEN 'expired'
                     ELSE i.status END = :status)
           AND (NOT :overdue OR (i.status = 'pending' AND i.due_at < :now))
           AND (:term = '' OR i.number ILIKE :pattern ESCAPE '\'
                OR i.title ILIKE :pattern ESCAPE '\'
                OR u.username ILIKE :user_pattern ESCAPE '\'
                OR (i.document -> 'buyer' ->> 'name') ILIKE :pattern ESCAPE '\'
                OR upper(i.public_id) = upper(:public))
           AND (CAST(:after AS text) IS NULL OR i.id < (
                SELECT a.id FROM invoices a WHERE a.public_id = :after AND a.seller_id = :seller))
         ORDER BY i.id DESC LIMIT :limit
        """,
        seller=seller_id, status=status, overdue=overdue, now=now or datetime.now(UTC),
        term=term, pattern=like_pattern(term), user_pattern=like_pattern(username),
        public=public, after=after, limit=limit + 1,
    )
    if after is not None and not rows:  # the last page, or a cursor that is not this seller's
        await check_cursor(db, seller_id, after)
    page = [ListedInvoice(Invoice.from_row(r), r["buyer"]) for r in rows[:limit]]
    return page, (page[-1].invoice.public_id if len(rows) > limit else None)
