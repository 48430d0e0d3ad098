"""A guest's proof of purchase: what the pay page shows to the browser that paid, and the
deep link that hands the purchase to the Telegram account that opens it.

A guest pays with the comment `INV-<id>-<tag>`, the tag bound to their browser's secret guest
key (ledger/payers.py). The comment is public on chain, so the tag alone proves nothing: the
Telegram link carries, besides the invoice and tag, the tag's `proof`, a secret the ledger
keeps and this page shows only to the browser holding the HttpOnly cookie. Opening
`t.me/<bot>?start=bind_<id>_<tag>_<proof>` binds the tag to that Telegram user (`bind_user`):
whatever was or will be paid with it goes to them, once; a second account gets "already
taken". A typed @handle alone proves nothing, as anyone may type anyone's handle.

Who sees what is decided only by the tag the browser holds (never by when it arrived, never by
a cached copy of the page): a payment made with another tag or with a bare `INV-<id>` is never
shown to this browser.
"""

from __future__ import annotations

import re
from typing import Any, Final

from ledger.payers import GuestPurchase, PayerTag

BIND_PREFIX: Final = "bind_"
# Telegram start parameters: [A-Za-z0-9_-], at most 64 characters (this is 45 with today's
# 20-character proofs).
_PAYLOAD_RE: Final = re.compile(r"bind_([0-9A-Z]{13})_([0-9A-Z]{5})_([A-Za-z0-9_-]{1,40})")


def bind_payload(payer: PayerTag) -> str:
    return f"{BIND_PREFIX}{payer.invoice_public_id}_{payer.tag}_{payer.proof or ''}"


def bind_url(bot_username: str, payer: PayerTag) -> str | None:
    """The proof link for a guest's tag; None for a tag that has no proof (a user's)."""
    if not payer.proof:
        return None
    return f"https://t.me/{bot_username}?start={bind_payload(payer)}"


def parse_bind_payload(arg: str) -> tuple[str, str, str] | None:
    """(invoice public id, tag, proof) of a `bind_…` start parameter; None when malformed."""
    found = _PAYLOAD_RE.fullmatch(arg)
    return None if found is None else (found[1], found[2], found[3])


def guest_claim(purchase: GuestPurchase | None, link: str | None) -> dict[str, Any] | None:
    """{'url': link} while what this browser paid for waits; {'claimed': True} once handed
    over; None when nothing was paid with this browser's tag."""
    if purchase is None or purchase.status != "paid" or purchase.claim is None:
        return None
    if purchase.claim.get("claimed"):
        return {"claimed": True}
    return {"url": link} if link else None


def payer_info(payer: PayerTag, bot_username: str) -> dict[str, Any]:
    """What the guest's page shows of their own tag: contact, Telegram link, bound or not."""
    return {"tag": payer.tag, "contact": payer.contact, "bound": payer.user_id is not None,
            "bind_url": bind_url(bot_username, payer)}
