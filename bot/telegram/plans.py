"""/plans: a seller's subscription plans, and a short conversation for a new one — name, prices
per period ("1m 5.00, 3m 13.50, 12m 48.00"), trial days, and what it grants: an item and/or a
Telegram channel or group.

A channel is checked here, before the plan exists: the bot must be its administrator with the
rights to invite and to remove members (it lets subscribers in and takes them out at the end),
so a seller learns what to fix now rather than at the first renewal. The ledger checks the rest
(`Ledger.create_plan`, InvalidPlan)."""

from __future__ import annotations

import re
from html import escape
from typing import Final

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import (
    CallbackQuery,
    ChatMemberAdministrator,
    ChatMemberOwner,
    InlineKeyboardMarkup,
    Message,
    MessageOriginChannel,
    MessageOriginChat,
)

from bot.telegram import parse
from bot.telegram.config import BotConfig
from bot.telegram.i18n import N_, Translator
from bot.telegram.keyboards import (
    PlanCb,
    PlanFormCb,
    plan_archive_keyboard,
    plan_created_keyboard,
    plan_skip_keyboard,
    plans_keyboard,
    trial_keyboard,
)
from bot.telegram.links import deep_link, share_url
from bot.telegram.render import fit, money
from bot.telegram.views import edit
from ledger.core import Ledger
from ledger.errors import PlanNotFound
from ledger.models import User
from ledger.plans import MAX_TRIAL_DAYS, PERIODS, Plan

router: Final[Router] = Router(name=__name__)

NOT_A_COMMAND = F.text & ~F.text.startswith("/")

# Keys built at run time (err.<code> by errors.py, sub.status.<status> by subscriptions.py),
# listed so that `make messages` keeps them.
DYNAMIC: Final = (
    N_("err.plan_not_found"), N_("err.invalid_plan"), N_("err.already_subscribed"),
    N_("err.period_not_offered"), N_("err.subscription_not_found"),
    N_("err.subscription_ended"), N_("err.same_plan"), N_("err.own_plan"),
    N_("err.subscription_not_current"),
    N_("sub.status.incomplete"), N_("sub.status.trialing"), N_("sub.status.active"),
    N_("sub.status.past_due"), N_("sub.status.cancelled"), N_("sub.status.expired"),
    N_("cmd.plans"), N_("cmd.subscriptions"),
)

# "1m 5.00", "3 mo 13,50", "12м 48": months, then the price (the price may use a comma).
_PRICE = re.compile(r"^(\d{1,3})\s*(?:m|mo|mon|months?|м|мес\w*)\.?\s+(.+)$", re.IGNORECASE)
# Prices are separated by ";", a new line, or a comma that is followed by the next "<n>m".
_SEPARATOR = re.compile(r"\s*(?:[;\n]|,(?=\s*\d{1,3}\s*(?:m|м)))\s*", re.IGNORECASE)
_CHAT_ID = re.compile(r"^-?\d{5,20}$")
_CHAT_NAME = re.compile(r"^(?:@|(?:https?://)?t\.me/)([A-Za-z][A-Za-z0-9_]{3,31})/?$")


class PlanForm(StatesGroup):
    name = State()
    prices = State()
    trial = State()
    item = State()
    channel = State()


# --- what a plan shows (the seller's list, the buyer's card) -------------------------------------

def period_name(tr: Translator, months: int) -> str:
    return tr.n("plan.months", months, n=months)


def prices_text(tr: Translator, plan: Plan) -> str:
    return "\n".join(tr("plan.price", period=period_name(tr, months),
                        amount=money(amount, plan.currency))
                     for months, amount in sorted(plan.prices.items()))


def plan_details(tr: Translator, plan: Plan) -> str:
    """Prices, trial and what it grants, one per line."""
    lines = [prices_text(tr, plan)]
    if plan.trial_days:
        lines.append(tr.n("plan.trial", plan.trial_days, n=plan.trial_days))
    if plan.item_id:
        lines.append(tr("plan.grants.item", id=escape(plan.item_id)))
    if plan.channel_chat_id is not None:
        lines.append(tr("plan.grants.channel",
                        title=escape(plan.channel_title or str(plan.channel_chat_id))))
    return "\n".join(lines)


