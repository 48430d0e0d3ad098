"""Cards and Telegram Stars: money that arrives through a payment provider.

A card or Stars payment is offered at a **quote** locked when it is offered (the price in the
provider's currency, like an invoice's TON quote); its token travels with the payment (Telegram's
`invoice_payload`, Stripe's `client_reference_id`, YooKassa's `metadata.quote`). Whatever arrives
is recorded once per (rail, reference) in `rail_payments` and then either pays the invoice (through
`settle_external_payment`, the one external settlement), credits a balance (a top-up), or — when
the invoice was paid or closed meanwhile, the amount differs, or nobody knows the quote — is
**held** for a refund, and the operator is told. Refunds are two-phase around the provider's call
(reserve, then complete or fail), so a crash between them loses nothing and refunds nothing twice.

SQL: ledger/sql/rails.sql. Edges: bot/telegram/card_pay.py (Telegram Payments), bot/web/cards*
(Stripe, YooKassa), watchers/stars_reconcile.py (getStarTransactions), `paybot admin rails`.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, Decimal
from typing import Any

import orjson

from ledger.db import Executor, fetch_all, fetch_one
from ledger.errors import InvalidAmount, QuoteNotFound, RailPaymentNotFound
from ledger.money import DECIMALS
from ledger.users import ensure_user

# Minor units per provider currency: ISO 4217 exponents, as Telegram's currencies.json gives them
# (https://core.telegram.org/bots/payments/currencies.json), and Stripe's three-decimal ones.
CURRENCY_EXP: dict[str, int] = {
    "XTR": 0,  # Telegram Stars
    **dict.fromkeys(("JPY", "KRW", "VND", "CLP", "UGX", "PYG", "ISK", "XAF", "XOF", "RWF"), 0),
    **dict.fromkeys(("BHD", "JOD", "KWD", "OMR", "TND"), 3),
    **dict.fromkeys((
        "USD", "EUR", "GBP", "RUB", "UAH", "KZT", "UZS", "BYN", "GEL", "AMD", "AZN", "TRY", "PLN",
        "CZK", "CHF", "SEK", "NOK", "DKK", "HUF", "RON", "BGN", "AED", "SAR", "ILS", "INR", "IDR",
        "THB", "MYR", "SGD", "HKD", "TWD", "CNY", "PHP", "AUD", "NZD", "CAD", "MXN", "BRL", "ARS",
        "COP", "PEN", "ZAR", "EGP", "NGN", "KES", "MDL", "KGS", "TJS", "MNT"), 2),
}
STARS = "XTR"
STARS_MIN, STARS_MAX = 1, 10_000  # Telegram's bounds for one Stars invoice
_CURRENCY_RE = re.compile(r"[A-Z]{3}")
_RAIL_RE = re.compile(r"stars|card:[a-z0-9_]{1,32}")
PURPOSES = ("invoice", "topup", "subscription")
CHANNELS = ("telegram", "web")
HOLD_REASONS = ("unknown_quote", "amount_mismatch", "invoice_paid", "invoice_closed",
                "own_invoice", "subscription_ended")
PRECHECK_REASONS = ("quote_unknown", "quote_expired", "amount_changed", "invoice_paid",
                    "invoice_closed", "own_invoice", "subscription_ended")


def exponent(currency: str) -> int:
    """Minor-unit exponent of a provider currency; InvalidAmount for one we do not take."""
    try:
        return CURRENCY_EXP[currency]
    except KeyError:
        raise InvalidAmount(f"currency {currency!r} is not taken") from None


def check_rail(rail: str) -> str:
    if not _RAIL_RE.fullmatch(rail):
        raise InvalidAmount(f"unknown payment rail {rail!r}")
    return rail


def convert(ledger_minor: int, ledger_currency: str, rate: Decimal, currency: str) -> int:
    """Provider minor units for an amount of the ledger: at `rate` provider units per ledger
    unit, rounded up (the seller never gets less than the invoice asks)."""
    if rate <= 0:
        raise InvalidAmount("the rate must be positive")
    units = Decimal(ledger_minor).scaleb(-DECIMALS[ledger_currency]) * rate
    return int(units.scaleb(exponent(currency)).to_integral_value(ROUND_CEILING))


def format_provider_amount(minor: int, currency: str) -> str:
    """12.50 for 1250 USD cents, 77 for 77 Stars, 1.234 for 1234 KWD fils."""
    places = exponent(currency) if currency in CURRENCY_EXP else 2
    return f"{Decimal(minor).scaleb(-places):.{places}f}"


def new_token() -> str:
    return "q" + secrets.token_urlsafe(16)  # 23 characters, 128 random bits


@dataclass(frozen=True, slots=True)
class RailQuote:
    token: str
    purpose: str
    rail: str
    channel: str
    currency: str
    amount: int  # provider minor units
    ledger_currency: str
    ledger_amount: int
    rate: Decimal
    invoice_public_id: str | None
    subscription_public_id: str | None
    user_id: int | None
    payer_tag: str | None
    provider_ref: str | None
    expires_at: datetime
    created_at: datetime

    @classmethod
    def from_row(cls, r: Any) -> RailQuote:
        return cls(token=r["token"], purpose=r["purpose"], rail=r["rail"], channel=r["channel"],
                   currency=r["currency"], amount=r["amount"],
                   ledger_currency=r["ledger_currency"], ledger_amount=r["ledger_amount"],
                   rate=r["rate"], invoice_public_id=r["invoice_public_id"],
                   subscription_public_id=r["subscription_public_id"], user_id=r["user_id"],
                   payer_tag=r["payer_tag"], provider_ref=r["provider_ref"],
                   expires_at=r["expires_at"], created_at=r["created_at"])


@dataclass(frozen=True, slots=True)
class Precheck:
    ok: bool
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RailSettlement:
    rail_payment_id: int
    outcome: str  # paid | topup | held
    hold_reason: str | None
    replayed: bool
    invoice_public_id: str | None
    invoice_status: str | None
    payment_id: int | None
    grant_id: int | None
    claim_token: str | None
    credited: int | None
    user_id: int | None


@dataclass(frozen=True, slots=True)
class RailRefund:
    id: int
    rail_payment_id: int
    status: str  # pending | done | failed
    amount: int  # provider minor units
    currency: str
    reason: str
    actor_id: int | None
    created_at: datetime
    completed_at: datetime | None
    error: str | None
    rail: str
    reference: str
    payer_telegram_id: int | None

    @classmethod
    def from_row(cls, r: Any) -> RailRefund:
        return cls(id=r["id"], rail_payment_id=r["rail_payment_id"], status=r["status"],
                   amount=r["amount"], currency=r["currency"], reason=r["reason"],
                   actor_id=r["actor_id"], created_at=r["created_at"],
                   completed_at=r["completed_at"], error=r["error"], rail=r["rail"],
                   reference=r["reference"], payer_telegram_id=r["payer_telegram_id"])


@dataclass(frozen=True, slots=True)
class RailPayment:
    id: int
    rail: str
    channel: str
    reference: str
    provider_reference: str | None
    quote_token: str | None
    invoice_public_id: str | None
    payer_id: int | None
    payer_telegram_id: int | None
    currency: str
    amount: int
    ledger_currency: str | None
    ledger_amount: int | None
    outcome: str
    hold_reason: str | None
    payment_id: int | None
    received_at: datetime
    refund: RailRefund | None = None


@dataclass(frozen=True, slots=True)
class StarTx:
    """One entry of getStarTransactions, as plain data (the edge builds it)."""
    id: str
    amount: int
    date: datetime
    incoming: bool
    user_telegram_id: int | None
    invoice_payload: str | None
    subscription_period: int | None = None


@dataclass(slots=True)
class ReconcileReport:
    seen: int = 0
    settled: list[RailSettlement] = field(default_factory=list)
    completed_refunds: int = 0
    mismatches: list[str] = field(default_factory=list)


_QUOTE_COLUMNS = """q.token, q.purpose, q.rail, q.channel, q.currency, q.amount, q.ledger_currency,
    q.ledger_amount, q.rate, i.public_id AS invoice_public_id,
    s.public_id AS subscription_public_id, q.user_id, pt.tag AS payer_tag, q.provider_ref,
    q.expires_at, q.created_at"""
_QUOTE_FROM = """rail_quotes q LEFT JOIN invoices i ON i.id = q.invoice_id
    LEFT JOIN subscriptions s ON s.id = q.subscription_id
    LEFT JOIN payer_tags pt ON pt.id = q.payer_tag_id"""


async def quote_rail(
    db: Executor, *, purpose: str, rail: str, channel: str, currency: str, rate: Decimal,
    invoice: str | None = None, topup_amount: int | None = None, topup_currency: str = "LIQ",
    subscription: str | None = None, user_id: int | None = None, payer_tag: str | None = None,
    ttl_seconds: int = 1800, step: int = 1,
) -> RailQuote:
    """Lock the price of a card or Stars payment (one statement: the invoice is read and checked
    in SQL, so the quote is of the amount due at that moment)."""
    if purpose not in PURPOSES or channel not in CHANNELS:
        raise InvalidAmount(f"unknown purpose or channel {purpose!r}/{channel!r}")
    check_rail(rail)
    if (rail == "stars") != (currency == STARS):
        raise InvalidAmount("Stars are paid in XTR, and XTR only with Stars")
    if rate <= 0 or not 1 <= step <= 1000:
        raise InvalidAmount("the rate must be positive and the step 1 to 1000")
    row = await fetch_one(
        db,
        "SELECT * FROM paybot_rail_quote(:token, :purpose, :rail, :channel, :currency, :exp,"
        " :rate, :invoice, :topup, :topup_currency, :subscription, :user, :tag, :ttl, :step)",
        token=new_token(), purpose=purpose, rail=rail, channel=channel, currency=currency,
        exp=exponent(currency), rate=rate, invoice=invoice, topup=topup_amount,
        topup_currency=topup_currency, subscription=subscription, user=user_id, tag=payer_tag,
        ttl=ttl_seconds, step=step,
    )
    assert row is not None
    quote = await rail_quote(db, row["token"])
    if quote.currency == STARS and not STARS_MIN <= quote.amount <= STARS_MAX:
        raise InvalidAmount(f"{quote.amount} Stars is outside Telegram's 1..10000")
    return quote


async def rail_quote(db: Executor, token: str) -> RailQuote:
    if not token or len(token) > 64:
        raise QuoteNotFound(token[:40])
    row = await fetch_one(db, f"SELECT {_QUOTE_COLUMNS} FROM {_QUOTE_FROM} WHERE q.token = :t",
                          t=token)
    if row is None:
        raise QuoteNotFound(token[:40])
    return RailQuote.from_row(row)


async def rail_quote_by_ref(db: Executor, provider_ref: str) -> RailQuote:
    row = await fetch_one(
        db, f"SELECT {_QUOTE_COLUMNS} FROM {_QUOTE_FROM} WHERE q.provider_ref = :r",
        r=provider_ref[:200])
    if row is None:
        raise QuoteNotFound(provider_ref[:40])
    return RailQuote.from_row(row)


async def attach_provider_ref(db: Executor, token: str, provider_ref: str) -> RailQuote:
    if not provider_ref or len(provider_ref) > 200:
        raise InvalidAmount("a provider reference is 1 to 200 characters")
    await fetch_one(db, "SELECT paybot_rail_quote_ref(:t, :r)", t=token, r=provider_ref)
    return await rail_quote(db, token)


async def open_web_quotes(db: Executor, older_than_seconds: int,
                          limit: int = 100) -> list[RailQuote]:
    rows = await fetch_all(
        db,
        f"""SELECT {_QUOTE_COLUMNS} FROM {_QUOTE_FROM}
             WHERE q.channel = 'web' AND q.provider_ref IS NOT NULL
               AND q.created_at > now() - interval '2 days'
               AND q.created_at <= now() - make_interval(secs => :age)
               AND NOT EXISTS (SELECT 1 FROM rail_payments r WHERE r.quote_id = q.id)
             -- newest first: checkouts abandoned long ago never crowd out a fresh one
             ORDER BY q.id DESC LIMIT :limit""",
        age=older_than_seconds, limit=limit,
    )
    return [RailQuote.from_row(r) for r in rows]


async def precheck_rail(db: Executor, token: str, *, currency: str, amount: int,
                        payer_id: int | None) -> Precheck:
    """Is this quote still payable for exactly this amount? Read-only: Telegram gives the bot
    10 seconds to answer a pre_checkout_query."""
    if not token or len(token) > 64:
        return Precheck(False, "quote_unknown")
    row = await fetch_one(db, "SELECT paybot_rail_precheck(:t, :c, :a, :p) AS reason",
                          t=token, c=currency, a=amount, p=payer_id)
    reason = row["reason"] if row else "quote_unknown"
    return Precheck(reason is None, reason)


async def settle_rail_payment(
    db: Executor, *, rail: str, channel: str, reference: str, provider_reference: str | None,
    token: str | None, currency: str, amount: int, payer_id: int | None,
    details: dict[str, Any], paid_at: datetime | None = None,
) -> RailSettlement:
    """Record money a provider says arrived, once per (rail, reference), and settle it: pay the
    quote's invoice, credit the top-up, or hold it for a refund. Never refuses money."""
    check_rail(rail)
    if channel not in CHANNELS:
        raise InvalidAmount(f"unknown channel {channel!r}")
    if not reference or len(reference) > 200:
        raise InvalidAmount("a payment reference is 1 to 200 characters")
    if not _CURRENCY_RE.fullmatch(currency) or isinstance(amount, bool) or amount <= 0:
        raise InvalidAmount(f"{amount!r} {currency!r} is not an amount")
    row = await fetch_one(
        db,
        "SELECT * FROM paybot_rail_settle(:rail, :channel, :ref, :pref, :token, :currency,"
        " :exp, :amount, :payer, :details, :paid_at, :claim)",
        rail=rail, channel=channel, ref=reference, pref=(provider_reference or None),
        token=(token or "")[:64] or None, currency=currency,
        exp=CURRENCY_EXP.get(currency, 2), amount=amount, payer=payer_id,
        details=orjson.dumps(details).decode(), paid_at=paid_at,
        claim=secrets.token_urlsafe(24),
    )
    assert row is not None
    return RailSettlement(
        rail_payment_id=row["rail_payment_id"], outcome=row["outcome"],
        hold_reason=row["hold_reason"], replayed=row["replayed"],
        invoice_public_id=row["invoice_public_id"], invoice_status=row["invoice_status"],
        payment_id=row["payment_id"], grant_id=row["grant_id"], claim_token=row["claim_token"],
        credited=row["credited"], user_id=row["user_id"],
    )


