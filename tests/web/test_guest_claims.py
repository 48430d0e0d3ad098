"""Know who pays, on the pay page: each browser gets its own payer tag in the comment, the QR
and the wallet links; only the browser whose tag a transfer carried sees the purchase and its
Telegram proof link; a guest may leave a contact.

The attack of issue 10: the comment and the receiving address are public on chain, so someone
watching the address opens /pay/<id> before (or just after) the watcher settles. Transfers here
are recorded through the ledger exactly as the watcher records them (matched by
watchers.ton_match from the comment the payer sent), on a real PostgreSQL.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import json
import re
import secrets
import time
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.web import setup_pay_pages
from ledger.core import Ledger
from ledger.invoice_reads import get_invoice
from ledger.payers import bind_user, find_tag
from ledger.payments import grants_of_user
from ledger.transfers import ChainTransfer, record_transfer, start_cursor
from tests.conftest import run_sql
from tests.web.conftest import (
    BOT_USERNAME,
    DEST,
    TON_RATE,
    make_settings,
    sign_init_data,
    tg_user,
    tma,
)
from watchers.ton_match import match_comment

QUOTE = 2_500_000_000  # 12.50 Liquid $ at 5 per TON
_tx = itertools.count(1)


class Chain:
    """Incoming transfers to the shop's address, linked like the account's transactions."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.prev = (0, "0" * 64)
        self.lt = 10**12
        # An address of its own: the tests of a run share one database.
        self.address = "0:" + secrets.token_hex(32)

    async def send(self, comment: str, value: int = QUOTE) -> str:
        """Record a transfer carrying `comment` as the watcher would; its outcome."""
        await start_cursor(self.engine, self.address, 0, "0" * 64)  # once; later: nothing
        found = match_comment(comment)
        self.lt += 1000
        tx_hash = hashlib.sha256(f"guest-claims-{next(_tx)}-{self.lt}".encode()).hexdigest()
        t = ChainTransfer(
            address=self.address, tx_hash=tx_hash, lt=self.lt, utime=int(time.time()),
            prev_lt=self.prev[0], prev_hash=self.prev[1], incoming=True,
            source="0:" + "cd" * 32, value_nano=value, body_kind="text", comment=comment,
            invoice_id=found.code if found else None, payer_tag=found.tag if found else None)
        self.prev = (self.lt, tx_hash)
        return (await record_transfer(self.engine, t, currency="LIQ", ton_rate=TON_RATE)).outcome


def page_data(body: str) -> dict:
    match = re.search(r'<script type="application/json" id="pay-data">(.*?)</script>', body, re.S)
    assert match
    return json.loads(match.group(1))


class Browser:
    """One browser: keeps the guest cookie it was given (the test server speaks http, so the
    Secure cookie is sent by hand)."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.cookie: str | None = None

    def _cookies(self) -> dict[str, str]:
        return {"pb_guest": self.cookie} if self.cookie else {}

    async def open(self, invoice: Any) -> tuple[str, dict]:
        """The page as this browser ends up with it: without a cookie the page is the shared
        one and its script asks the status route at once, which hands out the tag and the
        cookie; the page then shows (and a reload serves) this browser's own."""
        resp = await self.client.get(f"/pay/{invoice.public_id}", cookies=self._cookies())
        assert resp.status == 200
        assert "pb_guest" not in resp.cookies  # a page view alone writes nothing
        if self.cookie is None:
            await self.status(invoice, ask=True)
            if self.cookie is not None:
                resp = await self.client.get(f"/pay/{invoice.public_id}",
                                             cookies=self._cookies())
        body = await resp.text()
        return body, page_data(body)

    async def status(self, invoice: Any, *, ask: bool = False) -> dict:
        """The status poll; `ask`: the script's first call, which asks for a tag."""
        resp = await self.client.get(f"/pay/{invoice.public_id}/status",
                                     params={"guest": "new"} if ask else None,
                                     cookies=self._cookies())
        assert resp.status == 200
        if "pb_guest" in resp.cookies:
            self.cookie = resp.cookies["pb_guest"].value
        return await resp.json()