def subscribe_link(cfg: BotConfig, plan: Plan) -> str:
    return deep_link(cfg, f"sub_{plan.public_id}")


# --- /plans -------------------------------------------------------------------------------------

async def _plans_view(tr: Translator, ledger: Ledger, cfg: BotConfig, user: User,
                      ) -> tuple[str, InlineKeyboardMarkup]:
    """The seller's active plans with their subscribe links. No subscriber counts: the ledger
    lists a seller's subscriptions a page at a time, and a count of a page would mislead."""
    plans = await ledger.plans_of_seller(user.id)
    if not plans:
        return tr("plans.empty"), plans_keyboard(tr, [])
    blocks = [tr("plans.title")]
    for plan in plans:
        head = tr("plans.head", name=escape(plan.name),
                  status=tr("plans.archived") if plan.status != "active" else "")
        block = [head, plan_details(tr, plan)]
        if plan.status == "active":
            block.append(escape(subscribe_link(cfg, plan)))
        blocks.append("\n".join(block))
    active = [(p.public_id, p.name) for p in plans if p.status == "active"]
    return fit("\n\n".join(blocks)), plans_keyboard(tr, active)


@router.message(Command("plans"))
async def cmd_plans(message: Message, state: FSMContext, user: User, tr: Translator,
                    ledger: Ledger, cfg: BotConfig) -> None:
    await state.clear()
    text, markup = await _plans_view(tr, ledger, cfg, user)
    await message.answer(text, reply_markup=markup)


@router.callback_query(PlanCb.filter(F.action == "list"))
async def back_to_plans(cb: CallbackQuery, user: User, tr: Translator, ledger: Ledger,
                        cfg: BotConfig) -> None:
    await edit(cb, *await _plans_view(tr, ledger, cfg, user))
    await cb.answer()


@router.callback_query(PlanCb.filter(F.action == "archive_ask"))
async def ask_archive(cb: CallbackQuery, callback_data: PlanCb, user: User, tr: Translator,
                      ledger: Ledger) -> None:
    plan = await _own_plan(ledger, callback_data.plan, user)
    await edit(cb, tr("plan.archive.confirm", name=escape(plan.name)),
               plan_archive_keyboard(tr, plan.public_id))
    await cb.answer()


@router.callback_query(PlanCb.filter(F.action == "archive_do"))
async def do_archive(cb: CallbackQuery, callback_data: PlanCb, user: User, tr: Translator,
                     ledger: Ledger, cfg: BotConfig) -> None:
    await ledger.archive_plan(user.id, callback_data.plan)
    await cb.answer(tr("plan.archive.done"))
    await edit(cb, *await _plans_view(tr, ledger, cfg, user))


async def _own_plan(ledger: Ledger, public_id: str, user: User) -> Plan:
    plan = await ledger.plan(public_id)
    if plan.seller_id != user.id:
        raise PlanNotFound(public_id)  # someone else's plan looks like none
    return plan


# --- the new-plan conversation ------------------------------------------------------------------

@router.callback_query(PlanCb.filter(F.action == "new"))
async def new_plan(cb: CallbackQuery, state: FSMContext, tr: Translator) -> None:
    await state.clear()
    await state.set_state(PlanForm.name)
    await cb.answer()
    if isinstance(cb.message, Message):
        await cb.message.answer(tr("plan.ask.name"))


@router.message(PlanForm.name, NOT_A_COMMAND)
async def got_name(message: Message, state: FSMContext, tr: Translator) -> None:
    try:
        name = parse.title(message.text or "", tr)
    except parse.InputProblem as problem:
        await message.answer(str(problem))
        return
    await state.update_data(name=name)
    await state.set_state(PlanForm.prices)
    await message.answer(tr("plan.ask.prices"))


