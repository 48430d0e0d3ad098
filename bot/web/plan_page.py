"""A plan's page and subscribing from the Mini App (mounted by bot/web/routes.py).

GET  /sub/<plan_id>            the plan: name, seller, each period with its price, the trial,
                               what it grants; in a plain browser a "Subscribe in Telegram"
                               link (a subscription renews from the Telegram balance), inside
                               the Mini App a button per period (sub.js); 404 page when the
                               plan is unknown or archived
POST /sub/<plan_id>/subscribe  `Authorization: tma <initData>`, body {"months": n}:
                               `Ledger.subscribe` → the subscription and the first period's
                               pay page (`/pay/<invoice>`, paid there like any invoice), or
                               none while a trial runs first
"""

from __future__ import annotations

import html
import json
import re
from decimal import Decimal
from functools import cache
from string import Template
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.documents.labels import day
from bot.web import render
from bot.web.auth import AuthError
from bot.web.i18n import normalize, request_language, t, tn
from bot.web.view import money
from ledger.errors import LedgerError, PlanNotFound
from ledger.ids import parse_invoice_id
from ledger.models import iso
from ledger.plans import PERIODS, Plan
from ledger.subscriptions import Subscription
from ledger.users import get_user

if TYPE_CHECKING:
    from bot.web.routes import PayPages

_TEXT_KEY = re.compile(r"\$t_([a-z0-9_]+)")


@cache
def _template() -> tuple[Template, tuple[str, ...]]:
    text = (render.HERE / "templates" / "plan.html").read_text(encoding="utf-8")
    return Template(text), tuple(sorted(set(_TEXT_KEY.findall(text))))


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _hidden(hide: bool) -> str:
    return " hidden" if hide else ""


def period_text(lang: str, months: int) -> str:
    return tn(lang, "plan_months", months, months=months)


def grants(plan: Plan, lang: str) -> list[str]:
    """What a live subscription gives, one sentence each."""
    out = []
    if plan.channel_chat_id is not None:
        out.append(t(lang, "plan_channel", title=plan.channel_title or "—"))
    if plan.item_id:
        out.append(t(lang, "plan_item", item=plan.item_id))
    if plan.achievement_id:
        out.append(t(lang, "plan_achievement", achievement=plan.achievement_id))
    return out


def subscription_json(sub: Subscription) -> dict[str, Any]:
    return {"id": sub.public_id, "status": sub.status,
            "current_period_end": iso(sub.current_period_end), "trial_end": iso(sub.trial_end)}


class PlanPages:
    """The plan page and its subscribe call; shares the pay pages' config, sign-in and
    error shapes (`PayPages`), so a refusal reads the same on both."""

    def __init__(self, pages: PayPages, ton_rate: Decimal) -> None:
        self.pages = pages
        self.ledger = pages.ledger
        self.cfg = pages.cfg
        self.ton_rate = ton_rate

    def _not_found(self, lang: str) -> web.Response:
        return render.html_response(render.error_page(
            lang, self.pages.static, heading=t(lang, "plan_not_found_title"),
            message=t(lang, "plan_not_found_text")), status=404)

    async def page(self, request: web.Request) -> web.StreamResponse:
        raw = request.match_info["plan_id"]
        lang = request_language(request)
        canonical = parse_invoice_id(raw)
        if canonical is None:
            return self._not_found(lang)
        if canonical != raw:
            query = f"?{request.query_string}" if request.query_string else ""
            raise web.HTTPMovedPermanently(f"/sub/{canonical}{query}")
        try:
            plan = await self.ledger.plan(canonical)
        except PlanNotFound:
            return self._not_found(lang)
        if plan.status != "active":  # archived: nobody new may subscribe
            return self._not_found(lang)
        seller = await get_user(self.ledger.engine, plan.seller_id)
        return render.html_response(self.render(plan, seller.username, lang))

    def render(self, plan: Plan, seller: str | None, lang: str) -> str:
        static = self.pages.static
        bot = self.cfg.bot_username
        template, keys = _template()
        periods = [(months, money(amount, plan.currency)["display"])
                   for months, amount in sorted(plan.prices.items())]
        what = grants(plan, lang)
        values = {f"t_{key}": _e(t(lang, key)) for key in keys}
        values.update(
            lang=lang,
            css_url=_e(static.url("pay.css")),
            js_url=_e(static.url("sub.js")),
            page_title=_e(t(lang, "plan_page_title", name=plan.name)),
            name=_e(plan.name),
            seller=_e(f"@{seller}" if seller else "—"),
            trial=_e(tn(lang, "plan_trial", plan.trial_days, days=plan.trial_days)
                     if plan.trial_days else ""),
            trial_hidden=_hidden(not plan.trial_days),
            periods_html="".join(
                f'<li><span class="what">{_e(period_text(lang, months))}</span>'
                f'<span class="sum">{_e(price)}</span></li>' for months, price in periods),
            grants_html="".join(f"<li>{_e(line)}</li>" for line in what),
            grants_hidden=_hidden(not what),
            telegram_url=_e(f"https://t.me/{bot}?start=sub_{plan.public_id}"),
            buttons_html="".join(
                f'<button type="button" class="btn{" primary" if i == 0 else ""}" '
                f'data-months="{months}">{_e(self.button_text(lang, months, price))}</button>'
                for i, (months, price) in enumerate(periods)),
            data_json=render.script_json({"plan": plan.public_id, "lang": lang,
                                          "subscribe": f"/sub/{plan.public_id}/subscribe",
                                          "err_generic": t(lang, "err_generic")}),
        )
        return template.substitute(values)

    @staticmethod
    def button_text(lang: str, months: int, price: str) -> str:
        return t(lang, "plan_subscribe_period", period=period_text(lang, months), amount=price)

    async def subscribe(self, request: web.Request) -> web.Response:
        pages = self.pages
        lang = request_language(request)
        try:
            viewer = pages._viewer(request)
            if viewer is None:
                raise AuthError("missing_init_data", "Mini App init data is required")
        except AuthError as exc:
            return pages._auth_error(exc, lang)
        lang = normalize(viewer.language) or lang
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        months = body.get("months") if isinstance(body, dict) else None
        if isinstance(months, bool) or not isinstance(months, int) or months not in PERIODS:
            return pages._error(400, "bad_request", t(lang, "err_bad_request"),
                                detail="months: 1, 3, 6 or 12")
        plan_id = parse_invoice_id(request.match_info["plan_id"])
        try:
            if plan_id is None:
                raise PlanNotFound(request.match_info["plan_id"][:40])
            user = await pages.buyers.get(viewer.telegram_id, viewer.username, viewer.language)
            done = await self.ledger.subscribe(plan_id, user.id, months, ton_rate=self.ton_rate)
        except LedgerError as exc:
            return pages._ledger_error(exc, lang)
        sub = done.subscription
        answer: dict[str, Any] = {
            "subscription": subscription_json(sub),
            "pay_url": f"/pay/{done.invoice}" if done.invoice else None,
            "replayed": done.replayed,
        }
        if done.invoice is None and sub.trial_end is not None:
            answer["message"] = t(lang, "plan_trial_until", date=day(lang, sub.trial_end.date()))
        return web.json_response(answer, headers={"Cache-Control": "no-store"})