_PAYMENT_COLUMNS = """r.id, r.rail, r.channel, r.reference, r.provider_reference,
    q.token AS quote_token, i.public_id AS invoice_public_id, r.payer_id,
    u.telegram_id AS payer_telegram_id, r.currency, r.amount, r.ledger_currency,
    r.ledger_amount, r.outcome, r.hold_reason, r.payment_id, r.received_at"""
_PAYMENT_FROM = """rail_payments r LEFT JOIN rail_quotes q ON q.id = r.quote_id
    LEFT JOIN invoices i ON i.id = r.invoice_id LEFT JOIN users u ON u.id = r.payer_id"""
_REFUND_SELECT = """SELECT f.*, r.rail, r.reference, u.telegram_id AS payer_telegram_id
      FROM rail_refunds f JOIN rail_payments r ON r.id = f.rail_payment_id
      LEFT JOIN users u ON u.id = r.payer_id"""


async def _with_refunds(db: Executor, rows: list[Any]) -> list[RailPayment]:
    ids = [r["id"] for r in rows]
    refunds: dict[int, RailRefund] = {}
    if ids:
        # The latest refund of each payment (a failed one may be followed by another).
        for f in await fetch_all(db, f"{_REFUND_SELECT} WHERE f.rail_payment_id = ANY(:ids)"
                                     " ORDER BY f.id", ids=ids):
            refunds[f["rail_payment_id"]] = RailRefund.from_row(f)
    return [RailPayment(**dict(r), refund=refunds.get(r["id"])) for r in rows]


