"""The pay page and its JSON API.

GET  /pay/<id>            the page (Mini App and plain browser): the invoice's lines and
                          totals, how to pay; a draft says it is not issued yet; 404/410
                          pages when it cannot be paid (cancelled, expired, void, written
                          off); non-canonical ids (lower case, O for 0) redirect
GET  /pay/<id>/status     the invoice as JSON, as this viewer sees it (their payer tag in the
                          comment; + the viewer's balance with Mini App init data; + the
                          guest's claim link for the browser whose tag paid); `?view=1`
                          (the page script's first call) records the first view by someone
                          other than the seller
POST /pay/<id>/pay        pay from balance; `Authorization: tma <initData>`,
                          body {"idempotency_key": "..."}
POST /pay/<id>/contact    a guest leaves a @handle or an e-mail for their tag (JSON
                          {"contact": "..."} or a form field `contact`)
GET  /pay/<id>/qr.png     QR of the wallet link (or of the page once it cannot be paid);
GET  /pay/<id>/qr.svg     `?tag=<tag>` puts that payer's comment in it
GET  /pay/<id>/invoice.pdf the invoice as a PDF (the page's language; a PAID, VOID,
                          UNCOLLECTIBLE stamp; DRAFT for a draft)
GET  /sub/<plan>          a plan's page; POST /sub/<plan>/subscribe from the Mini App
                          (bot/web/plan_page.py)
POST /pay/<id>/tonconnect TON Connect's sendTransaction request for this payer (TON, or USDT's
                          jetton transfer); GET /tonconnect-manifest.json (bot/web/tonconnect.py)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from weakref import WeakKeyDictionary

from aiohttp import web

from bot.documents.of_invoice import InvoicePdfs, pdf_headers
from bot.http_errors import OUTAGES, is_database_outage, ledger_status
from bot.links import Links
from bot.qr import qr_etag, qr_png, qr_svg
from bot.settings import Settings
from bot.web import render
from bot.web.app import setup_mini_app
from bot.web.auth import (
    GUEST_COOKIE,
    AuthError,
    CookieSigner,
    GuestCookie,
    MiniAppUser,
    init_data_from_header,
    validate_init_data,
)
from bot.web.cards import setup_card_checkout
from bot.web.claims import guest_claim, payer_info
from bot.web.guard import PageGuard
from bot.web.i18n import normalize, request_language, t
from bot.web.invoice_links import setup_invoice_links
from bot.web.plan_page import PlanPages
from bot.web.tonconnect import JettonWalletOf, setup_tonconnect
from bot.web.view import (
    KnownBuyers,
    PayConfig,
    UserTags,
    invoice_view,
    money,
    page_url,
    payer_display,
    qr_text,
    ton_links,
)
from ledger.accounts import balance
from ledger.core import Ledger
from ledger.errors import (
    InsufficientFunds,
    InvalidContact,
    InvoiceNotFound,
    LedgerError,
)
from ledger.ids import parse_invoice_id
from ledger.invoice_reads import InvoiceRead
from ledger.models import Invoice
from ledger.payers import PayerTag, find_tag, guest_purchase, set_contact, tag_for_guest
from ledger.payments import IDEMPOTENCY_KEY_MAX
from ledger.purchases import payers_of_invoices
from ledger.users import find_user_by_telegram

log = logging.getLogger(__name__)

POLL_MS = 3000  # how often an open page asks for the status while the invoice is pending
CLOSED = ("cancelled", "expired", "void", "uncollectible")  # a 410 page saying why
PAY_RETRY_AFTER = 1  # seconds; the buyer is watching the button
COOKIE_EXTRA = timedelta(days=30)  # a guest may come back for the claim link after paying
CONTACT_MAX = 320  # an e-mail address's longest legal form
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# The page's sentence for each refusal it can meet (the status comes from the error's kind).
_TEXT_OF_CODE: dict[str, str] = {
    "invoice_not_found": "err_not_found",
    "own_invoice": "err_own_invoice",
    "invoice_already_paid": "err_already_paid",
    "invoice_cancelled": "err_cancelled",
    "invoice_expired": "err_expired",
    "invoice_draft": "draft_text",
    "invoice_void": "void_text",
    "invoice_uncollectible": "uncollectible_text",
    "idempotency_key_reused": "err_key_reused",
    "invalid_amount": "err_bad_request",
    "invalid_contact": "err_contact",
    "unknown_tag": "err_unknown_tag",
    "tag_taken": "err_tag_taken",
    "invalid_guest_key": "err_no_guest",
    "plan_not_found": "plan_not_found_text",
    "own_plan": "err_own_plan",
    "already_subscribed": "err_already_subscribed",
    "period_not_offered": "err_period_not_offered",
    "invalid_plan": "err_bad_request",
}


class PayPages:
    def __init__(self, ledger: Ledger, cfg: PayConfig, poll_ms: int = POLL_MS) -> None:
        self.ledger = ledger
        self.engine = ledger.engine
        self.cfg = cfg
        self.poll_ms = poll_ms
        self.static = render.Static()
        # Pages rendered from one (cached) read, by language: a crowd on one link costs one
        # render per read, and the ledger's cache decides how old a read may be.
        self.rendered: WeakKeyDictionary[InvoiceRead, dict[str, str]] = WeakKeyDictionary()
        self.pdfs = InvoicePdfs(ledger, cfg.ton_address)
        self.buyers = KnownBuyers(self.engine)
        self.user_tags = UserTags(self.engine)

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

    def _guest(self, request: web.Request, invoice: Invoice) -> GuestCookie | None:
        """This browser's guest key and tag for `invoice`: None without a valid cookie (a
        forged one, or one signed for another invoice, is no cookie)."""
        return self.cfg.signer.read(invoice.public_id, request.cookies.get(GUEST_COOKIE))

    async def _new_guest(self, invoice: Invoice,
                         guest_key: str | None = None) -> tuple[GuestCookie, PayerTag]:
        key = guest_key or CookieSigner.new_guest_key()
        payer = await tag_for_guest(self.engine, invoice.public_id, key)
        return GuestCookie(key, payer.tag), payer

    def _guest_may_pay(self, invoice: Invoice) -> bool:
        """A tag only where a guest can pay in TON: it is what their transfer will carry."""
        return invoice.effective_status() == "pending" and ton_links(invoice, self.cfg) is not None

    def _set_guest_cookie(self, response: web.Response, invoice: Invoice,
                          guest: GuestCookie) -> None:
        max_age = invoice.expires_at - datetime.now(UTC) + COOKIE_EXTRA
        response.set_cookie(
            GUEST_COOKIE, self.cfg.signer.issue(invoice.public_id, guest),
            path=f"/pay/{invoice.public_id}", max_age=int(max_age.total_seconds()),
            httponly=True, samesite="Lax", secure=self.cfg.secure_cookies,
        )

    async def _guest_state(
        self, invoice: Invoice, guest: GuestCookie
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(claim, payer) for the browser holding `guest`, read now (never from the page
        cache): only what was paid with this browser's own tag."""
        purchase = await guest_purchase(self.engine, invoice.public_id, guest.guest_key)
        if purchase is None:  # a valid cookie whose tag is gone (the database was replaced)
            if invoice.effective_status() != "pending":
                return None, None
            return None, payer_info((await self._new_guest(invoice, guest.guest_key))[1],
                                    self.cfg.bot_username)
        payer = payer_info(purchase.tag, self.cfg.bot_username)
        return guest_claim(purchase, payer["bind_url"]), payer

    def _ledger_error(self, exc: LedgerError, lang: str) -> web.Response:
        """A ledger refusal: the status its kind has on every HTTP route, a sentence for it."""
        exc = exc.public()
        status = ledger_status(exc)
        if isinstance(exc, InsufficientFunds):
            bot = self.cfg.bot_username
            needed, available = exc.needed or 0, exc.available or 0
            currency = exc.info.get("currency", "LIQ")
            return self._error(
                status, exc.code,
                t(lang, "err_insufficient", needed=money(needed, currency)["display"],
                  available=money(available, currency)["display"], bot=bot),
                needed=needed, available=available, topup_url=f"https://t.me/{bot}",
            )
        return self._error(status, exc.code, t(lang, _TEXT_OF_CODE.get(exc.code, "err_generic")))

    # --- the page ------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.StreamResponse:
        raw = request.match_info["invoice_id"]
        lang = request_language(request)
        canonical = parse_invoice_id(raw)
        if canonical is not None and canonical != raw:
            query = f"?{request.query_string}" if request.query_string else ""
            raise web.HTTPMovedPermanently(f"/pay/{canonical}{query}")
        try:
            snap = await self.ledger.shown_invoice(raw)
        except InvoiceNotFound:
            return render.html_response(render.error_page(
                lang, self.static, heading=t(lang, "not_found_title"),
                message=t(lang, "not_found_text")), status=404)
        invoice = snap.invoice
        status = invoice.effective_status()
        if status in CLOSED:
            return render.html_response(render.error_page(
                lang, self.static, heading=invoice.title, number=invoice.number,
                message=t(lang, f"{status}_text"), status=status), status=410)
        # The guest's cookie and tag belong to this browser, whatever the (possibly
        # second-old) snapshot says; what it may see is read now, by its tag alone. A browser
        # without one gets the shared page: its script asks the status route, which issues
        # the tag (a page view by a crawler or a link preview writes nothing).
        guest = self._guest(request, invoice)
        claim: dict[str, Any] | None = None
        payer: dict[str, Any] | None = None
        if guest is not None:
            claim, payer = await self._guest_state(invoice, guest)
        if guest is not None and payer is not None:
            view = invoice_view(invoice, snap.seller.username, self.cfg, payer["tag"], lang)
            body = render.pay_page(view, claim, lang, self.static, self.cfg.bot_username,
                                   self.poll_ms, payer)
        else:  # no cookie, nothing to pay: the same page for every such visitor
            pages = self.rendered.setdefault(snap, {})
            body = pages.get(lang)
            if body is None:
                view = invoice_view(invoice, snap.seller.username, self.cfg, lang=lang)
                body = pages[lang] = render.pay_page(
                    view, None, lang, self.static, self.cfg.bot_username, self.poll_ms, None)
        return render.html_response(body)

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
            read = await self.ledger.invoice(request.match_info["invoice_id"])
        except InvoiceNotFound as exc:
            return self._ledger_error(exc, lang)
        invoice = read.invoice
        guest = self._guest(request, invoice)
        tag = None
        claim: dict[str, Any] | None = None
        body: dict[str, Any] = {}
        fresh = None
        asks = request.query.get("guest") == "new"
        if asks and guest is None and viewer is None and self._guest_may_pay(invoice):
            # The page's script asks once (?guest=new): a browser that can pay in TON gets its
            # tag (what its transfer will carry) and the cookie that proves it. Plain polls
            # never write, so a browser refusing cookies does not get a new tag every poll.
            fresh, tag_row = await self._new_guest(invoice)
            body["payer"] = payer_info(tag_row, self.cfg.bot_username)
            tag = tag_row.tag
        elif guest is not None:
            claim, payer = await self._guest_state(invoice, guest)
            if payer is not None:
                body["payer"] = payer
                tag = payer["tag"]
        viewer_id: int | None = None
        is_seller = False
        if viewer is not None:
            body["viewer"], user_tag, viewer_id = await self._viewer_info(viewer, invoice)
            is_seller = body["viewer"]["is_seller"]
            tag = user_tag or tag
        if "view" in request.query and invoice.viewed_at is None and not is_seller:
            await self._mark_viewed(invoice, viewer_id)
        body["invoice"] = invoice_view(invoice, read.seller.username, self.cfg, tag, lang)
        body["claim"] = claim
        response = web.json_response(body, headers={"Cache-Control": "no-store"})
        if fresh is not None:
            self._set_guest_cookie(response, invoice, fresh)
        return response

    async def _mark_viewed(self, invoice: Invoice, viewer_id: int | None) -> None:
        """Someone other than the seller opened the invoice: the ledger records the first time
        (the seller is told). A failure here never fails the page: logged, and the next
        open tries again."""
        try:
            await self.ledger.mark_viewed(invoice.public_id, viewer_id)
        except Exception as exc:
            if is_database_outage(exc):
                OUTAGES.failed(exc, "mark viewed")
            else:
                log.exception("could not mark invoice %s viewed", invoice.public_id)

    async def _viewer_info(self, viewer: MiniAppUser,
                           invoice: Invoice) -> tuple[dict[str, Any], str | None, int | None]:
        """The Mini App user's balance, their own payer tag (a transfer carrying it gives
        them the item at once; none for the seller or an invoice that cannot be paid) and
        their user id (None: they never used paybot)."""
        user = await find_user_by_telegram(self.engine, viewer.telegram_id)
        funds = await balance(self.engine, user.id, invoice.currency) if user else 0
        is_seller = user is not None and user.id == invoice.seller_id
        tag = None
        if not is_seller and invoice.effective_status() == "pending" and invoice.ton_amount:
            if user is None:
                user = await self.buyers.get(viewer.telegram_id, viewer.username,
                                             viewer.language)
            tag = await self.user_tags.get(invoice.public_id, user.id)
        info: dict[str, Any] = {"balance": money(funds, invoice.currency), "is_seller": is_seller}
        if is_seller and invoice.uses:  # who paid: for the invoice's seller, nobody else
            payer = (await payers_of_invoices(self.engine, [invoice.id])).get(invoice.id)
            info["paid_by"] = payer_display(payer)
        return info, tag, user.id if user is not None else None

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
            user = await self.buyers.get(viewer.telegram_id, viewer.username, viewer.language)
            result = await self.ledger.pay_from_balance(public_id, user.id, key)
        except LedgerError as exc:
            return self._ledger_error(exc, lang)
        except Exception as exc:  # whatever it was, only the same request again can tell
            return self._outcome_unknown(request, exc, lang)
        # The payment stands. Nothing below reads the database or can fail: the answer comes
        # from the payment's own result (a failure here used to turn it into a 500, and the
        # page's next tap into a second charge).
        invoice = result.invoice
        if invoice is None:  # never from the batch; if it were: the same key again tells
            return self._error(503, "retry", t(lang, "err_retry"),
                               headers={"Retry-After": str(PAY_RETRY_AFTER)})
        tag = self.user_tags.peek(public_id, user.id)  # no read: the money has moved
        body: dict[str, Any] = {
            "payment": {"id": result.payment_id, "replayed": bool(result.replayed),
                        "invoice_status": result.invoice_status, "grant_id": result.grant_id},
            "invoice": invoice_view(invoice, result.seller_username, self.cfg, tag, lang),
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

    # --- the guest's contact ------------------------------------------------------------

    async def contact(self, request: web.Request) -> web.StreamResponse:
        """A guest leaves a @handle or an e-mail for their tag: shown to the seller and used
        to deliver. Only the browser holding the tag's cookie may; a form post (no script)
        goes back to the page."""
        lang = request_language(request)
        is_form = request.content_type in ("application/x-www-form-urlencoded",
                                           "multipart/form-data")
        try:
            invoice = (await self.ledger.shown_invoice(request.match_info["invoice_id"])).invoice
        except InvoiceNotFound as exc:
            return self._ledger_error(exc, lang)
        guest = self._guest(request, invoice)
        if guest is None:
            return self._error(403, "no_guest_cookie", t(lang, "err_no_guest"))
        if is_form:
            form = await request.post()
            raw: Any = form.get("contact")
        else:
            try:
                data = await request.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                data = None
            if not isinstance(data, dict):  # not the documented body at all
                return self._error(400, "bad_request", t(lang, "err_bad_request"))
            raw = data.get("contact")
        if not isinstance(raw, str) or not 0 < len(raw.strip()) <= CONTACT_MAX:
            return self._ledger_error(InvalidContact(), lang)
        try:
            payer = await set_contact(self.engine, invoice.public_id, guest.tag,
                                      guest.guest_key, raw.strip())
        except LedgerError as exc:
            return self._ledger_error(exc, lang)
        if is_form:
            raise web.HTTPSeeOther(f"/pay/{invoice.public_id}")
        return web.json_response({"contact": payer.contact, "tag": payer.tag},
                                 headers={"Cache-Control": "no-store"})

    # --- QR images -----------------------------------------------------------------------

    async def _qr(self, request: web.Request, render_fn: Callable[[str], bytes],
                  ctype: str) -> web.Response:
        try:
            invoice = (await self.ledger.shown_invoice(request.match_info["invoice_id"])).invoice
        except InvoiceNotFound:
            raise web.HTTPNotFound(text="no invoice with this id") from None
        tag = None
        if "tag" in request.query:
            # Only a tag the ledger gave out for this invoice: the QR never encodes a
            # reference that would pay as someone else's, or as nobody's.
            raw = request.query["tag"]
            payer = (await find_tag(self.engine, invoice.public_id, raw)
                     if raw.isascii() and 0 < len(raw) <= 8 else None)
            if payer is None:
                raise web.HTTPNotFound(text="no such payer tag for this invoice")
            tag = payer.tag
        text = qr_text(invoice, self.cfg, tag)
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

    # --- the invoice as a PDF -----------------------------------------------------------

    async def pdf(self, request: web.Request) -> web.Response:
        """The invoice as a PDF document, for anyone with the link, in the page's language;
        rendered off the event loop, once per version (status, uses) and language."""
        lang = request_language(request)
        try:
            snap = await self.ledger.shown_invoice(request.match_info["invoice_id"])
        except InvoiceNotFound:
            raise web.HTTPNotFound(text="no invoice with this id") from None
        invoice = snap.invoice
        body, etag = await self.pdfs.get(invoice, snap.seller, lang, page_url(invoice, self.cfg))
        headers = {"Cache-Control": "private, max-age=60", **pdf_headers(invoice, etag, lang)}
        if etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, content_type="application/pdf", headers=headers)


