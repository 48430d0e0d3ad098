"""`paybot run`'s composition root serves the seller API next to the pay page and runs the
callback delivery job: an invoice made over HTTP, paid, is called back with no help."""

from __future__ import annotations

import asyncio
import json
import socket

import aiohttp
import pytest

from bot.api import wiring
from bot.app import serve
from bot.settings import ApiSettings, Settings, TelegramSettings, TonSettings, WebSettings
from ledger.api_tokens import issue_token
from ledger.payments import pay_from_balance
from tests.api.conftest import LoopbackOnlySender
from tests.conftest import wait_until_serving


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_run_serves_the_api_and_delivers_callbacks(
    database_url, engine, make_user, receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the shared test database may hold other tests' events: only 127.0.0.1 is ever called
    monkeypatch.setattr(wiring, "CallbackSender", LoopbackOnlySender)
    port = free_port()
    settings = Settings()
    settings.web = WebSettings(host="127.0.0.1", port=port, public_url=f"http://127.0.0.1:{port}")
    settings.telegram = TelegramSettings(bot_token=None)
    settings.ton = TonSettings(destination_address=None)
    settings.api = ApiSettings(allow_private_callbacks=True, callback_poll_seconds=0.2)
    seller = await make_user()
    buyer = await make_user(balance=1000)
    token, _ = await issue_token(engine, seller.id)
    stop = asyncio.Event()
    app = asyncio.create_task(serve(settings, database_url, stop))
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        async with aiohttp.ClientSession() as http, asyncio.timeout(60):
            await wait_until_serving(http, f"{base}/openapi.json", app)
            async with http.post(f"{base}/invoices", headers={
                "Authorization": f"Bearer {token}"}, json={
                "title": "Shield", "amount": "3.00", "callback_url": receiver.url}) as resp:
                assert resp.status == 201
                invoice = await resp.json()
            assert invoice["pay_url"] == f"http://127.0.0.1:{port}/pay/{invoice['id']}"
            await pay_from_balance(engine, invoice["id"], buyer.id, "composition-1")
            await receiver.wait_for(1, within=30)
    finally:
        stop.set()
        await asyncio.wait_for(app, 30)
    event = json.loads(receiver.received[0].body)
    assert event["type"] == "invoice_paid" and event["invoice"]["id"] == invoice["id"]
