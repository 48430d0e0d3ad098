"""Buyers and subscriptions: the plan card of `/start sub_<plan>` with a button per period,
subscribing (a trial starts at once; otherwise the first period's invoice, paid like any other —
from the balance through the pay buttons, or with TON — and the subscription starts when it is
paid), and `/subscriptions`: each one's status, next charge or end, and cancelling it."""

from __future__ import annotations

from html import escape
from typing import Final

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.telegram.config import BotConfig
from bot.telegram.i18n import Translator
from bot.telegram.keyboards import (
    SubCb,
    SubsCb,
    plan_card_keyboard,
    subscription_cancel_keyboard,
    subscriptions_keyboard,
)
from bot.telegram.plans import period_name, plan_details
from bot.telegram.render import day, fit, money, person
from bot.telegram.views import edit, invoice_card
from ledger.core import Ledger
from ledger.errors import SubscriptionNotFound
from ledger.models import User
from ledger.plans import Plan
from ledger.subscriptions import LIVE, Subscription
from ledger.users import get_user

router: Final[Router] = Router(name=__name__)

ENDED_SHOWN = 5  # ended subscriptions listed under the live ones, newest first


# --- the plan card ------------------------------------------------------------------------------

def plan_card(tr: Translator, plan: Plan, seller: User | None, viewer: User,
              ) -> tuple[str, InlineKeyboardMarkup | None]:
    text = tr("plan.card", name=escape(plan.name), seller=person(seller),
              details=plan_details(tr, plan))
    if plan.status != "active":
        return text + "\n\n" + tr("plan.card.archived"), None
    if plan.seller_id == viewer.id:
        return text + "\n\n" + tr("plan.card.yours"), None
    periods = [(months, tr("btn.sub_period", period=period_name(tr, months),
                           amount=money(amount, plan.currency)))
               for months, amount in sorted(plan.prices.items())]
    return text, plan_card_keyboard(tr, plan.public_id, periods)


async def show_plan(message: Message, public_id: str, user: User, tr: Translator,
                    ledger: Ledger, engine: AsyncEngine) -> None:
    """`/start sub_<plan>`: PlanNotFound (also for malformed ids) is one sentence (errors.py)."""
    plan = await ledger.plan(public_id)
    seller = await get_user(engine, plan.seller_id)
    text, markup = plan_card(tr, plan, seller, user)
    await message.answer(text, reply_markup=markup)


@router.callback_query(SubCb.filter())
async def subscribe(cb: CallbackQuery, callback_data: SubCb, user: User, tr: Translator,
                    ledger: Ledger, cfg: BotConfig) -> None:
    """A period tapped: AlreadySubscribed, PeriodNotOffered, OwnPlan, PlanNotFound are one
    sentence each (errors.py), and nothing is created."""
    done = await ledger.subscribe(callback_data.plan, user.id, callback_data.months,
                                  ton_rate=cfg.ton_rate)
    sub = done.subscription
    name = escape(sub.plan_name or "")
    if done.invoice is None:  # a trial: on at once, the first charge at its end
        await cb.answer()
        text = tr("sub.trial_started", name=name,
                  until=day(sub.trial_end or sub.current_period_end),
                  amount=money(sub.amount, sub.currency), period=period_name(tr, sub.months))
        await edit(cb, text, None)
        return
    # The first period is an ordinary invoice: the same card and pay buttons as any other;
    # the subscription starts when it is paid, whichever way. Tapping the period again while
    # it is unpaid brings back the same invoice (the ledger answers the same subscription).
    read = await ledger.invoice(done.invoice)
    card, markup = invoice_card(tr, cfg, read.invoice, read.seller, user)
    intro = tr("sub.first_invoice", name=name, period=period_name(tr, sub.months))
    await cb.answer()
    await edit(cb, fit(f"{intro}\n\n{card}"), markup)


# --- /subscriptions -----------------------------------------------------------------------------

