"""Plans and subscriptions over the seller API, /api/v1 (mounted by bot/api/routes.py).

Each handler parses and authenticates, calls one ledger use case (ledger/plans.py,
ledger/subscriptions.py through `Ledger`) and renders JSON; another seller's plan or
subscription is answered exactly like a missing one (404). The subscription's JSON is the same
in every answer and in the signed `subscription_*` callbacks (`subscription_renderer`, handed
to callback delivery by the composition root)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from bot.api.auth import PRINCIPAL
from bot.api.errors import invalid
from bot.api.schemas import (
    CancelSubscriptionIn,
    ExtendSubscriptionIn,
    PlanCreate,
    SubscribeIn,
    query_choice,
    read_body,
    read_optional_body,
)
from bot.api.views import invoice_view
from bot.links import Links
from ledger.core import Ledger
from ledger.errors import PlanNotFound, SubscriptionNotFound, UserNotFound
from ledger.models import iso
from ledger.money import format_amount, parse_amount
from ledger.plans import Plan, plans_of_seller
from ledger.subscription_reads import (
    SubscriptionFacts,
    subscription_facts,
    subscriptions_by_public_id,
)
from ledger.subscriptions import Subscription
from ledger.users import find_user_by_telegram

if TYPE_CHECKING:
    from bot.api.routes import ApiConfig

SUBSCRIPTION_STATUSES = ("incomplete", "trialing", "active", "past_due", "cancelled", "expired")
_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store"}
_REPLAYED = {**_HEADERS, "Idempotent-Replayed": "true"}


def _ok(data: Any, status: int = 200, headers: Mapping[str, str] = _HEADERS) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, headers=headers)


# --- views ------------------------------------------------------------------------------------

def plan_view(plan: Plan) -> dict[str, Any]:
    channel = None
    if plan.channel_chat_id is not None:
        channel = {"chat_id": plan.channel_chat_id, "title": plan.channel_title}
    return {
        "id": plan.public_id,
        "name": plan.name,
        "currency": plan.currency,
        "status": plan.status,
        "trial_days": plan.trial_days,
        "item_id": plan.item_id,
        "achievement_id": plan.achievement_id,
        "channel": channel,
        "prices": [{"months": months, "amount": format_amount(amount, plan.currency),
                    "amount_minor": amount}
                   for months, amount in sorted(plan.prices.items())],
        "created_at": iso(plan.created_at),
    }


def entitled_until(sub: Subscription, now: datetime | None = None) -> datetime | None:
    """Until when access holds as things stand: the paid (or trial) period's end, or for a
    past-due one the end of its grace; None without access."""
    if not sub.entitled(now or datetime.now(UTC)):
        return None
    if sub.status == "past_due":
        return sub.grace_until
    return sub.current_period_end


def subscription_view(sub: Subscription, facts: SubscriptionFacts | None,
                      now: datetime | None = None) -> dict[str, Any]:
    """The seller-facing JSON of a subscription (API answers and callback bodies)."""
    now = now or datetime.now(UTC)
    return {
        "id": sub.public_id,
        "plan": {"id": sub.plan_public_id, "name": sub.plan_name},
        "subscriber": None if facts is None else {
            "telegram_id": facts.telegram_id, "username": facts.username},
        "status": sub.status,
        "months": sub.months,
        "amount": format_amount(sub.amount, sub.currency),
        "amount_minor": sub.amount,
        "currency": sub.currency,
        "current_period_start": iso(sub.current_period_start),
        "current_period_end": iso(sub.current_period_end),
        "trial_end": iso(sub.trial_end),
        "cancel_at_period_end": sub.cancel_at_period_end,
        "grace_until": iso(sub.grace_until),
        "cancelled_at": iso(sub.cancelled_at),
        "ended_at": iso(sub.ended_at),
        "created_at": iso(sub.created_at),
        "entitled": sub.entitled(now),
        "latest_invoice": None if facts is None else facts.latest_invoice,
    }


async def render_subscriptions(ledger: Ledger, subs: Iterable[Subscription]
                               ) -> list[dict[str, Any]]:
    """Views of `subs` with their subscribers and latest invoices (read in one query)."""
    subs = list(subs)
    facts = await subscription_facts(ledger.engine, (s.id for s in subs))
    now = datetime.now(UTC)
    return [subscription_view(s, facts.get(s.id), now) for s in subs]


SubscriptionRenderer = Callable[[Iterable[str]], Awaitable[Mapping[str, dict[str, Any]]]]


def subscription_renderer(ledger: Ledger) -> SubscriptionRenderer:
    """The JSON of subscriptions by public id, read at delivery, for the `subscription_*`
    callback bodies (watchers/callbacks.py gets this from the composition root)."""
    async def render(public_ids: Iterable[str]) -> Mapping[str, dict[str, Any]]:
        subs = await subscriptions_by_public_id(ledger.engine, public_ids)
        views = await render_subscriptions(ledger, subs.values())
        return {v["id"]: v for v in views}
    return render


# --- routes -----------------------------------------------------------------------------------

def _telegram_id(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 16 and 1 <= int(raw) <= 2**52 - 1):
        raise invalid("telegram_id must be a Telegram user id (a positive integer)")
    return int(raw)


class SubscriptionsApi:
    def __init__(self, ledger: Ledger, cfg: ApiConfig) -> None:
        self.ledger = ledger
        self.cfg = cfg
        self.links: Links = cfg.links

    async def _plan(self, request: web.Request, public_id: str) -> Plan:
        """One of the caller's plans; another seller's looks exactly like a missing one."""
        plan = await self.ledger.plan(public_id)
        if plan.seller_id != request[PRINCIPAL].user_id:
            raise PlanNotFound(public_id[:40])
        return plan

    async def _subscription(self, request: web.Request) -> Subscription:
        public_id = request.match_info["subscription_id"]
        sub = await self.ledger.subscription(public_id)
        if sub.seller_id != request[PRINCIPAL].user_id:
            raise SubscriptionNotFound(public_id[:40])
        return sub

    async def _one(self, sub: Subscription, status: int = 200) -> web.Response:
        return _ok((await render_subscriptions(self.ledger, [sub]))[0], status)

    # --- plans --------------------------------------------------------------------------------

    async def create_plan(self, request: web.Request) -> web.Response:
        req = await read_body(request, PlanCreate, self.cfg.body_timeout)
        prices = {p.months: parse_amount(p.amount, req.currency) for p in req.prices}
        plan = await self.ledger.create_plan(
            request[PRINCIPAL].user_id, req.name, prices, currency=req.currency,
            trial_days=req.trial_days, item_id=req.item_id, achievement_id=req.achievement_id)
        return _ok(plan_view(plan), 201)

    async def list_plans(self, request: web.Request) -> web.Response:
        plans = await plans_of_seller(self.ledger.engine, request[PRINCIPAL].user_id,
                                      include_archived=True)
        return _ok({"items": [plan_view(p) for p in plans]})

    async def get_plan(self, request: web.Request) -> web.Response:
        return _ok(plan_view(await self._plan(request, request.match_info["plan_id"])))

    async def archive_plan(self, request: web.Request) -> web.Response:
        plan = await self.ledger.archive_plan(request[PRINCIPAL].user_id,
                                              request.match_info["plan_id"])
        return _ok(plan_view(plan))

    # --- subscriptions ------------------------------------------------------------------------

    async def subscribe(self, request: web.Request) -> web.Response:
        req = await read_body(request, SubscribeIn, self.cfg.body_timeout)
        plan = await self._plan(request, req.plan_id)
        user = await find_user_by_telegram(self.ledger.engine, req.telegram_id)
        if user is None:  # only someone who started the bot can be told and can pay
            raise UserNotFound(f"telegram_id {req.telegram_id} has not started the bot")
        made = await self.ledger.subscribe(plan.public_id, user.id, req.months,
                                           ton_rate=self.cfg.ton_rate)
        body: dict[str, Any] = {
            "subscription": (await render_subscriptions(self.ledger, [made.subscription]))[0],
            "invoice": None, "pay_url": None, "bot_url": None,
        }
        if made.invoice is not None:  # the first period's: the subscriber pays it there
            view = invoice_view((await self.ledger.invoice(made.invoice)).invoice, self.links)
            body.update(invoice=view, pay_url=view["pay_url"], bot_url=view["bot_url"])
        # Asking again while the first period is unpaid (same period) answers the same
        # subscription and invoice: a retried request creates nothing.
        return _ok(body, 200, _REPLAYED) if made.replayed else _ok(body, 201)

    async def list_subscriptions(self, request: web.Request) -> web.Response:
        raw = request.query.get("telegram_id")
        status = query_choice(request, "status", SUBSCRIPTION_STATUSES)
        subscriber_id = None
        if raw is not None:
            user = await find_user_by_telegram(self.ledger.engine, _telegram_id(raw))
            if user is None:  # never started the bot: subscribed to nothing
                return _ok({"items": []})
            subscriber_id = user.id
        subs = await self.ledger.subscriptions_of_seller(
            request[PRINCIPAL].user_id, subscriber_id=subscriber_id, status=status)
        return _ok({"items": await render_subscriptions(self.ledger, subs)})

    async def get_subscription(self, request: web.Request) -> web.Response:
        return await self._one(await self._subscription(request))

    async def access(self, request: web.Request) -> web.Response:
        """What a shop backend asks before serving: does this Telegram user have access to
        this plan now?"""
        raw_user, plan_id = request.query.get("telegram_id"), request.query.get("plan_id")
        if raw_user is None or plan_id is None:
            raise invalid("give telegram_id and plan_id")
        telegram_id = _telegram_id(raw_user)
        plan = await self._plan(request, plan_id)
        user = await find_user_by_telegram(self.ledger.engine, telegram_id)
        sub = None if user is None else await self.ledger.has_access(plan.public_id, user.id)
        if sub is None:
            return _ok({"access": False, "subscription": None, "until": None})
        now = datetime.now(UTC)
        view = subscription_view(sub, SubscriptionFacts(user.telegram_id, user.username, None),
                                 now)
        del view["latest_invoice"]  # kept cheap: the access check reads no invoices
        return _ok({"access": True, "subscription": view, "until": iso(entitled_until(sub, now))})

    async def cancel(self, request: web.Request) -> web.Response:
        req = await read_optional_body(request, CancelSubscriptionIn, self.cfg.body_timeout)
        sub = await self._subscription(request)
        sub = await self.ledger.cancel_subscription(
            sub.public_id, actor_id=request[PRINCIPAL].user_id, at_period_end=req.at_period_end)
        return await self._one(sub)

    async def extend(self, request: web.Request) -> web.Response:
        req = await read_body(request, ExtendSubscriptionIn, self.cfg.body_timeout)
        sub = await self._subscription(request)
        sub = await self.ledger.extend_subscription(
            sub.public_id, seller_id=request[PRINCIPAL].user_id, months=req.months,
            reason=req.reason)
        return await self._one(sub)


def add_subscription_routes(router: web.UrlDispatcher, ledger: Ledger, cfg: ApiConfig) -> None:
    api = SubscriptionsApi(ledger, cfg)
    router.add_post("/plans", api.create_plan)
    router.add_get("/plans", api.list_plans)
    router.add_get("/plans/{plan_id}", api.get_plan)
    router.add_post("/plans/{plan_id}/archive", api.archive_plan)
    router.add_post("/subscriptions", api.subscribe)
    router.add_get("/subscriptions", api.list_subscriptions)
    router.add_get("/subscriptions/{subscription_id}", api.get_subscription)
    router.add_post("/subscriptions/{subscription_id}/cancel", api.cancel)
    router.add_post("/subscriptions/{subscription_id}/extend", api.extend)
    router.add_get("/access", api.access)