async def test_each_browser_pays_with_its_own_tag(client, make_invoice, engine) -> None:
    invoice = await make_invoice()
    alice, bob = Browser(client), Browser(client)
    body, data = await alice.open(invoice)
    tag = data["payer"]["tag"]
    comment = f"INV-{invoice.public_id}-{tag}"
    # The comment in the copy field, the wallet links and the QR is this browser's own.
    assert f'<code id="comment">{comment}</code>' in body
    assert data["invoice"]["comment"] == comment
    assert html.escape(f"ton://transfer/{DEST['non_bounceable']}?amount={QUOTE}"
                       f"&text={comment}") in body
    assert html.escape(f"app.tonkeeper.com/transfer/{DEST['non_bounceable']}?amount={QUOTE}"
                       f"&text={comment}") in body
    assert f'src="/pay/{invoice.public_id}/qr.svg?tag={tag}"' in body
    assert len(comment) <= 23  # fits any wallet's comment field
    # The ledger bound it to this browser alone; reloading keeps it, another browser differs.
    payer = await find_tag(engine, invoice.public_id, tag)
    assert payer is not None and payer.guest_key and payer.user_id is None
    assert (await alice.open(invoice))[1]["payer"]["tag"] == tag
    assert (await alice.status(invoice))["invoice"]["comment"] == comment
    other = (await bob.open(invoice))[1]["payer"]["tag"]
    assert other != tag


async def test_the_qr_carries_the_tag_and_only_a_tag_of_this_invoice(
        client, make_invoice) -> None:
    invoice, other = await make_invoice(), await make_invoice()
    tag = (await Browser(client).open(invoice))[1]["payer"]["tag"]
    other_tag = (await Browser(client).open(other))[1]["payer"]["tag"]
    bare = await client.get(f"/pay/{invoice.public_id}/qr.svg")
    mine = await client.get(f"/pay/{invoice.public_id}/qr.svg?tag={tag.lower()}")
    assert bare.status == mine.status == 200
    assert bare.headers["ETag"] != mine.headers["ETag"]  # a different text is encoded
    for bad in ("ZZZZZ", other_tag, "x" * 50, "ü1234", ""):
        resp = await client.get(f"/pay/{invoice.public_id}/qr.svg", params={"tag": bad})
        assert resp.status == 404, bad


async def test_the_attack_fails_only_the_paying_browser_gets_the_claim(
        client_for, make_invoice, engine) -> None:
    # A one-second page cache, as in production: a stale "pending" copy must not hand out
    # anything either.
    settings = make_settings(page_cache_seconds=1.0)
    payer_client, watcher_client = await client_for(settings), await client_for(settings)
    invoice = await make_invoice(payload={"item_id": "beans-1kg"})
    buyer, attacker = Browser(payer_client), Browser(watcher_client)
    tag = (await buyer.open(invoice))[1]["payer"]["tag"]
    await attacker.open(invoice)  # had the page open before the payment

    assert await Chain(engine).send(f"INV-{invoice.public_id}-{tag}") == "paid"

    # The paying browser: the purchase, and the Telegram link proving it.
    mine = await buyer.status(invoice)
    assert mine["invoice"]["status"] == "paid"
    payer = await find_tag(engine, invoice.public_id, tag)
    assert payer is not None and payer.proof
    link = f"https://t.me/{BOT_USERNAME}?start=bind_{invoice.public_id}_{tag}_{payer.proof}"
    assert mine["claim"] == {"url": link}
    assert html.escape(link) in (await buyer.open(invoice))[0]

    # The browser that had the page open before the payment: "paid", nothing more.
    theirs = await attacker.status(invoice)
    assert theirs["invoice"]["status"] == "paid" and theirs["claim"] is None
    assert payer.proof not in (await attacker.open(invoice))[0]
    # A browser arriving right after the payment, served the cached "pending" copy: a fresh
    # tag of its own, nothing paid with it.
    late = Browser(payer_client)
    body, data = await late.open(invoice)
    assert data["claim"] is None and payer.proof not in body
    assert (await late.status(invoice))["claim"] is None
    # A forged cookie, a cookie of another invoice: no cookie at all.
    assert buyer.cookie is not None
    for forged in (buyer.cookie[:-1] + ("0" if buyer.cookie[-1] != "0" else "1"),
                   buyer.cookie.replace(tag, "ZZZZZ"), "ü" + buyer.cookie, "x" * 500):
        spy = Browser(watcher_client)
        spy.cookie = forged
        assert (await spy.status(invoice))["claim"] is None
    elsewhere = await make_invoice()
    spy = Browser(watcher_client)
    await spy.open(elsewhere)
    assert (await spy.status(invoice))["claim"] is None
    # Nobody but the buyer was handed anything: the grant still waits for the proof.
    grants = await run_sql(engine, "SELECT user_id FROM grants WHERE invoice_id = :id",
                           id=invoice.id)
    assert [g["user_id"] for g in grants] == [None]


