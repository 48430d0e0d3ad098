"""What every Mini App view needs: who is asking (init data), their roles, and JSON answers.

The Mini App's views (bot/web/app/: seller, buyer, operator) answer JSON under /app/api/,
authenticated as the pay page is, by `Authorization: tma <initData>` (bot/web/auth.py). A view
refuses with one sentence in the viewer's language: 401 without valid init data, 403 when the
viewer lacks the role (a buyer opening the seller view, a non-operator the operator view),
422 for a bad parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson
from aiohttp import web

from bot.web.auth import AuthError, MiniAppUser, init_data_from_header, validate_init_data
from bot.web.guard import PageGuard
from bot.web.i18n import normalize, request_language, t
from bot.web.render import Static
from bot.web.view import PayConfig
from ledger.core import Ledger
from ledger.db import fetch_one
from ledger.users import find_user_by_telegram

MAX_QUERY_PARAMS: Final = 12  # no view takes more; a longer query string is refused


@dataclass(frozen=True, slots=True)
class AppContext:
    """Built once in setup_mini_app; every view module gets it."""

    ledger: Ledger
    cfg: PayConfig
    static: Static
    guard: PageGuard
    operators: frozenset[int]  # OPERATOR_TELEGRAM_IDS

    @property
    def engine(self):  # type: ignore[no-untyped-def]
        return self.ledger.engine


@dataclass(frozen=True, slots=True)
class Viewer:
    """The Mini App user behind a request. `user_id` is None for someone who never used the
    bot (nothing of theirs to show yet); `seller` when they ever issued an invoice or a plan."""

    telegram_id: int
    user_id: int | None
    lang: str
    seller: bool
    operator: bool


class Refusal(Exception):
    """A view's clear 4xx: `code` for programs, the sentence `page.<text>` for people."""

    def __init__(self, status: int, code: str, text: str, **params: object) -> None:
        super().__init__(code)
        self.status, self.code, self.text, self.params = status, code, text, params


def answer(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status,
                        headers={"Content-Type": "application/json",
                                 "Cache-Control": "no-store"})


def refusal_response(exc: Refusal, lang: str) -> web.Response:
    return answer({"error": {"code": exc.code, "message": t(lang, exc.text, **exc.params)}},
                  exc.status)


async def viewer(ctx: AppContext, request: web.Request) -> Viewer:
    """The viewer of a view request; Refusal(401) without valid, fresh init data."""
    lang = request_language(request)
    if len(request.query) > MAX_QUERY_PARAMS:
        raise Refusal(422, "too_many_parameters", "app_err_bad_parameter")
    try:
        init_data = init_data_from_header(request.headers.get("Authorization"))
        if init_data is None:
            raise AuthError("init_data_missing", "open this page from the bot")
        user: MiniAppUser = validate_init_data(ctx.cfg.bot_token, init_data,
                                               ctx.cfg.init_data_max_age)
    except AuthError as exc:
        if exc.code == "init_data_expired":
            raise Refusal(401, exc.code, "session_expired") from None
        raise Refusal(401, exc.code, "app_err_auth") from None
    lang = normalize(request.query.get("lang")) or normalize(user.language) or lang
    found = await find_user_by_telegram(ctx.engine, user.telegram_id)
    seller = False
    if found is not None:
        row = await fetch_one(
            ctx.engine,
            "SELECT EXISTS (SELECT 1 FROM invoices WHERE seller_id = :u)"
            " OR EXISTS (SELECT 1 FROM plans WHERE seller_id = :u) AS seller",
            u=found.id)
        seller = bool(row and row["seller"])
    return Viewer(user.telegram_id, found.id if found else None, lang, seller,
                  user.telegram_id in ctx.operators)


def require_seller(v: Viewer) -> int:
    """The seller's user id; Refusal(403) for someone who never sold anything."""
    if not v.seller or v.user_id is None:
        raise Refusal(403, "not_a_seller", "app_err_not_seller")
    return v.user_id


def require_operator(v: Viewer) -> None:
    if not v.operator:
        raise Refusal(403, "not_an_operator", "app_err_not_operator")


def view_route(ctx: AppContext, handler):  # type: ignore[no-untyped-def]
    """A JSON view: `handler(request, viewer)`; limits and failures as the pay page's JSON
    routes (bot/web/guard.py), refusals as a 4xx with one sentence."""

    return ctx.guard.wrap(_refusing(ctx, handler), json_api=True, kind="read")


def action_route(ctx: AppContext, handler):  # type: ignore[no-untyped-def]
    """As view_route, for a POST that changes something: the per-user limit of payments, and
    the body is read (bounded in size and time) before the handler runs."""

    return ctx.guard.wrap(_refusing(ctx, handler), json_api=True, kind="pay")


def _refusing(ctx: AppContext, handler):  # type: ignore[no-untyped-def]
    """The handler with its viewer; a Refusal answered in the viewer's language (their
    Telegram language once init data is checked, else the request's)."""

    async def run(request: web.Request) -> web.StreamResponse:
        v: Viewer | None = None
        try:
            v = await viewer(ctx, request)
            return await handler(request, v)
        except Refusal as exc:
            return refusal_response(exc, v.lang if v is not None else request_language(request))

    return run
