"""The Mini App's place (/app): one page for everyone; /app/api/me tells the script which tabs
this viewer gets — Sales only for someone who sold, Operator only for OPERATOR_TELEGRAM_IDS —
and a request without valid init data is refused with one sentence."""

from __future__ import annotations

from typing import Any

import pytest

from bot.settings import OperatorSettings
from tests.web.conftest import make_settings, sign_init_data, tg_user, tma


async def _me(client: Any, init_data: str, **query: str) -> tuple[int, dict[str, Any]]:
    r = await client.get("/app/api/me", headers=tma(init_data), params=query)
    return r.status, await r.json()


async def test_the_page_is_served_in_the_viewers_language(client) -> None:
    r = await client.get("/app", headers={"Accept-Language": "ru-RU,ru;q=0.9"})
    assert r.status == 200
    body = await r.text()
    assert 'lang="ru"' in body and "Загрузка…" in body
    assert "/static/pay/app.js?v=" in body and "/static/pay/app-seller.js?v=" in body
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]


async def test_tabs_follow_what_the_viewer_does(client_for, make_user, make_invoice) -> None:
    settings = make_settings()
    buyer = await make_user(username="just_buys")
    seller = await make_user(username="sells")
    operator = await make_user(username="runs_it")
    await make_invoice(seller)
    settings.operator = OperatorSettings(telegram_ids=[operator.telegram_id])
    client = await client_for(settings)

    status, me = await _me(client, sign_init_data(tg_user(buyer)))
    assert (status, me["tabs"], me["roles"]["seller"]) == (200, ["buyer"], False)
    status, me = await _me(client, sign_init_data(tg_user(seller)))
    assert me["tabs"] == ["seller", "buyer"]
    status, me = await _me(client, sign_init_data(tg_user(operator, "ru")))
    assert me["tabs"] == ["buyer", "operator"] and me["lang"] == "ru"


async def test_someone_who_never_used_the_bot_gets_the_buyer_tab(client) -> None:
    status, me = await _me(client, sign_init_data({"id": 777000111, "first_name": "New"}))
    assert status == 200 and me["tabs"] == ["buyer"] and me["known"] is False


@pytest.mark.parametrize("headers, code", [
    ({}, "init_data_missing"),
    ({"Authorization": "Bearer x"}, "bad_auth_scheme"),
    ({"Authorization": "tma auth_date=1&hash=00"}, "invalid_init_data"),
])
async def test_without_valid_init_data_the_answer_is_401_with_a_sentence(
        client, headers, code) -> None:
    r = await client.get("/app/api/me", headers=headers)
    body = await r.json()
    assert r.status == 401 and body["error"]["code"] == code
    assert "Telegram" in body["error"]["message"]


async def test_stale_init_data_asks_to_reopen(client, make_user) -> None:
    user = await make_user()
    r = await client.get("/app/api/me", headers=tma(sign_init_data(tg_user(user), auth_date=1)))
    assert r.status == 401 and (await r.json())["error"]["code"] == "init_data_expired"
