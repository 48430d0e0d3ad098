"""The guest's claim link: who may see it, and reading it.

A claim token hands a guest's purchase to whoever opens `t.me/<bot>?start=claim_<token>`
first, so it must not be shown to everyone who opens the public pay page. The chain transfer
only carries `INV-<id>`, which ties a payment to an invoice, not to a browser. The rule here:

- only for one-time invoices (a multi-use invoice has many guest payments and nothing tells
  which of them a given browser made);
- only to a browser holding this invoice's signed guest cookie, issued before the payment was
  recorded (a browser that first opens the page after the payment never sees it);
- only while the grant is unclaimed.

The invoice id is unguessable and a one-time invoice's link normally goes to its buyer only, so
in practice this is the buyer's browser. Anyone else who had the link and had the page open
before the payment could also see it; the page says to keep the link private.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ledger.db import Executor, fetch_one
from ledger.models import Invoice

# Read-only view of the ledger's grants for one invoice (ledger.transfers.transfers_for_invoice,
# being added for the TON watcher, will carry the same token; this query needs nothing more).
_GUEST_GRANT = """
SELECT g.claim_token, g.claimed_at
  FROM grants g JOIN payments p ON p.id = g.payment_id
 WHERE g.invoice_id = :invoice AND g.claim_token IS NOT NULL AND p.payer_id IS NULL
   AND p.created_at >= :since
 ORDER BY g.id
 LIMIT 1
"""


async def guest_claim(
    db: Executor, invoice: Invoice, cookie_issued_at: datetime | None, bot_username: str
) -> dict[str, Any] | None:
    """{'url': claim link} or {'claimed': True} for the guest's browser, else None."""
    if cookie_issued_at is None or invoice.kind != "one_time" or invoice.status != "paid":
        return None
    row = await fetch_one(db, _GUEST_GRANT, invoice=invoice.id, since=cookie_issued_at)
    if row is None:
        return None
    if row["claimed_at"] is not None:
        return {"claimed": True}
    return {"url": f"https://t.me/{bot_username}?start=claim_{row['claim_token']}"}
