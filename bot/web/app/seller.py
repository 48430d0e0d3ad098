"""The Mini App's seller view: its JSON routes under /app/api/seller/ and its downloads.

    GET  /app/api/seller/dashboard?from&to            the period's figures (ledger/reports.py)
    GET  /app/api/seller/charts/revenue.svg?from&to&bg&text&hint&accent
    GET  /app/api/seller/charts/methods.svg?...       charts in the page's colours (bot/charts.py)
    GET  /app/api/seller/invoices?status&overdue&q&cursor&limit   (ledger/invoice_search.py)
    POST /app/api/seller/exports {kind, format, from, to}  -> {url, file_name}
    GET  /app/export/<kind>.<fmt>?from&to&seller&exp&sig    the file, streamed

A Mini App cannot send its init data with a download (Telegram's downloadFile takes a URL), so
an export is asked for by a signed-in POST that answers a link signed with HMAC-SHA256 over the
seller, kind, format, period and an expiry (10 minutes); the link streams the same file as the
seller API's exports (bot/api/reports.py: stream_export). Periods are read as the seller API
reads them (read_period); every refusal is one sentence in the viewer's language.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from datetime import UTC, date, datetime
from typing import Any, Final
from urllib.parse import urlencode

from aiohttp import web

from bot.api.reports import PeriodProblem, export_name, read_period, stream_export
from bot.charts import (
    BarsChart,
    ChartsBusy,
    MonthsChart,
    Palette,
    draw,
    methods_svg,
    month_label,
    revenue_svg,
)
from bot.settings import Settings
from bot.web.app.context import (
    AppContext,
    Refusal,
    Viewer,
    action_route,
    answer,
    refusal_response,
    require_seller,
    view_route,
)
from bot.web.i18n import N_, request_language, t
from ledger.errors import InvalidCursor
from ledger.invoice_search import MAX_QUERY, STATUSES, ListedInvoice, search_invoices
from ledger.money import display_amount, format_amount
from ledger.reports import Dashboard, dashboard, subscription_summary, top_items

PERIOD: Final = frozenset({"from", "to", "lang"})
COLOURS: Final = ("bg", "text", "hint", "accent")
CHART_PARAMS: Final = PERIOD | frozenset(COLOURS)
LIST_PARAMS: Final = frozenset({"status", "overdue", "q", "cursor", "limit", "lang"})
EXPORT_PARAMS: Final = frozenset({"from", "to", "seller", "exp", "sig", "lang"})
KINDS: Final = ("payments", "invoices")
FORMATS: Final = ("csv", "xlsx")
LINK_SECONDS: Final = 600
_HEX = re.compile(r"#[0-9a-fA-F]{6}")
_PUBLIC_ID = re.compile(r"[0-9A-HJKMNP-TV-Z]{13}")
_SIG = re.compile(r"[0-9a-f]{64}")
_DEFAULTS: Final = Palette()
# Texts named at run time (f"app_seller_err_{code}", methods), for extraction (make messages).
DYNAMIC: Final = (
    N_("page.app_seller_err_unknown_parameter"), N_("page.app_seller_err_repeated_parameter"),
    N_("page.app_seller_err_bad_date"), N_("page.app_seller_err_period_upside_down"),
    N_("page.app_seller_err_period_too_long"), N_("page.app_seller_method_internal"),
    N_("page.app_seller_method_manual"), N_("page.app_seller_method_stars"),
)


# --- periods and parameters ---------------------------------------------------------------------

def _period(query: Any, allowed: frozenset[str] = PERIOD) -> tuple[date, date]:
    try:
        return read_period(query, allowed)
    except PeriodProblem as exc:
        raise Refusal(422, exc.code, f"app_seller_err_{exc.code}", name=exc.name) from None


def _months(start: date, end: date) -> list[date]:
    first = max(start, date(1970, 1, 1))
    index = first.year * 12 + first.month - 1
    last = end.year * 12 + end.month - 1
    return [date(i // 12, i % 12 + 1, 1) for i in range(index, last + 1)]


def _palette(query: Any) -> Palette:
    values = {}
    for name in COLOURS:
        raw = query.get(name)
        if raw is None:
            continue
        if not _HEX.fullmatch(raw):
            raise Refusal(422, "bad_colour", "app_seller_err_bad_colour", name=name)
        values[name] = raw.lower()
    return Palette(**{**{n: getattr(_DEFAULTS, n) for n in COLOURS}, **values})


def method_name(method: str, lang: str) -> str:
    """How people read a payment method: "Liquid $ balance", "Card (stripe)"…"""
    if method.startswith("card:"):
        return t(lang, "app_seller_method_card", provider=method[5:])
    if method in ("ton", "usdt"):
        return method.upper()
    if method in ("internal", "manual", "stars"):
        return t(lang, f"app_seller_method_{method}")
    return method


def _money(amount: int, currency: str) -> dict[str, Any]:
    return {"currency": currency, "amount": display_amount(amount, currency),
            "value": format_amount(amount, currency), "amount_minor": amount}


# --- the dashboard ------------------------------------------------------------------------------

def _month_series(d: Dashboard, months: list[date]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Per currency, one amount per month of the period (zero months included)."""
    index = {m.strftime("%Y-%m"): i for i, m in enumerate(months)}
    found: dict[str, list[int]] = {}
    for m in d.by_month:
        if m.month in index:
            found.setdefault(m.currency, [0] * len(months))[index[m.month]] += m.amount
    if not found:  # nothing received yet: one empty panel in Liquid $
        found["LIQ"] = [0] * len(months)
    return tuple((c, tuple(v)) for c, v in sorted(found.items()))


