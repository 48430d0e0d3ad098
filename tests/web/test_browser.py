"""The pay page in a real browser: Debian's headless chromium at phone size.

Guest view: amount, QR and the browser's own tagged comment are visible, "Log in and pay" is
on the first screen, the page fits the phone's width, and the status flips to paid (with the
guest's Telegram proof link) without a reload. Mini App view: signed
init data in the URL fragment (as Telegram passes it), a double tap on "Pay from balance"
pays once; the card and Stars buttons show the price they lock and open Telegram's invoice.
Screenshots go to $PAYBOT_SCREENSHOTS or a temporary directory (printed).

chromium comes from scripts/install-chromium.sh; without it the test is skipped locally and
fails in CI (CI=true), so a missing browser can never pass silently there."""

from __future__ import annotations

import os
import re
import socket
import tempfile
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.settings import PaymentSettings
from bot.telegram import create_bot
from bot.web import setup_pay_pages
from bot.web.invoice_links import TELEGRAM_BOT
from ledger.accounts import balance
from ledger.core import Ledger
from ledger.payers import find_tag
from tests.bot.botapi import BotApiStandIn
from tests.conftest import run_sql
from tests.web.cdp import chromium_page
from tests.web.conftest import BOT_TOKEN, make_settings, sign_init_data, tg_user
from tests.web.test_guest_claims import Chain

BLOCK = ("*telegram.org*",)  # unreachable here; the page must work without its script

VISIBLE_JS = """
(() => {
  const report = {};
  for (const id of %s) {
    const el = document.getElementById(id);
    if (!el) { report[id] = null; continue; }
    const r = el.getBoundingClientRect(), cs = getComputedStyle(el);
    report[id] = {
      visible: r.width > 0 && r.height > 0 && cs.display !== "none"
               && cs.visibility !== "hidden" && parseFloat(cs.opacity) > 0,
      inside: r.left >= 0 && r.right <= window.innerWidth + 1,
      aboveFold: r.top >= 0 && r.bottom <= window.innerHeight + 1,
      text: el.textContent.trim(),
      width: r.width, height: r.height,
    };
  }
  report.viewport = [window.innerWidth, window.innerHeight];
  report.scrollWidth = document.documentElement.scrollWidth;
  const qr = document.getElementById("qr");
  report.qrDecoded = !!qr && qr.complete && qr.naturalWidth > 0;
  return report;
})()
"""