def parse_prices(text: str, currency: str, tr: Translator) -> dict[int, int]:
    """'1m 5.00, 3m 13.50, 12m 48.00' → {1: 500, 3: 1350, 12: 4800}; each mistake its own
    sentence (InputProblem)."""
    prices: dict[int, int] = {}
    for part in filter(None, _SEPARATOR.split(text.strip())):
        m = _PRICE.match(part.strip())
        if m is None:
            raise parse.InputProblem(tr("plan.prices.bad", part=escape(part[:30])))
        months = int(m.group(1))
        if months not in PERIODS:
            raise parse.InputProblem(tr("plan.prices.period", months=months))
        if months in prices:
            raise parse.InputProblem(tr("plan.prices.twice", months=months))
        prices[months] = parse.amount(m.group(2), currency, tr)
    if not prices:
        raise parse.InputProblem(tr("plan.prices.none"))
    return dict(sorted(prices.items()))


@router.message(PlanForm.prices, NOT_A_COMMAND)
async def got_prices(message: Message, state: FSMContext, tr: Translator,
                     cfg: BotConfig) -> None:
    try:
        prices = parse_prices(message.text or "", cfg.currency, tr)
    except parse.InputProblem as problem:
        await message.answer(str(problem))
        return
    # JSON keys are strings: the form's data is stored as jsonb.
    await state.update_data(prices={str(m): a for m, a in prices.items()})
    await state.set_state(PlanForm.trial)
    await message.answer(tr("plan.ask.trial"), reply_markup=trial_keyboard(tr))


async def _trial_chosen(state: FSMContext, days: int, chat: Message, tr: Translator) -> None:
    await state.update_data(trial_days=days)
    await state.set_state(PlanForm.item)
    await chat.answer(tr("plan.ask.item"), reply_markup=plan_skip_keyboard(tr, "item"))


def _trial_days(text: str, tr: Translator) -> int:
    text = text.strip()
    if not text.isdigit() or int(text) > MAX_TRIAL_DAYS:
        raise parse.InputProblem(tr("plan.trial.bad", max=MAX_TRIAL_DAYS))
    return int(text)


@router.callback_query(PlanForm.trial, PlanFormCb.filter(F.field == "trial"))
async def got_trial_tap(cb: CallbackQuery, callback_data: PlanFormCb, state: FSMContext,
                        tr: Translator) -> None:
    try:
        days = _trial_days(callback_data.value, tr)
    except parse.InputProblem as problem:
        await cb.answer(str(problem), show_alert=True)
        return
    await cb.answer()
    if isinstance(cb.message, Message):
        await _trial_chosen(state, days, cb.message, tr)


@router.message(PlanForm.trial, NOT_A_COMMAND)
async def got_trial_text(message: Message, state: FSMContext, tr: Translator) -> None:
    try:
        days = _trial_days(message.text or "", tr)
    except parse.InputProblem as problem:
        await message.answer(str(problem), reply_markup=trial_keyboard(tr))
        return
    await _trial_chosen(state, days, message, tr)


async def _item_chosen(state: FSMContext, item: str | None, chat: Message,
                       tr: Translator) -> None:
    await state.update_data(item_id=item)
    await state.set_state(PlanForm.channel)
    await chat.answer(tr("plan.ask.channel"), reply_markup=plan_skip_keyboard(tr, "channel"))


@router.message(PlanForm.item, NOT_A_COMMAND)
async def got_item(message: Message, state: FSMContext, tr: Translator) -> None:
    try:
        item = parse.item_id(message.text or "", tr)
    except parse.InputProblem as problem:
        await message.answer(str(problem), reply_markup=plan_skip_keyboard(tr, "item"))
        return
    await _item_chosen(state, item, message, tr)


@router.callback_query(PlanForm.item, PlanFormCb.filter(F.field == "item"))
async def skipped_item(cb: CallbackQuery, state: FSMContext, tr: Translator) -> None:
    await cb.answer()
    if isinstance(cb.message, Message):
        await _item_chosen(state, None, cb.message, tr)


def _channel_ref(message: Message) -> int | str | None:
    """The chat a message names: a message forwarded from it, its id (-100…) or @username /
    t.me link; None when it names none."""
    origin = message.forward_origin
    if isinstance(origin, MessageOriginChannel):
        return origin.chat.id
    if isinstance(origin, MessageOriginChat):
        return origin.sender_chat.id
    text = (message.text or "").strip()
    if _CHAT_ID.match(text):
        return int(text)
    named = _CHAT_NAME.match(text)
    return f"@{named.group(1)}" if named else None