async def rail_payments(db: Executor, *, held_only: bool = False, rail: str | None = None,
                        limit: int = 50) -> list[RailPayment]:
    rows = await fetch_all(
        db,
        f"""SELECT {_PAYMENT_COLUMNS} FROM {_PAYMENT_FROM}
             WHERE (NOT :held OR (r.outcome = 'held' AND NOT EXISTS (
                        SELECT 1 FROM rail_refunds f WHERE f.rail_payment_id = r.id
                           AND f.status IN ('pending', 'done'))))
               AND (CAST(:rail AS text) IS NULL OR r.rail = :rail)
             ORDER BY r.id DESC LIMIT :limit""",
        held=held_only, rail=rail, limit=min(max(limit, 1), 1000),
    )
    return await _with_refunds(db, rows)


async def rail_payment(db: Executor, rail_payment_id: int) -> RailPayment:
    rows = await fetch_all(db, f"SELECT {_PAYMENT_COLUMNS} FROM {_PAYMENT_FROM} WHERE r.id = :id",
                           id=rail_payment_id)
    if not rows:
        raise RailPaymentNotFound(str(rail_payment_id))
    return (await _with_refunds(db, rows))[0]


async def rail_payment_by_reference(db: Executor, rail: str,
                                    reference: str) -> RailPayment | None:
    rows = await fetch_all(
        db, f"SELECT {_PAYMENT_COLUMNS} FROM {_PAYMENT_FROM}"
            " WHERE r.rail = :rail AND r.reference = :ref", rail=rail, ref=reference[:200])
    return (await _with_refunds(db, rows))[0] if rows else None


