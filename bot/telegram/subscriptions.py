"""Buyers and subscriptions: the plan card of `/start sub_<plan>` with a button per period,
subscribing (a trial starts at once; otherwise the first period's invoice, paid like any other —
from the balance through the pay buttons, or with TON — and the subscription starts when it is
paid), and `/subscriptions`: each one's status, next charge or end, cancelling it, and changing
its plan or period (prorated: the ledger charges or credits the difference at once).

A plan with a 1-month price also offers a Telegram Stars subscription when Stars are enabled:
Telegram charges the Stars every 30 days (`subscription_period`, only through an invoice link)
and each payment, first and recurring, carries the same quote and settles through the ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html import escape
from typing import Final

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LabeledPrice,
    Message,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.telegram.config import BotConfig
from bot.telegram.i18n import Translator
from bot.telegram.keyboards import (
    ChangeCb,
    SubCb,
    SubsCb,
    change_choices_keyboard,
    change_confirm_keyboard,
    change_plan_button,
    plan_card_keyboard,
    subscription_cancel_keyboard,
    subscriptions_keyboard,
)
from bot.telegram.plans import period_name, plan_details
from bot.telegram.render import day, fit, money, person
from bot.telegram.views import edit, invoice_card
from ledger.core import Ledger
from ledger.errors import (
    PeriodNotOffered,
    PlanNotFound,
    SamePlan,
    SubscriptionEnded,
    SubscriptionNotCurrent,
    SubscriptionNotFound,
)
from ledger.models import User
from ledger.plans import Plan
from ledger.rails import STARS, STARS_MAX, STARS_MIN, convert
from ledger.subscriptions import LIVE, Subscription
from ledger.users import get_user

router: Final[Router] = Router(name=__name__)

ENDED_SHOWN = 5  # ended subscriptions listed under the live ones, newest first
STARS_PERIOD = 2592000  # 30 days: the only subscription_period Telegram takes


class StarSubCb(CallbackData, prefix="ssub"):
    plan: str  # subscribe to this plan's 1-month period, paid in Stars every month


# --- the plan card ------------------------------------------------------------------------------

def stars_rate(cfg: BotConfig, currency: str) -> Decimal | None:
    """Stars per 1 unit of `currency` (the plan's), or None when Stars are not offered."""
    rate = cfg.rail_rates.get(STARS) if cfg.stars_enabled else None
    if rate is None:
        return None
    return rate * cfg.ton_rate if currency == "TON" else rate


def monthly_stars(plan: Plan, rate: Decimal | None) -> int | None:
    """What the 1-month period costs in Stars, when it can be a Stars subscription."""
    if rate is None or 1 not in plan.prices:
        return None
    stars = convert(plan.prices[1], plan.currency, rate, STARS)
    return stars if STARS_MIN <= stars <= STARS_MAX else None


def plan_card(tr: Translator, plan: Plan, seller: User | None, viewer: User,
              stars: int | None = None) -> tuple[str, InlineKeyboardMarkup | None]:
    text = tr("plan.card", name=escape(plan.name), seller=person(seller),
              details=plan_details(tr, plan))
    if plan.status != "active":
        return text + "\n\n" + tr("plan.card.archived"), None
    if plan.seller_id == viewer.id:
        return text + "\n\n" + tr("plan.card.yours"), None
    periods = [(months, tr("btn.sub_period", period=period_name(tr, months),
                           amount=money(amount, plan.currency)))
               for months, amount in sorted(plan.prices.items())]
    markup = plan_card_keyboard(tr, plan.public_id, periods)
    if stars is not None:
        rows = list(markup.inline_keyboard) if markup is not None else []
        rows.append([InlineKeyboardButton(text=tr("btn.sub_stars", stars=stars),
                                          callback_data=StarSubCb(plan=plan.public_id).pack())])
        markup = InlineKeyboardMarkup(inline_keyboard=rows)
    return text, markup


async def show_plan(message: Message, public_id: str, user: User, tr: Translator,
                    ledger: Ledger, engine: AsyncEngine, cfg: BotConfig | None = None) -> None:
    """`/start sub_<plan>`: PlanNotFound (also for malformed ids) is one sentence (errors.py)."""
    plan = await ledger.plan(public_id)
    seller = await get_user(engine, plan.seller_id)
    stars = monthly_stars(plan, stars_rate(cfg, plan.currency)) if cfg is not None else None
    text, markup = plan_card(tr, plan, seller, user, stars)
    await message.answer(text, reply_markup=markup)


@router.callback_query(StarSubCb.filter())
async def subscribe_with_stars(cb: CallbackQuery, callback_data: StarSubCb, user: User,
                               tr: Translator, ledger: Ledger, cfg: BotConfig) -> None:
    """"⭐ Subscribe with Stars": the 1-month subscription (the one the buyer already has, else
    a new one), its Stars quote, and Telegram's invoice link with subscription_period. Tapped
    again, it is the same subscription with a fresh link. OwnPlan, PlanNotFound, a period not
    offered, Stars off: one sentence each (errors.py)."""
    plan = await ledger.plan(callback_data.plan)
    rate = stars_rate(cfg, plan.currency)
    if rate is None or monthly_stars(plan, rate) is None:
        raise PeriodNotOffered("stars")
    sub = next((s for s in await ledger.subscriptions_of_user(user.id)
                if s.plan_public_id == plan.public_id and s.status in LIVE and s.months == 1),
               None)
    if sub is None:
        sub = (await ledger.subscribe(plan.public_id, user.id, 1,
                                      ton_rate=cfg.ton_rate)).subscription
    quote = await ledger.quote_rail(
        purpose="subscription", rail="stars", channel="telegram", currency=STARS, rate=rate,
        subscription=sub.public_id, user_id=user.id, ttl_seconds=cfg.quote_seconds)
    assert cb.bot is not None
    name = sub.plan_name or plan.name
    link = await cb.bot.create_invoice_link(
        title=name[:32], description=tr("sub.stars.invoice", name=name, stars=quote.amount)[:255],
        payload=quote.token, currency=STARS,
        prices=[LabeledPrice(label=name[:32], amount=quote.amount)],
        subscription_period=STARS_PERIOD)
    await cb.answer()
    await edit(cb, tr("sub.stars.link", name=escape(name), stars=quote.amount),
               InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(
                   text=tr("btn.sub_stars_pay", stars=quote.amount), url=link)]]))


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
    rows = []
    for sub in live:
        if _changeable(sub):
            rows.append(change_plan_button(tr, sub.public_id, sub.plan_name or ""))
        # An unpaid first period has no period to end: only "cancel now" is offered for it.
        ending = sub.cancel_at_period_end or sub.status == "incomplete"
        cancel = subscriptions_keyboard(tr, [(sub.public_id, sub.plan_name or "", ending)])
        rows.extend(cancel.inline_keyboard if cancel else [])
    markup = InlineKeyboardMarkup(inline_keyboard=rows) if rows else None
    return fit("\n\n".join(blocks)), markup


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