def _method_series(d: Dashboard, lang: str) -> tuple[tuple[str, tuple[tuple[str, int], ...]], ...]:
    found: dict[str, list[tuple[str, int]]] = {}
    for m in d.by_method:
        if m.amount or m.payments:
            found.setdefault(m.currency, []).append((method_name(m.method, lang), m.amount))
    return tuple((c, tuple(sorted(rows, key=lambda r: -r[1]))) for c, rows in
                 sorted(found.items()))


def _highlight(months: list[date], today: date) -> int | None:
    this = today.replace(day=1)
    return months.index(this) if this in months else None


def _chart_query(start: date, end: date, lang: str) -> str:
    return urlencode({"from": start.isoformat(), "to": end.isoformat(), "lang": lang})


def _alt(title: str, lines: list[str]) -> str:
    return f"{title}. " + " ".join(lines)


def dashboard_view(d: Dashboard, lang: str, today: date, items: list[Any],
                   subs: list[Any]) -> dict[str, Any]:
    months = _months(d.start, d.end)
    series = _month_series(d, months)
    latest = months[-1] if months else today.replace(day=1)
    month_rows = [{"month": m.strftime("%Y-%m"), "label": month_label(m, lang),
                   "amounts": [_money(amounts[i], c) for c, amounts in series]}
                  for i, m in enumerate(months)]
    totals = [_money(sum(amounts), c) for c, amounts in series]
    this_month = [_money(amounts[-1] if amounts else 0, c) for c, amounts in series]
    methods = [{"method": m.method, "name": method_name(m.method, lang), **_money(m.amount,
                m.currency), "payments": m.payments}
               for m in d.by_method if m.amount or m.payments]
    open_count = sum(s.count for s in d.open)
    overdue_count = sum(s.count for s in d.overdue)
    revenue_title = t(lang, "app_seller_chart_revenue")
    methods_title = t(lang, "app_seller_chart_methods")
    query = _chart_query(d.start, d.end, lang)
    return {
        "from": d.start.isoformat(), "to": d.end.isoformat(),
        "this_month": {"month": latest.strftime("%Y-%m"), "label": month_label(latest, lang),
                       "amounts": this_month},
        "revenue": totals,
        "months": month_rows,
        "methods": methods,
        "outstanding": {
            "open": [{**_money(s.amount, s.currency), "invoices": s.count} for s in d.open],
            "overdue": [{**_money(s.amount, s.currency), "invoices": s.count}
                        for s in d.overdue],
            "open_count": open_count, "overdue_count": overdue_count,
        },
        "conversion": {"issued": d.issued, "paid": d.paid, "rate": d.conversion,
                       "percent": f"{round(d.conversion * 100)}%"},
        "top_items": [{"item": i.item, **_money(i.amount, i.currency), "payments": i.payments}
                      for i in items],
        "subscriptions": [{"currency": s.currency, "mrr": _money(s.mrr, s.currency),
                           "active": s.active, "churned": s.churned,
                           "churn_rate": s.churn_rate,
                           "churn_percent": f"{round(s.churn_rate * 100, 1):g}%"}
                          for s in subs],
        "charts": {
            "revenue": {"url": f"/app/api/seller/charts/revenue.svg?{query}",
                        "alt": _alt(revenue_title, [
                            f"{row['label']}: " + ", ".join(a["amount"] for a in row["amounts"])
                            + ";" for row in month_rows])},
            "methods": {"url": f"/app/api/seller/charts/methods.svg?{query}",
                        "alt": _alt(methods_title, [f"{m['name']}: {m['amount']};"
                                                    for m in methods])},
        },
    }


# --- invoices -----------------------------------------------------------------------------------

def _one(query: Any, name: str) -> str | None:
    values = query.getall(name, [])
    if len(values) > 1:
        raise Refusal(422, "repeated_parameter", "app_seller_err_repeated_parameter", name=name)
    return values[0] if values else None


