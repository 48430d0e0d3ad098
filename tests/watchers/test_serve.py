"""`paybot run` (bot.app.serve) runs the watcher when TON_DESTINATION_ADDRESS is set: it
settles the chain's transfers with no help, and a chain that cannot be reached changes nothing
for the rest of the service."""

from __future__ import annotations

import asyncio
import logging
import socket

import aiohttp
import pytest

from bot.app import serve
from bot.settings import Settings, TelegramSettings, TonSettings, WebSettings
from tests.conftest import wait_until_serving
from tests.waiting import log_records, wait_until
from tests.watchers.conftest import EXPECTED, Toncenter, World
from tests.watchers.standins import DATA


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings_for(api_url: str) -> tuple[Settings, int]:
    port = free_port()
    settings = Settings()
    settings.web = WebSettings(host="127.0.0.1", port=port, public_url=f"http://127.0.0.1:{port}")
    settings.telegram = TelegramSettings(bot_token=None)
    settings.ton = TonSettings(destination_address=DATA["destination"]["bounceable"],
                               source="http", api_url=api_url, poll_seconds=0.2)
    return settings, port


async def test_run_settles_the_chain(world: World, toncenter: Toncenter) -> None:
    settings, _ = settings_for(toncenter.url)
    stop = asyncio.Event()
    app = asyncio.create_task(serve(settings, world.url, stop))
    try:
        async def settled() -> bool:
            return await world.outcomes() == EXPECTED

        await wait_until(settled, "every fixture transfer settled with its outcome", task=app)
    finally:
        stop.set()
        await asyncio.wait_for(app, 30)
    assert toncenter.chain.requests, "settled without asking the chain"
    assert await world.invariants() == []


async def test_run_keeps_serving_when_the_chain_is_unreachable(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "watchers")
    settings, port = settings_for(f"http://127.0.0.1:{free_port()}/api/v2")
    stop = asyncio.Event()
    app = asyncio.create_task(serve(settings, world.url, stop))
    try:
        async with aiohttp.ClientSession() as http, asyncio.timeout(60):
            await wait_until_serving(http, f"http://127.0.0.1:{port}/healthz", app)
            # The watcher really asked the chain, and was refused, more than once.
            await wait_until(
                lambda: len(log_records(caplog, "watchers", "TON http source:")) >= 2,
                "two refused requests of the TON source, logged", within=30, task=app)
            async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 200 and (await resp.json())["ok"] is True
        assert not app.done()
    finally:
        stop.set()
        await asyncio.wait_for(app, 30)
    assert await world.outcomes() == {}
