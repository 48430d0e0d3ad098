"""The reference bench.api measures paybot against: the invoice API a shop would otherwise
write. One aiohttp handler per route, one asyncpg statement per request, committed on its
own: `INSERT … RETURNING` for POST /naive/invoices, a `SELECT` by key for
GET /naive/invoices/{id}. Same columns as paybot's `invoices`, same JSON request and response
bodies as paybot's POST and GET /api/v1/invoices; no auth, no idempotency, no per-seller
numbering (a sequence numbers the rows), no batching. It writes only its own table,
`naive_invoices`, and never imports paybot, so it stays the same reference across versions.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any

import asyncpg
from aiohttp import web

# The columns and checks of paybot's invoices table (migrations/versions/0001), with the same
# indexes and foreign keys, so each insert maintains what paybot's does.
SCHEMA = """
CREATE SEQUENCE IF NOT EXISTS naive_invoice_numbers;
CREATE TABLE IF NOT EXISTS naive_invoices (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_id     text NOT NULL UNIQUE,
    seller_id     bigint NOT NULL REFERENCES users (id),
    number        text NOT NULL DEFAULT nextval('naive_invoice_numbers')::text,
    title         text NOT NULL CHECK (length(title) BETWEEN 1 AND 128),
    description   text CHECK (length(description) <= 1024),
    currency      text NOT NULL REFERENCES currencies (code),
    amount        bigint NOT NULL CHECK (amount > 0),
    ton_amount    bigint CHECK (ton_amount > 0),
    ton_rate      numeric CHECK (ton_rate > 0),
    kind          text NOT NULL CHECK (kind IN ('one_time', 'multi_use')),
    max_uses      int CHECK (max_uses > 0),
    uses          int NOT NULL DEFAULT 0,
    status        text NOT NULL DEFAULT 'pending',
    payload       jsonb NOT NULL DEFAULT '{}'::jsonb,
    ton_received  bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    paid_at       timestamptz,
    closed_at     timestamptz,
    UNIQUE (seller_id, number)
);
CREATE INDEX IF NOT EXISTS naive_invoices_seller ON naive_invoices (seller_id, id DESC);
"""

INSERT = """
INSERT INTO naive_invoices (public_id, seller_id, title, description, currency, amount,
                            ton_amount, ton_rate, kind, max_uses, payload, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, now() + $12::interval)