async def is_recorded(db: Executor, reference: str, channel: str = "telegram") -> bool:
    """Has a payment with this provider reference (any rail) been recorded?"""
    row = await fetch_one(db, "SELECT EXISTS (SELECT 1 FROM rail_payments WHERE reference = :r"
                              " AND channel = :c) AS known", r=reference[:200], c=channel)
    return bool(row and row["known"])


async def rail_payments_of_invoice(db: Executor, public_id: str) -> list[RailPayment]:
    rows = await fetch_all(
        db, f"SELECT {_PAYMENT_COLUMNS} FROM {_PAYMENT_FROM}"
            " WHERE i.public_id = upper(:p) ORDER BY r.id", p=public_id[:40])
    return await _with_refunds(db, rows)


async def _refund(db: Executor, sql: str, **params: Any) -> RailRefund:
    row = await fetch_one(db, sql, **params)
    assert row is not None
    got = await fetch_one(db, f"{_REFUND_SELECT} WHERE f.id = :id", id=row["id"])
    assert got is not None
    return RailRefund.from_row(got)


async def begin_rail_refund(db: Executor, rail_payment_id: int, *, seller_id: int | None,
                            actor_id: int | None, reason: str) -> RailRefund:
    """Reserve a refund before asking the provider (Stars: refundStarPayment)."""
    return await _refund(db, "SELECT (paybot_rail_refund_begin(:p, :s, :a, :r, false)).id",
                         p=rail_payment_id, s=seller_id, a=actor_id, r=_reason(reason))


