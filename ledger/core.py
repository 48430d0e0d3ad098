"""The ledger as every edge calls it: one `Ledger` per process, built at the composition root
(bot/app.py) and handed to the bot, the pay pages and Mini App, the seller API and delivery.

It owns the engine, the batchers that let concurrent requests share one database call
(ledger/coalesce.py: payments, invoice issuing, invoice reads, delivery marks) and the one
invoice cache. Each method is one use case and one transaction; the same SQL functions also
run as plain functions inside a caller's transaction (ledger/payments.py, ledger/invoices.py).

After commit, one hook: a notice or callback queued by any path wakes delivery at once.
Every outbox insert NOTIFYs on commit (ledger/sql/outbox.sql; heard by watchers/wakeup.py in
whatever process delivers) — except on the two hot paths, balance payments made here and the
TON watcher's settlements, whose commits must not be serialized by NOTIFY's lock: after each
of those the caller calls `after_commit`, which the composition root points at the same
wake-up.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from time import perf_counter
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import (
    lifecycle,
    manual_payments,
    plans,
    rails,
    seller_settings,
    subscriptions,
    transfers,
)
from ledger import payouts as payout_orders
from ledger.batcher import PaymentBatcher
from ledger.errors import InvalidAmount, InvoiceNotFound
from ledger.invoice_batches import InvoiceCreator
from ledger.invoice_reads import InvoiceRead, InvoiceReader, RecentInvoices
from ledger.invoices import NewInvoice, cancel_invoice
from ledger.lifecycle import SentInvoice
from ledger.manual_payments import InvoicePayment, ManualPayment
from ledger.models import Invoice, PaymentResult
from ledger.outbox import DeliveredMarks
from ledger.payments import IDEMPOTENCY_KEY_MAX, canonical_invoice_id
from ledger.plans import Plan
from ledger.rails import (
    Precheck,
    RailPayment,
    RailQuote,
    RailRefund,
    RailSettlement,
    ReconcileReport,
    StarTx,
)
from ledger.seller_settings import SellerSettings
from ledger.subscriptions import (
    DEFAULT_GRACE,
    PlanChange,
    RenewalReport,
    Subscribed,
    Subscription,
)


class Ledger:
    def __init__(self, engine: AsyncEngine, *, invoice_cache_seconds: float = 0.0,
                 after_commit: Callable[[], None] | None = None,
                 subscription_grace: timedelta = DEFAULT_GRACE,
                 observe: Callable[[str, float], None] | None = None) -> None:
        self.engine = engine
        # (kind, seconds) of each payment use case that succeeded: the composition root points
        # it at the latency histogram of /metrics (bot/metrics.py); the ledger knows no edge.
        self.observe = observe
        self.subscription_grace = subscription_grace  # past due this long, then it ends
        self.after_commit = after_commit  # wakes delivery; set by the composition root
        self._payments = PaymentBatcher(engine)
        self._issuing = InvoiceCreator(engine)
        self._reads = InvoiceReader(engine)
        self._delivered = DeliveredMarks(engine)
        self.recent = RecentInvoices(self._reads, invoice_cache_seconds)

    # --- reads ------------------------------------------------------------------------------

    async def invoice(self, public_id: str) -> InvoiceRead:
        """The invoice and its seller, read now (shared with concurrent reads)."""
        return await self._reads.read(public_id)

    async def shown_invoice(self, public_id: str) -> InvoiceRead:
        """The invoice and its seller for display: at most the cache's age old."""
        return await self.recent.get(public_id)

    async def seller_invoice(self, seller_id: int, public_id: str) -> Invoice:
        """One of the seller's invoices; another seller's looks exactly like a missing one."""
        invoice = (await self._reads.read(public_id)).invoice
        if invoice.seller_id != seller_id:
            raise InvoiceNotFound(public_id[:40])
        return invoice

    def _observe(self, kind: str, started: float) -> None:
        if self.observe is not None:
            self.observe(kind, perf_counter() - started)

    # --- use cases --------------------------------------------------------------------------

    async def pay_from_balance(self, public_id: str, buyer_id: int,
                               idempotency_key: str | None) -> PaymentResult:
        """The buyer's balance pays the invoice: debit, credit, mark, grant, notices — all or
        nothing, once per key (the same key again returns the first outcome). The bot's
        confirmation and the Mini App's Pay button both come here. The result carries the
        invoice as the payment left it: nothing is read after the money moved, so nothing
        can turn the answer into a failure."""
        if idempotency_key is not None and not 0 < len(idempotency_key) <= IDEMPOTENCY_KEY_MAX:
            raise InvalidAmount("the idempotency key must be 1 to 200 characters")
        canonical = canonical_invoice_id(public_id)
        started = perf_counter()
        result = await self._payments.pay(canonical, buyer_id, idempotency_key)
        self._observe("balance", started)
        self.recent.forget(canonical)
        if not result.replayed and self.after_commit is not None:
            self.after_commit()  # the payment's notices and callback are queued: deliver now
        return result

    async def issue_invoice(self, request: NewInvoice) -> tuple[Invoice, bool]:
        """Write a checked invoice: (invoice, replayed). With an idempotency key, at most once
        per (seller, key); the same key with another request is IdempotencyKeyReused."""
        return await self._issuing.submit(request)

    async def cancel_invoice(self, public_id: str, seller_id: int) -> Invoice:
        invoice = await cancel_invoice(self.engine, public_id, seller_id)
        self.recent.forget(invoice.public_id)
        return invoice

    # --- invoices as documents (ledger/lifecycle.py, ledger/manual_payments.py) ---------------

    def _changed(self, invoice: Invoice) -> Invoice:
        self.recent.forget(invoice.public_id)
        return invoice

    async def update_draft(self, seller_id: int, public_id: str,
                           request: NewInvoice) -> Invoice:
        """PUT: replace a draft (InvoiceNotDraft once issued)."""
        return self._changed(await lifecycle.update_draft(self.engine, seller_id, public_id,
                                                          request))

    async def finalize_invoice(self, seller_id: int, public_id: str,
                               ton_rate: Decimal | None = None) -> Invoice:
        """Issue a draft: numbered, amounts and TON quote frozen, the link live."""
        return self._changed(await lifecycle.finalize_invoice(self.engine, seller_id,
                                                              public_id, ton_rate))

    async def void_invoice(self, seller_id: int | None, public_id: str,
                           reason: str | None = None) -> Invoice:
        return self._changed(await lifecycle.void_invoice(self.engine, seller_id, public_id,
                                                          reason))

    async def mark_uncollectible(self, seller_id: int | None, public_id: str,
                                 reason: str | None = None) -> Invoice:
        return self._changed(await lifecycle.mark_uncollectible(self.engine, seller_id,
                                                                public_id, reason))

    async def send_invoice(self, seller_id: int, public_id: str, to: int | str | None,
                           ton_rate: Decimal | None = None) -> SentInvoice:
        """To a Telegram user who started the bot (id or @username), or None: as a link."""
        sent = await lifecycle.send_invoice(self.engine, seller_id, public_id, to, ton_rate)
        self._changed(sent.invoice)
        return sent

    async def mark_viewed(self, public_id: str, viewer_user_id: int | None) -> bool:
        """The first view by someone other than the seller (callers skip it once
        `invoice.viewed_at` is set: it costs a write only the first time)."""
        first = await lifecycle.mark_viewed(self.engine, public_id, viewer_user_id)
        if first:
            self.recent.forget(public_id.upper())
        return first

    async def stop_reminders(self, public_id: str, user_id: int) -> Invoice:
        return self._changed(await lifecycle.stop_reminders(self.engine, public_id, user_id))

    async def record_manual_payment(
        self, public_id: str, *, seller_id: int | None, amount: int, received_on: date,
        reference: str, note: str | None = None, recorded_by: int | None = None,
    ) -> ManualPayment:
        """Money received outside paybot (seller_id None: the operator)."""
        started = perf_counter()
        result = await manual_payments.record_manual_payment(
            self.engine, public_id, seller_id=seller_id, amount=amount,
            received_on=received_on, reference=reference, note=note, recorded_by=recorded_by)
        self._observe("manual", started)
        self._changed(result.invoice)
        return result

    async def reverse_manual_payment(self, payment_id: int, *, seller_id: int | None,
                                     reason: str, reversed_by: int | None = None) -> Invoice:
        return self._changed(await manual_payments.reverse_manual_payment(
            self.engine, payment_id, seller_id=seller_id, reason=reason,
            reversed_by=reversed_by))

    async def payments_of_invoice(self, public_id: str,
                                  seller_id: int | None) -> list[InvoicePayment]:
        return await manual_payments.payments_of_invoice(self.engine, public_id, seller_id)

    # --- jettons (ledger/transfers.py) --------------------------------------------------------

    async def jetton_wallet(self, master: str, owner: str) -> str | None:
        return await transfers.jetton_wallet(self.engine, master, owner)

    async def remember_jetton_wallet(self, symbol: str, master: str, owner: str,
                                     wallet: str) -> str:
        return await transfers.remember_jetton_wallet(self.engine, symbol, master, owner, wallet)

    # --- cards and Telegram Stars (ledger/rails.py) ------------------------------------------

    async def quote_rail(self, **request: Any) -> RailQuote:
        """Lock the price of a card or Stars payment (see rails.quote_rail for the fields)."""
        return await rails.quote_rail(self.engine, **request)

    async def rail_quote(self, token: str) -> RailQuote:
        return await rails.rail_quote(self.engine, token)

    async def rail_quote_by_ref(self, provider_ref: str) -> RailQuote:
        return await rails.rail_quote_by_ref(self.engine, provider_ref)

    async def attach_provider_ref(self, token: str, provider_ref: str) -> RailQuote:
        return await rails.attach_provider_ref(self.engine, token, provider_ref)

    async def open_web_quotes(self, older_than_seconds: int, limit: int = 100) -> list[RailQuote]:
        return await rails.open_web_quotes(self.engine, older_than_seconds, limit)

    async def precheck_rail(self, token: str, *, currency: str, amount: int,
                            payer_id: int | None) -> Precheck:
        return await rails.precheck_rail(self.engine, token, currency=currency, amount=amount,
                                         payer_id=payer_id)

    async def settle_rail_payment(self, **payment: Any) -> RailSettlement:
        """Money a provider reports: paid, credited or held, once per (rail, reference)."""
        started = perf_counter()
        result = await rails.settle_rail_payment(self.engine, **payment)
        self._observe(str(payment.get("rail", "rail")), started)
        if result.invoice_public_id:
            self.recent.forget(result.invoice_public_id)
        return result

    async def rail_payments(self, *, held_only: bool = False, rail: str | None = None,
                            limit: int = 50) -> list[RailPayment]:
        return await rails.rail_payments(self.engine, held_only=held_only, rail=rail,
                                         limit=limit)

    async def rail_payment(self, rail_payment_id: int) -> RailPayment:
        return await rails.rail_payment(self.engine, rail_payment_id)

    async def rail_payment_by_reference(self, rail: str, reference: str) -> RailPayment | None:
        return await rails.rail_payment_by_reference(self.engine, rail, reference)

    async def is_rail_payment_recorded(self, reference: str, channel: str = "telegram") -> bool:
        return await rails.is_recorded(self.engine, reference, channel)

    async def rail_payments_of_invoice(self, public_id: str) -> list[RailPayment]:
        return await rails.rail_payments_of_invoice(self.engine, public_id)

    async def begin_rail_refund(self, rail_payment_id: int, *, seller_id: int | None,
                                actor_id: int | None, reason: str) -> RailRefund:
        return await rails.begin_rail_refund(self.engine, rail_payment_id, seller_id=seller_id,
                                             actor_id=actor_id, reason=reason)

    async def complete_rail_refund(self, refund_id: int) -> RailRefund:
        refund = await rails.complete_rail_refund(self.engine, refund_id)
        await self._forget_payment_invoice(refund.rail_payment_id)
        return refund

    async def fail_rail_refund(self, refund_id: int, error: str) -> RailRefund:
        return await rails.fail_rail_refund(self.engine, refund_id, error)

    async def record_rail_refund(self, rail_payment_id: int, *, actor_id: int | None,
                                 reason: str) -> RailRefund:
        refund = await rails.record_rail_refund(self.engine, rail_payment_id,
                                                actor_id=actor_id, reason=reason)
        await self._forget_payment_invoice(rail_payment_id)
        return refund

    async def pending_rail_refunds(self, older_than_seconds: int) -> list[RailRefund]:
        return await rails.pending_rail_refunds(self.engine, older_than_seconds)

    async def reconcile_star_transactions(self, txs: list[StarTx]) -> ReconcileReport:
        report = await rails.reconcile_star_transactions(self.engine, txs)
        for settled in report.settled:
            if settled.invoice_public_id:
                self.recent.forget(settled.invoice_public_id)
        return report

    async def star_cursor(self) -> int:
        return await rails.star_cursor(self.engine)

    async def advance_star_cursor(self, position: int) -> int:
        return await rails.advance_star_cursor(self.engine, position)

    async def stars_received(self) -> dict[str, int]:
        return await rails.stars_received(self.engine)

    async def _forget_payment_invoice(self, rail_payment_id: int) -> None:
        payment = await rails.rail_payment(self.engine, rail_payment_id)
        if payment.invoice_public_id:
            self.recent.forget(payment.invoice_public_id)

    async def seller_settings(self, seller_id: int) -> SellerSettings:
        return await seller_settings.get_seller_settings(self.engine, seller_id)

    async def save_seller_settings(self, seller_id: int, **changes: Any) -> SellerSettings:
        return await seller_settings.save_seller_settings(self.engine, seller_id, **changes)

    async def set_logo(self, seller_id: int, data: bytes | None) -> SellerSettings:
        return await seller_settings.set_logo(self.engine, seller_id, data)

    # --- subscriptions (ledger/plans.py, ledger/subscriptions.py) -----------------------------

    async def create_plan(self, seller_id: int, name: str, prices: dict[int, int], *,
                          currency: str = "LIQ", trial_days: int = 0,
                          item_id: str | None = None, achievement_id: str | None = None,
                          channel_chat_id: int | None = None,
                          channel_title: str | None = None) -> Plan:
        """A plan; a channel must already be checked by the edge (the bot is its admin)."""
        return await plans.create_plan(
            self.engine, seller_id=seller_id, name=name, prices=prices, currency=currency,
            trial_days=trial_days, item_id=item_id, achievement_id=achievement_id,
            channel_chat_id=channel_chat_id, channel_title=channel_title)

    async def plan(self, public_id: str) -> Plan:
        return await plans.get_plan(self.engine, public_id)

    async def plans_of_seller(self, seller_id: int) -> list[Plan]:
        return await plans.plans_of_seller(self.engine, seller_id)

    async def archive_plan(self, seller_id: int, public_id: str) -> Plan:
        return await plans.archive_plan(self.engine, seller_id, public_id)

    async def subscribe(self, plan_public_id: str, subscriber_id: int, months: int, *,
                        ton_rate: Decimal | None = None) -> Subscribed:
        """Subscribe: a trial starts at once; otherwise the first period's invoice is to pay
        (any way an invoice is paid), and paying it activates the subscription."""
        return await subscriptions.subscribe(self.engine, plan_public_id, subscriber_id,
                                             months, ton_rate=ton_rate,
                                             grace=self.subscription_grace)

    async def subscription(self, public_id: str) -> Subscription:
        return await subscriptions.get_subscription(self.engine, public_id)

    async def subscriptions_of_user(self, user_id: int) -> list[Subscription]:
        return await subscriptions.subscriptions_of_user(self.engine, user_id)

    async def subscriptions_of_seller(self, seller_id: int, *, subscriber_id: int | None = None,
                                      status: str | None = None) -> list[Subscription]:
        return await subscriptions.subscriptions_of_seller(
            self.engine, seller_id, subscriber_id=subscriber_id, status=status)

    async def has_access(self, plan_public_id: str, user_id: int,
                         now: datetime | None = None) -> Subscription | None:
        return await subscriptions.has_access(self.engine, plan_public_id, user_id, now)

    async def cancel_subscription(self, public_id: str, *, actor_id: int | None,
                                  at_period_end: bool, reason: str | None = None
                                  ) -> Subscription:
        return await subscriptions.cancel_subscription(
            self.engine, public_id, actor_id=actor_id, at_period_end=at_period_end,
            reason=reason)

    async def change_plan(self, public_id: str, subscriber_id: int, plan_public_id: str,
                          months: int, *, ton_rate: Decimal | None = None) -> PlanChange:
        change = await subscriptions.change_plan(self.engine, public_id, subscriber_id,
                                                 plan_public_id, months, ton_rate=ton_rate)
        if self.after_commit is not None:
            self.after_commit()  # a prorated charge is a balance payment: its notices
        return change

    async def extend_subscription(self, public_id: str, *, seller_id: int | None, months: int,
                                  reason: str) -> Subscription:
        return await subscriptions.extend_subscription(
            self.engine, public_id, seller_id=seller_id, months=months, reason=reason)

    async def renew_due(self, now: datetime | None = None, *,
                        ton_rate: Decimal | None = None) -> RenewalReport:
        """The renewal job's work (watchers/subscriptions.py); exactly once per period."""
        report = await subscriptions.renew_due(self.engine, now, ton_rate=ton_rate,
                                               grace=self.subscription_grace)
        if report.total and self.after_commit is not None:
            self.after_commit()  # balance payments are quiet: wake delivery for their notices
        return report

    async def mark_delivered(self, event_id: int) -> None:
        """An outbox event was delivered; deliveries finishing together share one statement."""
        await self._delivered.submit(event_id)

    # --- payouts: money out through the hot wallet (ledger/payouts.py) ---------------------

    async def request_withdrawal(self, user_id: int, asset: str, amount: int, address: str,
                                 policy: payout_orders.PayoutPolicy, *,
                                 key: str | None = None) -> payout_orders.Payout:
        """The balance debited and the payout ordered together (or refused, nothing changed)."""
        return await payout_orders.request_withdrawal(self.engine, user_id, asset, amount,
                                                      address, policy, key=key)

    async def refund_held_transfer(self, tx_hash: str, *,
                                   note: str | None = None) -> payout_orders.Payout:
        """A held transfer released as 'refunded' and ordered back to its sender, once."""
        return await payout_orders.refund_held_transfer(self.engine, tx_hash, note=note)

    async def excess_held(self, public_id: str) -> dict[str, int]:
        return await payout_orders.excess_held(self.engine, public_id)

    async def refund_excess(self, public_id: str, *, seller_id: int,
                            note: str | None = None) -> list[payout_orders.Payout]:
        """The seller's "refund the difference": every overpayment still held, sent back."""
        return await payout_orders.refund_excess(self.engine, public_id, seller_id=seller_id,
                                                 note=note)

    async def approve_payout(self, payout_id: int, *,
                             note: str | None = None) -> payout_orders.Payout:
        return await payout_orders.approve(self.engine, payout_id, note=note)

    async def reject_payout(self, payout_id: int, *,
                            note: str | None = None) -> payout_orders.Payout:
        return await payout_orders.reject(self.engine, payout_id, note=note)

    async def payout(self, payout_id: int) -> payout_orders.Payout:
        return await payout_orders.get_payout(self.engine, payout_id)

    async def payouts(self, *, statuses: list[str] | None = None, user_id: int | None = None,
                      limit: int = 50) -> list[payout_orders.Payout]:
        return await payout_orders.list_payouts(self.engine, statuses=statuses,
                                                user_id=user_id, limit=limit)