RETURNING *
"""
SELECT = "SELECT * FROM naive_invoices WHERE public_id = $1"
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CENTS = Decimal("0.01")


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _public_id() -> str:
    bits = int.from_bytes(os.urandom(9))
    return "".join(ALPHABET[(bits >> (5 * i)) & 31] for i in range(13))


class NaiveInvoices:
    """The two handlers, over one asyncpg pool, for one seller (there is no auth to say whose
    invoice it is)."""

    def __init__(self, pool: asyncpg.Pool, seller_id: int, public_url: str, bot_username: str,
                 ton_rate: Decimal, expiry: timedelta) -> None:
        self.pool = pool
        self.seller_id = seller_id
        self.public_url = public_url.rstrip("/")
        self.bot_username = bot_username
        self.ton_rate = ton_rate
        self.expiry = expiry

    def view(self, row: asyncpg.Record) -> dict[str, Any]:
        payload = json.loads(row["payload"])
        ton = row["ton_amount"]
        amount = f"{Decimal(row['amount']) / 100:.2f}"
        line = " — ".join(filter(None, (row["title"], row["description"])))
        return {
            "id": row["public_id"], "number": row["number"], "status": row["status"],
            "title": row["title"], "description": row["description"],
            "currency": row["currency"], "amount": f"{Decimal(row['amount']) / 100:.2f}",
            "amount_minor": row["amount"],
            "ton_amount": (f"{Decimal(ton).scaleb(-9):f}".rstrip("0").rstrip(".")
                           if ton else None),
            "ton_amount_nano": ton,
            "ton_due": (f"{Decimal(ton).scaleb(-9):f}".rstrip("0").rstrip(".")
                        if ton else None),
            "ton_due_nano": ton, "ton_comment": f"INV-{row['public_id']}",
            "kind": row["kind"], "max_uses": row["max_uses"], "uses": row["uses"],
            "item_id": payload.get("item_id"), "achievement_id": payload.get("achievement_id"),
            "callback_url": payload.get("callback_url"),
            "pay_url": f"{self.public_url}/pay/{row['public_id']}",
            "bot_url": f"https://t.me/{self.bot_username}?start=pay_{row['public_id']}",
            "created_at": _iso(row["created_at"]), "expires_at": _iso(row["expires_at"]),
            "paid_at": _iso(row["paid_at"]), "closed_at": _iso(row["closed_at"]),
            "paid_by": None,
            # the invoice as a one-line document, as paybot's view shows a plain invoice
            "lines": [{"description": line, "quantity": "1", "unit_price": amount,
                       "unit_price_minor": row["amount"], "item_id": payload.get("item_id"),
                       "tax_rate": None, "discount": None, "amount": amount,
                       "amount_minor": row["amount"], "discount_amount": "0.00",
                       "discount_amount_minor": 0, "tax": "0.00", "tax_minor": 0}],
            "discount": None, "tax_rates": [], "subtotal": amount,
            "subtotal_minor": row["amount"], "discount_amount": "0.00",
            "discount_amount_minor": 0, "taxes": [], "tax": "0.00", "tax_minor": 0,
            "total": amount, "total_minor": row["amount"], "amount_paid": "0.00",
            "amount_paid_minor": 0, "amount_due": amount, "amount_due_minor": row["amount"],
            "due_at": None, "overdue": False, "issued_at": _iso(row["created_at"]),
            "sent_at": None, "viewed_at": None, "buyer": None, "memo": None, "version": 1,
        }

    async def create(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            title = str(body["title"])
            amount = int((Decimal(str(body["amount"])) * 100).to_integral_value())
        except (ValueError, KeyError, TypeError, InvalidOperation):
            return web.json_response({"error": "invalid"}, status=400)
        if not 1 <= len(title) <= 128 or amount <= 0:
            return web.json_response({"error": "invalid"}, status=400)
        ton = int((Decimal(amount) / 100 / self.ton_rate).scaleb(9)
                  .to_integral_value(ROUND_CEILING))
        payload = {"item_id": body.get("item_id"), "achievement_id": body.get("achievement_id"),
                   "callback_url": body.get("callback_url")}
        row = await self.pool.fetchrow(
            INSERT, _public_id(), self.seller_id, title, body.get("description"),
            body.get("currency", "LIQ"), amount, ton, self.ton_rate,
            body.get("kind", "one_time"), body.get("max_uses"), json.dumps(payload), self.expiry,
        )
        return web.json_response(self.view(row), status=201)

    async def get(self, request: web.Request) -> web.Response:
        row = await self.pool.fetchrow(SELECT, request.match_info["invoice_id"].upper())
        if row is None:
            return web.json_response({"error": "invoice_not_found"}, status=404)
        return web.json_response(self.view(row))


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to reset: the handlers change no session state (no transaction, LISTEN,
    cursor or SET is left behind), so a released connection skips the reset round trip
    asyncpg's pool makes by default, and each request is exactly one round trip."""


async def create_pool(dsn: str, size: int) -> asyncpg.Pool:
    return await asyncpg.create_pool(dsn, min_size=size, max_size=size, reset=_keep_session)


async def create_schema(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(SCHEMA)
    finally:
        await conn.close()


def mount(app: web.Application, naive: NaiveInvoices, prefix: str = "/naive") -> None:
    app.router.add_post(f"{prefix}/invoices", naive.create)
    app.router.add_get(f"{prefix}/invoices/{{invoice_id}}", naive.get)
