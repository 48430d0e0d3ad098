"""API tokens: issued once, stored hashed, revocable at once; `paybot admin token`."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

import pytest

from ledger.api_tokens import authenticate, hash_token, issue_token, list_tokens, revoke_token
from ledger.errors import MAX_ACTIVE_TOKENS, TooManyTokens
from tests.conftest import run_sql
from tests.waiting import wait_until

BASE = "/api/v1"


async def test_token_is_stored_only_as_a_hash(engine, make_user) -> None:
    user = await make_user()
    token, token_id = await issue_token(engine, user.id)
    assert token.startswith("pbk_") and len(token) == 47
    rows = await run_sql(engine, "SELECT * FROM api_tokens WHERE id = :id", id=token_id)
    stored = " ".join(str(v) for v in rows[0].values())
    assert token not in stored and token[8:] not in stored
    assert bytes(rows[0]["token_hash"]) == hash_token(token)
    principal = await authenticate(engine, token)
    assert principal is not None and principal.user_id == user.id
    assert principal.token_id == token_id


async def test_revoked_token_stops_working_at_once(api, make_seller, engine) -> None:
    seller = await make_seller()
    assert (await api.get(f"{BASE}/balance", headers=seller.auth)).status == 200
    other = await make_seller()
    assert not await revoke_token(engine, other.user.id, seller.token_id)  # not theirs
    assert await revoke_token(engine, seller.user.id, seller.token_id)
    assert not await revoke_token(engine, seller.user.id, seller.token_id)  # already
    resp = await api.get(f"{BASE}/balance", headers=seller.auth)
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "invalid_token"
    [listed] = await list_tokens(engine, seller.user.id)
    assert listed.revoked_at is not None and listed.hint == seller.token[:8]


@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Basic dXNlcjpwYXNz", "Bearer pbk_short",
    "Bearer pbk_" + "A" * 43, "Bearer " + "pbk_" + "é" * 43,
])
async def test_missing_or_bad_token_is_401(api, header) -> None:
    headers = {} if header is None else {"Authorization": header}
    resp = await api.get(f"{BASE}/invoices", headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert (await resp.json())["error"]["code"] in ("unauthorized", "invalid_token")


async def test_openapi_document_is_public_and_lists_every_route(api) -> None:
    resp = await api.get(f"{BASE}/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    documented = {(m.upper(), BASE + p) for p, ops in doc["paths"].items() for m in ops}
    [sub] = [r.get_info()["app"] for r in api.app.router.resources()
             if "app" in r.get_info()]
    served = {(route.method, resource.canonical) for resource in sub.router.resources()
              for route in resource if route.method != "HEAD"}
    assert served == documented


async def test_a_seller_holds_a_bounded_number_of_tokens(engine, make_user) -> None:
    user = await make_user()
    issued = [await issue_token(engine, user.id) for _ in range(MAX_ACTIVE_TOKENS)]
    with pytest.raises(TooManyTokens):
        await issue_token(engine, user.id)
    await revoke_token(engine, user.id, issued[0][1])
    await issue_token(engine, user.id)


@pytest.fixture
def paybot(database_url: str, monkeypatch: pytest.MonkeyPatch,
           capsys: pytest.CaptureFixture[str]) -> Callable[..., Awaitable[tuple[int, str]]]:
    """`paybot ...` as the operator types it (bot.cli.main, in a thread: it runs its own
    event loop), against the test database; returns (exit code, output)."""
    from bot.cli import main

    monkeypatch.setenv("DATABASE_URL", database_url)

    async def run(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        code = await asyncio.to_thread(main, list(args))
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    return run


async def test_admin_token_command(paybot, engine, make_user, api) -> None:
    user = await make_user()
    code, out = await paybot("admin", "token", str(user.telegram_id))
    assert code == 0, out
    token = re.search(r"pbk_[A-Za-z0-9_-]{43}", out).group(0)  # type: ignore[union-attr]
    token_id = int(re.search(r"token (\d+) issued", out).group(1))  # type: ignore[union-attr]
    resp = await api.get(f"{BASE}/me", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200
    code, out = await paybot("admin", "token", str(user.telegram_id), "--list")
    assert code == 0 and token[:8] in out and token not in out and "active" in out
    code, out = await paybot("admin", "token", str(user.telegram_id),
                             "--revoke", str(token_id))
    assert code == 0, out
    resp = await api.get(f"{BASE}/me", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 401
    code, out = await paybot("admin", "token", "999")
    assert code == 1 and "no user" in out


def test_token_cache_forgets_after_its_ttl() -> None:
    from bot.api.auth import TokenCache
    from ledger.api_tokens import ApiPrincipal

    now = [100.0]
    cache = TokenCache(ttl=2.0, max_size=2, clock=lambda: now[0])
    cache.put("a", ApiPrincipal(1, 10))
    assert cache.get("a") == ApiPrincipal(1, 10)
    now[0] += 2.0  # a revoked token is trusted no longer than the TTL
    assert cache.get("a") is None
    for key in "bcd":
        cache.put(key, ApiPrincipal(2, 20))
    assert cache.get("b") is None and cache.get("d") is not None  # bounded in size
    off = TokenCache(ttl=0)
    off.put("a", ApiPrincipal(1, 10))
    assert off.get("a") is None


async def test_requests_missing_the_cache_together_ask_the_database_once() -> None:
    import asyncio

    from bot.api.auth import TokenCache
    from ledger.api_tokens import ApiPrincipal

    asked: list[str] = []
    release = asyncio.Event()

    async def ask(token: str) -> ApiPrincipal | None:
        asked.append(token)
        await release.wait()
        return ApiPrincipal(1, 10) if token == "good" else None

    cache = TokenCache(ttl=2.0)
    waiting = [asyncio.ensure_future(cache.lookup(t, ask)) for t in ["good"] * 20 + ["bad"] * 5]
    # every caller is in: each token is being asked for, once
    await wait_until(lambda: set(asked) == {"bad", "good"}, "both tokens asked for")
    waiting[0].cancel()  # one caller giving up does not fail the others
    release.set()
    found = await asyncio.gather(*waiting[1:])
    assert sorted(asked) == ["bad", "good"]
    assert found == [ApiPrincipal(1, 10)] * 19 + [None] * 5
    assert await cache.lookup("good", ask) == ApiPrincipal(1, 10) and len(asked) == 2
    assert await cache.lookup("bad", ask) is None and len(asked) == 3  # refusals not cached


async def test_admin_sees_failed_callbacks_and_sends_them_again(paybot, engine, api,
                                                                make_seller, make_user) -> None:
    from ledger.outbox import mark_failed
    from ledger.payments import pay_from_balance

    seller = await make_seller()
    buyer = await make_user(balance=500)
    inv = await (await api.post(f"{BASE}/invoices", headers=seller.auth, json={
        "title": "x", "amount": "1", "callback_url": "https://shop.example.com/hook"})).json()
    await pay_from_balance(engine, inv["id"], buyer.id, "admin-cb")
    [event] = await run_sql(engine, "SELECT id, event_id FROM outbox WHERE topic = 'callback' "
                                    "AND payload ->> 'invoice' = :i", i=inv["id"])
    await mark_failed(engine, event["id"], "HTTP 500 from the receiver")
    code, out = await paybot("admin", "callbacks", "--status", "failed",
                             "--telegram-id", str(seller.user.telegram_id))
    assert code == 0 and str(event["event_id"]) in out and "HTTP 500" in out
    code, out = await paybot("admin", "redeliver", str(event["event_id"]))
    assert code == 0, out
    [row] = await run_sql(engine, "SELECT * FROM outbox WHERE id = :id", id=event["id"])
    assert row["failed_at"] is None and row["attempts"] == 0
    # never actually sent anywhere by another test's worker: park it again
    await mark_failed(engine, event["id"], "test over")
    code, out = await paybot("admin", "redeliver", "not-a-uuid")
    assert code == 1 and "not an event id" in out