async def test_a_bare_reference_pays_but_no_browser_can_claim(
        client, make_invoice, engine) -> None:
    invoice = await make_invoice(payload={"item_id": "beans"})
    a, b = Browser(client), Browser(client)
    await a.open(invoice)
    await b.open(invoice)
    assert await Chain(engine).send(f"inv-{invoice.public_id.lower()}") == "paid"
    for browser in (a, b):
        body = await browser.status(invoice)
        assert body["invoice"]["status"] == "paid" and body["claim"] is None


async def test_a_tag_of_another_invoice_claims_nothing_here(
        client, make_invoice, engine) -> None:
    invoice, other = await make_invoice(), await make_invoice()
    guest = Browser(client)
    other_tag = (await guest.open(other))[1]["payer"]["tag"]
    await guest.open(invoice)
    # The other invoice's tag on this invoice: pays it as a bare reference, shows nothing.
    assert await Chain(engine).send(f"INV-{invoice.public_id}-{other_tag}") == "paid"
    assert (await guest.status(invoice))["claim"] is None
    assert (await guest.status(other))["claim"] is None
    assert (await get_invoice(engine, other.public_id)).status == "pending"


async def test_once_handed_over_the_page_says_received(
        client, make_invoice, make_user, engine) -> None:
    invoice = await make_invoice(payload={"item_id": "beans"})
    guest = Browser(client)
    tag = (await guest.open(invoice))[1]["payer"]["tag"]
    await Chain(engine).send(f"INV-{invoice.public_id}-{tag}")
    payer = await find_tag(engine, invoice.public_id, tag)
    assert payer is not None
    user = await make_user()
    await bind_user(engine, invoice.public_id, tag, user.id, proof=payer.proof)
    assert (await guest.status(invoice))["claim"] == {"claimed": True}
    assert [g.item_id for g in await grants_of_user(engine, user.id)] == ["beans"]


async def test_a_mini_app_buyer_pays_ton_with_their_own_tag(
        client, make_invoice, make_user, engine) -> None:
    invoice = await make_invoice(payload={"item_id": "beans"})
    buyer = await make_user()
    body = await (await client.get(f"/pay/{invoice.public_id}/status",
                                   headers=tma(sign_init_data(tg_user(buyer))))).json()
    comment = body["invoice"]["comment"]
    tag = comment.rsplit("-", 1)[1]
    payer = await find_tag(engine, invoice.public_id, tag)
    assert payer is not None and payer.user_id == buyer.id
    assert tag in body["invoice"]["pay_ton"]["ton"] and tag in body["invoice"]["links"]["qr_svg"]
    # The transfer carrying it hands the item straight to them: no claim, no link.
    assert await Chain(engine).send(comment) == "paid"
    assert [g.item_id for g in await grants_of_user(engine, buyer.id)] == ["beans"]


# --- "Get your purchase by Telegram or e-mail" ----------------------------------------------