# --- changing plan or period --------------------------------------------------------------------

def _changeable(sub: Subscription) -> bool:
    """Only a current subscription changes plan (the ledger's rule); one ending at its period's
    end is not offered the change, it would only be charged for days it is leaving anyway."""
    return sub.status in ("active", "trialing") and not sub.cancel_at_period_end


def _current(sub: Subscription) -> None:
    """The ledger's refusal, told at the first tap rather than after the confirmation."""
    if sub.status in ("cancelled", "expired"):
        raise SubscriptionEnded(sub.public_id)
    if sub.status not in ("active", "trialing"):
        raise SubscriptionNotCurrent(sub.public_id)


def prorated_difference(sub: Subscription, new_amount: int, now: datetime) -> int:
    """What changing to `new_amount` per period would move now, for display only (the ledger
    computes the real amount in the change's transaction): positive is charged, negative is
    credited. The ledger's rule over the unused part u of the current period: credit
    floor(old × u), charge ceil(new × u); a trial has nothing paid to prorate."""
    if sub.status != "active":
        return 0
    tick = timedelta(microseconds=1)
    total = (sub.current_period_end - sub.current_period_start) // tick
    unused = max(sub.current_period_end - now, timedelta(0)) // tick
    if total <= 0:
        return 0
    credit = sub.amount * unused // total
    charge = -(-new_amount * unused // total)
    return charge - credit


async def _choices(tr: Translator, ledger: Ledger, sub: Subscription,
                   ) -> list[tuple[str, int, str]]:
    """The plans and periods `sub` can change to: the current plan's other periods first, then
    the seller's other active plans in the same currency that the buyer is not already on."""
    taken = {s.plan_id for s in await ledger.subscriptions_of_user(sub.subscriber_id)
             if s.status in LIVE and s.id != sub.id}
    plans = [p for p in await ledger.plans_of_seller(sub.seller_id)
             if p.status == "active" and p.currency == sub.currency and p.id not in taken]
    plans.sort(key=lambda p: (p.id != sub.plan_id, p.name.casefold()))
    return [(p.public_id, months,
             tr("btn.sub_change_to", name=p.name[:30], period=period_name(tr, months),
                amount=money(amount, p.currency)))
            for p in plans for months, amount in sorted(p.prices.items())
            if (p.id, months) != (sub.plan_id, sub.months)]


@router.callback_query(ChangeCb.filter(F.action == "pick"))
async def pick_change(cb: CallbackQuery, callback_data: ChangeCb, user: User, tr: Translator,
                      ledger: Ledger) -> None:
    sub = await _own(ledger, callback_data.sub, user)
    _current(sub)
    choices = await _choices(tr, ledger, sub)
    name = escape(sub.plan_name or "")
    if choices:
        text = tr("sub.change.pick", name=name, amount=money(sub.amount, sub.currency),
                  period=period_name(tr, sub.months))
    else:
        text = tr("sub.change.none", name=name)
    await edit(cb, text, change_choices_keyboard(tr, sub.public_id, choices))
    await cb.answer()


@router.callback_query(ChangeCb.filter(F.action == "ask"))
async def ask_change(cb: CallbackQuery, callback_data: ChangeCb, user: User, tr: Translator,
                     ledger: Ledger) -> None:
    """Says what the change will do before it is done; a choice the ledger would refuse is
    refused here already (the same typed errors), so no confirmation promises the impossible."""
    sub = await _own(ledger, callback_data.sub, user)
    _current(sub)
    plan = await ledger.plan(callback_data.plan)
    if plan.status != "active" or plan.seller_id != sub.seller_id \
            or plan.currency != sub.currency:
        raise PlanNotFound(callback_data.plan)
    price = plan.prices.get(callback_data.months)
    if price is None:
        raise PeriodNotOffered(str(callback_data.months))
    if (plan.id, callback_data.months) == (sub.plan_id, sub.months):
        raise SamePlan(sub.public_id)
    diff = prorated_difference(sub, price, datetime.now(UTC))
    then = dict(price=money(price, plan.currency), period=period_name(tr, callback_data.months),
                date=day(sub.current_period_end))
    if diff > 0:
        what = tr("sub.change.charge", amount=money(diff, sub.currency), **then)
    elif diff < 0:
        what = tr("sub.change.credit", amount=money(-diff, sub.currency), **then)
    else:
        what = tr("sub.change.even", **then)
    head = tr("sub.change.confirm", old=escape(sub.plan_name or ""), new=escape(plan.name),
              period=then["period"])
    await edit(cb, f"{head}\n{what}",
               change_confirm_keyboard(tr, sub.public_id, plan.public_id, callback_data.months))
    await cb.answer()


@router.callback_query(ChangeCb.filter(F.action == "do"))
async def do_change(cb: CallbackQuery, callback_data: ChangeCb, user: User, tr: Translator,
                    ledger: Ledger, cfg: BotConfig) -> None:
    """InsufficientFunds, SamePlan, PeriodNotOffered, AlreadySubscribed, SubscriptionNotCurrent
    are one sentence each (errors.py); the ledger then changed nothing."""
    await _own(ledger, callback_data.sub, user)
    change = await ledger.change_plan(callback_data.sub, user.id, callback_data.plan,
                                      callback_data.months, ton_rate=cfg.ton_rate)
    sub = change.subscription
    said = dict(name=escape(sub.plan_name or ""), period=period_name(tr, sub.months))
    if change.charged:
        done = tr("sub.changed.charged", amount=money(change.charged, sub.currency), **said)
    elif change.credited:
        done = tr("sub.changed.credited", amount=money(change.credited, sub.currency), **said)
    else:
        done = tr("sub.changed.even", **said)
    await cb.answer()
    text, markup = await _view(tr, ledger, user)
    await edit(cb, fit(f"{done}\n\n{text}"), markup)
