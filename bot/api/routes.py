"""Seller HTTP API, /api/v1. Each handler parses and authenticates, calls one ledger use
case (ledger/core.py, ledger/invoices.py, ledger/webhooks.py ...) and renders JSON. The
contract is openapi.json next to this file (served at /api/v1/openapi.json)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from importlib import resources
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web

from bot.api.auth import CREATE_ROUTE, PRINCIPAL, ApiLimits, TokenCache, api_middleware
from bot.api.errors import ApiError, invalid
from bot.api.invoice_requests import new_invoice_of
from bot.api.reports import add_report_routes
from bot.api.schemas import (
    InvoiceCreate,
    ManualPaymentIn,
    Reason,
    ReverseBody,
    SendInvoice,
    WebhookUpdate,
    dump,
    idempotency_key,
    path_uuid,
    query_choice,
    query_cursor,
    query_datetime,
    query_int,
    query_invoice_cursor,
    read_body,
    read_optional_body,
)
from bot.api.subscriptions import add_subscription_routes
from bot.api.views import Links, invoice_view, payers_for_views, payment_view
from bot.documents.model import LANGUAGES as DOCUMENT_LANGUAGES
from bot.documents.of_invoice import InvoicePdfs, pdf_headers
from bot.links import links_from_settings
from bot.ratelimit import Rate
from bot.settings import Settings
from ledger.callbacks import CallbackRecord, list_callbacks, redeliver_callback
from ledger.core import Ledger
from ledger.errors import (
    InvalidAmount,
    InvalidCursor,
    InvalidInvoice,
    InvalidWebhookUrl,
    InvoiceNotFound,
    PaymentNotFound,
)
from ledger.ids import parse_invoice_id
from ledger.invoices import NewInvoice, list_seller_invoices
from ledger.models import Invoice
from ledger.money import format_amount, parse_amount, quote_ton
from ledger.seller_stats import balances, seller_stats
from ledger.users import get_user
from ledger.webhooks import (
    WebhookSettings,
    check_webhook_url,
    get_webhook,
    rotate_webhook_secret,
    set_webhook_url,
)
from watchers.callbacks import SIGNATURE_HEADER, TIMESTAMP_HEADER, BlockedUrl, check_url
from watchers.ton_links import friendly_address

PREFIX = "/api/v1"
INVOICE_STATUSES = ("draft", "pending", "paid", "cancelled", "expired", "void", "uncollectible")
CALLBACK_STATUSES = ("pending", "delivered", "failed")
DEFAULT_STATS_PERIOD = timedelta(days=30)
BIGINT_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class ApiConfig:
    links: Links
    ton_rate: Decimal
    default_expiry: timedelta
    allow_private_callbacks: bool
    replay_window: int
    token_cache_seconds: float = 0.0
    # Limits (None: off, as in benchmarks that measure the handlers themselves).
    rate_per_token: Rate | None = None
    rate_create_per_token: Rate | None = None
    rate_per_address: Rate | None = None  # before a token is checked against the database
    client_address_header: str | None = None
    body_timeout: float = 10.0
    ton_address: str | None = None  # friendly form, printed on PDFs; None: TON not offered

    @classmethod
    def from_settings(cls, settings: Settings, links: Links | None = None) -> ApiConfig:
        return cls(
            links=links or links_from_settings(settings),
            ton_rate=settings.ledger.ton_rate,
            default_expiry=timedelta(hours=settings.ledger.invoice_expiry_hours),
            allow_private_callbacks=settings.api.allow_private_callbacks,
            replay_window=settings.api.replay_window_seconds,
            token_cache_seconds=settings.api.token_cache_seconds,
            rate_per_token=Rate.parse(settings.api.rate_per_token),
            rate_create_per_token=Rate.parse(settings.api.rate_create_per_token),
            rate_per_address=Rate.parse(settings.web.rate_per_address),
            client_address_header=settings.web.client_address_header,
            body_timeout=settings.web.body_timeout_seconds,
            ton_address=_friendly(settings.ton.destination_address),
        )


def _friendly(address: str | None) -> str | None:
    """The TON address as wallets show it (a bad one is reported by the pay page's config at
    start-up; the PDFs then offer no TON)."""
    if not address:
        return None
    try:
        return friendly_address(address)
    except ValueError:
        return None


def openapi_document() -> dict[str, Any]:
    text = resources.files("bot.api").joinpath("openapi.json").read_text(encoding="utf-8")
    return json.loads(text)


_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store"}
_REPLAYED = {**_HEADERS, "Idempotent-Replayed": "true"}
_DIGITS = frozenset("0123456789")


def to_json(data: Any) -> bytes:
    """Compact JSON; orjson (several times faster: this is every answer), else the standard
    library for what orjson refuses (integers past 64 bits, lone surrogates)."""
    try:
        return orjson.dumps(data)
    except TypeError:
        return json.dumps(data, separators=(",", ":")).encode()


def _ok(data: Any, status: int = 200, headers: dict[str, str] = _HEADERS) -> web.Response:
    return web.Response(body=to_json(data), status=status, headers=headers)


class SellerApi:
    def __init__(self, ledger: Ledger, cfg: ApiConfig) -> None:
        self.ledger = ledger
        self.engine = ledger.engine
        self.pdfs = InvoicePdfs(ledger, cfg.ton_address)
        self.cfg = cfg
        self._openapi = json.dumps(openapi_document()).encode()

    def _callback_url_allowed(self, url: str, what: str) -> None:
        try:
            check_url(url, allow_private=self.cfg.allow_private_callbacks)
        except BlockedUrl as exc:
            raise InvalidWebhookUrl(f"{what}: {exc}") from None

    # --- public -------------------------------------------------------------------------------

    async def openapi(self, request: web.Request) -> web.Response:
        return web.Response(body=self._openapi, content_type="application/json")

    # --- account ------------------------------------------------------------------------------

    async def me(self, request: web.Request) -> web.Response:
        principal = request[PRINCIPAL]
        user = await get_user(self.engine, principal.user_id)
        return _ok({"seller": {"telegram_id": user.telegram_id, "username": user.username},
                    "token_id": principal.token_id})

    async def balance(self, request: web.Request) -> web.Response:
        found = await balances(self.engine, request[PRINCIPAL].user_id)
        return _ok({"balances": [
            {"currency": c, "amount": format_amount(a, c), "amount_minor": a}
            for c, a in found.items()
        ]})

    async def stats(self, request: web.Request) -> web.Response:
        until = query_datetime(request, "to") or datetime.now(UTC)
        since = query_datetime(request, "from")
        if since is None:
            try:
                since = until - DEFAULT_STATS_PERIOD
            except OverflowError:
                raise invalid("to is too early for the default 30-day period") from None
        if since >= until:
            raise invalid("from must be earlier than to")
        s = await seller_stats(self.engine, request[PRINCIPAL].user_id, since, until)
        return _ok({
            "from": dump(s.since), "to": dump(s.until), "created": s.created, "paid": s.paid,
            "conversion": s.conversion, "by_status": s.by_status,
            "volume": [{"currency": v.currency, "amount": format_amount(v.amount, v.currency),
                        "amount_minor": v.amount, "payments": v.payments} for v in s.volume],
        })

    # --- invoices -----------------------------------------------------------------------------

    def _checked_request(self, req: InvoiceCreate, seller: int,
                         key: str | None = None) -> NewInvoice:
        """The body as the ledger's checked NewInvoice (POST and PUT alike)."""
        amount = None
        if req.amount is not None:
            amount = parse_amount(req.amount, req.currency)
            # create_invoice does not bound the TON quote; past bigint the database would
            # refuse it.
            if quote_ton(amount, req.currency, self.cfg.ton_rate) > BIGINT_MAX:
                raise InvalidAmount("the amount is too large to quote in TON")
        if req.callback_url:
            try:
                self._callback_url_allowed(req.callback_url.strip(), "callback_url")
            except InvalidWebhookUrl as exc:
                raise InvalidInvoice(exc.detail) from None
        payload = {"item_id": req.item_id, "achievement_id": req.achievement_id,
                   "callback_url": req.callback_url}
        expires_in: timedelta | None = self.cfg.default_expiry
        if req.expires_in is not None:
            expires_in = timedelta(seconds=req.expires_in)
        elif req.due_date is not None or req.due_at is not None:
            expires_in = None  # the ledger keeps the link open past the due date
        return new_invoice_of(req, seller_id=seller, amount=amount, payload=payload,
                              expires_in=expires_in, ton_rate=self.cfg.ton_rate,
                              idempotency_key=key)

    async def create_invoice(self, request: web.Request) -> web.Response:
        seller = request[PRINCIPAL].user_id
        key = idempotency_key(request)
        req = await read_body(request, InvoiceCreate, self.cfg.body_timeout)
        invoice, replayed = await self.ledger.issue_invoice(
            self._checked_request(req, seller, key))
        return _ok(invoice_view(invoice, self.cfg.links), status=201,
                   headers=_REPLAYED if replayed else _HEADERS)

    async def list_invoices(self, request: web.Request) -> web.Response:
        try:
            page, cursor = await list_seller_invoices(
                self.engine, request[PRINCIPAL].user_id,
                status=query_choice(request, "status", INVOICE_STATUSES),
                created_from=query_datetime(request, "created_from"),
                created_to=query_datetime(request, "created_to"),
                limit=query_int(request, "limit", 20, 1, 100),
                after=query_invoice_cursor(request),
            )
        except InvalidCursor:  # the same answer as a malformed cursor
            raise invalid("cursor must be a value of next_cursor from an earlier page") from None
        payers = await payers_for_views(self.engine, page)
        return _ok({"items": [invoice_view(i, self.cfg.links, payers) for i in page],
                    "next_cursor": cursor})

    async def get_invoice(self, request: web.Request) -> web.Response:
        invoice = await self.ledger.seller_invoice(request[PRINCIPAL].user_id,
                                                   request.match_info["invoice_id"])
        payers = await payers_for_views(self.engine, [invoice])
        return _ok(invoice_view(invoice, self.cfg.links, payers))

    async def invoice_pdf(self, request: web.Request) -> web.Response:
        """The invoice as a PDF, in `?lang=` or the seller's language: what the buyer gets at
        /pay/<id>/invoice.pdf."""
        read = await self.ledger.invoice(request.match_info["invoice_id"])
        if read.invoice.seller_id != request[PRINCIPAL].user_id:
            raise InvoiceNotFound(request.match_info["invoice_id"][:40])
        lang = query_choice(request, "lang", DOCUMENT_LANGUAGES) or (
            read.seller.language if read.seller.language in DOCUMENT_LANGUAGES else "en")
        invoice = read.invoice
        body, etag = await self.pdfs.get(
            invoice, read.seller, lang, f"{self.cfg.links.public_url}/pay/{invoice.public_id}")
        return web.Response(body=body, content_type="application/pdf",
                            headers={"Cache-Control": "no-store",
                                     **pdf_headers(invoice, etag, lang)})

    async def cancel_invoice(self, request: web.Request) -> web.Response:
        invoice = await self.ledger.cancel_invoice(request.match_info["invoice_id"],
                                                   request[PRINCIPAL].user_id)
        payers = await payers_for_views(self.engine, [invoice])
        return _ok(invoice_view(invoice, self.cfg.links, payers))

    # --- invoices as documents: drafts, lifecycle, manual payments ---------------------------

    @staticmethod
    def _invoice_id(request: web.Request) -> str:
        """The path's invoice id in canonical form: anything that cannot be one is simply not
        found (and never reaches the database: no NUL, no odd text)."""
        raw = request.match_info["invoice_id"]
        canonical = parse_invoice_id(raw)
        if canonical is None:
            raise InvoiceNotFound(raw[:40])
        return canonical

    async def _view(self, invoice: Invoice) -> web.Response:
        payers = await payers_for_views(self.engine, [invoice])
        return _ok(invoice_view(invoice, self.cfg.links, payers))

    async def replace_draft(self, request: web.Request) -> web.Response:
        seller = request[PRINCIPAL].user_id
        req = await read_body(request, InvoiceCreate, self.cfg.body_timeout)
        invoice = await self.ledger.update_draft(seller, self._invoice_id(request),
                                                 self._checked_request(req, seller))
        return await self._view(invoice)

    async def finalize_invoice(self, request: web.Request) -> web.Response:
        invoice = await self.ledger.finalize_invoice(request[PRINCIPAL].user_id,
                                                     self._invoice_id(request), self.cfg.ton_rate)
        return await self._view(invoice)

    async def send_invoice(self, request: web.Request) -> web.Response:
        req = await read_optional_body(request, SendInvoice, self.cfg.body_timeout)
        to = req.telegram_id if req.telegram_id is not None else req.username
        sent = await self.ledger.send_invoice(request[PRINCIPAL].user_id,
                                              self._invoice_id(request), to, self.cfg.ton_rate)
        view = invoice_view(sent.invoice, self.cfg.links)
        user = sent.recipient
        return _ok({
            "invoice": view,
            "recipient": None if user is None else {"telegram_id": user.telegram_id,
                                                    "username": user.username},
            "pay_url": view["pay_url"], "bot_url": view["bot_url"],
            "share_url": "https://t.me/share/url?url=" + quote(view["bot_url"], safe="")
                         + "&text=" + quote(sent.invoice.title, safe=""),
        })

    async def void_invoice(self, request: web.Request) -> web.Response:
        req = await read_optional_body(request, Reason, self.cfg.body_timeout)
        invoice = await self.ledger.void_invoice(request[PRINCIPAL].user_id,
                                                 self._invoice_id(request), req.reason)
        return await self._view(invoice)

    async def mark_uncollectible(self, request: web.Request) -> web.Response:
        req = await read_optional_body(request, Reason, self.cfg.body_timeout)
        invoice = await self.ledger.mark_uncollectible(
            request[PRINCIPAL].user_id, self._invoice_id(request), req.reason)
        return await self._view(invoice)

    async def record_payment(self, request: web.Request) -> web.Response:
        seller = request[PRINCIPAL].user_id
        req = await read_body(request, ManualPaymentIn, self.cfg.body_timeout)
        # The amount is decimal text in the invoice's currency (fixed when it was created).
        invoice = await self.ledger.seller_invoice(seller, self._invoice_id(request))
        amount = parse_amount(req.amount, invoice.currency)
        made = await self.ledger.record_manual_payment(
            invoice.public_id, seller_id=seller, amount=amount,
            received_on=date.fromisoformat(req.received_on), reference=req.reference,
            note=req.note)
        invoice = made.invoice
        payers = await payers_for_views(self.engine, [invoice])  # the last part may pay it
        return _ok({"payment": {"id": made.payment_id, "method": "manual",
                                "amount": format_amount(amount, invoice.currency),
                                "amount_minor": amount, "currency": invoice.currency,
                                "reference": req.reference},
                    "invoice": invoice_view(invoice, self.cfg.links, payers)},
                   status=200 if made.replayed else 201)

    async def list_payments(self, request: web.Request) -> web.Response:
        found = await self.ledger.payments_of_invoice(self._invoice_id(request),
                                                      request[PRINCIPAL].user_id)
        return _ok({"items": [payment_view(p) for p in found]})

    async def reverse_payment(self, request: web.Request) -> web.Response:
        seller = request[PRINCIPAL].user_id
        req = await read_body(request, ReverseBody, self.cfg.body_timeout)
        raw = request.match_info["payment_id"]
        # The payment must be one of this invoice's: the path names both.
        payments = await self.ledger.payments_of_invoice(self._invoice_id(request), seller)
        if not (0 < len(raw) <= 18 and _DIGITS.issuperset(raw)) \
                or int(raw) not in {p.id for p in payments}:
            raise PaymentNotFound(raw[:40])
        invoice = await self.ledger.reverse_manual_payment(int(raw), seller_id=seller,
                                                           reason=req.reason)
        return await self._view(invoice)

    # --- webhook and callbacks ----------------------------------------------------------------

    def _webhook(self, w: WebhookSettings) -> web.Response:
        return _ok({"url": w.url, "secret": w.secret, "signature_header": SIGNATURE_HEADER,
                    "timestamp_header": TIMESTAMP_HEADER,
                    "replay_window_seconds": self.cfg.replay_window})

    async def get_webhook(self, request: web.Request) -> web.Response:
        return self._webhook(await get_webhook(self.engine, request[PRINCIPAL].user_id))

    async def put_webhook(self, request: web.Request) -> web.Response:
        req = await read_body(request, WebhookUpdate, self.cfg.body_timeout)
        url = req.url.strip() if req.url and req.url.strip() else None
        if url is not None:
            url = check_webhook_url(url)
            self._callback_url_allowed(url, "url")
        w = await set_webhook_url(self.engine, request[PRINCIPAL].user_id, url)
        return self._webhook(w)

    async def rotate_secret(self, request: web.Request) -> web.Response:
        return self._webhook(await rotate_webhook_secret(self.engine, request[PRINCIPAL].user_id))

    @staticmethod
    def _callback(c: CallbackRecord) -> dict[str, Any]:
        return {
            "id": str(c.event_id), "type": c.event_type, "invoice": c.invoice, "url": c.url,
            "status": c.status, "attempts": c.attempts, "last_error": c.last_error,
            "created_at": dump(c.created_at), "next_attempt_at": dump(c.next_attempt_at),
            "delivered_at": dump(c.delivered_at), "failed_at": dump(c.failed_at),
        }

    async def list_callbacks(self, request: web.Request) -> web.Response:
        page, cursor = await list_callbacks(
            self.engine, seller_id=request[PRINCIPAL].user_id,
            status=query_choice(request, "status", CALLBACK_STATUSES),
            limit=query_int(request, "limit", 20, 1, 100), before_id=query_cursor(request),
        )
        return _ok({"items": [self._callback(c) for c in page],
                    "next_cursor": None if cursor is None else str(cursor)})

    async def redeliver(self, request: web.Request) -> web.Response:
        not_found = ApiError(404, "callback_not_found", "No callback with this id.")
        event_id = path_uuid(request, "event_id", not_found)
        record = await redeliver_callback(self.engine, event_id,
                                          seller_id=request[PRINCIPAL].user_id)
        if record is None:
            raise not_found
        return _ok(self._callback(record), status=202)


