"""The Mini App's operator view: its JSON routes under /app/api/operator/.

What `paybot admin` shows and does, for the Telegram ids in OPERATOR_TELEGRAM_IDS only:

    GET  /app/api/operator/overview                      held transfers and card/Stars payments,
                                                         failed callbacks, payouts to approve,
                                                         system balances, the invariants
    POST /app/api/operator/transfers/{tx_hash}/resolve   `admin resolve`: apply | credit |
                                                         refund | refund_note
    POST /app/api/operator/callbacks/{event_id}/redeliver  `admin redeliver`
    POST /app/api/operator/payouts/{id}/approve|reject   `admin payouts approve|reject`

Every route refuses a non-operator (403) before it reads anything. The actions call the same
ledger use cases as the CLI; a ledger refusal is mapped once here (`_refusal`) to its HTTP
status (bot/http_errors.py) and a sentence. None of these use cases records an actor (the CLI
records none either), so each action is logged with the operator's Telegram id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final
from uuid import UUID

import orjson
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from bot.http_errors import ledger_status
from bot.settings import Settings
from bot.web.app.context import (
    AppContext,
    Refusal,
    Viewer,
    action_route,
    answer,
    require_operator,
    view_route,
)
from bot.web.i18n import P_
from bot.web.view import any_money, money
from ledger import payouts
from ledger.callbacks import CallbackRecord, list_callbacks, redeliver_callback
from ledger.db import fetch_all, fetch_one, transaction
from ledger.errors import LedgerError, UserNotFound
from ledger.invariants import check_invariants
from ledger.payouts import Payout
from ledger.rails import RailPayment, rail_payments
from ledger.transfer_admin import Resolution, TransferRecord, list_transfers, resolve_transfer
from ledger.users import find_user_by_telegram

log = logging.getLogger("paybot.operator")

LIST_LIMIT: Final = 100  # rows per section; the CLI pages further
INVARIANTS_TIMEOUT_MS: Final = 3000  # the check scans whole tables: bounded, never a hang
NOTE_MAX: Final = 500
ACTIONS: Final = ("apply", "credit", "refund", "refund_note")  # what `admin resolve` offers

# A ledger refusal an operator can meet here -> its sentence (page.<key>); others: generic.
_TEXT_OF_CODE: Final = {
    "transfer_not_found": P_("app_operator_err_no_transfer"),
    "nothing_held": P_("app_operator_err_nothing_held"),
    "invoice_not_found": P_("app_operator_err_no_invoice"),
    "user_not_found": P_("app_operator_err_no_user"),
    "invoice_not_ton": P_("app_operator_err_not_ton"),
    "not_enough_for_invoice": P_("app_operator_err_not_enough"),
    "hold_of_invoice": P_("app_operator_err_hold_of_invoice"),
    "invoice_already_paid": P_("app_operator_err_invoice_closed"),
    "invoice_cancelled": P_("app_operator_err_invoice_closed"),
    "invoice_expired": P_("app_operator_err_invoice_closed"),
    "invoice_void": P_("app_operator_err_invoice_closed"),
    "invoice_uncollectible": P_("app_operator_err_invoice_closed"),
    "invoice_draft": P_("app_operator_err_invoice_closed"),
    "payout_not_found": P_("app_operator_err_no_payout"),
    "payout_not_pending": P_("app_operator_err_payout_decided"),
    "payout_state_changed": P_("app_operator_err_payout_decided"),
    "no_refund_source": P_("app_operator_err_no_refund_source"),
}

Handler = Callable[[web.Request, Viewer], Awaitable[web.Response]]


def _refusal(exc: LedgerError) -> Refusal:
    exc = exc.public()
    key = _TEXT_OF_CODE.get(exc.code)
    refusal = Refusal(ledger_status(exc), exc.code, key or "app_operator_err_refused")
    refusal.params = {"code": exc.code}  # the generic sentence names it
    return refusal


def _operator(handler: Handler) -> Handler:
    """The role first (nothing read for anyone else), then the ledger's refusals as 4xx."""

    async def run(request: web.Request, v: Viewer) -> web.Response:
        require_operator(v)
        try:
            return await handler(request, v)
        except LedgerError as exc:
            raise _refusal(exc) from None

    return run


