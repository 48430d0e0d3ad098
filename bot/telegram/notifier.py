"""Delivers the ledger's Telegram outbox: the seller hears the moment an invoice is paid and by
whom, the buyer gets a receipt with what was granted; a client gets the invoice a seller sent
them (`invoice.sent`) and its reminders (`invoice.reminder`), a seller the daily list of what
is overdue (`seller.overdue_digest`) and, if they asked, their week (`seller.weekly_summary`,
watchers/weekly_summary.py). Reminders are checked again when sent: an invoice paid,
voided or opted out of since it was queued gets nothing (the event is done, not failed).
Subscribers hear of their subscription (`subscription.*`: activated — with a join link for a
paid channel — renewed, past due, reminders, ended), read when sent; `channel.revoke` removes
a member whose access ended, unless they are entitled again by then. Cards and Stars: a payer
hears that their payment is held for a refund (`rail.held`: the invoice was paid or closed
meanwhile, the amount differed) and when it is refunded (`rail.refunded`); the operators
(OPERATOR_TELEGRAM_IDS, from the composition root) hear of every held payment
(`operator.rail_held`), of what Stars reconciliation could not match (`operator.reconcile`)
and of incidents opened and cleared (`operator.alert`, watchers/alerts.py);
a Stars subscription cancelled or ended here is cancelled at Telegram (`stars.subscription_stop`).

At least once, never lost silently. Each event ends delivered, or failed with the reason kept
on the row (the recipient blocked the bot, the chat is gone, the text is refused), or goes back
to the queue with a delay: Telegram's `retry_after` on 429, exponential backoff on network and
server errors. A crash mid-send leaves the event leased; it is claimed again when the lease ends.
"""

from __future__ import annotations

import asyncio
import html
import logging
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from bot.telegram.channels import join_link, remove_member, subscribe_link
from bot.telegram.config import BotConfig
from bot.telegram.i18n import Translator, translator
from bot.telegram.keyboards import reminder_keyboard
from bot.telegram.links import pay_deep_link
from bot.telegram.render import day, fit, granted_line, money
from bot.telegram.report import weekly_summary_markup, weekly_summary_text
from bot.telegram.views import invoice_card, payer_label, with_lines
from bot.telegram.withdraw import PAYOUT_EVENTS, operator_payout_text, payout_notice
from ledger.accounts import balance
from ledger.channel_access import entitled_to_channel
from ledger.core import Ledger
from ledger.errors import InvoiceNotFound, LedgerError, UserNotFound
from ledger.invoice_reads import get_invoice, invoices_by_public_id
from ledger.models import Invoice, User
from ledger.outbox import OutboxEvent, claim_due, mark_failed, mark_retry
from ledger.plans import Plan, get_plan
from ledger.purchases import payer_of_payment
from ledger.rails import format_provider_amount
from ledger.subscriptions import Subscription, get_subscription
from ledger.users import find_user_by_telegram, get_user
from watchers.wakeup import Waker

log = logging.getLogger(__name__)

TOPIC = "telegram"
SUBSCRIPTION_EVENTS = frozenset({
    "subscription.activated", "subscription.renewed", "subscription.past_due",
    "subscription.reminder", "subscription.ended",
})
SHORT_LIMIT = 1000  # the plain-text fallback when Telegram says a message is too long
OPERATOR_EVENTS = frozenset({"operator.rail_held", "operator.reconcile",
                             "operator.payout", "operator.alert"})


def N_(key: str) -> str:  # gettext's name: "extract this key, translate later"
    return key


# How a payment was made (payments.method), in the paid notices; `card:<provider>` names it.
METHOD_TEXT = {"internal": N_("method.internal"), "ton": N_("method.ton"),
               "usdt": N_("method.usdt"), "manual": N_("method.manual"),
               "stars": N_("method.stars")}