def setup_api(app: web.Application, ledger: Ledger, settings: Settings,
              links: Links | None = None) -> SellerApi:
    """Mount the seller API under /api/v1 on `app` (the same app as the pay page)."""
    return mount_api(app, ledger, ApiConfig.from_settings(settings, links))


def mount_api(app: web.Application, ledger: Ledger, cfg: ApiConfig) -> SellerApi:
    api = SellerApi(ledger, cfg)
    engine = ledger.engine
    tokens = TokenCache(cfg.token_cache_seconds)
    limits = ApiLimits.from_config(cfg)
    sub = web.Application(middlewares=[api_middleware(engine, tokens, limits)])
    r = sub.router
    r.add_get("/openapi.json", api.openapi, name="openapi")
    r.add_get("/me", api.me)
    r.add_get("/balance", api.balance)
    r.add_get("/stats", api.stats)
    r.add_post("/invoices", api.create_invoice, name=CREATE_ROUTE)
    r.add_get("/invoices", api.list_invoices)
    r.add_get("/invoices/{invoice_id}", api.get_invoice)
    r.add_put("/invoices/{invoice_id}", api.replace_draft)
    r.add_post("/invoices/{invoice_id}/cancel", api.cancel_invoice)
    r.add_post("/invoices/{invoice_id}/finalize", api.finalize_invoice)
    r.add_post("/invoices/{invoice_id}/send", api.send_invoice)
    r.add_post("/invoices/{invoice_id}/void", api.void_invoice)
    r.add_post("/invoices/{invoice_id}/uncollectible", api.mark_uncollectible)
    r.add_post("/invoices/{invoice_id}/payments", api.record_payment)
    r.add_get("/invoices/{invoice_id}/payments", api.list_payments)
    r.add_post("/invoices/{invoice_id}/payments/{payment_id}/reverse", api.reverse_payment)
    r.add_get("/invoices/{invoice_id}/pdf", api.invoice_pdf)
    r.add_get("/webhook", api.get_webhook)
    r.add_put("/webhook", api.put_webhook)
    r.add_post("/webhook/secret", api.rotate_secret)
    r.add_get("/callbacks", api.list_callbacks)
    r.add_post("/callbacks/{event_id}/redeliver", api.redeliver)
    add_subscription_routes(r, ledger, cfg)
    add_report_routes(r, ledger)
    app.add_subapp(PREFIX, sub)
    return api
