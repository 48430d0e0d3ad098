"""Reports over the seller API, /api/v1 (mounted by bot/api/routes.py): the dashboard of a
period and the exports of its payments and invoices as CSV or XLSX, streamed.

Periods are `from` and `to`, UTC dates (YYYY-MM-DD), both included; by default the last 12
months (from the first day of the month 11 months before `to`, today by default). A period
upside down, over five years, or a parameter not documented is answered 422 with one sentence
before anything is read. An empty period is a file with its header row only.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import tempfile
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, date, datetime
from typing import Any, Final

import orjson
from aiohttp import web
from multidict import MultiMapping
from openpyxl import Workbook
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.api.auth import PRINCIPAL
from bot.api.errors import invalid
from ledger.core import Ledger
from ledger.money import format_amount
from ledger.reports import (
    COLUMNS,
    Dashboard,
    ExportKind,
    ItemRevenue,
    SubscriptionSummary,
    dashboard,
    export_rows,
    period_error,
    subscription_summary,
    top_items,
)

log = logging.getLogger(__name__)

PERIOD_PARAMS: Final = frozenset({"from", "to"})
CSV_TYPE: Final = "text/csv; charset=utf-8"
XLSX_TYPE: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CHUNK: Final = 64 * 1024
# Each export holds a database connection (CSV: while it streams; XLSX: while it is built), so
# a few at a time per process, and none longer than EXPORT_SECONDS: slow or stalled downloads
# cannot take the pool from payments. Past the cap: 503 with Retry-After.
EXPORTS_AT_ONCE: Final = 2
EXPORT_SECONDS: Final = 600.0
EXPORT_RETRY_AFTER: Final = 30
_exporting = 0


class PeriodProblem(ValueError):
    """Why a period cannot be read: `code` for programs (and the Mini App's own sentences),
    the message in English for the seller API."""

    def __init__(self, code: str, message: str, name: str = "") -> None:
        super().__init__(message)
        self.code, self.name = code, name


def read_period(query: Mapping[str, str], allowed: frozenset[str] = PERIOD_PARAMS,
                today: date | None = None) -> tuple[date, date]:
    """The period of a query (`from`, `to`); PeriodProblem for anything else. Shared by the
    seller API and the Mini App, so both read a period the same way."""
    unknown = sorted(set(query) - allowed)
    if unknown:
        raise PeriodProblem("unknown_parameter", f"unknown parameter {unknown[0][:40]!r}: "
                            f"only {' and '.join(sorted(allowed))} are accepted", unknown[0][:40])
    end = _query_date(query, "to") or today or datetime.now(UTC).date()
    start = _query_date(query, "from")
    if start is None:
        months = end.year * 12 + end.month - 1 - 11
        start = date(months // 12, months % 12 + 1, 1) if months >= 12 else date.min
    problem = period_error(start, end)
    if problem:
        raise PeriodProblem("period_upside_down" if start > end else "period_too_long", problem)
    return start, end


def parse_period(request: web.Request) -> tuple[date, date]:
    try:
        return read_period(request.query)
    except PeriodProblem as exc:
        raise invalid(str(exc)) from None


def _query_date(query: Mapping[str, str], name: str) -> date | None:
    values = query.getall(name, []) if isinstance(query, MultiMapping) else (
        [query[name]] if name in query else [])
    if not values:
        return None
    if len(values) > 1:
        raise PeriodProblem("repeated_parameter", f"{name} is given more than once", name)
    raw = values[0]
    try:
        if len(raw) != 10:
            raise ValueError
        return date.fromisoformat(raw)
    except ValueError:
        raise PeriodProblem("bad_date", f"{name} must be a date as YYYY-MM-DD, not {raw[:40]!r}",
                            name) from None


def _money(amount: int, currency: str) -> dict[str, Any]:
    return {"currency": currency, "amount": format_amount(amount, currency),
            "amount_minor": amount}


def dashboard_view(d: Dashboard, items: list[ItemRevenue] | None = None,
                   subscriptions: list[SubscriptionSummary] | None = None) -> dict[str, Any]:
    return {
        "top_items": [{"item": i.item, **_money(i.amount, i.currency), "payments": i.payments}
                      for i in items or []],
        "subscriptions": [{"mrr": _money(x.mrr, x.currency), "active": x.active,
                           "churned_30_days": x.churned, "churn_rate": x.churn_rate}
                          for x in subscriptions or []],
        "from": d.start.isoformat(), "to": d.end.isoformat(),
        "revenue_by_month": [{"month": m.month, **_money(m.amount, m.currency),
                              "payments": m.payments} for m in d.by_month],
        "revenue_by_method": [{"method": m.method, **_money(m.amount, m.currency),
                               "payments": m.payments} for m in d.by_method],
        "outstanding": {
            "open": [{**_money(s.amount, s.currency), "invoices": s.count} for s in d.open],
            "overdue": [{**_money(s.amount, s.currency), "invoices": s.count}
                        for s in d.overdue],
        },
        "conversion": {"issued": d.issued, "paid": d.paid, "rate": d.conversion},
    }


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return "" if value is None else value


class Reports:
    def __init__(self, ledger: Ledger) -> None:
        self.engine = ledger.engine

    async def dashboard(self, request: web.Request) -> web.Response:
        start, end = parse_period(request)
        seller = request[PRINCIPAL].user_id
        d = await dashboard(self.engine, seller, start, end)
        items = await top_items(self.engine, seller, start, end)
        subscriptions = await subscription_summary(self.engine, seller)
        return web.Response(body=orjson.dumps(dashboard_view(d, items, subscriptions)),
                            headers={"Content-Type": "application/json",
                                     "Cache-Control": "no-store"})

    def export(self, kind: ExportKind, fmt: str):  # type: ignore[no-untyped-def]
        async def handler(request: web.Request) -> web.StreamResponse:
            start, end = parse_period(request)
            return await stream_export(request, self.engine, kind, fmt,
                                       request[PRINCIPAL].user_id, start, end)
        return handler


def export_name(kind: str, fmt: str, start: date, end: date) -> str:
    return f"{kind}-{start.isoformat()}-{end.isoformat()}.{fmt}"


async def stream_export(request: web.Request, engine: AsyncEngine, kind: ExportKind, fmt: str,
                        seller_id: int, start: date, end: date) -> web.StreamResponse:
    """The seller's export of a period as a streamed CSV or XLSX download: the one code path
    of the seller API's exports and the Mini App's signed export links."""
    global _exporting
    if _exporting >= EXPORTS_AT_ONCE:
        return web.json_response(
            {"error": {"code": "busy", "message": "Other exports are being made right now; "
                                                  "try again in a minute."}},
            status=503, headers={"Retry-After": str(EXPORT_RETRY_AFTER),
                                 "Cache-Control": "no-store"})
    _exporting += 1
    try:
        rows = export_rows(engine, kind, seller_id, start, end)
        name = export_name(kind, fmt, start, end)
        if fmt == "csv":
            return await _csv(request, kind, rows, name)
        return await _xlsx(request, kind, rows, name)
    finally:
        _exporting -= 1


def _response(content_type: str, name: str) -> web.StreamResponse:
    return web.StreamResponse(headers={
        "Content-Type": content_type, "Cache-Control": "no-store",
        "Content-Disposition": f'attachment; filename="{name}"'})


async def _csv(request: web.Request, kind: ExportKind,
               rows: AsyncIterator[tuple[Any, ...]], name: str) -> web.StreamResponse:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write("\ufeff")  # so that spreadsheet programs read the file as UTF-8
    writer.writerow(COLUMNS[kind])
    # The first row is read before answering: a database failure is still a clean 503.
    first = await anext(rows, None)
    response = _response(CSV_TYPE, name)
    await response.prepare(request)
    try:
        # A client that stops reading would hold the database cursor: bounded, then dropped.
        async with asyncio.timeout(EXPORT_SECONDS):
            if first is not None:
                writer.writerow([_cell(v) for v in first])
                async for row in rows:
                    writer.writerow([_cell(v) for v in row])
                    if buffer.tell() >= CHUNK:
                        await response.write(buffer.getvalue().encode())
                        buffer.seek(0)
                        buffer.truncate()
            await response.write(buffer.getvalue().encode())
            await response.write_eof()
    except Exception:  # TimeoutError included
        return _abort(request, response, name)
    finally:
        await rows.aclose()
    return response


async def _xlsx(request: web.Request, kind: ExportKind,
                rows: AsyncIterator[tuple[Any, ...]], name: str) -> web.StreamResponse:
    # write_only keeps rows on disk as they come; the zip is then sent from a file.
    book = Workbook(write_only=True)
    sheet = book.create_sheet(kind)
    sheet.append(list(COLUMNS[kind]))
    try:
        async for row in rows:
            sheet.append([_xlsx_cell(v) for v in row])
    finally:
        await rows.aclose()
    with tempfile.TemporaryFile() as out:
        await asyncio.to_thread(book.save, out)
        out.seek(0)
        response = _response(XLSX_TYPE, name)
        await response.prepare(request)
        try:
            async with asyncio.timeout(EXPORT_SECONDS):
                while chunk := out.read(CHUNK):
                    await response.write(chunk)
                await response.write_eof()
        except Exception:  # TimeoutError included
            return _abort(request, response, name)
    return response


def _xlsx_cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None)  # Excel has no time zones: UTC
    return value


def _abort(request: web.Request, response: web.StreamResponse,
           name: str) -> web.StreamResponse:
    """A failure after the header was sent: the client must not take a cut file for a whole
    one, so the connection is dropped before the end of the chunked body."""
    log.warning("export %s stopped part way", name, exc_info=True)
    if request.transport is not None:
        request.transport.abort()
    return response


def add_report_routes(router: web.UrlDispatcher, ledger: Ledger) -> None:
    reports = Reports(ledger)
    router.add_get("/reports/dashboard", reports.dashboard)
    for kind in ("payments", "invoices"):
        for fmt in ("csv", "xlsx"):
            router.add_get(f"/exports/{kind}.{fmt}", reports.export(kind, fmt))  # type: ignore[arg-type]