def _list_args(query: Any) -> dict[str, Any]:
    unknown = sorted(set(query) - LIST_PARAMS)
    if unknown:
        raise Refusal(422, "unknown_parameter", "app_seller_err_unknown_parameter",
                      name=unknown[0][:40])
    status = _one(query, "status") or None
    if status is not None and status not in STATUSES:
        raise Refusal(422, "bad_status", "app_seller_err_bad_status")
    overdue = _one(query, "overdue") or "0"
    if overdue not in ("0", "1"):
        raise Refusal(422, "bad_overdue", "app_seller_err_bad_overdue")
    q = (_one(query, "q") or "").strip()
    if len(q) > MAX_QUERY:
        raise Refusal(422, "query_too_long", "app_seller_err_query_too_long", limit=MAX_QUERY)
    cursor = _one(query, "cursor") or None
    if cursor is not None and not _PUBLIC_ID.fullmatch(cursor):
        raise Refusal(422, "invalid_cursor", "app_seller_err_invalid_cursor")
    raw_limit = _one(query, "limit") or "20"
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 50:
        raise Refusal(422, "bad_limit", "app_seller_err_bad_limit")
    return {"status": status, "overdue": overdue == "1", "q": q or None, "after": cursor,
            "limit": int(raw_limit)}


def invoice_row(item: ListedInvoice, lang: str, now: datetime) -> dict[str, Any]:
    inv = item.invoice
    status = inv.effective_status(now)
    return {
        "id": inv.public_id, "number": inv.number, "title": inv.title, "buyer": item.buyer,
        "currency": inv.currency,
        "amount": display_amount(inv.amount, inv.currency), "amount_minor": inv.amount,
        "amount_due": display_amount(inv.amount_due, inv.currency),
        "amount_due_minor": inv.amount_due,
        "status": status, "status_text": t(lang, f"status_{status}"),
        "overdue": status == "pending" and inv.due_at is not None and inv.due_at < now,
        "issued": inv.issued_at.date().isoformat() if inv.issued_at else None,
        "due": inv.due_at.date().isoformat() if inv.due_at else None,
        "url": f"/pay/{inv.public_id}",
    }


# --- signed export links ------------------------------------------------------------------------

class ExportLinks:
    """Signs and checks the Mini App's export links (HMAC-SHA256; constant-time check)."""

    def __init__(self, secret: bytes) -> None:
        self._key = hashlib.sha256(b"paybot export link\0" + secret).digest()

    def _sign(self, seller: int, kind: str, fmt: str, start: date, end: date, exp: int) -> str:
        msg = f"{seller}|{kind}|{fmt}|{start.isoformat()}|{end.isoformat()}|{exp}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def url(self, seller: int, kind: str, fmt: str, start: date, end: date, lang: str,
            now: float | None = None) -> str:
        exp = int(now if now is not None else time.time()) + LINK_SECONDS
        query = {"from": start.isoformat(), "to": end.isoformat(), "seller": str(seller),
                 "exp": str(exp), "lang": lang,
                 "sig": self._sign(seller, kind, fmt, start, end, exp)}
        return f"/app/export/{kind}.{fmt}?{urlencode(query)}"

    def check(self, kind: str, fmt: str, query: Any, now: float | None = None,
              ) -> tuple[int, date, date]:
        """The seller and period of a valid, unexpired link; Refusal(403) otherwise."""
        bad = Refusal(403, "bad_export_link", "app_seller_err_export_link")
        if set(query) - EXPORT_PARAMS or any(len(query.getall(k)) > 1 for k in query):
            raise bad
        seller, exp, sig = query.get("seller", ""), query.get("exp", ""), query.get("sig", "")
        if not (seller.isdigit() and len(seller) < 19 and exp.isdigit() and len(exp) < 12
                and _SIG.fullmatch(sig)):
            raise bad
        try:
            start = date.fromisoformat(query.get("from", ""))
            end = date.fromisoformat(query.get("to", ""))
        except ValueError:
            raise bad from None
        if not hmac.compare_digest(sig, self._sign(int(seller), kind, fmt, start, end, int(exp))):
            raise bad
        if int(exp) < (now if now is not None else time.time()):
            raise Refusal(403, "export_link_expired", "app_seller_err_export_expired")
        return int(seller), start, end


def _link_secret(ctx: AppContext, settings: Settings) -> bytes:
    if settings.web.cookie_secret is not None:
        return settings.web.cookie_secret.get_secret_value().encode()
    if ctx.cfg.bot_token:
        return ctx.cfg.bot_token.encode()
    return secrets.token_bytes(32)  # nothing stable: links last as long as the process


# --- routes -------------------------------------------------------------------------------------

