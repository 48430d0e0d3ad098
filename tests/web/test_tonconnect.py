"""TON Connect: the pay page asks a connected wallet to send exactly what the watcher will match.

The manifest wallets read; the TON message (the due quote to the shop, the payer's own comment
as the payload cell); USDT's jetton transfer for the buyer's own jetton wallet (TEP-74
`transfer`: the amount due 1:1, to the shop, excess back to the buyer, forward 1 nanoton with
the comment); and every bad request answered with a 4xx that changes nothing."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image
from pytoniq_core import Cell, begin_cell
from pytoniq_core.boc.address import Address
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.settings import Settings
from bot.web import setup_pay_pages
from ledger.core import Ledger
from ledger.payments import pay_from_balance
from tests.conftest import run_sql
from tests.web.conftest import BOT_USERNAME, DEST, make_settings, sign_init_data, tg_user, tma
from watchers.jetton_decode import decode_jetton
from watchers.ton_decode import decode_comment
from watchers.ton_links import friendly_address, normalize_address

USDT_MASTER_RAW = "0:b113a994b5024a16719f69139328eb759596c38a25f59028b146fecdc3621dfe"
BUYER_RAW = "0:" + "ab" * 32
BUYER_JETTON_WALLET_RAW = "0:" + "cd" * 32


class Chain:
    """The composition root's `jetton_wallet_of` as the chain would answer it (the master's
    get_wallet_address): one jetton wallet per owner; `down` makes it fail."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []
        self.down = False

    async def __call__(self, master: str, owner: str) -> str | None:
        self.asked.append((master, owner))
        if self.down:
            raise TimeoutError("liteserver did not answer")
        return BUYER_JETTON_WALLET_RAW if owner == BUYER_RAW else "0:" + "ee" * 32


MakeClient = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def served(engine: AsyncEngine) -> Any:
    clients: list[TestClient] = []

    async def _make(settings: Settings | None = None, chain: Chain | None = None) -> TestClient:
        app = web.Application()
        setup_pay_pages(app, Ledger(engine), settings or make_settings(),
                        jetton_wallet_of=chain)
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield _make
    for c in clients:
        await c.close()


async def guest_cookie(client: TestClient, public_id: str) -> dict[str, str]:
    """This browser's guest cookie, as the page's script gets it (sent by hand: the test
    server speaks http and the cookie is Secure)."""
    resp = await client.get(f"/pay/{public_id}/status?guest=new")
    assert resp.status == 200
    return {"pb_guest": resp.cookies["pb_guest"].value}


def cell(payload: str) -> Cell:
    return Cell.one_from_boc(base64.b64decode(payload))


async def test_the_manifest_names_the_app_and_its_icon(served) -> None:
    client = await served()
    resp = await client.get("/tonconnect-manifest.json")
    assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "*"
    assert await resp.json() == {"url": "https://pay.example.com", "name": f"@{BOT_USERNAME}",
                                 "iconUrl": "https://pay.example.com/tonconnect-icon.png"}
    icon = await client.get("/tonconnect-icon.png")
    assert icon.content_type == "image/png"
    assert Image.open(io.BytesIO(await icon.read())).size == (180, 180)


async def test_ton_message_is_the_due_quote_with_this_guests_comment(
    served, make_invoice
) -> None:
    client = await served()
    invoice = await make_invoice()
    cookies = await guest_cookie(client, invoice.public_id)
    status = await (await client.get(f"/pay/{invoice.public_id}/status", cookies=cookies)).json()
    comment = status["invoice"]["comment"]
    assert comment.startswith(f"INV-{invoice.public_id}-") and len(comment) == 23
    before = int(time.time())
    resp = await client.post(f"/pay/{invoice.public_id}/tonconnect", json={"asset": "TON"},
                             cookies=cookies)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert before + 60 <= body["validUntil"] <= before + 600
    assert body["network"] == "-239"  # mainnet, as the destination's form says
    [message] = body["messages"]
    assert message["address"] == friendly_address(DEST["raw"])
    assert message["amount"] == "2500000000"  # 12.50 Liquid $ at 5.00: exactly the quote
    # The payload is the comment exactly as the watcher reads it from the chain.
    assert decode_comment(cell(message["payload"])) == ("text", comment)
    # The page has the same message already (no request before the wallet opens).
    assert status["invoice"]["tonconnect"] == {"network": "-239", "message": message}
    assert status["invoice"]["links"]["tonconnect_manifest"] == (
        "https://pay.example.com/tonconnect-manifest.json")


