"""A local stand-in for the few Stripe and YooKassa endpoints the official SDKs call, and the
webhooks those providers send, signed as they sign them.

Stripe: POST /v1/checkout/sessions (form-encoded, Idempotency-Key), GET
/v1/checkout/sessions/{id}. YooKassa: POST /v3/payments (JSON, Idempotence-Key, Basic auth),
GET /v3/payments/{id}. The test moves a checkout on (`pay`, `fail`, `cancel`) as the buyer and
the provider would, then sends (or does not send) the webhook.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

STRIPE_KEY = "sk_test_stand_in"
STRIPE_WEBHOOK_SECRET = "whsec_stand_in_secret"
YOOKASSA_SHOP = "123456"
YOOKASSA_KEY = "test_stand_in_key"
_events = itertools.count(1)


def _nested(form: Any) -> dict[str, Any]:
    """Stripe's form encoding (a[b][0][c]=v) back into objects (list indexes as keys)."""
    root: dict[str, Any] = {}
    for key, value in form.items():
        parts = key.replace("]", "").split("[")
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return root


class Providers:
    """Both stand-ins on one aiohttp server on 127.0.0.1."""

    def __init__(self) -> None:
        self.sessions: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, str] = {}  # idempotency key -> object id
        self.calls: list[tuple[str, str]] = []
        self.down = False  # answer every call 500
        self.server: TestServer | None = None

    # --- the server ----------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/checkout/sessions", self._create_session)
        app.router.add_get("/v1/checkout/sessions/{id}", self._get_session)
        app.router.add_post("/v3/payments", self._create_payment)
        app.router.add_get("/v3/payments/{id}", self._get_payment)
        return app

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    def _refuse_if_down(self) -> None:
        if self.down:
            raise web.HTTPInternalServerError(text='{"error": {"message": "down"}}',
                                              content_type="application/json")

    async def _create_session(self, request: web.Request) -> web.Response:
        self.calls.append(("POST", request.path))
        self._refuse_if_down()
        assert request.headers["Authorization"] == f"Bearer {STRIPE_KEY}"
        key = request.headers.get("Idempotency-Key")
        if key in self.keys:
            return web.json_response(self.sessions[self.keys[key]])
        params = _nested(await request.post())
        item = params["line_items"]["0"]
        price = item["price_data"]
        currency, amount = price["currency"], int(price["unit_amount"])
        if currency.upper() in ("BHD", "JOD", "KWD", "OMR", "TND") and amount % 10:
            return web.json_response({"error": {
                "type": "invalid_request_error", "message": "last digit must be 0"}}, status=400)
        sid = "cs_test_" + secrets.token_hex(12)
        session = {
            "id": sid, "object": "checkout.session", "mode": params["mode"],
            "url": f"https://checkout.stripe.com/c/pay/{sid}", "status": "open",
            "payment_status": "unpaid", "amount_total": amount, "currency": currency,
            "client_reference_id": params.get("client_reference_id"),
            "metadata": params.get("metadata", {}), "payment_intent": None,
            "success_url": params["success_url"], "cancel_url": params["cancel_url"],
            "line_items_name": price["product_data"]["name"],
        }
        self.sessions[sid] = session
        if key:
            self.keys[key] = sid
        return web.json_response(session)

    async def _get_session(self, request: web.Request) -> web.Response:
        self.calls.append(("GET", request.path))
        self._refuse_if_down()
        session = self.sessions.get(request.match_info["id"])
        if session is None:
            return web.json_response({"error": {"type": "invalid_request_error",
                                                "message": "No such checkout.session"}},
                                     status=404)
        return web.json_response(session)

    async def _create_payment(self, request: web.Request) -> web.Response:
        self.calls.append(("POST", request.path))
        self._refuse_if_down()
        assert request.headers["Authorization"].startswith("Basic ")
        key = request.headers["Idempotence-Key"]
        if key in self.keys:
            return web.json_response(self.payments[self.keys[key]])
        params = await request.json()
        pid = str(uuid.uuid4())
        payment = {
            "id": pid, "status": "pending", "paid": False, "amount": params["amount"],
            "confirmation": {"type": "redirect",
                             "confirmation_url": f"https://yoomoney.ru/checkout/payments/v2/"
                                                 f"contract?orderId={pid}",
                             "return_url": params["confirmation"]["return_url"]},
            "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "description": params.get("description"), "metadata": params.get("metadata", {}),
            "recipient": {"account_id": YOOKASSA_SHOP, "gateway_id": "1"},
            "refundable": False, "test": True, "capture": params.get("capture"),
        }
        self.payments[pid] = payment
        self.keys[key] = pid
        return web.json_response(payment)

    async def _get_payment(self, request: web.Request) -> web.Response:
        self.calls.append(("GET", request.path))
        self._refuse_if_down()
        payment = self.payments.get(request.match_info["id"])
        if payment is None:
            return web.json_response({"type": "error", "code": "not_found",
                                      "description": "Payment not found"}, status=404)
        return web.json_response(payment)

    # --- the buyer and the provider ------------------------------------------------------

    def pay(self, ref: str, *, later: bool = False) -> None:
        """The buyer paid (Stripe: `later` = an async method, paid only when it succeeds)."""
        if ref in self.sessions:
            s = self.sessions[ref]
            s["status"] = "complete"
            s["payment_intent"] = s["payment_intent"] or "pi_" + secrets.token_hex(12)
            s["payment_status"] = "unpaid" if later else "paid"
        else:
            p = self.payments[ref]
            p.update(status="succeeded", paid=True,
                     captured_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"))

    def fail(self, ref: str) -> None:
        """Stripe: the async payment failed; YooKassa: the payment was canceled."""
        if ref in self.sessions:
            self.sessions[ref]["payment_status"] = "unpaid"
        else:
            self.payments[ref].update(status="canceled", paid=False, cancellation_details={
                "party": "yoo_money", "reason": "expired_on_confirmation"})

    def session_of(self, token: str) -> dict[str, Any]:
        return next(s for s in self.sessions.values() if s["client_reference_id"] == token)

    def payment_of(self, token: str) -> dict[str, Any]:
        return next(p for p in self.payments.values() if p["metadata"].get("quote") == token)

    # --- webhooks ------------------------------------------------------------------------

    @staticmethod
    def stripe_event(kind: str, session: dict[str, Any]) -> bytes:
        return json.dumps({
            "id": f"evt_{next(_events):08d}{secrets.token_hex(4)}", "object": "event",
            "api_version": "2024-06-20", "created": int(time.time()), "livemode": False,
            "type": kind, "data": {"object": dict(session)}, "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
        }).encode()

    @staticmethod
    def stripe_signature(body: bytes, *, secret: str = STRIPE_WEBHOOK_SECRET,
                         at: int | None = None) -> str:
        """Stripe's scheme: t=<ts>,v1=<hex HMAC-SHA256 of "<ts>.<body>">."""
        ts = int(time.time()) if at is None else at
        mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
        return f"t={ts},v1={mac}"

    @staticmethod
    def yookassa_notification(event: str, payment: dict[str, Any]) -> dict[str, Any]:
        return {"type": "notification", "event": event, "object": dict(payment)}


async def start_providers() -> AsyncIterator[Providers]:
    providers = Providers()
    client = TestClient(TestServer(providers.app(), host="127.0.0.1"))
    await client.start_server()
    providers.server = client.server  # type: ignore[assignment]
    try:
        yield providers
    finally:
        await client.close()