def setup(router: web.UrlDispatcher, ctx: AppContext, settings: Settings) -> None:
    """Mount the seller view's routes."""
    links = ExportLinks(_link_secret(ctx, settings))

    async def dashboard_route(request: web.Request, v: Viewer) -> web.Response:
        seller = require_seller(v)
        start, end = _period(request.query)
        now = datetime.now(UTC)
        d = await dashboard(ctx.engine, seller, start, end, now=now)
        items = await top_items(ctx.engine, seller, start, end)
        subs = await subscription_summary(ctx.engine, seller, now=now)
        return answer(dashboard_view(d, v.lang, now.date(), items, subs))

    async def revenue_chart(request: web.Request, v: Viewer) -> web.Response:
        seller = require_seller(v)
        start, end = _period(request.query, CHART_PARAMS)
        palette = _palette(request.query)
        now = datetime.now(UTC)
        d = await dashboard(ctx.engine, seller, start, end, now=now)
        months = _months(start, end)
        chart = MonthsChart(tuple(months), _month_series(d, months),
                            t(v.lang, "app_seller_chart_revenue"), v.lang, palette,
                            _highlight(months, now.date()))
        return _svg(await _drawn(revenue_svg, chart))

    async def methods_chart(request: web.Request, v: Viewer) -> web.Response:
        seller = require_seller(v)
        start, end = _period(request.query, CHART_PARAMS)
        palette = _palette(request.query)
        d = await dashboard(ctx.engine, seller, start, end)
        chart = BarsChart(_method_series(d, v.lang), t(v.lang, "app_seller_chart_methods"),
                          v.lang, palette)
        return _svg(await _drawn(methods_svg, chart))

    async def invoices_route(request: web.Request, v: Viewer) -> web.Response:
        seller = require_seller(v)
        args = _list_args(request.query)
        now = datetime.now(UTC)
        try:
            page, cursor = await search_invoices(ctx.engine, seller, now=now, **args)
        except InvalidCursor:
            raise Refusal(422, "invalid_cursor", "app_seller_err_invalid_cursor") from None
        return answer({"invoices": [invoice_row(i, v.lang, now) for i in page],
                       "next_cursor": cursor})

    async def exports_route(request: web.Request, v: Viewer) -> web.Response:
        seller = require_seller(v)
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or set(body) - {"kind", "format", "from", "to"}:
            raise Refusal(422, "bad_export", "app_seller_err_bad_export")
        kind, fmt = body.get("kind"), body.get("format")
        if kind not in KINDS or fmt not in FORMATS:
            raise Refusal(422, "bad_export", "app_seller_err_bad_export")
        period = {k: body[k] for k in ("from", "to") if body.get(k) not in (None, "")}
        if not all(isinstance(x, str) for x in period.values()):
            raise Refusal(422, "bad_date", "app_seller_err_bad_date", name="from")
        start, end = _period(period)
        return answer({"url": links.url(seller, kind, fmt, start, end, v.lang),
                       "file_name": export_name(kind, fmt, start, end)})

    def export_file(kind: str, fmt: str):  # type: ignore[no-untyped-def]
        async def run(request: web.Request) -> web.StreamResponse:
            try:
                seller, start, end = links.check(kind, fmt, request.query)
            except Refusal as exc:
                lang = request_language(request)
                if request.headers.get("Accept", "").startswith("application/json"):
                    return refusal_response(exc, lang)
                return web.Response(status=exc.status, text=t(lang, exc.text),
                                    headers={"Cache-Control": "no-store"})
            return await stream_export(request, ctx.engine, kind, fmt,  # type: ignore[arg-type]
                                       seller, start, end)
        return ctx.guard.wrap(run, json_api=False, kind="read")

    router.add_get("/app/api/seller/dashboard", view_route(ctx, dashboard_route))
    router.add_get("/app/api/seller/charts/revenue.svg", view_route(ctx, revenue_chart))
    router.add_get("/app/api/seller/charts/methods.svg", view_route(ctx, methods_chart))
    router.add_get("/app/api/seller/invoices", view_route(ctx, invoices_route))
    router.add_post("/app/api/seller/exports", action_route(ctx, exports_route))
    for kind in KINDS:
        for fmt in FORMATS:
            router.add_get(f"/app/export/{kind}.{fmt}", export_file(kind, fmt))


async def _drawn(fn, chart) -> bytes:  # type: ignore[no-untyped-def]
    try:
        return await draw(fn, chart)
    except ChartsBusy:
        raise Refusal(503, "busy", "err_busy") from None


def _svg(body: bytes) -> web.Response:
    return web.Response(body=body, headers={"Content-Type": "image/svg+xml",
                                            "Cache-Control": "private, max-age=300"})