async def record_rail_refund(db: Executor, rail_payment_id: int, *, actor_id: int | None,
                             reason: str) -> RailRefund:
    """The operator refunded outside paybot (a card, in the provider's dashboard): booked now."""
    return await _refund(db, "SELECT (paybot_rail_refund_begin(:p, NULL, :a, :r, true)).id",
                         p=rail_payment_id, a=actor_id, r=_reason(reason))


async def complete_rail_refund(db: Executor, refund_id: int) -> RailRefund:
    return await _refund(db, "SELECT (paybot_rail_refund_complete(:id)).id", id=refund_id)


async def fail_rail_refund(db: Executor, refund_id: int, error: str) -> RailRefund:
    return await _refund(db, "SELECT (paybot_rail_refund_fail(:id, :e)).id",
                         id=refund_id, e=(error or "failed")[:500])


async def pending_rail_refunds(db: Executor, older_than_seconds: int) -> list[RailRefund]:
    rows = await fetch_all(
        db, f"{_REFUND_SELECT} WHERE f.status = 'pending'"
            " AND f.created_at <= now() - make_interval(secs => :age) ORDER BY f.id LIMIT 100",
        age=older_than_seconds)
    return [RailRefund.from_row(r) for r in rows]


def _reason(reason: str) -> str:
    text = " ".join((reason or "").split())
    if not 1 <= len(text) <= 500:
        raise InvalidAmount("a refund needs a reason of 1 to 500 characters")
    return text


