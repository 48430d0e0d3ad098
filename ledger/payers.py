"""Payer tags: who pays, named in the payment reference itself.

The comment a payer sends is `INV-<invoice>-<tag>`. The tag (5 Crockford base32 characters,
random, unique per invoice) is chosen here and bound to a Telegram user (bot, Mini App), or to
one guest browser (`guest_key`, the opaque random key of its signed HttpOnly cookie), which may
leave a contact. The watcher settles a transfer by its tag (SQL: ledger/sql/payers.sql):

- a user's tag: the item goes to that user and an overpayment is credited to them at once;
- a guest's tag: the item waits under a claim tied to the tag, handed over only by `bind_user`
  with the tag's `proof` — a secret shown only to the browser holding `guest_key` (the tag is
  public on chain the moment the guest pays, so the tag alone proves nothing);
- a bare `INV-<id>`, an unknown tag or another invoice's tag pays the invoice (money is never
  refused); its item waits for the operator, and no browser can claim it.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ledger.db import Executor, fetch_one
from ledger.errors import (
    InvalidContact,
    InvalidGuestKey,
    InvoiceNotFound,
    UnknownTag,
)
from ledger.ids import ALPHABET, _random_code, normalize_code, parse_invoice_id

__all__ = [
    "TAG_LENGTH",
    "GuestPurchase",
    "PayerTag",
    "bind_user",
    "canonical_contact",
    "find_tag",
    "guest_purchase",
    "normalize_tag",
    "set_contact",
    "tag_for_guest",
    "tag_for_user",
]

TAG_LENGTH = 5  # 25 bits: unique per invoice; it names a payer, it does not authorise anything
_TAG_RE = re.compile(rf"[{ALPHABET}]{{{TAG_LENGTH}}}")
_GUEST_KEY_RE = re.compile(r"[A-Za-z0-9_-]{16,128}")
_EMAIL_RE = re.compile(r"[^@\s<>()\[\],;:\"]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_HANDLE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{3,31}")
_CANDIDATES = 4  # a 5th collision in a row on one invoice is practically impossible



@dataclass(frozen=True, slots=True)
class PayerTag:
    invoice_id: int  # invoices.id
    invoice_public_id: str
    tag: str  # canonical, 5 chars
    user_id: int | None  # the Telegram user bound to it (bot, Mini App, a guest who proved it)
    guest_key: str | None  # the guest browser it was issued to
    contact: str | None  # '@handle' or e-mail the guest left (canonical form)
    # The secret a guest's claim deep link carries; shown only to the browser holding
    # guest_key, never on chain. None for a user's tag.
    proof: str | None = None

    @property
    def comment(self) -> str:
        return f"INV-{self.invoice_public_id}-{self.tag}"


@dataclass(frozen=True, slots=True)
class GuestPurchase:
    """What the browser holding a guest key paid with its own tag (for the pay page)."""

    tag: PayerTag
    status: str | None  # 'paid' | 'partial' | None (nothing arrived with this tag)
    received_nano: int  # counted toward the invoice with this tag
    claim: dict[str, bool] | None  # {'claimed': bool} once paid


def normalize_tag(raw: str) -> str | None:
    """The canonical tag (any case, Crockford look-alikes mapped), or None if it cannot be."""
    code = normalize_code(raw or "")
    return code if _TAG_RE.fullmatch(code) else None


def canonical_contact(raw: str) -> str:
    """'@handle' (lower case: Telegram usernames are case-insensitive) or an e-mail (domain in
    lower case). Anything else raises InvalidContact."""
    text = (raw or "").strip()
    if 3 <= len(text) <= 254 and _EMAIL_RE.fullmatch(text):
        local, domain = text.rsplit("@", 1)
        return f"{local}@{domain.lower()}"
    for prefix in ("https://t.me/", "http://t.me/", "t.me/", "@"):
        text = text.removeprefix(prefix)
    if _HANDLE_RE.fullmatch(text):
        return "@" + text.lower()
    raise InvalidContact("leave an e-mail address or a Telegram @username")


def _invoice(raw: str) -> str:
    code = parse_invoice_id(re.sub(r"(?i)^\s*inv-", "", raw or ""))
    if code is None:
        raise InvoiceNotFound((raw or "")[:40])
    return code


def _tag(row: Any, public_id: str) -> PayerTag:
    return PayerTag(invoice_id=row["invoice_id"], invoice_public_id=public_id, tag=row["tag"],
                    user_id=row["user_id"], guest_key=row["guest_key"], contact=row["contact"],
                    proof=row["proof"])


async def _issue(db: Executor, invoice: str, user_id: int | None,
                 guest_key: str | None) -> PayerTag:
    public_id = _invoice(invoice)
    row = await fetch_one(
        db, "SELECT * FROM paybot_payer_tag(:invoice, :user, :guest, :proof, :candidates)",
        invoice=public_id, user=user_id, guest=guest_key, proof=secrets.token_urlsafe(15),
        candidates=[_random_code(TAG_LENGTH) for _ in range(_CANDIDATES)],
    )
    assert row is not None
    return _tag(row, public_id)


async def tag_for_user(db: Executor, invoice_public_id: str, user_id: int) -> PayerTag:
    """The tag of a Telegram user for an invoice (the same one every time)."""
    return await _issue(db, invoice_public_id, user_id, None)


async def tag_for_guest(db: Executor, invoice_public_id: str, guest_key: str) -> PayerTag:
    """The tag of one guest browser for an invoice (the same one for the same guest_key)."""
    if not _GUEST_KEY_RE.fullmatch(guest_key or ""):
        raise InvalidGuestKey()
    return await _issue(db, invoice_public_id, None, guest_key)


_SELECT_TAG = """
SELECT t.*, i.public_id FROM payer_tags t JOIN invoices i ON i.id = t.invoice_id
 WHERE i.public_id = :invoice AND t.tag = :tag