# --- input -----------------------------------------------------------------------------------


def _bad(field: str) -> Refusal:
    return Refusal(422, "invalid_field", "app_operator_err_field", field=field)


def _no_query(request: web.Request) -> None:
    if set(request.query) - {"lang"}:
        raise Refusal(422, "unknown_parameter", "app_err_bad_parameter")


async def _body(request: web.Request, allowed: frozenset[str]) -> dict[str, Any]:
    """The JSON object of an action (an empty body is {}); unknown keys are refused."""
    _no_query(request)
    raw = await request.read()
    try:
        data = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        raise Refusal(422, "invalid_body", "app_operator_err_body") from None
    if not isinstance(data, dict):
        raise Refusal(422, "invalid_body", "app_operator_err_body")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise _bad(str(unknown[0])[:40])
    return data


def _text(data: dict[str, Any], field: str, *, required: bool = False,
          limit: int = NOTE_MAX) -> str | None:
    value = data.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise _bad(field)
    return value.strip()


# --- what is shown ---------------------------------------------------------------------------


def _when(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None


def _transfer(t: TransferRecord, asset: str) -> dict[str, Any]:
    return {
        "tx_hash": t.tx_hash, "at": _when(t.utime), "source": t.source,
        "amount": any_money(t.open_hold_nano, asset), "value": money(t.value_nano, "TON"),
        "reason": t.open_hold_reason, "outcome": t.outcome, "comment": t.comment,
        "body_kind": t.body_kind, "invoice": t.invoice, "note": t.note,
    }


def _rail(p: RailPayment) -> dict[str, Any]:
    return {
        "id": p.id, "rail": p.rail, "channel": p.channel, "at": _when(p.received_at),
        "amount": any_money(p.amount, p.currency),
        "reason": p.hold_reason, "invoice": p.invoice_public_id,
        "payer_telegram_id": p.payer_telegram_id, "reference": p.reference,
    }


def _callback(c: CallbackRecord, sellers: dict[int, Any]) -> dict[str, Any]:
    seller = sellers.get(c.seller_id) or {}
    return {
        "event_id": str(c.event_id), "event": c.event_type, "invoice": c.invoice,
        "seller": {"telegram_id": seller.get("telegram_id"),
                   "username": seller.get("username")},
        "endpoint": c.url, "attempts": c.attempts, "last_error": c.last_error,
        "status": c.status, "failed_at": _when(c.failed_at), "at": _when(c.created_at),
    }


def _payout(p: Payout) -> dict[str, Any]:
    return {
        "id": p.id, "kind": p.kind, "status": p.status, "amount": any_money(p.amount, p.asset),
        "destination": p.destination_given, "user_id": p.user_id, "note": p.note,
        "debit": any_money(p.debit_amount, p.debit_currency)
        if p.debit_amount is not None and p.debit_currency else None,
        "at": _when(p.created_at),
    }


async def _hold_assets(ctx: AppContext, rows: list[TransferRecord]) -> dict[int, str]:
    # TransferRecord's hold amount is in the hold's asset (TON or a jetton), not named there.
    if not rows:
        return {}
    found = await fetch_all(
        ctx.engine, "SELECT transfer_id, asset FROM ton_holds"
                    " WHERE released_at IS NULL AND transfer_id = ANY(:ids)",
        ids=[t.id for t in rows])
    return {int(r["transfer_id"]): str(r["asset"]) for r in found}


async def _sellers(ctx: AppContext, records: list[CallbackRecord]) -> dict[int, Any]:
    if not records:
        return {}
    rows = await fetch_all(ctx.engine, "SELECT id, telegram_id, username FROM users"
                                       " WHERE id = ANY(:ids)",
                           ids=sorted({c.seller_id for c in records}))
    return {int(r["id"]): dict(r) for r in rows}


async def _system_balances(ctx: AppContext) -> list[dict[str, Any]]:
    # Applied balance plus credits not folded in yet, as ledger/accounts.py balance() counts.
    rows = await fetch_all(
        ctx.engine,
        """
        SELECT a.system_name, a.currency,
               a.balance + coalesce((SELECT sum(e.amount) FROM entries e
                                      WHERE e.account_id = a.id AND e.balance_after IS NULL), 0)
               AS balance
          FROM accounts a WHERE a.system_name IS NOT NULL
         ORDER BY a.system_name, a.currency
        """)
    return [{"account": r["system_name"], "balance": any_money(int(r["balance"]), r["currency"])}
            for r in rows]


def _query_cancelled(exc: DBAPIError) -> bool:
    orig = exc.orig
    return "57014" in (getattr(orig, "sqlstate", None), getattr(orig, "pgcode", None))


async def invariants_status(ctx: AppContext, timeout_ms: int | None = None) -> dict[str, Any]:
    """`paybot admin check`, bounded by a statement timeout: ok, broken (with what), or
    unknown when it could not finish in time."""
    checked_at = datetime.now(UTC).isoformat()
    limit = INVARIANTS_TIMEOUT_MS if timeout_ms is None else timeout_ms
    try:
        # The limit is the whole check's (its ~20 statements), not each statement's.
        async with asyncio.timeout(limit / 1000), transaction(ctx.engine) as conn:
            await conn.execute(text("SET TRANSACTION READ ONLY"))
            await conn.execute(text(f"SET LOCAL statement_timeout = {int(limit)}"))
            violations = await check_invariants(conn)
    except TimeoutError:
        return await _unknown(ctx, checked_at)
    except DBAPIError as exc:
        if not _query_cancelled(exc):
            raise
        return await _unknown(ctx, checked_at)
    return {"status": "broken" if violations else "ok", "violations": violations,
            "checked_at": checked_at}


async def _unknown(ctx: AppContext, checked_at: str) -> dict[str, Any]:
    """Not checkable now (a large ledger, a lock): what the scheduled check (watchers/alerts.py,
    every 15 minutes, without this page's time limit) last told the operators — "broken" since
    when, or "holding" since it cleared; None when it never found a breach."""
    row = await fetch_one(
        ctx.engine,
        """SELECT payload ->> 'state' AS state, created_at FROM outbox
            WHERE event_type = 'operator.alert' AND payload ->> 'kind' = 'invariants'
            ORDER BY id DESC LIMIT 1""")  # index outbox_operator_alerts
    scheduled = None if row is None else {"broken": row["state"] == "open",
                                          "since": row["created_at"].isoformat()}
    return {"status": "unknown", "violations": [], "checked_at": checked_at,
            "scheduled": scheduled}


def setup(router: web.UrlDispatcher, ctx: AppContext, settings: Settings) -> None:
    """Mount the operator view's routes."""
    currency: str = settings.ledger.currency
    ton_rate: Decimal = settings.ledger.ton_rate

    async def overview(request: web.Request, v: Viewer) -> web.Response:
        _no_query(request)
        held = await list_transfers(ctx.engine, unmatched=True, limit=LIST_LIMIT)
        assets = await _hold_assets(ctx, held)
        rails = await rail_payments(ctx.engine, held_only=True, limit=LIST_LIMIT)
        failed, _ = await list_callbacks(ctx.engine, seller_id=None, status="failed",
                                         limit=LIST_LIMIT)
        sellers = await _sellers(ctx, failed)
        waiting = await payouts.list_payouts(ctx.engine, statuses=("pending_approval",),
                                             limit=LIST_LIMIT)
        return answer({
            "held_transfers": [_transfer(t, assets.get(t.id, "TON")) for t in held],
            "held_rail_payments": [_rail(p) for p in rails],
            "failed_callbacks": [_callback(c, sellers) for c in failed],
            "payouts_to_approve": [_payout(p) for p in waiting],
            "system_balances": await _system_balances(ctx),
            "invariants": await invariants_status(ctx),
            "resolve_actions": list(ACTIONS),
            "currency": currency,
        })

    async def resolve(request: web.Request, v: Viewer) -> web.Response:
        tx_hash = request.match_info["tx_hash"]
        data = await _body(request, frozenset({"action", "invoice", "telegram_id", "note"}))
        action = data.get("action")
        if action not in ACTIONS:
            raise _bad("action")
        note = _text(data, "note")
        if action == "refund":
            p = await payouts.refund_held_transfer(ctx.engine, tx_hash, note=note)
            log.info("operator %s: refund of transfer %s ordered as payout %s",
                     v.telegram_id, tx_hash, p.id)
            return answer({"action": "refund", "payout": _payout(p)})
        invoice = _text(data, "invoice", required=True, limit=40) if action == "apply" else None
        user_id = None
        if action == "credit":
            telegram_id = data.get("telegram_id")
            if isinstance(telegram_id, bool) or not isinstance(telegram_id, int) \
                    or not 0 < telegram_id < 2**63:
                raise _bad("telegram_id")
            user = await find_user_by_telegram(ctx.engine, telegram_id)
            if user is None:
                raise UserNotFound(str(telegram_id))
            user_id = user.id
        refund_note = _text(data, "note", required=True) if action == "refund_note" else None
        done: Resolution = await resolve_transfer(
            ctx.engine, tx_hash, apply_invoice=invoice, credit_user_id=user_id,
            refund_note=refund_note, note=None if refund_note else note,
            currency=currency, ton_rate=ton_rate)
        log.info("operator %s resolved transfer %s: %s", v.telegram_id, tx_hash, done.action)
        return answer({
            "action": done.action, "amount": money(done.amount_nano, "TON"),
            "outcome": done.outcome, "invoice_status": done.invoice_status,
            "payment_id": done.payment_id,
            "credited": money(done.credited, currency) if done.credited is not None else None,
            "still_held": money(done.held_nano, "TON"),
        })

    async def redeliver(request: web.Request, v: Viewer) -> web.Response:
        await _body(request, frozenset())
        try:
            event_id = UUID(request.match_info["event_id"])
        except ValueError:
            raise Refusal(404, "callback_not_found", "app_operator_err_no_callback") from None
        # Only a failed callback is sent again from here: a second tap, or one delivered
        # meanwhile, is a 409 rather than a fresh retry schedule.
        row = await fetch_one(
            ctx.engine, "SELECT delivered_at IS NOT NULL AS delivered,"
                        " failed_at IS NOT NULL AS failed FROM outbox"
                        " WHERE event_id = :e AND topic = 'callback'", e=event_id)
        if row is None:
            raise Refusal(404, "callback_not_found", "app_operator_err_no_callback")
        if row["delivered"]:
            raise Refusal(409, "callback_delivered", "app_operator_err_callback_delivered")
        if not row["failed"]:
            raise Refusal(409, "callback_pending", "app_operator_err_callback_pending")
        record = await redeliver_callback(ctx.engine, event_id, seller_id=None)
        if record is None:
            raise Refusal(404, "callback_not_found", "app_operator_err_no_callback")
        log.info("operator %s redelivered callback %s", v.telegram_id, event_id)
        return answer({"callback": _callback(record, await _sellers(ctx, [record]))})

    def decide(approve: bool) -> Handler:
        async def run(request: web.Request, v: Viewer) -> web.Response:
            data = await _body(request, frozenset({"note"}))
            note = _text(data, "note", required=not approve)  # a rejection tells the user why
            try:
                payout_id = int(request.match_info["payout_id"])
            except ValueError:
                raise Refusal(404, "payout_not_found", "app_operator_err_no_payout") from None
            if not 0 < payout_id < 2**63:
                raise Refusal(404, "payout_not_found", "app_operator_err_no_payout")
            await payouts.get_payout(ctx.engine, payout_id)  # 404 before the decision
            p = await (payouts.approve if approve else payouts.reject)(
                ctx.engine, payout_id, note=note)
            log.info("operator %s %s payout %s", v.telegram_id,
                     "approved" if approve else "rejected", payout_id)
            return answer({"payout": _payout(p)})

        return run

    base = "/app/api/operator"
    router.add_get(f"{base}/overview", view_route(ctx, _operator(overview)))
    router.add_post(f"{base}/transfers/{{tx_hash}}/resolve",
                    action_route(ctx, _operator(resolve)))
    router.add_post(f"{base}/callbacks/{{event_id}}/redeliver",
                    action_route(ctx, _operator(redeliver)))
    router.add_post(f"{base}/payouts/{{payout_id}}/approve",
                    action_route(ctx, _operator(decide(True))))
    router.add_post(f"{base}/payouts/{{payout_id}}/reject",
                    action_route(ctx, _operator(decide(False))))