# What an operator alert is about (watchers/alerts.py: the incident's kind).
ALERT_TEXT = {"watcher_lag": N_("notify.operator.alert.watcher_lag"),
              "callbacks_failing": N_("notify.operator.alert.callbacks_failing"),
              "invariants": N_("notify.operator.alert.invariants")}
# Why a card or Stars payment was held instead of paying the invoice (rail_payments.hold_reason).
HOLD_TEXT = {
    "invoice_paid": N_("rail.why.invoice_paid"), "invoice_closed": N_("rail.why.invoice_closed"),
    "amount_mismatch": N_("rail.why.amount_mismatch"),
    "unknown_quote": N_("rail.why.unknown_quote"), "own_invoice": N_("rail.why.own_invoice"),
    "subscription_ended": N_("rail.why.subscription_ended"),
}


def method_text(tr: Translator, method: str | None) -> str:
    """'from balance', 'with Telegram Stars', 'by card (stripe)'."""
    method = method or "internal"
    if method.startswith("card:"):
        return tr("method.card", provider=html.escape(method.removeprefix("card:")))
    key = METHOD_TEXT.get(method)
    return tr(key) if key else html.escape(method)


def provider_money(minor: int, currency: str) -> str:
    """An amount as the provider took it: '963 ⭐', '12.50 USD'."""
    text = format_provider_amount(minor, currency)
    return f"{text} ⭐" if currency == "XTR" else f"{text} {html.escape(currency)}"


class Undeliverable(Exception):
    """Retrying cannot help (no such recipient, an event we cannot render)."""


@dataclass
class DeliveryReport:
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Backoff:
    base: float = 5.0
    cap: float = 3600.0
    max_unexpected: int = 12  # attempts before an event that keeps crashing us is parked

    def delay(self, attempts: int) -> float:
        raw = min(self.cap, self.base * 2 ** max(0, attempts - 1))
        return raw * random.uniform(0.9, 1.1)  # spread retries of a burst apart