async def test_usdt_is_a_jetton_transfer_from_the_buyers_own_jetton_wallet(
    served, make_invoice, make_user
) -> None:
    chain = Chain()
    client = await served(chain=chain)
    invoice = await make_invoice()
    buyer = await make_user(username="usdt_buyer")
    auth = tma(sign_init_data(tg_user(buyer)))
    owner = friendly_address(BUYER_RAW, bounceable=True)  # the form a wallet shows
    resp = await client.post(f"/pay/{invoice.public_id}/tonconnect",
                             json={"asset": "USDT", "owner": owner}, headers=auth)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert chain.asked == [(USDT_MASTER_RAW, BUYER_RAW)]
    assert body["from"] == BUYER_RAW
    [message] = body["messages"]
    # Sent to the buyer's jetton wallet (bounceable: a contract), with TON for its fees.
    assert normalize_address(message["address"]) == BUYER_JETTON_WALLET_RAW
    assert message["address"].startswith("EQ")
    assert message["amount"] == "50000000"
    s = cell(message["payload"]).begin_parse()
    assert s.load_uint(32) == 0x0F8A7EA5  # TEP-74 transfer
    query_id = s.load_uint(64)
    assert s.load_coins() == 12_500_000  # 12.50 Liquid $ = 12.5 USDT, 1:1
    assert s.load_address().to_str(is_user_friendly=False) == DEST["raw"]  # to the shop
    assert s.load_address().to_str(is_user_friendly=False) == BUYER_RAW  # excess back
    assert s.load_bit() == 0  # no custom payload
    assert s.load_coins() == 1  # forward 1 nanoton: the shop's wallet is notified
    forward_payload = s.copy()
    assert s.load_bit() == 1  # forward payload in a ref: the buyer's own comment
    status = await (await client.get(f"/pay/{invoice.public_id}/status", headers=auth)).json()
    comment = status["invoice"]["comment"]
    assert decode_comment(s.load_ref()) == ("text", comment)
    # The shop's jetton wallet hands the forward payload on as it is (TEP-74): the
    # notification the watcher then reads names this invoice and this buyer.
    notification = (begin_cell().store_uint(0x7362D09C, 32).store_uint(query_id, 64)
                    .store_coins(12_500_000).store_address(Address(BUYER_RAW))
                    .store_slice(forward_payload).end_cell())
    seen = decode_jetton(notification)
    assert seen is not None
    assert (seen.kind, seen.amount, seen.sender, seen.comment) == (
        "notification", 12_500_000, BUYER_RAW, comment)
    assert status["invoice"]["pay_usdt"]["amount"]["display"] == "12.5 USDT"
    assert status["invoice"]["pay_usdt"]["connect"] is True
    # The buyer's jetton wallet never changes: the chain is asked once.
    again = await client.post(f"/pay/{invoice.public_id}/tonconnect",
                              json={"asset": "USDT", "owner": BUYER_RAW}, headers=auth)
    assert normalize_address((await again.json())["messages"][0]["address"]) == (
        BUYER_JETTON_WALLET_RAW)
    assert chain.asked == [(USDT_MASTER_RAW, BUYER_RAW)]


