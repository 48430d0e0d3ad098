"""Network trouble never kills the watcher: retried with backoff and logged; bad data from a
source is refused, not settled; start-up never waits on the chain."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from nacl.signing import SigningKey

from bot.settings import Settings
from tests.conftest import run_sql
from tests.watchers.conftest import EXPECTED, RATE, Toncenter, World, run_until_idle
from tests.watchers.standins import DATA, TXS, Chain, FixtureLiteBalancer
from tests.watchers.test_fixture_outcomes import assert_fixture_world
from watchers.ton_sources import (
    HttpApiSource,
    LiteserverSource,
    SourceError,
    liteserver_connector,
    load_global_config,
)
from watchers.ton_watcher import TonWatcher, start_ton_watcher


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_http_errors_are_retried(world: World, toncenter: Toncenter,
                                       caplog: pytest.LogCaptureFixture) -> None:
    toncenter.chain.fail_next("429", "500", "garbage", "hang")
    watcher = world.watcher(HttpApiSource(toncenter.url, page_size=5, timeout=0.5))
    caplog.set_level(logging.WARNING, "watchers")
    try:
        assert await run_until_idle(watcher) == len(TXS)
    finally:
        await watcher.close()
    await assert_fixture_world(world)
    text = caplog.text
    assert "rate limit (429)" in text and "answered 500" in text and "answered 502" in text
    assert "retry 4/4" in text  # the hang timed out and was retried too


async def test_liteserver_errors_are_retried(world: World,
                                             caplog: pytest.LogCaptureFixture) -> None:
    chain = Chain()
    chain.fail_next("651", "timeout", "no_peers", "651")
    clients: list[FixtureLiteBalancer] = []

    async def connect() -> FixtureLiteBalancer:
        clients.append(FixtureLiteBalancer(chain))
        return clients[-1]

    caplog.set_level(logging.WARNING, "watchers")
    watcher = world.watcher(LiteserverSource(connect, page_size=6))
    try:
        assert await run_until_idle(watcher) == len(TXS)
    finally:
        await watcher.close()
    await assert_fixture_world(world)
    assert "651" in caplog.text
    # A 651 is asked again of an archival liteserver at once; "no alive peers" reconnects.
    assert any(kw.get("only_archive") for c in clients for _, kw in c.calls)
    assert len(clients) == 2 and clients[0].closed


async def test_a_long_outage_backs_off_and_recovers(world: World, toncenter: Toncenter,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    toncenter.chain.fail_next(*["500"] * 12)
    watcher = world.watcher(HttpApiSource(toncenter.url), retry_attempts=3)
    caplog.set_level(logging.WARNING, "watchers")
    try:
        with pytest.raises(SourceError):
            await watcher.poll_once()  # gives up after its attempts
        for _ in range(200):  # the scheduled tick: never raises, backs off, then recovers
            await watcher.tick()
            if len(await world.outcomes()) == len(TXS):
                break
            await asyncio.sleep(0.005)
    finally:
        await watcher.close()
    assert await world.outcomes() == EXPECTED
    assert "next attempt in" in caplog.text


@pytest.mark.parametrize("corrupt", ["bad_boc", "wrong_id", "not_a_list", "gap",
                                     "other_account"])
async def test_bad_data_from_the_api_is_never_settled(world: World, corrupt: str) -> None:
    chain = Chain()

    async def get_transactions(request: web.Request) -> web.Response:
        page = chain.page(100, None, None, int(request.query.get("to_lt", "0")))
        items = [{"data": t["boc_b64"], "transaction_id": {"lt": str(t["lt"]),
                                                            "hash": t["hash_b64"]}}
                 for t in page]
        if corrupt == "bad_boc":
            items[3]["data"] = base64.b64encode(b"not a boc").decode()
        elif corrupt == "wrong_id":
            items[3]["transaction_id"]["hash"] = TXS[0]["hash_b64"]
        elif corrupt == "gap":
            del items[5]  # a transaction missing from the history
        body: Any = {"ok": True, "result": {"oops": 1} if corrupt == "not_a_list" else items}
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/getTransactions", get_transactions)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    watcher = world.watcher(HttpApiSource(url), retry_attempts=2)
    if corrupt == "other_account":  # the API answers with the shop's history for payer A
        watcher = TonWatcher(world.engine, HttpApiSource(url), DATA["payers"]["a"]["raw"],
                             currency="LIQ", ton_rate=RATE, retry_attempts=1)
    try:
        with pytest.raises(SourceError):
            await watcher.poll_once()
    finally:
        await watcher.close()
        await runner.cleanup()
    assert await run_sql(world.engine, "SELECT * FROM ton_transfers") == []


async def test_an_unreachable_api_does_not_stop_anything(world: World,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    watcher = world.watcher(HttpApiSource(f"http://127.0.0.1:{closed_port()}/api/v2"))
    caplog.set_level(logging.WARNING, "watchers")
    try:
        await watcher.tick()  # no exception
    finally:
        await watcher.close()
    assert "TON API unreachable" in caplog.text


def _settings(monkeypatch: pytest.MonkeyPatch, world: World, tmp_path: Path,
              **env: str) -> Settings:
    monkeypatch.setenv("PAYBOT_DATA_DIR", str(tmp_path))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return Settings()


async def test_start_up_never_waits_on_the_chain(world: World, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """`serve` schedules the watcher; a liteserver that does not answer, or bad settings,
    are logged while everything else keeps running."""
    key = base64.b64encode(bytes(SigningKey.generate().verify_key)).decode()
    config = {"liteservers": [{"ip": 2130706433, "port": closed_port(),  # 127.0.0.1
                               "id": {"@type": "pub.ed25519", "key": key}}],
              "validator": {"@type": "validator.config.global", "zero_state": {},
                            "init_block": {"workchain": -1, "shard": -9223372036854775808,
                                           "seqno": 0,
                                           "root_hash": base64.b64encode(b"r" * 32).decode(),
                                           "file_hash": base64.b64encode(b"f" * 32).decode()}}}
    (tmp_path / "global.json").write_text(json.dumps(config))
    caplog.set_level(logging.INFO, "watchers")
    scheduler = AsyncIOScheduler()
    settings = _settings(monkeypatch, world, tmp_path,
                         TON_DESTINATION_ADDRESS=TXS_DEST, TON_SOURCE="liteserver",
                         TON_GLOBAL_CONFIG=str(tmp_path / "global.json"), TON_POLL_SECONDS="60")
    watcher = start_ton_watcher(scheduler, world.engine, settings)
    assert watcher is not None and scheduler.get_job("ton_watcher") is not None
    watcher.retry_base = watcher.retry_max = 0.001
    try:
        await watcher.tick()  # connects, finds no liteserver, logs; does not raise
    finally:
        await watcher.close()
    assert "no liteserver answered" in caplog.text
    assert "reading the chain failed" in caplog.text
    assert await run_sql(world.engine, "SELECT * FROM ton_transfers") == []

    for env, message in ((dict(TON_DESTINATION_ADDRESS="EQ-not-an-address"), "not a TON address"),
                         (dict(TON_DESTINATION_ADDRESS=TXS_DEST, TON_SOURCE="carrier-pigeon"),
                          "unknown TON_SOURCE")):
        caplog.clear()
        assert start_ton_watcher(AsyncIOScheduler(), world.engine,
                                 _settings(monkeypatch, world, tmp_path, **env)) is None
        assert message in caplog.text
    monkeypatch.delenv("TON_DESTINATION_ADDRESS")
    assert start_ton_watcher(AsyncIOScheduler(), world.engine, Settings()) is None


TXS_DEST = "UQAXX_WUst_hR3xxt50SVHBA20_oEM-cp-VO1TlyqIrOQpWO"  # the fixture shop, friendly form


async def test_global_config_from_url_is_cached_for_when_it_is_unreachable(
        tmp_path: Path) -> None:
    good = {"liteservers": [{"ip": 1, "port": 2, "id": {"key": "x"}}], "validator": {}}
    served: dict[str, Any] = {"body": json.dumps(good), "status": 200}

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=served["body"], status=served["status"])

    app = web.Application()
    app.router.add_get("/global.json", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/global.json"
    try:
        assert await load_global_config(url, "testnet", tmp_path) == good
        assert (tmp_path / "ton-global-config-testnet.json").exists()
        served.update(status=503, body="down")
        assert await load_global_config(url, "testnet", tmp_path) == good  # the cached copy
        with pytest.raises(SourceError):
            await load_global_config(url, "testnet", tmp_path / "empty")  # no cache
        served.update(status=200, body="{}")
        with pytest.raises(SourceError):
            await load_global_config(url, "testnet", None)  # not a config
    finally:
        await runner.cleanup()
    with pytest.raises(SourceError):
        await load_global_config(str(tmp_path / "missing.json"), "mainnet", None)
    with pytest.raises(SourceError):
        await liteserver_connector(str(tmp_path / "missing.json"), "mainnet", None)()