# --- Telegram Stars: reconciliation with getStarTransactions ---------------------------------


async def star_cursor(db: Executor) -> int:
    row = await fetch_one(db, "SELECT position FROM star_cursor")
    return int(row["position"]) if row else 0


async def advance_star_cursor(db: Executor, position: int) -> int:
    """The reconciliation read this many entries; never moves back."""
    row = await fetch_one(
        db, "UPDATE star_cursor SET position = greatest(position, :p) RETURNING position",
        p=max(int(position), 0))
    return int(row["position"]) if row else 0


async def _payer_of(db: Executor, telegram_id: int | None) -> int | None:
    """The payer Telegram names, a user from now on if they never started the bot (a refund
    goes back to them by that id)."""
    if telegram_id is None:
        return None
    return (await ensure_user(db, telegram_id)).id


async def reconcile_star_transactions(db: Executor, txs: list[StarTx]) -> ReconcileReport:
    """Compare Telegram's own list of Stars payments with the ledger: a payment whose update
    was missed is settled now (by the same use case, so once); a refund the provider made
    completes the refund in flight; anything else that differs is told to the operator, once."""
    report = ReconcileReport()
    for tx in txs:
        report.seen += 1
        known = await rail_payment_by_reference(db, "stars", tx.id)
        if tx.incoming:
            if known is None:
                report.settled.append(await settle_rail_payment(
                    db, rail="stars", channel="telegram", reference=tx.id,
                    provider_reference=None, token=tx.invoice_payload, currency=STARS,
                    amount=tx.amount, payer_id=await _payer_of(db, tx.user_telegram_id),
                    details={"source": "getStarTransactions", "date": tx.date.isoformat(),
                             "subscription_period": tx.subscription_period},
                    paid_at=tx.date))
            elif known.amount != tx.amount:
                await _alert(db, report, "amount_differs", tx.id,
                             f"Telegram {tx.amount} XTR, ledger {known.amount} XTR")
            continue
        # Outgoing: a refund (its id is the refunded payment's charge id).
        refund = known.refund if known else None
        if refund is not None and refund.status == "pending":
            await complete_rail_refund(db, refund.id)
            report.completed_refunds += 1
        elif refund is None or refund.status != "done":
            await _alert(db, report, "refund_not_booked", tx.id,
                         f"Telegram refunded {tx.amount} XTR the ledger did not")
    return report


async def _alert(db: Executor, report: ReconcileReport, kind: str, subject: str,
                 detail: str) -> None:
    report.mismatches.append(f"{kind} {subject}: {detail}")
    await fetch_one(db, "SELECT paybot_rail_alert(:k, :s, :d)", k=kind, s=subject[:200],
                    d=detail[:500])


async def stars_received(db: Executor) -> dict[str, int]:
    """For the operator: Stars in (settled and top-ups), held, refunded, in flight."""
    row = await fetch_one(
        db,
        """SELECT coalesce(sum(r.amount) FILTER (WHERE r.outcome <> 'held'), 0) AS settled,
                  coalesce(sum(r.amount) FILTER (WHERE r.outcome = 'held'), 0) AS held,
                  coalesce(sum(f.amount) FILTER (WHERE f.status = 'done'), 0) AS refunded,
                  coalesce(sum(f.amount) FILTER (WHERE f.status = 'pending'), 0) AS refunding,
                  count(r.id) AS payments
             FROM rail_payments r
             LEFT JOIN rail_refunds f ON f.rail_payment_id = r.id AND f.status <> 'failed'
            WHERE r.rail = 'stars'""")
    assert row is not None
    return {k: int(v) for k, v in dict(row).items()}