def shots_dir() -> Path:
    path = Path(os.environ.get("PAYBOT_SCREENSHOTS") or tempfile.mkdtemp(prefix="paybot-shots-"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
async def served(engine: AsyncEngine) -> AsyncIterator[tuple[str, list[str]]]:
    """The pay pages on a real TCP port of 127.0.0.1; yields (base URL, paths requested)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    requested: list[str] = []

    @web.middleware
    async def record(request: web.Request, handler):  # type: ignore[no-untyped-def]
        response = await handler(request)
        requested.append(f"{response.status} {request.path}")
        return response

    app = web.Application(middlewares=[record])
    setup_pay_pages(app, Ledger(engine), make_settings(public_url=base), poll_ms=300)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        yield base, requested
    finally:
        await runner.cleanup()


async def test_guest_sees_amount_qr_and_comment_then_paid(
    chromium, served, make_invoice, engine
):
    base, requested = served
    invoice = await make_invoice(payload={"item_id": "beans-1kg"})
    shots = shots_dir()
    async with chromium_page(chromium, block=BLOCK) as page:
        await page.goto(f"{base}/pay/{invoice.public_id}")
        # The shared page's script fetches this browser's own comment (its payer tag), then
        # shows the TON block with the QR of that comment.
        await page.wait_for("(() => { const q = document.getElementById('qr');"
                            " const t = document.getElementById('ton');"
                            " return t && !t.hidden && q && q.complete && q.naturalWidth > 0"
                            " && /tag=/.test(q.getAttribute('src')); })()")
        ids = ["amount", "amount-ton", "status", "qr", "comment", "address", "ton-link",
               "login-link", "miniapp", "claim"]
        seen = await page.evaluate(VISIBLE_JS % ids)
        await page.screenshot(shots / "guest.png")
        await page.screenshot(shots / "guest-full.png", full_page=True)
        print(f"\nscreenshots: {shots}")

        for element in ("amount", "amount-ton", "status", "qr", "comment", "address",
                        "ton-link", "login-link"):
            assert seen[element]["visible"], (element, seen[element])
            assert seen[element]["inside"], (element, seen[element])
        assert seen["amount"]["text"] == "12.50 Liquid $"
        assert seen["amount-ton"]["text"] == "≈ 2.5 TON"
        # This browser's own payer tag is in the comment (and the QR and wallet links).
        comment = seen["comment"]["text"]
        assert re.fullmatch(f"INV-{invoice.public_id}-[0-9A-Z]{{5}}", comment), comment
        # "Log in and pay" is on the first screen of a phone, no scrolling needed.
        assert seen["login-link"]["aboveFold"], seen["login-link"]
        assert seen["status"]["text"] == "Awaiting payment"
        assert seen["qrDecoded"] and seen["qr"]["width"] >= 200  # big enough to scan
        assert not seen["miniapp"]["visible"] and not seen["claim"]["visible"]
        assert seen["scrollWidth"] <= seen["viewport"][0]  # no sideways scrolling on a phone
        assert f"200 /pay/{invoice.public_id}/qr.svg" in requested
        qr_src = await page.evaluate("document.getElementById('qr').getAttribute('src')")
        assert qr_src == f"/pay/{invoice.public_id}/qr.svg?tag={comment[-5:]}"

        # The transfer carrying this browser's comment is seen: the open page flips to paid
        # and offers the Telegram link that proves the purchase is this browser's.
        assert await Chain(engine).send(comment) == "paid"
        await page.wait_for("document.getElementById('status').textContent === 'Paid'")
        await page.wait_for("!document.getElementById('claim').hidden")
        href = await page.evaluate("document.getElementById('claim-link').href")
        payer = await find_tag(engine, invoice.public_id, comment[-5:])
        assert payer is not None and href == (
            f"https://t.me/paybot_test?start=bind_{invoice.public_id}_{payer.tag}_{payer.proof}")
        seen = await page.evaluate(VISIBLE_JS % ["ton", "login", "paid", "claim-link"])
        assert not seen["ton"]["visible"] and not seen["login"]["visible"]
        assert seen["paid"]["visible"] and seen["claim-link"]["visible"]
        await page.screenshot(shots / "guest-paid.png")
    assert all(" /pay/" in line or "/static/pay/" in line for line in requested)


async def test_mini_app_double_tap_pays_once(chromium, served, make_invoice, make_user, engine):
    base, _requested = served
    invoice = await make_invoice()
    buyer = await make_user(balance=2000, username="mini_buyer")
    init = sign_init_data(tg_user(buyer, "ru"))
    fragment = f"tgWebAppData={quote(init, safe='')}&tgWebAppVersion=8.0&tgWebAppPlatform=ios"
    shots = shots_dir()
    async with chromium_page(chromium, block=BLOCK) as page:
        await page.goto(f"{base}/pay/{invoice.public_id}#{fragment}")
        await page.wait_for("!document.getElementById('miniapp').hidden")
        # The Telegram user's language (ru) wins over the browser's.
        await page.wait_for(
            "document.getElementById('pay-balance').textContent === 'Оплатить с баланса'")
        await page.wait_for("document.getElementById('balance').textContent.includes('20.00')")
        seen = await page.evaluate(VISIBLE_JS % ["pay-balance", "login", "ton"])
        assert seen["pay-balance"]["visible"]
        assert not seen["login"]["visible"] and not seen["ton"]["visible"]
        await page.screenshot(shots / "miniapp.png")

        await page.evaluate("(() => { const b = document.getElementById('pay-balance');"
                            " b.click(); b.click(); b.click(); return true; })()")
        await page.wait_for(
            "document.getElementById('pay-message').textContent === 'Оплата прошла. Спасибо!'")
        await page.wait_for("document.getElementById('status').textContent === 'Оплачен'")
        assert await page.evaluate("document.getElementById('pay-balance').hidden")
        await page.screenshot(shots / "miniapp-paid.png")
        print(f"\nscreenshots: {shots}")

    rows = await run_sql(engine, "SELECT count(*) AS n FROM payments WHERE invoice_id = :id",
                         id=invoice.id)
    assert rows[0]["n"] == 1
    assert await balance(engine, buyer.id) == 2000 - 1250


async def test_mini_app_keeps_its_key_until_the_server_knows(
    chromium, served, make_invoice, make_user, engine, monkeypatch
):
    """A payment commits but its answer is lost (503 "retry"): the page asks again with the same
    key and shows it paid; while answers stay lost it says so and its next tap asks about the
    same payment. Only a definite answer ends the attempt: a new tap then is a new purchase."""
    import asyncpg

    from ledger.batcher import PaymentBatcher

    base, requested = served
    invoice = await make_invoice(kind="multi_use")
    buyer = await make_user(balance=5000, username="unlucky_buyer")
    init = sign_init_data(tg_user(buyer))
    fragment = f"tgWebAppData={quote(init, safe='')}&tgWebAppVersion=8.0&tgWebAppPlatform=ios"
    real_pay = PaymentBatcher.pay
    lose = {"answers": 0}

    async def commit_then_maybe_lose_the_answer(*args, **kwargs):
        result = await real_pay(*args, **kwargs)
        if lose["answers"] > 0:
            lose["answers"] -= 1
            raise asyncpg.exceptions.ConnectionDoesNotExistError(
                "connection was closed in the middle of operation")
        return result

    monkeypatch.setattr(PaymentBatcher, "pay", commit_then_maybe_lose_the_answer)
    message = "document.getElementById('pay-message')"
    settled = (f"{message}.textContent === 'Payment complete. Thank you!'"
               f" || {message}.className.includes('error')")
    pay_url = f"/pay/{invoice.public_id}/pay"
    async with chromium_page(chromium, block=BLOCK) as page:
        await page.goto(f"{base}/pay/{invoice.public_id}#{fragment}")
        await page.wait_for("!document.getElementById('pay-balance').hidden")

        lose["answers"] = 1  # one lost answer: the page's own retry gets the first outcome
        await page.evaluate("document.getElementById('pay-balance').click()")
        await page.wait_for(settled)
        assert await page.evaluate(f"{message}.textContent") == "Payment complete. Thank you!"
        assert [r for r in requested if r.endswith(pay_url)] == [f"503 {pay_url}",
                                                                 f"200 {pay_url}"]

        lose["answers"] = 4  # a longer outage: the page gives up asking, keeping the key
        await page.evaluate("document.getElementById('pay-balance').click()")
        await page.wait_for(settled)
        assert await page.evaluate(f"{message}.textContent") == (
            "We could not confirm the payment yet. Tap again: you will not be charged twice.")
        lose["answers"] = 0
        await page.evaluate("document.getElementById('pay-balance').click()")
        await page.wait_for(settled)
        assert await page.evaluate(f"{message}.textContent") == "Payment complete. Thank you!"

    rows = await run_sql(engine, "SELECT idempotency_key FROM payments WHERE invoice_id = :id",
                         id=invoice.id)
    assert len({r["idempotency_key"] for r in rows}) == len(rows) == 2  # two taps that counted
    assert await balance(engine, buyer.id) == 5000 - 2 * 1250


@pytest.fixture
async def served_with_cards(engine: AsyncEngine) -> AsyncIterator[tuple[str, BotApiStandIn]]:
    """The pay pages with a Telegram card provider (USD) and Stars, and the bot (pointed at the
    Bot API stand-in) that makes the invoice links."""
    api = BotApiStandIn(token=BOT_TOKEN)
    await api.start()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = make_settings(public_url=base)
    settings.payments = PaymentSettings(
        rates={"XTR": Decimal(77), "USD": Decimal("1.08")},
        telegram_card={"USD": {"provider": "stripe", "token": "284685063:TEST:browser"}})
    settings.telegram.api_url = api.url
    bot = create_bot(settings)
    app = web.Application()
    setup_pay_pages(app, Ledger(engine), settings, poll_ms=300)
    app[TELEGRAM_BOT] = bot
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        yield base, api
    finally:
        await runner.cleanup()
        await bot.session.close()
        await api.close()


# Telegram.WebApp as the Mini App sees it, reduced to openInvoice: the sheet stays "open" until
# the test closes it with the status Telegram would report.
FAKE_WEBAPP = """(() => {
  window.Telegram = { WebApp: { openInvoice: (url, cb) => { window.__invoice = { url, cb }; } } };
  return true;
})()"""


async def test_mini_app_pays_by_stars_at_the_price_on_its_button(
    chromium, served_with_cards, make_invoice, make_user, engine
):
    base, api = served_with_cards
    invoice = await make_invoice()
    buyer = await make_user(username="stars_buyer")
    init = sign_init_data(tg_user(buyer))
    fragment = f"tgWebAppData={quote(init, safe='')}&tgWebAppVersion=8.0&tgWebAppPlatform=ios"
    shots = shots_dir()
    rail = "document.querySelector('#rails [data-rail=\"%s\"]')"
    async with chromium_page(chromium, block=BLOCK) as page:
        await page.goto(f"{base}/pay/{invoice.public_id}#{fragment}")
        await page.wait_for("!document.getElementById('miniapp').hidden")
        await page.wait_for(f"!!{rail % 'stars'}")
        labels = await page.evaluate(
            "Array.from(document.querySelectorAll('#rails button')).map(b => b.textContent)")
        # The amount each locks, before paying: 12.50 × 1.08 USD, 12.50 × 77 → 963 Stars.
        assert labels == ["💳 Pay by card 13.50 USD", "⭐ Pay 963 Stars"]
        seen = await page.evaluate(VISIBLE_JS % ["pay-balance", "rails", "card", "login"])
        assert seen["rails"]["visible"] and seen["rails"]["inside"], seen["rails"]
        assert not seen["card"]["visible"] and not seen["login"]["visible"]
        assert seen["scrollWidth"] <= seen["viewport"][0]
        await page.screenshot(shots / "miniapp-card-stars.png")
        print(f"\nscreenshots: {shots}")

        await page.evaluate(FAKE_WEBAPP)
        await page.evaluate(f"{rail % 'stars'}.click()")
        await page.wait_for("!!window.__invoice")
        url = await page.evaluate("window.__invoice.url")
        sent = api.invoice_of_link(url)
        assert (sent.currency, sent.total_amount) == ("XTR", 963)
        # Telegram took the Stars and told the bot (its handler settles through the ledger);
        # then the sheet closes with "paid" and the page follows the invoice to paid.
        settled = await Ledger(engine).settle_rail_payment(
            rail="stars", channel="telegram", reference="stxBrowser1", provider_reference=None,
            token=sent.payload, currency="XTR", amount=963, payer_id=buyer.id, details={})
        assert settled.outcome == "paid"
        await page.evaluate("window.__invoice.cb('paid')")
        await page.wait_for("document.getElementById('status').textContent === 'Paid'")
        seen = await page.evaluate(VISIBLE_JS % ["rails", "pay-message"])
        assert seen["pay-message"]["text"] == "Payment complete. Thank you!"
        assert not seen["rails"]["visible"] or seen["rails"]["height"] == 0
        await page.screenshot(shots / "miniapp-stars-paid.png")


VENDOR_BUNDLE = Path(__file__).parents[2] / "bot/web/static/vendor/tonconnect-ui.min.js"


async def test_guest_is_offered_ton_connect_for_ton_and_usdt(
    chromium, engine, make_invoice
):
    """The TON Connect buttons (the vendored @tonconnect/ui bundle, served by paybot: no CDN)
    beside the QR, and USDT's wallet links; a tap opens TON Connect's wallet list."""
    if not VENDOR_BUNDLE.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("the TON Connect bundle is missing: run scripts/vendor.sh",
                        pytrace=False)
        pytest.skip("TON Connect bundle not installed (scripts/vendor.sh)")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    requested: list[str] = []

    @web.middleware
    async def record(request: web.Request, handler):  # type: ignore[no-untyped-def]
        response = await handler(request)
        requested.append(f"{response.status} {request.path}")
        return response

    async def jetton_wallet_of(master: str, owner: str) -> str:  # the chain, not asked here
        return "0:" + "cd" * 32

    app = web.Application(middlewares=[record])
    setup_pay_pages(app, Ledger(engine), make_settings(public_url=base), poll_ms=300,
                    jetton_wallet_of=jetton_wallet_of)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    invoice = await make_invoice()
    shots = shots_dir()
    try:
        # Nothing leaves the machine: wallets' lists, bridges and icons are blocked.
        async with chromium_page(chromium, block=(*BLOCK, "https://*")) as page:
            await page.goto(f"{base}/pay/{invoice.public_id}")
            await page.wait_for("!document.getElementById('tonconnect').hidden")
            ids = ["tonconnect", "tc-pay-ton", "tc-pay-usdt", "usdt", "usdt-value",
                   "usdt-link", "usdt-tonkeeper-link", "qr", "comment"]
            seen = await page.evaluate(VISIBLE_JS % ids)
            await page.screenshot(shots / "tonconnect.png")
            await page.screenshot(shots / "tonconnect-full.png", full_page=True)
            print(f"\nscreenshots: {shots}")
            for element in ids:
                assert seen[element]["visible"] and seen[element]["inside"], (element,
                                                                              seen[element])
            assert seen["tc-pay-ton"]["text"] == "Pay 2.5 TON with a TON wallet"
            assert seen["tc-pay-usdt"]["text"] == "Pay 12.5 USDT with a TON wallet"
            assert seen["usdt-value"]["text"] == "12.5"
            assert seen["scrollWidth"] <= seen["viewport"][0]
            comment = seen["comment"]["text"]
            usdt_href = await page.evaluate("document.getElementById('usdt-link').href")
            assert usdt_href.startswith("ton://transfer/") and "jetton=" in usdt_href
            assert usdt_href.endswith(f"&amount=12500000&text={comment}")
            assert "200 /static/pay/tonconnect-ui.min.js" in requested
            # A tap with no wallet connected yet opens TON Connect's wallet list.
            await page.evaluate("document.getElementById('tc-pay-ton').click()")
            await page.wait_for("(() => { const m = document.querySelector('[data-tc-modal]');"
                                " return !!m && m.getBoundingClientRect().height > 0"
                                " && getComputedStyle(m).opacity === '1'; })()")  # faded in
            await page.screenshot(shots / "tonconnect-modal.png")
    finally:
        await runner.cleanup()
