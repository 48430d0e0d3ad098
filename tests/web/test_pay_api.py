"""The page's JSON API: status, and paying from the balance with Mini App init data."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import asyncpg
import sqlalchemy.exc

from ledger.accounts import balance
from ledger.batcher import PaymentBatcher
from ledger.invoice_reads import get_invoice
from ledger.invoices import cancel_invoice
from ledger.payments import pay_from_balance, settle_external_payment
from ledger.users import find_user_by_telegram
from tests.conftest import run_sql
from tests.web.conftest import MAX_AGE, make_settings, sign_init_data, tg_user, tma


async def payments_of(engine, invoice) -> int:
    rows = await run_sql(engine, "SELECT count(*) AS n FROM payments WHERE invoice_id = :id",
                         id=invoice.id)
    return rows[0]["n"]


async def pay(client, invoice, init_data: str, key: str | None = "attempt-1", **kw):
    return await client.post(f"/pay/{invoice.public_id}/pay", json={"idempotency_key": key},
                             headers=tma(init_data), **kw)


# --- status -----------------------------------------------------------------------------------

async def test_status_flips_to_paid_after_a_payment(client, make_invoice, make_user, engine):
    invoice = await make_invoice()
    resp = await client.get(f"/pay/{invoice.public_id}/status")
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    body = await resp.json()
    assert body["invoice"]["status"] == "pending"
    assert body["invoice"]["pay_ton"]["ton"].startswith("ton://transfer/")
    assert "viewer" not in body

    buyer = await make_user(balance=2000)
    await pay_from_balance(engine, invoice.public_id, buyer.id, "from-the-bot")
    body = await (await client.get(f"/pay/{invoice.public_id}/status")).json()
    assert body["invoice"]["status"] == "paid"
    assert body["invoice"]["paid_at"] is not None
    assert body["invoice"]["pay_ton"] is None


async def test_status_of_unknown_malformed_cancelled_expired(client, make_invoice, engine):
    for raw in ("0000000000000", "abc", "x" * 300):
        resp = await client.get(f"/pay/{raw}/status")
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "invoice_not_found"
    invoice = await make_invoice()
    await cancel_invoice(engine, invoice.public_id, invoice.seller_id)
    body = await (await client.get(f"/pay/{invoice.public_id}/status")).json()
    assert body["invoice"]["status"] == "cancelled"
    late = await make_invoice(expires_in=timedelta(minutes=1))
    await run_sql(engine, "UPDATE invoices SET expires_at = now() - interval '1 second' "
                          "WHERE id = :id", id=late.id)
    body = await (await client.get(f"/pay/{late.public_id}/status")).json()
    assert body["invoice"]["status"] == "expired"


async def test_status_with_init_data_shows_the_viewer(client, make_invoice, make_user):
    seller = await make_user(username="seller_x")
    buyer = await make_user(balance=777, username="buyer_x")
    invoice = await make_invoice(seller)
    body = await (await client.get(f"/pay/{invoice.public_id}/status",
                                   headers=tma(sign_init_data(tg_user(buyer))))).json()
    assert body["viewer"] == {"balance": {"minor": 777, "currency": "LIQ", "text": "7.77",
                                          "display": "7.77 Liquid $"}, "is_seller": False}
    body = await (await client.get(f"/pay/{invoice.public_id}/status",
                                   headers=tma(sign_init_data(tg_user(seller))))).json()
    assert body["viewer"]["is_seller"] is True and "paid_by" not in body["viewer"]


async def test_only_the_seller_is_told_who_paid(client, engine, make_invoice, make_user):
    seller = await make_user(username="seller_y")
    buyer = await make_user(balance=5000, first_name="Анна", last_name="Ким")
    invoice = await make_invoice(seller)
    await pay_from_balance(engine, invoice.public_id, buyer.id, "who-paid-1")
    for viewer, told in ((seller, "Анна Ким"), (buyer, None)):
        body = await (await client.get(f"/pay/{invoice.public_id}/status",
                                       headers=tma(sign_init_data(tg_user(viewer))))).json()
        assert body["viewer"].get("paid_by") == told
    anonymous = await (await client.get(f"/pay/{invoice.public_id}/status")).json()
    assert "Анна" not in json.dumps(anonymous, ensure_ascii=False)


async def test_status_with_bad_init_data_is_401(client, make_invoice, make_user):
    invoice = await make_invoice()
    buyer = await make_user()
    forged = sign_init_data(tg_user(buyer), token="999:another-bot")
    resp = await client.get(f"/pay/{invoice.public_id}/status", headers=tma(forged))
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "invalid_init_data"


# --- paying from the balance ------------------------------------------------------------------

async def test_valid_init_data_pays_once(client, make_invoice, make_user, engine):
    invoice = await make_invoice()
    buyer = await make_user(balance=2000, username="buyer_1")
    resp = await pay(client, invoice, sign_init_data(tg_user(buyer)))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["payment"]["replayed"] is False
    assert body["invoice"]["status"] == "paid"
    assert body["viewer"]["balance"]["minor"] == 750
    assert await balance(engine, buyer.id) == 750
    assert await balance(engine, invoice.seller_id) == 1250
    assert (await get_invoice(engine, invoice.public_id)).status == "paid"


async def test_double_post_with_the_same_key_pays_once(client, make_invoice, make_user, engine):
    invoice = await make_invoice(kind="multi_use")  # stays payable: only the key stops a repeat
    buyer = await make_user(balance=5000)
    init = sign_init_data(tg_user(buyer))
    first = await pay(client, invoice, init, key="tap-1")
    second = await pay(client, invoice, init, key="tap-1")
    assert first.status == second.status == 200
    a, b = await first.json(), await second.json()
    assert a["payment"]["id"] == b["payment"]["id"]
    assert (a["payment"]["replayed"], b["payment"]["replayed"]) == (False, True)
    assert await balance(engine, buyer.id) == 5000 - 1250
    assert b["viewer"]["balance"]["minor"] == 5000 - 1250
    assert await payments_of(engine, invoice) == 1


async def test_concurrent_double_tap_pays_once(client, make_invoice, make_user, engine):
    import asyncio

    invoice = await make_invoice(kind="multi_use")
    buyer = await make_user(balance=5000)
    init = sign_init_data(tg_user(buyer))
    responses = await asyncio.gather(*(pay(client, invoice, init, key="same") for _ in range(5)))
    assert [r.status for r in responses] == [200] * 5
    assert await payments_of(engine, invoice) == 1
    assert await balance(engine, buyer.id) == 5000 - 1250


async def test_a_new_attempt_on_a_paid_invoice_is_409(client, make_invoice, make_user):
    invoice = await make_invoice()
    buyer = await make_user(balance=5000)
    init = sign_init_data(tg_user(buyer))
    assert (await pay(client, invoice, init, key="a")).status == 200
    resp = await pay(client, invoice, init, key="b")
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "invoice_already_paid"


async def test_forged_hash_is_401_and_nothing_changes(client, make_invoice, make_user, engine):
    invoice = await make_invoice()
    buyer = await make_user(balance=2000)
    good = sign_init_data(tg_user(buyer))
    forged_hash = good[: good.index("hash=") + 5] + "0" * 64
    someone_else = {**tg_user(buyer), "id": 424242424242}
    tampered = sign_init_data(tg_user(buyer)).replace(
        "id%22%3A" + str(buyer.telegram_id), "id%22%3A" + str(someone_else["id"]))
    other_bot = sign_init_data(tg_user(buyer), token="1:other")
    for init in (forged_hash, tampered, other_bot, "hash=abc", "", "%%%", "user=1&auth_date=x"):
        resp = await pay(client, invoice, init)
        assert resp.status == 401, init
        assert (await resp.json())["error"]["code"] in ("invalid_init_data", "missing_init_data")
    assert await balance(engine, buyer.id) == 2000
    assert (await get_invoice(engine, invoice.public_id)).status == "pending"
    assert await find_user_by_telegram(engine, 424242424242) is None
    assert await payments_of(engine, invoice) == 0


async def test_stale_or_future_auth_date_is_401(client, make_invoice, make_user, engine):
    invoice = await make_invoice()
    buyer = await make_user(balance=2000)
    stale = sign_init_data(tg_user(buyer), auth_date=time.time() - MAX_AGE - 5)
    resp = await pay(client, invoice, stale)
    assert resp.status == 401
    error = (await resp.json())["error"]
    assert error["code"] == "init_data_expired" and "open it again" in error["message"]
    future = sign_init_data(tg_user(buyer), auth_date=time.time() + 3600)
    assert (await pay(client, invoice, future)).status == 401
    assert await balance(engine, buyer.id) == 2000
    assert await payments_of(engine, invoice) == 0


async def test_missing_or_wrong_authorization_is_401(client, make_invoice):
    invoice = await make_invoice()
    url = f"/pay/{invoice.public_id}/pay"
    resp = await client.post(url, json={"idempotency_key": "k"})
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "missing_init_data"
    resp = await client.post(url, json={"idempotency_key": "k"},
                             headers={"Authorization": "Bearer abc"})
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "bad_auth_scheme"


async def test_without_a_bot_token_the_mini_app_cannot_pay(client_for, make_invoice, make_user):
    client = await client_for(make_settings(token=None))
    invoice = await make_invoice()
    buyer = await make_user(balance=2000)
    resp = await pay(client, invoice, sign_init_data(tg_user(buyer)))
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "mini_app_disabled"


async def test_init_data_without_a_user_is_401(client, make_invoice):
    invoice = await make_invoice()
    resp = await pay(client, invoice, sign_init_data(None))
    assert resp.status == 401


async def test_paying_your_own_invoice_is_403(client, make_invoice, make_user, engine):
    seller = await make_user(balance=5000, username="self_payer")
    invoice = await make_invoice(seller)
    resp = await pay(client, invoice, sign_init_data(tg_user(seller)))
    assert resp.status == 403
    body = await resp.json()
    assert body["error"]["code"] == "own_invoice"
    assert body["error"]["message"] == "You cannot pay your own invoice."
    assert await balance(engine, seller.id) == 5000


async def test_insufficient_funds_says_how_to_top_up(client, make_invoice, make_user, engine):
    invoice = await make_invoice()
    buyer = await make_user(balance=300)
    resp = await pay(client, invoice, sign_init_data(tg_user(buyer)))
    assert resp.status == 402
    error = (await resp.json())["error"]
    assert error["code"] == "insufficient_funds"
    assert (error["needed"], error["available"]) == (1250, 300)
    assert "12.50 Liquid $" in error["message"] and "3.00 Liquid $" in error["message"]
    assert "/balance" in error["message"] and error["topup_url"] == "https://t.me/paybot_test"
    assert await balance(engine, buyer.id) == 300
    # In Russian for a Russian Telegram user.
    resp = await pay(client, invoice, sign_init_data(tg_user(buyer, "ru")), key="ru-attempt")
    assert "недостаточно" in (await resp.json())["error"]["message"]


async def test_a_first_time_mini_app_user_is_created_and_refused_politely(
    client, make_invoice, engine
):
    invoice = await make_invoice()
    newcomer = {"id": 880000000000 + invoice.id, "first_name": "New", "username": "newbie"}
    resp = await pay(client, invoice, sign_init_data(newcomer))
    assert resp.status == 402  # a new user's balance is zero
    assert await find_user_by_telegram(engine, newcomer["id"]) is not None


async def test_cancelled_expired_unknown_invoices(client, make_invoice, make_user, engine):
    buyer = await make_user(balance=9000)
    init = sign_init_data(tg_user(buyer))
    cancelled = await make_invoice()
    await cancel_invoice(engine, cancelled.public_id, cancelled.seller_id)
    resp = await pay(client, cancelled, init)
    assert resp.status == 410 and (await resp.json())["error"]["code"] == "invoice_cancelled"
    expired = await make_invoice(expires_in=timedelta(minutes=1))
    await run_sql(engine, "UPDATE invoices SET expires_at = now() - interval '1 second' "
                          "WHERE id = :id", id=expired.id)
    resp = await pay(client, expired, init)
    assert resp.status == 410 and (await resp.json())["error"]["code"] == "invoice_expired"
    for raw in ("0000000000000", "abc"):
        resp = await client.post(f"/pay/{raw}/pay", json={"idempotency_key": "k"},
                                 headers=tma(init))
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "invoice_not_found"
    assert await balance(engine, buyer.id) == 9000


async def test_bad_request_bodies_are_400(client, make_invoice, make_user, engine):
    invoice = await make_invoice()
    buyer = await make_user(balance=2000)
    headers = tma(sign_init_data(tg_user(buyer)))
    url = f"/pay/{invoice.public_id}/pay"
    for kwargs in ({"data": b"not json"}, {"json": {}}, {"json": {"idempotency_key": ""}},
                   {"json": {"idempotency_key": "k" * 201}}, {"json": {"idempotency_key": 5}},
                   {"json": ["idempotency_key"]}, {"data": b"\xff\xfe"}):
        resp = await client.post(url, headers=headers, **kwargs)
        assert resp.status == 400, kwargs
        assert (await resp.json())["error"]["code"] == "bad_request"
    assert await balance(engine, buyer.id) == 2000


async def test_same_key_for_another_invoice_is_422(client, make_invoice, make_user):
    # As the seller API answers it (and the IETF Idempotency-Key draft): the key was used for
    # a different request, so this request cannot be processed with it.
    buyer = await make_user(balance=9000)
    init = sign_init_data(tg_user(buyer))
    first, second = await make_invoice(), await make_invoice()
    assert (await pay(client, first, init, key="reused")).status == 200
    resp = await pay(client, second, init, key="reused")
    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "idempotency_key_reused"


# --- the guest's claim link -------------------------------------------------------------------
# Who sees a guest's purchase is decided by the payer tag a transfer carried, never by when a
# browser arrived: tests/web/test_guest_claims.py.

async def test_a_payment_naming_nobody_shows_no_claim_to_any_browser(
    client, make_invoice, engine
):
    invoice = await make_invoice(payload={"item_id": "beans-1kg"})
    opened = await client.get(f"/pay/{invoice.public_id}/status",  # the page's first call
                              params={"guest": "new"})
    mine = {"pb_guest": opened.cookies["pb_guest"].value}  # had the page open before
    result = await settle_external_payment(engine, invoice.public_id, method="ton",
                                           reference=f"tx-{invoice.public_id}")
    assert result.claim_token
    body = await (await client.get(f"/pay/{invoice.public_id}/status", cookies=mine)).json()
    assert body["invoice"]["status"] == "paid" and body["claim"] is None
    page_text = await (await client.get(f"/pay/{invoice.public_id}", cookies=mine)).text()
    assert result.claim_token not in page_text


# --- the money moved, then something failed ---------------------------------------------------
# The payment itself stays real (PostgreSQL commits it); what fails is injected around it, as
# a database going down ("the database system is shutting down") or a pool timing out would.

def _shutting_down() -> Exception:
    return asyncpg.exceptions.CannotConnectNowError("the database system is shutting down")


def _connection_lost() -> Exception:
    return asyncpg.exceptions.ConnectionDoesNotExistError(
        "connection was closed in the middle of operation")


def _database_down_after_payment(monkeypatch) -> dict[str, bool]:
    """Every read the pay route could make fails once a payment has committed."""
    import bot.web.routes as routes
    from ledger.batcher import PaymentBatcher
    from ledger.invoice_reads import InvoiceReader

    state = {"down": False}
    real_pay = PaymentBatcher.pay

    async def pay_then_go_down(*args, **kwargs):
        result = await real_pay(*args, **kwargs)
        state["down"] = True
        return result

    monkeypatch.setattr(PaymentBatcher, "pay", pay_then_go_down)
    for owner, name in ((InvoiceReader, "read"), (routes, "balance"),
                        (routes, "find_user_by_telegram"), (routes, "guest_purchase")):
        original = getattr(owner, name)

        async def failing(*args, _original=original, **kwargs):
            if state["down"]:
                raise _shutting_down()
            return await _original(*args, **kwargs)

        monkeypatch.setattr(owner, name, failing)
    return state


async def test_reads_failing_after_the_payment_still_tell_the_buyer_paid(
    client, make_invoice, make_user, engine, monkeypatch
):
    invoice = await make_invoice(kind="multi_use")
    buyer = await make_user(balance=5000)
    init = sign_init_data(tg_user(buyer))
    state = _database_down_after_payment(monkeypatch)
    resp = await pay(client, invoice, init, key="tap-1")
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["payment"]["replayed"] is False
    assert body["payment"]["invoice_status"] == "pending"  # multi-use: still open
    assert body["invoice"]["id"] == invoice.public_id
    assert body["viewer"]["balance"]["minor"] == 5000 - 1250
    # The page would tap again with the same key (it got an answer, but say it did not):
    state["down"] = False
    again = await pay(client, invoice, init, key="tap-1")
    assert again.status == 200 and (await again.json())["payment"]["replayed"] is True
    assert await payments_of(engine, invoice) == 1
    assert await balance(engine, buyer.id) == 5000 - 1250


async def test_a_one_time_invoice_paid_then_reads_failing_says_paid(
    client, make_invoice, make_user, engine, monkeypatch
):
    invoice = await make_invoice()
    buyer = await make_user(balance=2000)
    _database_down_after_payment(monkeypatch)
    resp = await pay(client, invoice, sign_init_data(tg_user(buyer)))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["payment"]["invoice_status"] == "paid"
    assert body["invoice"]["status"] == "paid" and body["invoice"]["pay_ton"] is None
    assert await balance(engine, buyer.id) == 750


async def test_an_answer_lost_after_the_commit_is_503_retry_and_the_retry_replays(
    client, make_invoice, make_user, engine, monkeypatch
):

    invoice = await make_invoice(kind="multi_use")
    buyer = await make_user(balance=5000)
    init = sign_init_data(tg_user(buyer))
    real_pay = PaymentBatcher.pay

    async def commit_then_lose_the_answer(*args, **kwargs):
        await real_pay(*args, **kwargs)
        raise _connection_lost()

    monkeypatch.setattr(PaymentBatcher, "pay", commit_then_lose_the_answer)
    resp = await pay(client, invoice, init, key="tap-1")
    assert resp.status == 503
    assert int(resp.headers["Retry-After"]) >= 1
    error = (await resp.json())["error"]
    assert error["code"] == "retry"
    assert "not be charged twice" in error["message"]
    assert await payments_of(engine, invoice) == 1  # it did happen; the server cannot know

    monkeypatch.setattr(PaymentBatcher, "pay", real_pay)
    again = await pay(client, invoice, init, key="tap-1")  # the client repeats the same key
    assert again.status == 200
    body = await again.json()
    assert body["payment"]["replayed"] is True
    assert body["viewer"]["balance"]["minor"] == 5000 - 1250
    assert await payments_of(engine, invoice) == 1
    assert await balance(engine, buyer.id) == 5000 - 1250


async def test_a_pool_timeout_before_the_payment_is_503_and_the_retry_pays_once(
    client, make_invoice, make_user, engine, monkeypatch
):

    invoice = await make_invoice()
    buyer = await make_user(balance=2000)
    init = sign_init_data(tg_user(buyer))
    real_pay = PaymentBatcher.pay

    async def pool_timeout(*args, **kwargs):
        raise sqlalchemy.exc.TimeoutError("QueuePool limit of size 10 overflow 10 reached, "
                                          "connection timed out, timeout 30.00")

    monkeypatch.setattr(PaymentBatcher, "pay", pool_timeout)
    resp = await pay(client, invoice, init, key="tap-1")
    assert resp.status == 503 and (await resp.json())["error"]["code"] == "retry"
    assert "Retry-After" in resp.headers
    assert await payments_of(engine, invoice) == 0 and await balance(engine, buyer.id) == 2000

    monkeypatch.setattr(PaymentBatcher, "pay", real_pay)
    again = await pay(client, invoice, init, key="tap-1")
    assert again.status == 200 and (await again.json())["payment"]["replayed"] is False
    assert await payments_of(engine, invoice) == 1 and await balance(engine, buyer.id) == 750


# --- what the pay path remembers (bench.web's mini_app_pay) -----------------------------------

async def test_a_new_username_or_language_in_the_init_data_is_recorded(
    client, make_invoice, make_user, engine
):
    buyer = await make_user(balance=9000, username="old_name")
    for username, language in (("old_name", "en"), ("new_name", "en"), ("new_name", "ru")):
        invoice = await make_invoice()
        init = sign_init_data({**tg_user(buyer, language), "username": username})
        assert (await pay(client, invoice, init, key=f"{username}-{language}")).status == 200
        user = await find_user_by_telegram(engine, buyer.telegram_id)
        assert (user.id, user.username, user.language) == (buyer.id, username, language)


async def test_init_data_checked_once_still_expires():
    from bot.web.auth import AuthError, validate_init_data
    from tests.web.conftest import BOT_TOKEN

    init = sign_init_data({"id": 5551234, "first_name": "A"})
    assert validate_init_data(BOT_TOKEN, init, MAX_AGE).telegram_id == 5551234
    assert validate_init_data(BOT_TOKEN, init, MAX_AGE).telegram_id == 5551234  # remembered
    try:
        validate_init_data(BOT_TOKEN, init, MAX_AGE, now=time.time() + MAX_AGE + 5)
    except AuthError as exc:
        assert exc.code == "init_data_expired"
    else:
        raise AssertionError("stale init data was accepted")
    forged = init[: init.index("hash=") + 5] + "0" * 64
    for _ in range(2):  # a refusal is never remembered as a success
        try:
            validate_init_data(BOT_TOKEN, forged, MAX_AGE)
        except AuthError as exc:
            assert exc.code == "invalid_init_data"
        else:
            raise AssertionError("forged init data was accepted")