async def test_a_guest_leaves_a_contact_for_their_tag(client, make_invoice, engine) -> None:
    invoice = await make_invoice()
    guest = Browser(client)
    body, data = await guest.open(invoice)
    assert 'id="contact-form"' in body and data["payer"]["contact"] is None
    tag = data["payer"]["tag"]
    url = f"/pay/{invoice.public_id}/contact"
    resp = await client.post(url, json={"contact": " Buyer@Example.COM "},
                             cookies={"pb_guest": guest.cookie})
    assert resp.status == 200
    assert (await resp.json())["contact"] == "Buyer@example.com"
    payer = await find_tag(engine, invoice.public_id, tag)
    assert payer is not None and payer.contact == "Buyer@example.com"
    body, data = await guest.open(invoice)  # shown back to the guest
    assert data["payer"]["contact"] == "Buyer@example.com" and "Saved: Buyer@example.com" in body
    # Without a script: a form post, then back to the page.
    resp = await client.post(url, data={"contact": "@Bean_Lover"},
                             cookies={"pb_guest": guest.cookie}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == f"/pay/{invoice.public_id}"
    assert (await find_tag(engine, invoice.public_id, tag)).contact == "@bean_lover"  # type: ignore[union-attr]


async def test_bad_contacts_are_refused_and_change_nothing(client, make_invoice, engine) -> None:
    invoice, other = await make_invoice(), await make_invoice()
    guest = Browser(client)
    tag = (await guest.open(invoice))[1]["payer"]["tag"]
    url = f"/pay/{invoice.public_id}/contact"
    mine = {"pb_guest": guest.cookie or ""}
    for bad in ("not a contact", "@", "a@b", "<script>@x.y", "x" * 400, 42, None, ""):
        resp = await client.post(url, json={"contact": bad}, cookies=mine)
        assert resp.status == 422, bad  # as every HTTP route answers an invalid value
        assert (await resp.json())["error"]["code"] == "invalid_contact"
    for junk in (b"{", b"[]", "ü".encode()):
        resp = await client.post(url, data=junk, cookies=mine,
                                 headers={"Content-Type": "application/json"})
        assert resp.status == 400
    # No cookie, a forged one, another invoice's: 403, nothing set.
    other_cookie = Browser(client)
    await other_cookie.open(other)
    signed = mine["pb_guest"]
    forged = signed[:-1] + ("1" if signed.endswith("0") else "0")  # never the cookie itself
    for cookies in ({}, {"pb_guest": forged},
                    {"pb_guest": other_cookie.cookie or ""}):
        resp = await client.post(url, json={"contact": "x@example.com"}, cookies=cookies)
        assert resp.status == 403
    resp = await client.post("/pay/0000000000000/contact", json={"contact": "x@example.com"},
                             cookies=mine)
    assert resp.status == 404
    assert (await find_tag(engine, invoice.public_id, tag)).contact is None  # type: ignore[union-attr]


async def test_a_stale_page_copy_never_shares_a_cookie(engine, make_invoice) -> None:
    """The page cache keeps rendered pages only for visitors without a guest cookie; every
    browser that may pay gets its own tag even while the same snapshot is served."""
    app = web.Application()
    setup_pay_pages(app, Ledger(engine, invoice_cache_seconds=60), make_settings())
    invoice = await make_invoice()
    async with TestClient(TestServer(app)) as client:
        tags = {(await Browser(client).open(invoice))[1]["payer"]["tag"] for _ in range(3)}
    assert len(tags) == 3


async def test_plain_status_polls_never_issue_tags(client, make_invoice, engine) -> None:
    """A browser that refuses cookies keeps the tag it was first given: only the script's one
    ask (?guest=new) issues one, never the polls that follow (nor a crawler's request)."""
    invoice = await make_invoice()
    for _ in range(3):
        resp = await client.get(f"/pay/{invoice.public_id}/status")
        assert "pb_guest" not in resp.cookies and "payer" not in await resp.json()
    first = await client.get(f"/pay/{invoice.public_id}/status", params={"guest": "new"})
    assert (await first.json())["payer"]["tag"] and "pb_guest" in first.cookies
    rows = await run_sql(engine, "SELECT count(*) AS n FROM payer_tags t JOIN invoices i "
                                 "ON i.id = t.invoice_id WHERE i.public_id = :id",
                         id=invoice.public_id)
    assert rows[0]["n"] == 1