async def check_channel(bot: Bot, ref: int | str, tr: Translator) -> tuple[int, str]:
    """(chat id, title) of a channel or group where the bot can let members in and remove
    them; otherwise InputProblem saying exactly what to fix."""
    me = await bot.me()
    who = f"@{me.username}" if me.username else me.full_name
    try:
        chat = await bot.get_chat(ref)
        member = await bot.get_chat_member(chat.id, me.id)
    except (TelegramBadRequest, TelegramForbiddenError):  # unknown chat, or the bot is not in it
        raise parse.InputProblem(tr("plan.channel.unknown", bot=escape(who))) from None
    if chat.type == "private":
        raise parse.InputProblem(tr("plan.channel.not_a_channel"))
    title = chat.title or str(chat.id)
    if isinstance(member, ChatMemberOwner):
        return chat.id, title
    if not isinstance(member, ChatMemberAdministrator):
        raise parse.InputProblem(tr("plan.channel.not_admin", bot=escape(who),
                                    title=escape(title)))
    missing = []
    if chat.type != "group":  # a basic group has no separate rights: an administrator can both
        if not member.can_invite_users:
            missing.append(tr("plan.right.invite"))
        if not member.can_restrict_members:
            missing.append(tr("plan.right.ban"))
    if missing:
        raise parse.InputProblem(tr("plan.channel.rights", bot=escape(who), title=escape(title),
                                    rights=", ".join(missing)))
    return chat.id, title


@router.message(PlanForm.channel, F.forward_origin | NOT_A_COMMAND)
async def got_channel(message: Message, state: FSMContext, bot: Bot, user: User,
                      tr: Translator, ledger: Ledger, cfg: BotConfig) -> None:
    ref = _channel_ref(message)
    try:
        if ref is None:
            raise parse.InputProblem(tr("plan.channel.bad"))
        chat_id, title = await check_channel(bot, ref, tr)
    except parse.InputProblem as problem:
        await message.answer(str(problem), reply_markup=plan_skip_keyboard(tr, "channel"))
        return
    await _create(state, message, user, tr, ledger, cfg, chat_id, title)


@router.callback_query(PlanForm.channel, PlanFormCb.filter(F.field == "channel"))
async def skipped_channel(cb: CallbackQuery, state: FSMContext, user: User, tr: Translator,
                          ledger: Ledger, cfg: BotConfig) -> None:
    await cb.answer()
    if isinstance(cb.message, Message):
        await _create(state, cb.message, user, tr, ledger, cfg, None, None)


@router.message(PlanForm.name, ~F.text)
@router.message(PlanForm.prices, ~F.text)
@router.message(PlanForm.trial, ~F.text)
@router.message(PlanForm.item, ~F.text)
@router.message(PlanForm.channel, ~F.text, ~F.forward_origin)
async def text_please(message: Message, tr: Translator) -> None:
    await message.answer(tr("form.text_only"))


async def _create(state: FSMContext, chat: Message, user: User, tr: Translator, ledger: Ledger,
                  cfg: BotConfig, channel_id: int | None, channel_title: str | None) -> None:
    data = await state.get_data()
    # Cleared before the insert: a second tap on "Skip" finds no form and creates nothing.
    await state.clear()
    if "prices" not in data:
        return
    plan = await ledger.create_plan(
        seller_id=user.id, name=data["name"],
        prices={int(m): int(a) for m, a in data["prices"].items()}, currency=cfg.currency,
        trial_days=int(data.get("trial_days", 0)),
        item_id=data.get("item_id"), channel_chat_id=channel_id, channel_title=channel_title,
    )
    link = subscribe_link(cfg, plan)
    text = tr("plan.created", name=escape(plan.name), details=plan_details(tr, plan),
              link=escape(link))
    share = share_url(link, tr("plan.share", name=plan.name))
    await chat.answer(fit(text), reply_markup=plan_created_keyboard(tr, plan.public_id, share))
