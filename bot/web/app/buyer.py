"""The Mini App's buyer view: its JSON routes under /app/api/buyer/.

GET /app/api/buyer/overview   what the viewer has to pay, their subscriptions, purchases,
                              balances and the first page of their history
GET /app/api/buyer/history    the next page of history (?cursor= from the page before)

Only the viewer's own rows are read (ledger/buyer_reads.py); a viewer who never used the bot
gets empty lists. The history cursor is opaque and signed for its viewer: a made-up, altered or
someone else's cursor is a 422.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from aiohttp import web

from bot.settings import Settings
from bot.web.app.context import AppContext, Refusal, Viewer, answer, view_route
from bot.web.i18n import N_, t, tn
from bot.web.view import any_money, payer_display
from ledger.buyer_reads import (
    BuyerSubscription,
    HistoryLine,
    HistoryPosition,
    ToPay,
    balances_of_user,
    buyer_history,
    invoices_to_pay,
    subscriptions_of_buyer,
)
from ledger.purchases import Purchase, purchases_of_user

PAGE: Final = 20
LIST_LIMIT: Final = 50
MAX_CURSOR: Final = 200
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)
# Texts the code and the page script (app-buyer.js) name at run time ("app_buyer_method_" +
# method, "app_buyer_status_" + status …), listed so that extraction keeps them.
DYNAMIC: Final = (
    N_("page.app_buyer_method_internal"), N_("page.app_buyer_method_ton"),
    N_("page.app_buyer_method_usdt"), N_("page.app_buyer_method_stars"),
    N_("page.app_buyer_method_manual"), N_("page.app_buyer_move_deposit"),
    N_("page.app_buyer_move_topup"), N_("page.app_buyer_move_payout"),
    N_("page.app_buyer_move_payout_return"), N_("page.app_buyer_move_adjustment"),
    N_("page.app_buyer_move_excess"), N_("page.app_buyer_sub_renews"),
    N_("page.app_buyer_sub_ends"), N_("page.app_buyer_sub_trial_ends"),
    N_("page.app_buyer_sub_grace"), N_("page.app_buyer_sub_ended"),
    N_("page.app_buyer_status_active"), N_("page.app_buyer_status_trialing"),
    N_("page.app_buyer_status_past_due"), N_("page.app_buyer_status_incomplete"),
    N_("page.app_buyer_status_cancelled"), N_("page.app_buyer_status_expired"),
    N_("page.app_buyer_reversed"), N_("page.app_buyer_refunded"),
    N_("page.app_buyer_refund_pending"),
)
# How a card provider's name is written (the method is card:<provider>).
_PROVIDERS: Final = {"stripe": "Stripe", "yookassa": "YooKassa", "test": "Test"}


def _at(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def method_text(lang: str, method: str | None) -> str | None:
    """How a payment was paid, in words."""
    if method is None:
        return None
    if method.startswith("card:"):
        provider = method.removeprefix("card:")
        return t(lang, "app_buyer_method_card", provider=_PROVIDERS.get(provider, provider))
    if method in ("internal", "ton", "usdt", "stars", "manual"):
        return t(lang, f"app_buyer_method_{method}")
    return method


# --- the cursor ------------------------------------------------------------------------------

class Cursors:
    """History positions as opaque tokens, signed with a key derived from the bot token and
    bound to the viewer, so a token is good only for whoever was given it."""

    def __init__(self, secret: str | None) -> None:
        self._key = hashlib.sha256(b"paybot/app/buyer/history\0" + (secret or "").encode()
                                   ).digest()

    def _mac(self, user_id: int, body: str) -> str:
        return hmac.new(self._key, f"{user_id}|{body}".encode(), hashlib.sha256).hexdigest()[:24]

    def encode(self, user_id: int, pos: HistoryPosition) -> str:
        body = f"{(pos.at - _EPOCH) // _US}.{pos.source}.{pos.id}"
        raw = f"{body}.{self._mac(user_id, body)}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def decode(self, user_id: int | None, token: str) -> HistoryPosition:
        bad = Refusal(422, "invalid_cursor", "app_buyer_bad_cursor")
        if user_id is None or not 0 < len(token) <= MAX_CURSOR:
            raise bad
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
            at, source, id_, mac = raw.split(".")
            body = f"{at}.{source}.{id_}"
            if not hmac.compare_digest(mac, self._mac(user_id, body)):
                raise bad
            return HistoryPosition(_EPOCH + int(at) * _US, int(source), int(id_))
        except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
            raise bad from None


# --- views -----------------------------------------------------------------------------------

def to_pay_view(x: ToPay) -> dict[str, Any]:
    return {"id": x.public_id, "number": x.number, "title": x.title,
            "seller": payer_display(x.seller), "amount": any_money(x.amount, x.currency),
            "due": any_money(x.amount_due, x.currency), "due_at": _at(x.due_at),
            "expires_at": _at(x.expires_at), "overdue": x.overdue,
            "pay": f"/pay/{x.public_id}", "pdf": f"/pay/{x.public_id}/invoice.pdf"}


def subscription_view(s: BuyerSubscription, lang: str) -> dict[str, Any]:
    """`next` says what happens next and when: renews, ends (cancelled at the period's end),
    trial_ends, grace (past due: access until), ended."""
    if s.ended_at is not None:
        nxt = {"kind": "ended", "at": _at(s.ended_at)}
    elif s.status == "past_due":
        nxt = {"kind": "grace", "at": _at(s.grace_until or s.current_period_end)}
    elif s.cancel_at_period_end:
        nxt = {"kind": "ends", "at": _at(s.current_period_end)}
    elif s.status == "trialing":
        nxt = {"kind": "trial_ends", "at": _at(s.trial_end or s.current_period_end)}
    elif s.status == "incomplete":
        nxt = {"kind": "to_pay", "at": None}
    else:
        nxt = {"kind": "renews", "at": _at(s.current_period_end)}
    return {"id": s.public_id, "plan": s.plan_public_id, "plan_name": s.plan_name,
            "seller": payer_display(s.seller), "status": s.status, "months": s.months,
            "amount": any_money(s.amount, s.currency),
            # filled here: tn's own count parameter is named n, as is this text's placeholder
            "per_period": tn(lang, "app_buyer_per_months", s.months).format(
                n=s.months, amount=any_money(s.amount, s.currency)["display"]),
            "cancel_at_period_end": s.cancel_at_period_end,
            "next": nxt, "page": f"/sub/{s.plan_public_id}"}


def purchase_view(p: Purchase) -> dict[str, Any]:
    amount = any_money(p.amount, p.currency) if p.amount is not None and p.currency else None
    return {"item": p.item_id or p.achievement_id, "title": p.title, "number": p.invoice_number,
            "invoice": p.invoice_public_id, "seller": payer_display(p.seller),
            "at": _at(p.acquired_at), "amount": amount}


def history_view(line: HistoryLine, lang: str) -> dict[str, Any]:
    state = ("reversed" if line.reversed_at is not None
             else "refunded" if line.refund == "done"
             else "refund_pending" if line.refund == "pending" else None)
    out: dict[str, Any] = {
        "kind": line.kind, "at": _at(line.position.at),
        "amount": any_money(abs(line.amount), line.currency),
        "direction": "in" if line.kind != "payment" and line.amount > 0 else "out",
        "state": state,
    }
    if line.kind == "payment":
        out.update({"title": line.title, "number": line.invoice_number,
                    "invoice": line.invoice_public_id, "seller": payer_display(line.seller),
                    "method": line.method, "method_text": method_text(lang, line.method),
                    "receipt": f"/pay/{line.invoice_public_id}/invoice.pdf"})
    else:
        out["title"] = t(lang, f"app_buyer_move_{line.kind}")
    return out


def _only(request: web.Request, allowed: frozenset[str]) -> None:
    if any(name not in allowed for name in request.query):
        raise Refusal(422, "unknown_parameter", "app_err_bad_parameter")


def setup(router: web.UrlDispatcher, ctx: AppContext, settings: Settings) -> None:
    """Mount the buyer view's routes."""
    cursors = Cursors(ctx.cfg.bot_token)

    async def history_page(v: Viewer, after: HistoryPosition | None) -> dict[str, Any]:
        if v.user_id is None:
            return {"lines": [], "next_cursor": None}
        lines, nxt = await buyer_history(ctx.engine, v.user_id, after, limit=PAGE)
        return {"lines": [history_view(x, v.lang) for x in lines],
                "next_cursor": cursors.encode(v.user_id, nxt) if nxt else None}

    async def overview(request: web.Request, v: Viewer) -> web.Response:
        _only(request, frozenset({"lang"}))
        if v.user_id is None:
            return answer({"known": False, "to_pay": [], "subscriptions": [], "purchases": [],
                           "balances": [], "history": {"lines": [], "next_cursor": None}})
        to_pay = await invoices_to_pay(ctx.engine, v.user_id, limit=LIST_LIMIT)
        subs = await subscriptions_of_buyer(ctx.engine, v.user_id, limit=LIST_LIMIT)
        bought = await purchases_of_user(ctx.engine, v.user_id, limit=LIST_LIMIT)
        balances = await balances_of_user(ctx.engine, v.user_id)
        balances.setdefault("LIQ", 0)  # the balance everyone has, even before the first deposit
        return answer({
            "known": True,
            "to_pay": [to_pay_view(x) for x in to_pay],
            "subscriptions": [subscription_view(s, v.lang) for s in subs],
            "purchases": [purchase_view(p) for p in bought],
            "balances": [any_money(amount, cur) for cur, amount in sorted(
                balances.items(), key=lambda kv: (kv[0] != "LIQ", kv[0]))],
            "history": await history_page(v, None),
        })

    async def history(request: web.Request, v: Viewer) -> web.Response:
        _only(request, frozenset({"lang", "cursor"}))
        raw = request.query.get("cursor")
        after = cursors.decode(v.user_id, raw) if raw is not None else None
        return answer(await history_page(v, after))

    router.add_get("/app/api/buyer/overview", view_route(ctx, overview))
    router.add_get("/app/api/buyer/history", view_route(ctx, history))
