"""Every business error of the ledger, in one table.

Each error has a stable machine-readable `code`, a `kind` (what sort of refusal it is: the
edges map kinds, not classes — one small table per edge), an English `message`, and, when a SQL
function raises it, a `sqlstate` of class PB. The same table feeds the SQL side: the raise
helper in ledger/sql/ is generated from it, so a new error is one class here.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any, Final


class Kind(StrEnum):
    """What sort of refusal an error is; each edge answers a kind one way."""

    NOT_FOUND = "not_found"  # no such thing (or not yours: it looks the same)
    CONFLICT = "conflict"  # the thing's state does not allow it (already paid, reused ...)
    GONE = "gone"  # it existed and can no longer be used (cancelled, expired)
    PAYMENT_REQUIRED = "payment_required"  # not enough money
    FORBIDDEN = "forbidden"  # known, but not for this caller
    INVALID = "invalid"  # the input is not acceptable


class LedgerError(Exception):
    """Root of every business error. `code` is stable and machine-readable."""

    code = "ledger_error"
    kind = Kind.INVALID
    message = "The operation could not be completed."
    sqlstate: str | None = None

    def __init__(self, detail: str | None = None, **info: Any) -> None:
        self.detail = detail
        self.info = info
        super().__init__(f"{self.code}: {self.message}" + (f" ({detail})" if detail else ""))

    def public(self) -> LedgerError:
        """The error as told to someone who may not learn more (HTTP clients): itself."""
        return self


class AmountShortfall(LedgerError):
    """An error that says how much was needed and how much there was (minor units)."""

    code = "amount_shortfall"
    kind = Kind.PAYMENT_REQUIRED

    @property
    def needed(self) -> int | None:
        return self.info.get("needed")

    @property
    def available(self) -> int | None:
        return self.info.get("available")


# --- invoices and payments (PB0xx) ----------------------------------------------------------


class InvoiceNotFound(LedgerError):
    code, kind, sqlstate = "invoice_not_found", Kind.NOT_FOUND, "PB001"
    message = "No invoice with this id."


class InvoiceNotPayable(LedgerError):
    code, kind = "invoice_not_payable", Kind.CONFLICT
    message = "This invoice cannot be paid."


class InvoiceAlreadyPaid(InvoiceNotPayable):
    code, kind, sqlstate = "invoice_already_paid", Kind.CONFLICT, "PB002"
    message = "This invoice has already been paid."


class InvoiceCancelled(InvoiceNotPayable):
    code, kind, sqlstate = "invoice_cancelled", Kind.GONE, "PB003"
    message = "This invoice was cancelled by the seller."


class InvoiceExpired(InvoiceNotPayable):
    code, kind, sqlstate = "invoice_expired", Kind.GONE, "PB004"
    message = "This invoice has expired."


class OwnInvoice(LedgerError):
    code, kind, sqlstate = "own_invoice", Kind.FORBIDDEN, "PB005"
    message = "You cannot pay your own invoice."


class InsufficientFunds(AmountShortfall):
    code, sqlstate = "insufficient_funds", "PB006"
    message = "Not enough money on the balance."


class IdempotencyKeyReused(LedgerError):
    code, kind, sqlstate = "idempotency_key_reused", Kind.INVALID, "PB007"
    message = "This idempotency key was already used for a different request."


class UserNotFound(LedgerError):
    code, kind, sqlstate = "user_not_found", Kind.NOT_FOUND, "PB008"
    message = "No such user."


class InvalidAmount(LedgerError):
    code, kind, sqlstate = "invalid_amount", Kind.INVALID, "PB009"
    message = "The amount is not valid."


class NotInvoiceSeller(LedgerError):
    code, kind, sqlstate = "not_invoice_seller", Kind.NOT_FOUND, "PB010"
    message = "Only the seller can do this with the invoice."

    def public(self) -> LedgerError:
        # Another seller's invoice looks exactly like a missing one.
        return InvoiceNotFound(self.detail)


class ReferenceReused(LedgerError):
    code, kind, sqlstate = "reference_reused", Kind.CONFLICT, "PB011"
    message = "This external reference already settled a different invoice."


class ClaimNotFound(LedgerError):
    code, kind, sqlstate = "claim_not_found", Kind.NOT_FOUND, "PB012"
    message = "This claim link is not valid."


class ClaimAlreadyUsed(LedgerError):
    code, kind, sqlstate = "claim_already_used", Kind.CONFLICT, "PB013"
    message = "This item was already claimed by someone else."


class ProrationUnfunded(LedgerError):
    code, kind, sqlstate = "proration_unfunded", Kind.CONFLICT, "PB025"
    message = ("The seller's balance cannot return the unused part of this period now: "
               "change the plan when the period ends, or ask the seller.")


class ClaimRevoked(LedgerError):
    code, kind, sqlstate = "claim_revoked", Kind.GONE, "PB024"
    message = "This purchase was refunded: there is nothing to claim."


class InvalidInvoice(LedgerError):
    code, kind = "invalid_invoice", Kind.INVALID
    message = "The invoice data is not valid."


# --- invoices as documents: lifecycle and manual payments (PB014-PB029) --------------------


class InvoiceDraft(InvoiceNotPayable):
    code, kind, sqlstate = "invoice_draft", Kind.CONFLICT, "PB014"
    message = "This invoice is a draft: the seller has not issued it yet."


class InvoiceVoid(InvoiceNotPayable):
    code, kind, sqlstate = "invoice_void", Kind.GONE, "PB015"
    message = "This invoice was voided by the seller."


class InvoiceUncollectible(InvoiceNotPayable):
    code, kind, sqlstate = "invoice_uncollectible", Kind.GONE, "PB016"
    message = "This invoice was written off by the seller."


class InvoiceNotDraft(LedgerError):
    code, kind, sqlstate = "invoice_not_draft", Kind.CONFLICT, "PB017"
    message = "Only a draft invoice can be changed; this one is already issued."


class InvoicePartlyPaid(LedgerError):
    code, kind, sqlstate = "invoice_partly_paid", Kind.CONFLICT, "PB018"
    message = ("Money was already recorded for this invoice: reverse those payments first, "
               "or mark it uncollectible.")


class ManualPaymentTooLarge(AmountShortfall):
    code, kind, sqlstate = "manual_payment_too_large", Kind.CONFLICT, "PB019"
    message = "The payment is larger than the amount due on this invoice."


class PaymentNotReversible(LedgerError):
    code, kind, sqlstate = "payment_not_reversible", Kind.CONFLICT, "PB020"
    message = "Only a manual payment can be reversed here."


class RecipientNotFound(LedgerError):
    code, kind, sqlstate = "recipient_not_found", Kind.NOT_FOUND, "PB021"
    message = ("This Telegram user has not started the bot yet: send them the invoice link "
               "instead.")


class PaymentNotFound(LedgerError):
    code, kind, sqlstate = "payment_not_found", Kind.NOT_FOUND, "PB022"
    message = "No such payment on your invoices."


class ManualPaymentMultiUse(LedgerError):
    code, kind, sqlstate = "manual_payment_multi_use", Kind.INVALID, "PB023"
    message = "Manual payments are recorded on one-time invoices only."


class InvalidSettings(LedgerError):
    code, kind = "invalid_settings", Kind.INVALID
    message = "These settings are not valid."


# --- subscriptions (PB030-PB049) ------------------------------------------------------------


class PlanNotFound(LedgerError):
    code, kind, sqlstate = "plan_not_found", Kind.NOT_FOUND, "PB030"
    message = "No such plan (or it is no longer offered)."


class InvalidPlan(LedgerError):
    code, kind, sqlstate = "invalid_plan", Kind.INVALID, "PB031"
    message = "The plan is not valid."


class AlreadySubscribed(LedgerError):
    code, kind, sqlstate = "already_subscribed", Kind.CONFLICT, "PB032"
    message = "You already have a subscription to this plan."


class PeriodNotOffered(LedgerError):
    code, kind, sqlstate = "period_not_offered", Kind.INVALID, "PB033"
    message = "This plan does not offer that period."


class SubscriptionNotFound(LedgerError):
    code, kind, sqlstate = "subscription_not_found", Kind.NOT_FOUND, "PB034"
    message = "No such subscription."


class SubscriptionEnded(LedgerError):
    code, kind, sqlstate = "subscription_ended", Kind.GONE, "PB035"
    message = "This subscription has ended."


class SamePlan(LedgerError):
    code, kind, sqlstate = "same_plan", Kind.CONFLICT, "PB036"
    message = "The subscription is already on this plan and period."


class SubscriptionNotCurrent(LedgerError):
    code, kind, sqlstate = "subscription_not_current", Kind.CONFLICT, "PB038"
    message = "Pay what is due on this subscription first, then change it."


class OwnPlan(LedgerError):
    code, kind, sqlstate = "own_plan", Kind.FORBIDDEN, "PB037"
    message = "You cannot subscribe to your own plan."


# --- cards and Telegram Stars (PB04x) ----------------------------------------------------------


class QuoteNotFound(LedgerError):
    code, kind, sqlstate = "quote_not_found", Kind.NOT_FOUND, "PB040"
    message = "This card or Stars payment offer is unknown."


class RailPaymentNotFound(LedgerError):
    code, kind, sqlstate = "rail_payment_not_found", Kind.NOT_FOUND, "PB041"
    message = "No such card or Stars payment."


class RefundNotSupported(LedgerError):
    code, kind, sqlstate = "refund_not_supported", Kind.CONFLICT, "PB042"
    message = ("A card payment is refunded in the payment provider's dashboard; the operator "
               "then records it.")


class AlreadyRefunded(LedgerError):
    code, kind, sqlstate = "already_refunded", Kind.CONFLICT, "PB043"
    message = "This payment has already been refunded (or its refund is under way)."


class RefundNotPending(LedgerError):
    code, kind, sqlstate = "refund_not_pending", Kind.CONFLICT, "PB044"
    message = "This refund is already finished."


class ImmutableRecord(LedgerError):
    code, kind, sqlstate = "immutable_record", Kind.CONFLICT, "PB900"
    message = "Money records cannot be changed or deleted."


# --- chain transfers (PB1xx) ----------------------------------------------------------------


class BelowCursor(LedgerError):
    code, kind, sqlstate = "below_cursor", Kind.CONFLICT, "PB101"
    message = "This transaction is at or before the chain cursor but was never settled."


class TransferNotFound(LedgerError):
    code, kind, sqlstate = "transfer_not_found", Kind.NOT_FOUND, "PB110"
    message = "No incoming transfer with this transaction hash."


class NothingHeld(LedgerError):
    code, kind, sqlstate = "nothing_held", Kind.CONFLICT, "PB111"
    message = "Nothing is held for this transfer (settled, ignored, or already resolved)."


class InvoiceNotTon(LedgerError):
    code, kind, sqlstate = "invoice_not_ton", Kind.INVALID, "PB112"
    message = "This invoice has no TON price."


class NotEnoughForInvoice(AmountShortfall):
    code, sqlstate = "not_enough_for_invoice", "PB113"
    message = "The held amount does not cover the invoice's TON price."


class HoldOfInvoice(LedgerError):
    code, kind, sqlstate = "hold_of_invoice", Kind.CONFLICT, "PB114"
    message = "This partial payment already counts toward that invoice."


class InvalidResolution(LedgerError):
    code, kind = "invalid_resolution", Kind.INVALID
    message = "Choose exactly one of: apply to an invoice, credit a user, or record a refund."


class InvalidContact(LedgerError):
    code, kind = "invalid_contact", Kind.INVALID
    message = "Leave a valid email address or Telegram username."


# --- payers (PB12x) -------------------------------------------------------------------------


class UnknownTag(LedgerError):
    code, kind, sqlstate = "unknown_tag", Kind.NOT_FOUND, "PB120"
    message = "This payment reference is not known for this invoice."


class TagTaken(LedgerError):
    code, kind, sqlstate = "tag_taken", Kind.CONFLICT, "PB121"
    message = "This purchase is already bound to another Telegram account."


class InvalidGuestKey(LedgerError):
    code, kind = "invalid_guest_key", Kind.FORBIDDEN
    message = "This browser's session is not valid; reload the page."


# --- sellers --------------------------------------------------------------------------------

MAX_ACTIVE_TOKENS: Final = 20


class InvalidWebhookUrl(LedgerError):
    code, kind = "invalid_webhook_url", Kind.INVALID
    message = "The webhook URL is not valid."


class TooManyTokens(LedgerError):
    code, kind = "too_many_tokens", Kind.CONFLICT
    message = f"A seller may hold at most {MAX_ACTIVE_TOKENS} active API tokens; revoke one."


class InvalidCursor(LedgerError):
    code, kind = "invalid_cursor", Kind.INVALID
    message = "The cursor is not a next_cursor of one of your earlier pages."


# --- payouts: refunds and withdrawals sent by the hot wallet (PB05x) -------------------------


class PayoutNotFound(LedgerError):
    code, kind, sqlstate = "payout_not_found", Kind.NOT_FOUND, "PB050"
    message = "No such payout."


class PayoutNotPending(LedgerError):
    code, kind, sqlstate = "payout_not_pending", Kind.CONFLICT, "PB051"
    message = "This payout is no longer waiting for approval."


class WithdrawalLimit(AmountShortfall):
    code, kind, sqlstate = "withdrawal_limit", Kind.CONFLICT, "PB052"
    message = "This is more than you may withdraw today."


class InvalidAddress(LedgerError):
    code, kind, sqlstate = "invalid_address", Kind.INVALID, "PB053"
    message = "This is not a valid TON address."


class WrongNetwork(LedgerError):
    code, kind, sqlstate = "wrong_network", Kind.INVALID, "PB054"
    message = "This address is for the other TON network (testnet vs mainnet)."


class OwnAddress(LedgerError):
    code, kind, sqlstate = "own_address", Kind.INVALID, "PB055"
    message = "This address belongs to paybot itself: give your own wallet's address."


class UnsupportedAsset(LedgerError):
    code, kind, sqlstate = "unsupported_asset", Kind.INVALID, "PB056"
    message = "Payouts are sent in TON or USDT only."


class PayoutStateChanged(LedgerError):
    code, kind, sqlstate = "payout_state_changed", Kind.CONFLICT, "PB057"
    message = "This payout has moved on since it was read."


class NoRefundSource(LedgerError):
    code, kind, sqlstate = "no_refund_source", Kind.CONFLICT, "PB058"
    message = "This transfer has no sender to send the money back to."


# --- the table ------------------------------------------------------------------------------


def _all(cls: type[LedgerError]) -> list[type[LedgerError]]:
    return [cls] + [c for sub in cls.__subclasses__() for c in _all(sub)]


ERRORS: Final[tuple[type[LedgerError], ...]] = tuple(_all(LedgerError))
BY_CODE: Final[dict[str, type[LedgerError]]] = {
    cls.code: cls for cls in reversed(ERRORS)}  # a code's first (most general) class wins
BY_SQLSTATE: Final[dict[str, type[LedgerError]]] = {
    cls.sqlstate: cls for cls in ERRORS if cls.sqlstate}


def from_db_error(exc: BaseException) -> LedgerError | None:
    """The typed error for a PB-class database error, or None for anything else."""
    orig = getattr(exc, "orig", exc)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    cls = BY_SQLSTATE.get(sqlstate or "")
    if cls is None:
        return None
    # asyncpg keeps the DETAIL on the original exception (SQLAlchemy wraps it in __cause__).
    raw = getattr(orig, "__cause__", None) or orig
    detail = getattr(raw, "detail", None)
    info: dict[str, Any] = {}
    if detail and detail.startswith("{"):
        info = json.loads(detail)
    return cls(detail, **info)


def from_code(code: str, detail: str | None) -> LedgerError:
    """The typed error for an error code returned (not raised) by a batch function."""
    info: dict[str, Any] = json.loads(detail) if detail and detail.startswith("{") else {}
    return BY_CODE.get(code, LedgerError)(detail, **info)