def _safe(handler: Handler, json_api: bool, guard: PageGuard, kind: str = "read") -> Handler:
    """Limits first (bot/web/guard.py); then hostile input, too large or slow bodies and a
    database outage answered as 4xx/503 in the route's shape; anything else a plain 500,
    logged; never a stack trace."""
    return guard.wrap(handler, json_api=json_api, kind=kind)


def setup_pay_pages(
    app: web.Application, ledger: Ledger, settings: Settings, *, poll_ms: int = POLL_MS,
    links: Links | None = None, jetton_wallet_of: JettonWalletOf | None = None,
) -> PayPages:
    """Mount the pay page, its JSON API, QR images and static files on `app`;
    `jetton_wallet_of` (the chain's answer) lets TON Connect pay USDT."""
    pages = PayPages(ledger, PayConfig.from_settings(
        settings, links, usdt_connect=jetton_wallet_of is not None), poll_ms)
    guard = PageGuard.from_settings(settings.web, pages.cfg.bot_token)
    r = app.router
    r.add_get("/pay/{invoice_id}", _safe(pages.page, False, guard))
    r.add_get("/pay/{invoice_id}/status", _safe(pages.status, True, guard))
    r.add_post("/pay/{invoice_id}/pay", _safe(pages.pay, True, guard, kind="pay"))
    r.add_post("/pay/{invoice_id}/contact", _safe(pages.contact, True, guard))
    r.add_get("/pay/{invoice_id}/qr.png", _safe(pages.qr_png, False, guard))
    r.add_get("/pay/{invoice_id}/qr.svg", _safe(pages.qr_svg, False, guard))
    r.add_get("/pay/{invoice_id}/invoice.pdf", _safe(pages.pdf, False, guard))
    setup_invoice_links(app, pages, guard, settings.payments)  # card and Stars, Mini App
    setup_card_checkout(app, pages, guard, settings)  # cards in a plain browser (bot/web/cards)
    setup_tonconnect(app, pages, guard, jetton_wallet_of)  # a wallet pays TON or USDT
    plans = PlanPages(pages, settings.ledger.ton_rate)
    r.add_get("/sub/{plan_id}", _safe(plans.page, False, guard))
    r.add_post("/sub/{plan_id}/subscribe", _safe(plans.subscribe, True, guard, kind="pay"))
    # The Mini App's own place: seller, buyer and operator views (bot/web/app/).
    setup_mini_app(app, ledger, pages.cfg, pages.static, guard, settings)
    r.add_get(render.STATIC_PREFIX + "/{name}", pages.static.handle)
    return pages