async def test_bad_requests_are_refused_and_change_nothing(
    served, make_invoice, make_user, engine
) -> None:
    chain = Chain()
    client = await served(chain=chain)
    invoice = await make_invoice()
    url = f"/pay/{invoice.public_id}/tonconnect"
    cookies = await guest_cookie(client, invoice.public_id)
    tags_before = await run_sql(engine, "SELECT count(*) AS n FROM payer_tags")

    async def refused(status: int, code: str, *, url: str = url, **kw: Any) -> None:
        resp = await client.post(url, **kw)
        assert resp.status == status, await resp.text()
        assert (await resp.json())["error"]["code"] == code

    await refused(403, "no_guest_cookie", json={"asset": "TON"})  # who would it name?
    await refused(400, "bad_request", data=b"not json", cookies=cookies)
    await refused(400, "bad_request", json=["TON"], cookies=cookies)
    await refused(400, "unsupported_asset", json={"asset": "BTC"}, cookies=cookies)
    await refused(400, "unsupported_asset", json={}, cookies=cookies)
    await refused(400, "invalid_address", json={"asset": "USDT"}, cookies=cookies)
    for owner in ("EQ-not-an-address", 42, "0:" + "ab" * 31, "x" * 5000):
        await refused(400, "invalid_address", json={"asset": "USDT", "owner": owner},
                      cookies=cookies)
    await refused(404, "invoice_not_found", url="/pay/ZZZZZZZZZZZZZ/tonconnect",
                  json={"asset": "TON"}, cookies=cookies)
    assert chain.asked == []
    # The chain cannot tell the buyer's jetton wallet now: try again, nothing was signed.
    chain.down = True
    await refused(503, "retry", json={"asset": "USDT", "owner": BUYER_RAW}, cookies=cookies)
    assert await run_sql(engine, "SELECT count(*) AS n FROM payer_tags") == tags_before
    # The seller's own invoice, in the Mini App.
    seller = (await run_sql(engine, "SELECT telegram_id, username FROM users WHERE id = :id",
                            id=invoice.seller_id))[0]
    own = tma(sign_init_data({"id": seller["telegram_id"], "first_name": "S",
                              "username": seller["username"], "language_code": "en"}))
    await refused(403, "own_invoice", json={"asset": "TON"}, headers=own)
    # USDT does not pay an invoice in TON.
    in_ton = await make_invoice(amount=2_500_000_000, currency="TON", ton_rate=None)
    ton_cookies = await guest_cookie(client, in_ton.public_id)
    await refused(409, "asset_unavailable", url=f"/pay/{in_ton.public_id}/tonconnect",
                  json={"asset": "USDT", "owner": BUYER_RAW}, cookies=ton_cookies)
    # Paid meanwhile: nothing to sign.
    buyer = await make_user(balance=5000)
    await pay_from_balance(engine, invoice.public_id, buyer.id, "first")
    await refused(409, "invoice_already_paid", json={"asset": "TON"}, cookies=cookies)
    await refused(409, "invoice_already_paid", json={"asset": "USDT", "owner": BUYER_RAW},
                  cookies=cookies)


async def test_without_the_chain_usdt_is_offered_by_links_only(served, make_invoice) -> None:
    client = await served()  # no jetton_wallet_of given by the composition root
    invoice = await make_invoice()
    cookies = await guest_cookie(client, invoice.public_id)
    status = await (await client.get(f"/pay/{invoice.public_id}/status", cookies=cookies)).json()
    usdt = status["invoice"]["pay_usdt"]
    comment = status["invoice"]["comment"]
    master = friendly_address(USDT_MASTER_RAW, bounceable=True)
    dest = friendly_address(DEST["raw"])
    assert usdt["connect"] is False
    assert usdt["ton"] == (f"ton://transfer/{dest}?jetton={master}&amount=12500000"
                           f"&text={comment}")
    assert usdt["tonkeeper"] == (f"https://app.tonkeeper.com/transfer/{dest}?jetton={master}"
                                 f"&amount=12500000&text={comment}")
    resp = await client.post(f"/pay/{invoice.public_id}/tonconnect",
                             json={"asset": "USDT", "owner": BUYER_RAW}, cookies=cookies)
    assert resp.status == 409


async def test_a_testnet_destination_asks_a_testnet_wallet(served, make_invoice) -> None:
    # The wallet is told the network: one on the other network refuses to sign.
    testnet_form = Address(DEST["raw"]).to_str(is_user_friendly=True, is_url_safe=True,
                                       is_bounceable=False, is_test_only=True)
    client = await served(make_settings(address=testnet_form))
    invoice = await make_invoice()
    cookies = await guest_cookie(client, invoice.public_id)
    body = await (await client.post(f"/pay/{invoice.public_id}/tonconnect",
                                    json={"asset": "TON"}, cookies=cookies)).json()
    assert body["network"] == "-3"
    assert body["messages"][0]["address"] == testnet_form