class Notifier:
    def __init__(
        self, ledger: Ledger, bot: Bot, *, batch: int = 50, lease_seconds: float = 60.0,
        backoff: Backoff | None = None, cfg: BotConfig | None = None,
        operators: Sequence[int] = (),
    ) -> None:
        self.ledger = ledger
        self.operators = tuple(operators)  # Telegram ids told of held payments, mismatches
        self.cfg = cfg  # links and pay buttons of the invoices sent to clients
        self.engine = ledger.engine
        self.bot = bot
        self.batch = batch
        self.lease_seconds = lease_seconds
        self.backoff = backoff or Backoff()
        self._lock = asyncio.Lock()  # one delivery pass at a time in this process
        self.waker = Waker("Telegram notices", self.deliver_due)

    def kick(self) -> None:
        """Deliver now (the outbox listener saw a commit) instead of at the next poll."""
        self.waker.kick()

    async def close(self) -> None:
        await self.waker.close()

    async def deliver_due(self) -> DeliveryReport:
        """Deliver every due event (batch by batch) and report what happened."""
        report = DeliveryReport()
        async with self._lock:
            while True:
                events = await claim_due(self.engine, TOPIC, limit=self.batch,
                                         lease_seconds=self.lease_seconds)
                flood_wait = await self._deliver_batch(events, report)
                if flood_wait or len(events) < self.batch:
                    break
        return report

    async def _deliver_batch(self, events: list[OutboxEvent], report: DeliveryReport) -> bool:
        for index, event in enumerate(events):
            try:
                await self._deliver(event)
            except TelegramRetryAfter as exc:
                # Flood control is per bot: everything still claimed waits as long.
                for later in events[index:]:
                    await mark_retry(self.engine, later.id, f"429: {exc.message}",
                                     exc.retry_after)
                report.retried += len(events) - index
                report.errors.append(f"{event.id}: retry after {exc.retry_after}s")
                log.warning("Telegram flood control: %d events wait %ss",
                            len(events) - index, exc.retry_after)
                return True
            except Exception as exc:
                await self._settle_failure(event, exc, report)
            else:
                await self.ledger.mark_delivered(event.id)
                report.delivered += 1
        return False

    async def _settle_failure(
        self, event: OutboxEvent, exc: Exception, report: DeliveryReport
    ) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        report.errors.append(f"{event.id}: {reason}")
        permanent = isinstance(exc, TelegramForbiddenError | TelegramBadRequest | Undeliverable)
        transient = isinstance(exc, TelegramNetworkError | TelegramServerError
                               | TelegramUnauthorizedError | TimeoutError)
        if permanent or (not transient and event.attempts >= self.backoff.max_unexpected):
            await mark_failed(self.engine, event.id, reason)
            report.failed += 1
            log.error("outbox event %s failed for good: %s", event.id, reason)
            return
        if not transient:
            log.exception("outbox event %s crashed the notifier", event.id, exc_info=exc)
        await mark_retry(self.engine, event.id, reason, self.backoff.delay(event.attempts))
        report.retried += 1

    async def _deliver(self, event: OutboxEvent) -> None:
        if event.event_type == "balance.credited":
            await self._deliver_credit(event)
            return
        if event.event_type in ("invoice.sent", "invoice.reminder"):
            await self._deliver_to_client(event)
            return
        if event.event_type == "seller.overdue_digest":
            await self._deliver_digest(event)
            return
        if event.event_type == "seller.weekly_summary":
            await self._deliver_weekly_summary(event)
            return
        if event.event_type in SUBSCRIPTION_EVENTS:
            await self._deliver_subscription(event)
            return
        if event.event_type == "channel.revoke":
            await self._revoke(event)
            return
        if event.event_type in ("rail.held", "rail.refunded"):
            await self._deliver_rail(event)
            return
        if event.event_type in OPERATOR_EVENTS:
            await self._deliver_to_operators(event)
            return
        if event.event_type in PAYOUT_EVENTS:
            await self._deliver_payout(event)
            return
        if event.event_type == "stars.subscription_stop":
            await self._stop_stars_subscription(event)
            return
        if event.event_type != "invoice.paid":
            raise Undeliverable(f"unknown telegram event type {event.event_type!r}")
        p = event.payload
        try:
            recipient = await get_user(self.engine, int(p["recipient"]))
            invoice = await get_invoice(self.engine, str(p["invoice"]))
            seller = p.get("role") == "seller"
            # Read when sent, not when paid: a guest who claimed since is named, and the
            # payer's name is the one they use now.
            payer = await payer_of_payment(self.engine, int(p["payment_id"])) if seller else None
        except (KeyError, TypeError, ValueError, UserNotFound, InvoiceNotFound) as exc:
            raise Undeliverable(f"bad payload: {exc}") from exc
        tr = translator(recipient.language)
        values = dict(title=html.escape(invoice.title), number=invoice.number,
                      amount=money(invoice.amount, invoice.currency),
                      method=method_text(tr, p.get("method")))
        if seller:
            text = tr("notify.seller", **values, payer=payer_label(tr, payer))
        else:
            text = tr("notify.buyer", **values, granted=granted_line(tr, invoice.payload))
        await self._send(recipient.telegram_id, text)

    async def _deliver_credit(self, event: OutboxEvent) -> None:
        """Money arrived on the balance: a TON deposit, an overpayment, an operator's credit."""
        p = event.payload
        try:
            recipient = await get_user(self.engine, int(p["recipient"]))
            amount = money(int(p["amount"]), str(p["currency"]))
        except (KeyError, TypeError, ValueError, UserNotFound) as exc:
            raise Undeliverable(f"bad payload: {exc}") from exc
        tr = translator(recipient.language)
        text = tr("notify.credited", amount=amount, why=self._credit_why(tr, p))
        await self._send(recipient.telegram_id, text)

    @staticmethod
    def _credit_why(tr: Translator, p: dict[str, Any]) -> str:
        kind = p.get("kind")
        if kind == "deposit":
            return tr("credit.deposit.usdt") if p.get("asset") == "USDT" else tr("credit.deposit")
        if kind == "excess":
            return tr("credit.excess")
        if kind == "topup":  # a card or Stars top-up (the payload names the rail when it can)
            rail = str(p.get("rail") or p.get("method") or "")
            if rail == "stars":
                return tr("credit.topup.stars")
            if rail.startswith("card:"):
                return tr("credit.topup.card")
            return tr("credit.topup")
        return tr("credit.other")

    async def _invoice_label(self, public_id: object) -> str:
        """'INV-0042 “Coffee”' for a payload's invoice; '—' when there is none (or it is gone)."""
        if not public_id:
            return "—"
        try:
            invoice = await get_invoice(self.engine, str(public_id))
        except InvoiceNotFound:
            return html.escape(str(public_id))
        number = invoice.number or invoice.public_id
        return f"{number} “{html.escape(invoice.title)}”" if invoice.title else number

    async def _deliver_rail(self, event: OutboxEvent) -> None:
        """To the payer: their card or Stars payment is held for a refund (it arrived for an
        invoice paid or closed meanwhile, or for another amount), or it was refunded."""
        p = event.payload
        try:
            recipient = await get_user(self.engine, int(p["recipient"]))
            amount = provider_money(int(p["amount"]), str(p["currency"]))
        except (KeyError, TypeError, ValueError, UserNotFound, LedgerError) as exc:
            raise Undeliverable(f"bad payload: {exc}") from exc
        tr = translator(recipient.language)
        invoice = await self._invoice_label(p.get("invoice"))
        if event.event_type == "rail.refunded":
            text = (tr("notify.rail.refunded", amount=amount, invoice=invoice)
                    if p.get("invoice") else tr("notify.rail.refunded.plain", amount=amount))
        else:
            text = tr("notify.rail.held", amount=amount,
                      why=self._hold_why(tr, p.get("reason"), invoice))
        await self._send(recipient.telegram_id, text)

    @staticmethod
    def _hold_why(tr: Translator, reason: object, invoice: str) -> str:
        key = HOLD_TEXT.get(str(reason))
        return tr(key, invoice=invoice) if key else tr("rail.why.other", invoice=invoice)

    async def _stop_stars_subscription(self, event: OutboxEvent) -> None:
        """The subscription was cancelled or ended here: Telegram stops renewing it in Stars
        (a charge it made anyway would be held for a refund, never lost)."""
        p = event.payload
        try:
            telegram_id, charge = int(p["telegram_id"]), str(p["charge_id"])
        except (KeyError, TypeError, ValueError) as exc:
            raise Undeliverable(f"bad payload: {exc}") from exc
        try:
            await self.bot.edit_user_star_subscription(
                user_id=telegram_id, telegram_payment_charge_id=charge, is_canceled=True)
        except TelegramBadRequest as exc:  # already cancelled or expired at Telegram
            log.info("Stars subscription %s not edited: %s", charge, exc)

    async def _deliver_to_operators(self, event: OutboxEvent) -> None:
        """Each operator in their own language. None configured: done, with a log line (the
        payment stays listed by `paybot admin rails`). One operator who blocked the bot does
        not keep the others from hearing; a transient failure retries the event."""
        if not self.operators:
            log.warning("%s %s: no OPERATOR_TELEGRAM_IDS to tell: %s", event.event_type,
                        event.id, event.payload)
            return
        p = event.payload
        invoice = await self._invoice_label(p.get("invoice"))
        reached = 0
        for telegram_id in self.operators:
            user = await find_user_by_telegram(self.engine, telegram_id)
            tr = translator(user.language if user else None)
            try:
                text = self._operator_text(tr, event.event_type, p, invoice)
            except (KeyError, TypeError, ValueError) as exc:
                raise Undeliverable(f"bad payload: {exc}") from exc
            try:
                await self._send(telegram_id, text)
                reached += 1
            except (TelegramForbiddenError, TelegramBadRequest) as exc:
                log.error("operator %s cannot be told of %s %s: %s", telegram_id,
                          event.event_type, event.id, exc)
        if not reached:
            raise Undeliverable("no operator could be reached")

    async def _deliver_payout(self, event: OutboxEvent) -> None:
        """A withdrawal was sent, rejected or failed (bot/telegram/withdraw.py has the text)."""
        try:
            recipient = await get_user(self.engine, int(event.payload["recipient"]))
            text = payout_notice(translator(recipient.language), event.event_type,
                                 event.payload)
        except (KeyError, TypeError, ValueError, UserNotFound) as exc:
            raise Undeliverable(f"bad payload: {exc}") from exc
        await self._send(recipient.telegram_id, text)

    def _operator_text(self, tr: Translator, kind: str, p: dict[str, Any], invoice: str) -> str:
        if kind == "operator.payout":
            return operator_payout_text(tr, p)
        if kind == "operator.alert":  # watchers/alerts.py: an incident opened or cleared
            what = ALERT_TEXT.get(str(p["kind"]))
            return tr(N_("notify.operator.alert") if p["state"] == "open"
                      else N_("notify.operator.alert_cleared"),
                      what=tr(what) if what else html.escape(str(p["kind"])),
                      detail=html.escape(str(p.get("detail") or "")))
        if kind == "operator.reconcile":
            return tr("notify.operator.reconcile", kind=html.escape(str(p["kind"])),
                      tx=html.escape(str(p["tx_id"])), detail=html.escape(str(p.get("detail"))))
        rail = str(p["rail"])
        payment_id = int(p["rail_payment_id"])
        text = tr("notify.operator.held", id=payment_id,
                  amount=provider_money(int(p["amount"]), str(p["currency"])),
                  method=method_text(tr, rail), invoice=invoice,
                  why=self._hold_why(tr, p.get("reason"), invoice))
        hint = (N_("notify.operator.refund_stars") if rail == "stars"
                else N_("notify.operator.refund_card"))
        return text + "\n" + tr(hint, id=payment_id)

    async def _deliver_to_client(self, event: OutboxEvent) -> None:
        """The invoice card a seller sent, or a reminder of it, with the pay button."""
        p = event.payload
        try:
            recipient = await get_user(self.engine, int(p["recipient"]))
            # Read now, not cached: a reminder must see a payment made a moment ago.
            invoice = await get_invoice(self.engine, str(p["invoice"]))
        except (KeyError, TypeError, ValueError, UserNotFound, InvoiceNotFound) as exc:
            raise Undeliverable(f"bad payload: {exc}") from exc
        if self.cfg is None:
            raise Undeliverable("the notifier has no bot config to build pay buttons")
        tr = translator(recipient.language)
        if event.event_type == "invoice.sent":
            seller = await get_user(self.engine, invoice.seller_id)
            text, markup = invoice_card(tr, self.cfg, invoice, seller, recipient)
            await self._send(recipient.telegram_id, tr("notify.sent") + "\n\n" + text, markup)
            return
        # Paid, voided, written off, expired or opted out since it was queued: nothing to say.
        if invoice.effective_status() != "pending" or invoice.reminders_off \
                or not invoice.amount_due:
            log.info("reminder %s for %s dropped: the invoice is %s", event.id,
                     invoice.public_id, invoice.effective_status())
            return
        due = money(invoice.amount_due, invoice.currency)
        text = with_lines(tr, self._reminder_head(tr, invoice, p.get("kind")), invoice,
                          due=False)
        await self._send(recipient.telegram_id, text,
                         reminder_keyboard(tr, invoice, self.cfg, due))

    @staticmethod
    def _reminder_head(tr: Translator, invoice: Invoice, kind: object) -> str:
        values = dict(title=html.escape(invoice.title), number=invoice.number,
                      amount=money(invoice.amount_due, invoice.currency),
                      date=day(invoice.due_at) if invoice.due_at else "—")
        if kind == "overdue":
            return tr("notify.overdue", **values)
        return tr("notify.due_soon", **values)

    async def _deliver_digest(self, event: OutboxEvent) -> None:
        """The seller's overdue invoices, read when sent (one paid since is left out)."""
        p = event.payload
        try:
            recipient = await get_user(self.engine, int(p["recipient"]))
            ids = [str(i) for i in p["invoices"]]
        except (KeyError, TypeError, ValueError, UserNotFound) as exc:
            raise Undeliverable(f"bad payload: {exc}") from exc
        tr = translator(recipient.language)
        found = await invoices_by_public_id(self.engine, ids)
        rows = []
        for public_id in ids:
            invoice = found.get(public_id)
            if invoice is None or invoice.seller_id != recipient.id or not invoice.overdue():
                continue  # paid, voided or written off since: left out
            assert invoice.due_at is not None
            rows.append(tr("notify.digest.line", number=invoice.number,
                           title=html.escape(invoice.title[:40]),
                           due=money(invoice.amount_due, invoice.currency),
                           date=day(invoice.due_at)))
        if not rows:
            log.info("digest %s dropped: nothing is overdue any more", event.id)
            return
        head = tr("notify.digest", n=len(rows))
        more = int(p.get("count", len(ids))) - len(ids)  # the event lists the oldest few
        if more > 0:
            rows.append(tr("notify.digest.more", n=more))
        await self._send(recipient.telegram_id, head + "\n" + "\n".join(rows))

    async def _deliver_weekly_summary(self, event: OutboxEvent) -> None:
        """The seller's week, from the figures frozen when it was queued."""
        try:
            recipient = await get_user(self.engine, int(event.payload["recipient"]))
            tr = translator(recipient.language)
            text = weekly_summary_text(tr, event.payload)
        except (KeyError, TypeError, ValueError, UserNotFound) as exc:
            raise Undeliverable(f"bad payload: {exc}") from exc
        await self._send(recipient.telegram_id, text, weekly_summary_markup(tr, self.cfg))

    async def _deliver_subscription(self, event: OutboxEvent) -> None:
        """A subscriber's news, read when sent: a past-due notice or reminder for a subscription
        paid, cancelled or ended since it was queued is dropped (done, not failed)."""
        p = event.payload
        try:
            recipient = await get_user(self.engine, int(p["recipient"]))
            sub = await get_subscription(self.engine, str(p["subscription"]))
            plan = await get_plan(self.engine, str(sub.plan_public_id))
        except (KeyError, TypeError, ValueError, LedgerError) as exc:
            raise Undeliverable(f"bad payload: {exc}") from exc
        tr = translator(recipient.language)
        kind = event.event_type.removeprefix("subscription.")
        if kind == "reminder":
            kind = f"reminder.{p.get('kind')}"
        text, markup = await self._subscription_notice(tr, kind, sub, plan, recipient)
        if text is None:
            log.info("%s %s for %s dropped: the subscription is %s", kind, event.id,
                     sub.public_id, sub.status)
            return
        if markup is None and self.cfg is not None and p.get("invoice") \
                and kind in ("past_due", "reminder.before_3", "reminder.grace"):
            # The next period's invoice: payable now by balance, TON or the page.
            markup = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(
                text=tr("notify.sub.pay.button"), url=pay_deep_link(self.cfg, str(p["invoice"])))]])
        await self._send(recipient.telegram_id, text, markup)

    async def _subscription_notice(
        self, tr: Translator, kind: str, sub: Subscription, plan: Plan, recipient: User,
    ) -> tuple[str | None, InlineKeyboardMarkup | None]:
        """The notice's text (None: nothing to say any more) and its button, if any."""
        values = dict(plan=html.escape(plan.name), amount=money(sub.amount, sub.currency),
                      date=day(sub.current_period_end))
        if kind == "activated":
            return await self._activated(tr, sub, plan, recipient, values)
        if kind == "renewed":
            return tr("notify.sub.renewed", **values), None
        if kind == "ended":
            text = tr("notify.sub.ended", plan=values["plan"])
            if self.cfg is not None and plan.status == "active":
                text += "\n" + tr("notify.sub.again", link=html.escape(
                    subscribe_link(self.cfg, plan.public_id)))
            return text, None
        if kind not in ("reminder.before_3", "past_due", "reminder.grace"):
            raise Undeliverable(f"unknown subscription notice {kind!r}")
        short = await self._short(recipient, sub)
        if kind == "reminder.before_3":
            if sub.status not in ("active", "trialing") or sub.cancel_at_period_end:
                return None, None
            text = tr("notify.sub.before_3", **values)
            if short:
                text += "\n" + tr("notify.sub.top_up", short=money(short, sub.currency))
            return text, None
        # Past due: paid, cancelled or ended since it was queued — nothing to ask for.
        if sub.status != "past_due" or not short or sub.grace_until is None:
            return None, None
        values.update(short=money(short, sub.currency), until=day(sub.grace_until))
        if kind == "past_due":
            return tr("notify.sub.past_due", **values), None
        return tr("notify.sub.grace", **values), None

    async def _activated(self, tr: Translator, sub: Subscription, plan: Plan, recipient: User,
                         values: dict[str, str]) -> tuple[str, InlineKeyboardMarkup | None]:
        """The confirmation; for a paid channel, a join link of its own (made at delivery,
        named after the subscription, approval required — see bot/telegram/channels.py)."""
        if sub.status == "trialing" and sub.trial_end is not None:
            text = tr("notify.sub.trial", plan=values["plan"], date=day(sub.trial_end))
        else:
            text = tr("notify.sub.activated", **values)
        chat_id = plan.channel_chat_id
        if chat_id is None or not await entitled_to_channel(self.engine, chat_id,
                                                            recipient.telegram_id):
            return text, None
        title = html.escape(plan.channel_title or "")
        link = await join_link(self.bot, chat_id, recipient.telegram_id, sub.public_id)
        if link is None:
            return text + "\n" + tr("notify.sub.join.unavailable", title=title), None
        markup = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(
            text=tr("notify.sub.join.button"), url=link)]])
        return text + "\n" + tr("notify.sub.join", title=title), markup

    async def _short(self, recipient: User, sub: Subscription) -> int:
        """What the subscriber lacks on their balance for the next charge."""
        return max(0, sub.amount - await balance(self.engine, recipient.id, sub.currency))

    async def _revoke(self, event: OutboxEvent) -> None:
        """Remove the member whose access ended; someone entitled again by now stays."""
        p = event.payload
        try:
            chat_id, telegram_id = int(p["chat_id"]), int(p["telegram_id"])
        except (KeyError, TypeError, ValueError) as exc:
            raise Undeliverable(f"bad payload: {exc}") from exc
        if not await remove_member(self.bot, self.engine, chat_id, telegram_id):
            log.info("removal %s of %s from %s dropped: entitled again", event.id,
                     telegram_id, chat_id)

    async def _send(self, chat_id: int, text: str,
                    markup: InlineKeyboardMarkup | None = None) -> None:
        try:
            await self.bot.send_message(chat_id, fit(text), reply_markup=markup)
        except TelegramBadRequest as exc:
            reason = exc.message.lower()
            if "too long" not in reason and "parse entities" not in reason:
                raise
            # Plain text, cut short: the news itself must get through.
            plain = html.unescape(re.sub(r"<[^>]+>", "", text))[:SHORT_LIMIT]
            await self.bot.send_message(chat_id, plain, parse_mode=None, reply_markup=markup)

