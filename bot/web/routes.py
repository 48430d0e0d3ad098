"""The pay page and its JSON API.

GET  /pay/<id>            the page (Mini App and plain browser); 404/410 pages when it cannot
                          be paid; non-canonical ids (lower case, O for 0) redirect
GET  /pay/<id>/status     the invoice as JSON (+ the viewer's balance with Mini App init data,
                          + the guest's claim link for the browser that may see it)
POST /pay/<id>/pay        pay from balance; `Authorization: tma <initData>`,
                          body {"idempotency_key": "..."}
GET  /pay/<id>/qr.png     QR of the wallet link (or of the page once it cannot be paid)
GET  /pay/<id>/qr.svg
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.http_errors import OUTAGES, is_database_outage
from bot.qr import qr_etag, qr_png, qr_svg
from bot.settings import Settings
from bot.web import render
from bot.web.auth import (
    GUEST_COOKIE,
    AuthError,
    MiniAppUser,
    init_data_from_header,
    validate_init_data,
)
from bot.web.claims import guest_claim
from bot.web.guard import PageGuard
from bot.web.i18n import normalize, request_language, t
from bot.web.view import (
    KnownBuyers,
    PayConfig,
    RecentInvoices,
    after_payment,
    effective_status,
    invoice_view,
    load_invoice,
    money,
    qr_text,
)
from ledger.accounts import balance
from ledger.errors import (
    IdempotencyKeyReused,
    InsufficientFunds,
    InvalidAmount,
    InvoiceAlreadyPaid,
    InvoiceCancelled,
    InvoiceExpired,
    InvoiceNotFound,
    LedgerError,
    OwnInvoice,
)
from ledger.ids import parse_invoice_id
from ledger.models import Invoice
from ledger.payments import IDEMPOTENCY_KEY_MAX, pay_from_balance
from ledger.sellers import Links
from ledger.users import find_user_by_telegram

log = logging.getLogger(__name__)

POLL_MS = 3000  # how often an open page asks for the status while the invoice is pending
PAY_RETRY_AFTER = 1  # seconds; the buyer is watching the button
COOKIE_EXTRA = timedelta(days=30)  # a guest may come back for the claim link after paying
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class PayPages:
    def __init__(self, engine: AsyncEngine, cfg: PayConfig, poll_ms: int = POLL_MS) -> None:
        self.engine = engine
        self.cfg = cfg
        self.poll_ms = poll_ms
        self.static = render.Static()
        self.recent = RecentInvoices(engine, cfg.page_cache_seconds)
        self.buyers = KnownBuyers(engine)

    # --- helpers --------------------------------------------------------------------------

    def _error(self, status: int, code: str, message: str, *,
               headers: dict[str, str] | None = None, **extra: Any) -> web.Response:
        return web.json_response({"error": {"code": code, "message": message, **extra}},
                                 status=status, headers={"Cache-Control": "no-store",
                                                         **(headers or {})})

    def _viewer(self, request: web.Request) -> MiniAppUser | None:
        """The Mini App user of the request, None without init data; AuthError when bad."""
        init_data = init_data_from_header(request.headers.get("Authorization"))
        if init_data is None:
            return None
        return validate_init_data(self.cfg.bot_token, init_data, self.cfg.init_data_max_age)

    def _auth_error(self, exc: AuthError, lang: str) -> web.Response:
        key = "session_expired" if exc.code == "init_data_expired" else "err_auth"
        return self._error(401, exc.code, t(lang, key))

    def _cookie_issued_at(self, request: web.Request, invoice: Invoice) -> datetime | None:
        return self.cfg.signer.issued_at(invoice.public_id, request.cookies.get(GUEST_COOKIE))

    def _set_guest_cookie(self, response: web.Response, invoice: Invoice) -> None:
        max_age = invoice.expires_at - datetime.now(UTC) + COOKIE_EXTRA
        response.set_cookie(
            GUEST_COOKIE, self.cfg.signer.issue(invoice.public_id),
            path=f"/pay/{invoice.public_id}", max_age=int(max_age.total_seconds()),
            httponly=True, samesite="Lax", secure=self.cfg.secure_cookies,
        )

    def _ledger_error(self, exc: LedgerError, lang: str) -> web.Response:
        bot = self.cfg.bot_username
        if isinstance(exc, InsufficientFunds):
            needed, available = exc.needed or 0, exc.available or 0
            currency = exc.info.get("currency", "LIQ")
            return self._error(
                402, exc.code,
                t(lang, "err_insufficient", needed=money(needed, currency)["display"],
                  available=money(available, currency)["display"], bot=bot),
                needed=needed, available=available, topup_url=f"https://t.me/{bot}",
            )
        table: list[tuple[type[LedgerError], int, str]] = [
            (InvoiceNotFound, 404, "err_not_found"),
            (OwnInvoice, 403, "err_own_invoice"),
            (InvoiceAlreadyPaid, 409, "err_already_paid"),
            (InvoiceCancelled, 410, "err_cancelled"),
            (InvoiceExpired, 410, "err_expired"),
            (IdempotencyKeyReused, 409, "err_key_reused"),
            (InvalidAmount, 400, "err_bad_request"),
        ]
        for cls, status, key in table:
            if isinstance(exc, cls):
                return self._error(status, exc.code, t(lang, key))
        return self._error(400, exc.code, t(lang, "err_generic"))

    # --- the page ------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.StreamResponse:
        raw = request.match_info["invoice_id"]
        lang = request_language(request)
        canonical = parse_invoice_id(raw)
        if canonical is not None and canonical != raw:
            query = f"?{request.query_string}" if request.query_string else ""
            raise web.HTTPMovedPermanently(f"/pay/{canonical}{query}")
        try:
            snap = await self.recent.get(raw)
        except InvoiceNotFound:
            return render.html_response(render.error_page(
                lang, self.static, heading=t(lang, "not_found_title"),
                message=t(lang, "not_found_text")), status=404)
        invoice = snap.invoice
        status = effective_status(invoice)
        if status in ("cancelled", "expired"):
            return render.html_response(render.error_page(
                lang, self.static, heading=invoice.title, number=invoice.number,
                message=t(lang, f"{status}_text"), status=status), status=410)
        issued = self._cookie_issued_at(request, invoice)
        claim = await guest_claim(self.engine, invoice, issued, self.cfg.bot_username)
        # Without a claim the page is the same for every visitor of this snapshot.
        body = snap.pages.get(lang) if claim is None else None
        if body is None:
            view = invoice_view(invoice, snap.seller, self.cfg)
            body = render.pay_page(view, claim, lang, self.static, self.cfg.bot_username,
                                   self.poll_ms)
            if claim is None:
                snap.pages[lang] = body
        response = render.html_response(body)
        if issued is None and status == "pending":
            self._set_guest_cookie(response, invoice)
        return response

    # --- JSON API ------------------------------------------------------------------------

    async def status(self, request: web.Request) -> web.Response:
        lang = request_language(request)
        try:
            viewer = self._viewer(request)
        except AuthError as exc:
            return self._auth_error(exc, lang)
        if viewer is not None:
            lang = normalize(viewer.language) or lang
        try:
            invoice, seller = await load_invoice(self.engine, request.match_info["invoice_id"])
        except InvoiceNotFound as exc:
            return self._ledger_error(exc, lang)
        body: dict[str, Any] = {
            "invoice": invoice_view(invoice, seller, self.cfg),
            "claim": await guest_claim(self.engine, invoice,
                                       self._cookie_issued_at(request, invoice),
                                       self.cfg.bot_username),
        }
        if viewer is not None:
            body["viewer"] = await self._viewer_info(viewer, invoice)
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    async def _viewer_info(self, viewer: MiniAppUser, invoice: Invoice) -> dict[str, Any]:
        user = await find_user_by_telegram(self.engine, viewer.telegram_id)
        funds = await balance(self.engine, user.id, invoice.currency) if user else 0
        return {"balance": money(funds, invoice.currency),
                "is_seller": user is not None and user.id == invoice.seller_id}

    async def pay(self, request: web.Request) -> web.Response:
        lang = request_language(request)
        try:
            viewer = self._viewer(request)
            if viewer is None:
                raise AuthError("missing_init_data", "Mini App init data is required")
        except AuthError as exc:
            return self._auth_error(exc, lang)
        lang = normalize(viewer.language) or lang
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        key = body.get("idempotency_key") if isinstance(body, dict) else None
        if not isinstance(key, str) or not 0 < len(key) <= IDEMPOTENCY_KEY_MAX:
            return self._error(400, "bad_request", t(lang, "err_bad_request"),
                               detail="idempotency_key: 1 to 200 characters")
        public_id = parse_invoice_id(request.match_info["invoice_id"])
        if public_id is None:
            return self._ledger_error(InvoiceNotFound(), lang)
        try:
            # Before the money moves: what the answer will show, and who pays.
            snap = await self.recent.get(public_id)
            user = await self.buyers.get(viewer.telegram_id, viewer.username, viewer.language)
            result = await pay_from_balance(self.engine, public_id, user.id, key)
        except LedgerError as exc:
            return self._ledger_error(exc, lang)
        except Exception as exc:  # whatever it was, only the same request again can tell
            return self._outcome_unknown(request, exc, lang)
        # The payment stands. Nothing below reads the database or can fail: the answer comes
        # from the payment's own result (a failure here used to turn it into a 500, and the
        # page's next tap into a second charge).
        self.recent.forget(public_id)  # this process knows it changed: show it at once
        invoice = after_payment(snap.invoice, result)
        body: dict[str, Any] = {
            "payment": {"id": result.payment_id, "replayed": bool(result.replayed),
                        "invoice_status": result.invoice_status, "grant_id": result.grant_id},
            "invoice": invoice_view(invoice, snap.seller, self.cfg),
        }
        if result.buyer_balance is not None:  # else the page's next status poll shows it
            body["viewer"] = {"balance": money(result.buyer_balance, invoice.currency),
                              "is_seller": False}
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    def _outcome_unknown(self, request: web.Request, exc: Exception, lang: str) -> web.Response:
        """The payment may or may not have happened (the connection broke mid-call, a deadline
        passed, the database is restarting): only the same request again can tell, and its
        idempotency key makes that safe. So: 503, "retry with the same key"; never a 500,
        after which a client would make a new key and pay twice."""
        if is_database_outage(exc):
            OUTAGES.failed(exc, f"{request.method} {request.path}")
        else:
            log.exception("payment outcome unknown: %s %s", request.method, request.path)
        return self._error(503, "retry", t(lang, "err_retry"),
                           headers={"Retry-After": str(PAY_RETRY_AFTER)})

    # --- QR images -----------------------------------------------------------------------

    async def _qr(self, request: web.Request, render_fn: Callable[[str], bytes],
                  ctype: str) -> web.Response:
        try:
            invoice = (await self.recent.get(request.match_info["invoice_id"])).invoice
        except InvoiceNotFound:
            raise web.HTTPNotFound(text="no invoice with this id") from None
        text = qr_text(invoice, self.cfg)
        etag = qr_etag(text)
        # Short max-age: the code switches to the page link once the invoice is paid.
        headers = {"Cache-Control": "public, max-age=60", "ETag": etag,
                   "X-Content-Type-Options": "nosniff"}
        if etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(body=render_fn(text), content_type=ctype, headers=headers)

    async def qr_png(self, request: web.Request) -> web.Response:
        return await self._qr(request, qr_png, "image/png")

    async def qr_svg(self, request: web.Request) -> web.Response:
        return await self._qr(request, qr_svg, "image/svg+xml")


def _safe(handler: Handler, json_api: bool, guard: PageGuard, kind: str = "read") -> Handler:
    """Limits first (bot/web/guard.py); then hostile input, too large or slow bodies and a
    database outage answered as 4xx/503 in the route's shape; anything else a plain 500,
    logged; never a stack trace."""
    return guard.wrap(handler, json_api=json_api, kind=kind)


def setup_pay_pages(
    app: web.Application, engine: AsyncEngine, settings: Settings, *, poll_ms: int = POLL_MS,
    links: Links | None = None,
) -> PayPages:
    """Mount the pay page, its JSON API, QR images and static files on `app`."""
    pages = PayPages(engine, PayConfig.from_settings(settings, links), poll_ms)
    guard = PageGuard.from_settings(settings.web, pages.cfg.bot_token)
    r = app.router
    r.add_get("/pay/{invoice_id}", _safe(pages.page, False, guard))
    r.add_get("/pay/{invoice_id}/status", _safe(pages.status, True, guard))
    r.add_post("/pay/{invoice_id}/pay", _safe(pages.pay, True, guard, kind="pay"))
    r.add_get("/pay/{invoice_id}/qr.png", _safe(pages.qr_png, False, guard))
    r.add_get("/pay/{invoice_id}/qr.svg", _safe(pages.qr_svg, False, guard))
    r.add_get(render.STATIC_PREFIX + "/{name}", pages.static.handle)
    return pages