"""


async def find_tag(db: Executor, invoice_public_id: str, tag: str) -> PayerTag | None:
    """The tag of this invoice (any case, look-alikes accepted), or None."""
    public_id = parse_invoice_id(re.sub(r"(?i)^\s*inv-", "", invoice_public_id or ""))
    canonical = normalize_tag(tag)
    if public_id is None or canonical is None:
        return None
    row = await fetch_one(db, _SELECT_TAG, invoice=public_id, tag=canonical)
    return None if row is None else _tag(row, public_id)


async def set_contact(db: Executor, invoice_public_id: str, tag: str, guest_key: str,
                      contact: str) -> PayerTag:
    """The contact a guest leaves for delivery ('Get your purchase by Telegram or e-mail').
    Only the browser holding the tag's guest_key may set it (anyone else: UnknownTag). A
    contact is for the seller and delivery; it proves nothing (see bind_user)."""
    value = canonical_contact(contact)
    public_id = _invoice(invoice_public_id)
    canonical = normalize_tag(tag)
    if canonical is None or not _GUEST_KEY_RE.fullmatch(guest_key or ""):
        raise UnknownTag((tag or "")[:16])
    row = await fetch_one(
        db,
        """
        UPDATE payer_tags t SET contact = :contact FROM invoices i
         WHERE i.id = t.invoice_id AND i.public_id = :invoice AND t.tag = :tag
           AND t.guest_key = :guest
        RETURNING t.*
        """,
        contact=value, invoice=public_id, tag=canonical, guest=guest_key,
    )
    if row is None:
        raise UnknownTag(canonical)
    return _tag(row, public_id)


async def bind_user(db: Executor, invoice_public_id: str, tag: str, user_id: int, *,
                    proof: str | None = None, currency: str = "LIQ",
                    ton_rate: Decimal | None = None) -> PayerTag:
    """A guest proved their Telegram account: they opened the bot through the deep link shown
    only to their browser, which carries the tag and its `proof`. The tag and everything paid
    with it (grants not yet claimed, held excess, credited in `currency` at the invoice's locked
    rate or `ton_rate`) go to that user in one transaction.

    Unknown tag -> UnknownTag; a wrong or missing proof -> ClaimNotFound; a tag bound to another
    user (or this user already holding another tag of the invoice) -> TagTaken; binding twice to
    the same user is a no-op. Nothing changes on any error."""
    public_id = _invoice(invoice_public_id)
    canonical = normalize_tag(tag)
    if canonical is None:
        raise UnknownTag((tag or "")[:16])
    if proof is not None and len(proof) > 64:
        proof = None
    if ton_rate is not None and not (isinstance(ton_rate, Decimal) and ton_rate > 0):
        raise ValueError(f"the TON rate must be a positive Decimal, got {ton_rate!r}")
    row = await fetch_one(
        db, "SELECT * FROM paybot_bind_payer(:invoice, :tag, :user, :proof, :currency, :rate)",
        invoice=public_id, tag=canonical, user=user_id, proof=proof, currency=currency,
        rate=ton_rate,
    )
    assert row is not None
    return _tag(row, public_id)


async def guest_purchase(db: Executor, invoice_public_id: str,
                         guest_key: str) -> GuestPurchase | None:
    """What the browser holding guest_key paid with its own tag, or None when it has no tag.
    Payments made with a bare reference or another tag are never shown here."""
    public_id = parse_invoice_id(re.sub(r"(?i)^\s*inv-", "", invoice_public_id or ""))
    if public_id is None or not _GUEST_KEY_RE.fullmatch(guest_key or ""):
        return None
    row = await fetch_one(
        db,
        """
        SELECT t.*,
               (SELECT coalesce(sum(x.value_nano), 0) FROM ton_transfers x
                 WHERE x.payer_tag_id = t.id AND x.outcome IN ('paid', 'excess', 'partial'))
                   AS received,
               (SELECT count(*) FROM ton_transfers x
                 WHERE x.payer_tag_id = t.id AND x.payment_id IS NOT NULL)
               + (SELECT count(*) FROM rail_payments r  -- by card from this browser
                   WHERE r.payer_tag_id = t.id AND r.payment_id IS NOT NULL) AS payments,
               (SELECT count(*) FROM ton_transfers x
                 WHERE x.payer_tag_id = t.id AND x.outcome = 'partial') AS partials,
               (SELECT bool_and(g.user_id IS NOT NULL) FROM grants g
                 WHERE g.payment_id IN (
                     SELECT x.payment_id FROM ton_transfers x WHERE x.payer_tag_id = t.id
                     UNION ALL
                     SELECT r.payment_id FROM rail_payments r WHERE r.payer_tag_id = t.id))
                   AS claimed
          FROM payer_tags t JOIN invoices i ON i.id = t.invoice_id
         WHERE i.public_id = :invoice AND t.guest_key = :guest
        """,
        invoice=public_id, guest=guest_key,
    )
    if row is None:
        return None
    status = "paid" if row["payments"] else "partial" if row["partials"] else None
    claim = {"claimed": bool(row["claimed"])} if status == "paid" else None
    return GuestPurchase(tag=_tag(row, public_id), status=status,
                         received_nano=int(row["received"]), claim=claim)
