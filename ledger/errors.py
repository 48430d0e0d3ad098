"""Typed ledger errors. The SQL functions raise SQLSTATE class PB; edges map these to
messages (bot) or 4xx codes (HTTP)."""

from __future__ import annotations

import json
from typing import Any


class LedgerError(Exception):
    """Root of every business error. `code` is stable and machine-readable."""

    code = "ledger_error"
    message = "The operation could not be completed."

    def __init__(self, detail: str | None = None, **info: Any) -> None:
        self.detail = detail
        self.info = info
        super().__init__(f"{self.code}: {self.message}" + (f" ({detail})" if detail else ""))


class InvoiceNotFound(LedgerError):
    code = "invoice_not_found"
    message = "No invoice with this id."


class InvoiceNotPayable(LedgerError):
    code = "invoice_not_payable"
    message = "This invoice cannot be paid."


class InvoiceAlreadyPaid(InvoiceNotPayable):
    code = "invoice_already_paid"
    message = "This invoice has already been paid."


class InvoiceCancelled(InvoiceNotPayable):
    code = "invoice_cancelled"
    message = "This invoice was cancelled by the seller."


class InvoiceExpired(InvoiceNotPayable):
    code = "invoice_expired"
    message = "This invoice has expired."


class OwnInvoice(LedgerError):
    code = "own_invoice"
    message = "You cannot pay your own invoice."


class AmountShortfall(LedgerError):
    """An error that says how much was needed and how much there was (minor units)."""

    @property
    def needed(self) -> int | None:
        return self.info.get("needed")

    @property
    def available(self) -> int | None:
        return self.info.get("available")


class InsufficientFunds(AmountShortfall):
    code = "insufficient_funds"
    message = "Not enough money on the balance."


class IdempotencyKeyReused(LedgerError):
    code = "idempotency_key_reused"
    message = "This idempotency key was already used for a different request."


class UserNotFound(LedgerError):
    code = "user_not_found"
    message = "No such user."


class InvalidAmount(LedgerError):
    code = "invalid_amount"
    message = "The amount is not valid."


class NotInvoiceSeller(LedgerError):
    code = "not_invoice_seller"
    message = "Only the seller can do this with the invoice."


class ReferenceReused(LedgerError):
    code = "reference_reused"
    message = "This external reference already settled a different invoice."


class InvalidInvoice(LedgerError):
    code = "invalid_invoice"
    message = "The invoice data is not valid."


class ClaimNotFound(LedgerError):
    code = "claim_not_found"
    message = "This claim link is not valid."


class ClaimAlreadyUsed(LedgerError):
    code = "claim_already_used"
    message = "This item was already claimed by someone else."


class ImmutableRecord(LedgerError):
    code = "immutable_record"
    message = "Money records cannot be changed or deleted."


_BY_SQLSTATE: dict[str, type[LedgerError]] = {
    "PB001": InvoiceNotFound,
    "PB002": InvoiceAlreadyPaid,
    "PB003": InvoiceCancelled,
    "PB004": InvoiceExpired,
    "PB005": OwnInvoice,
    "PB006": InsufficientFunds,
    "PB007": IdempotencyKeyReused,
    "PB008": UserNotFound,
    "PB009": InvalidAmount,
    "PB010": NotInvoiceSeller,
    "PB011": ReferenceReused,
    "PB012": ClaimNotFound,
    "PB013": ClaimAlreadyUsed,
    "PB900": ImmutableRecord,
}


def register_sqlstates(codes: dict[str, type[LedgerError]]) -> None:
    """Let a ledger module map its own PB-class SQLSTATEs (e.g. the TON watcher's PB1xx)."""
    _BY_SQLSTATE.update(codes)
    _BY_CODE.update({cls.code: cls for cls in codes.values()})


def from_db_error(exc: BaseException) -> LedgerError | None:
    """The typed error for a PB-class database error, or None for anything else."""
    orig = getattr(exc, "orig", exc)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    cls = _BY_SQLSTATE.get(sqlstate or "")
    if cls is None:
        return None
    # asyncpg keeps the DETAIL on the original exception (SQLAlchemy wraps it in __cause__).
    raw = getattr(orig, "__cause__", None) or orig
    detail = getattr(raw, "detail", None)
    info: dict[str, Any] = {}
    if detail and detail.startswith("{"):
        info = json.loads(detail)
    return cls(detail, **info)


_BY_CODE: dict[str, type[LedgerError]] = {cls.code: cls for cls in _BY_SQLSTATE.values()}


def from_code(code: str, detail: str | None) -> LedgerError:
    """The typed error for an error code returned (not raised) by a batch function."""
    info: dict[str, Any] = json.loads(detail) if detail and detail.startswith("{") else {}
    return _BY_CODE.get(code, LedgerError)(detail, **info)