def _when(tr: Translator, sub: Subscription) -> str:
    """What comes next for a subscription: the next charge, its end, or what is owed."""
    amount = money(sub.amount, sub.currency)
    if sub.status == "incomplete":
        return tr("sub.line.incomplete", amount=amount)
    if sub.status in ("cancelled", "expired"):
        ended = sub.ended_at or sub.cancelled_at or sub.current_period_end
        return tr("sub.line.ended", date=day(ended)) if ended else ""
    if sub.cancel_at_period_end and sub.current_period_end is not None:
        return tr("sub.line.ends", date=day(sub.current_period_end))
    if sub.status == "past_due":
        grace = sub.grace_until or sub.current_period_end
        return tr("sub.line.past_due", amount=amount, date=day(grace)) if grace else ""
    if sub.status == "trialing" and sub.trial_end is not None:
        return tr("sub.line.trial", date=day(sub.trial_end), amount=amount)
    if sub.current_period_end is None:
        return ""
    return tr("sub.line.next", date=day(sub.current_period_end), amount=amount)


def subscriptions_view(tr: Translator, subs: list[Subscription],
                       ) -> tuple[str, InlineKeyboardMarkup | None]:
    live = [s for s in subs if s.status in LIVE]
    ended = [s for s in subs if s.status not in LIVE][:ENDED_SHOWN]
    if not live and not ended:
        return tr("subs.empty"), None
    blocks = [tr("subs.title")]
    for sub in live + ended:
        head = tr("sub.line.head", name=escape(sub.plan_name or ""),
                  status=tr(f"sub.status.{sub.status}"),
                  amount=money(sub.amount, sub.currency), period=period_name(tr, sub.months))
        nxt = _when(tr, sub)
        blocks.append(f"{head}\n{nxt}" if nxt else head)
    # An unpaid first period has no period to end: only "cancel now" is offered for it.
    buttons = [(s.public_id, s.plan_name or "", s.cancel_at_period_end or s.status == "incomplete")
               for s in live]
    return fit("\n\n".join(blocks)), subscriptions_keyboard(tr, buttons)


async def _view(tr: Translator, ledger: Ledger, user: User,
                ) -> tuple[str, InlineKeyboardMarkup | None]:
    return subscriptions_view(tr, await ledger.subscriptions_of_user(user.id))


@router.message(Command("subscriptions"))
async def cmd_subscriptions(message: Message, user: User, tr: Translator,
                            ledger: Ledger) -> None:
    text, markup = await _view(tr, ledger, user)
    await message.answer(text, reply_markup=markup)


@router.callback_query(SubsCb.filter(F.action == "list"))
async def back_to_list(cb: CallbackQuery, user: User, tr: Translator, ledger: Ledger) -> None:
    await edit(cb, *await _view(tr, ledger, user))
    await cb.answer()


async def _own(ledger: Ledger, public_id: str, user: User) -> Subscription:
    sub = await ledger.subscription(public_id)
    if sub.subscriber_id != user.id:
        raise SubscriptionNotFound(public_id[:40])  # someone else's looks like none
    return sub


@router.callback_query(SubsCb.filter(F.action.in_({"end_ask", "now_ask"})))
async def ask_cancel(cb: CallbackQuery, callback_data: SubsCb, user: User, tr: Translator,
                     ledger: Ledger) -> None:
    sub = await _own(ledger, callback_data.sub, user)
    at_end = callback_data.action == "end_ask"
    if at_end and sub.current_period_end is not None:
        text = tr("sub.cancel_end.confirm", name=escape(sub.plan_name or ""),
                  date=day(sub.current_period_end))
    else:
        text = tr("sub.cancel_now.confirm", name=escape(sub.plan_name or ""))
    await edit(cb, text, subscription_cancel_keyboard(tr, sub.public_id, at_period_end=at_end))
    await cb.answer()


@router.callback_query(SubsCb.filter(F.action.in_({"end_do", "now_do"})))
async def do_cancel(cb: CallbackQuery, callback_data: SubsCb, user: User, tr: Translator,
                    ledger: Ledger) -> None:
    await _own(ledger, callback_data.sub, user)
    at_end = callback_data.action == "end_do"
    sub = await ledger.cancel_subscription(callback_data.sub, actor_id=user.id,
                                           at_period_end=at_end)
    if at_end and sub.current_period_end is not None:
        await cb.answer(tr("sub.cancelled_end", date=day(sub.current_period_end)))
    else:
        await cb.answer(tr("sub.cancelled_now"))
    await edit(cb, *await _view(tr, ledger, user))
