"""The buyer's tab in a real browser at phone size (390x844), light and dark, English and
Russian: what is to pay first, with its Pay button, then subscriptions, purchases and history;
nothing wider than the screen; the Pay button opens the pay page inside the Mini App.
Screenshots are kept (PAYBOT_SCREENSHOTS, else a temporary directory)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.plans import create_plan
from tests.web.cdp import chromium_page
from tests.web.conftest import pages_on_a_port, sign_init_data, tg_user
from tests.web.test_browser import BLOCK, VISIBLE_JS, shots_dir

LIGHT = {"bg_color": "#ffffff", "text_color": "#000000", "hint_color": "#707579",
         "link_color": "#2481cc", "button_color": "#2481cc", "button_text_color": "#ffffff",
         "secondary_bg_color": "#f4f4f5"}
DARK = {"bg_color": "#17212b", "text_color": "#f5f5f5", "hint_color": "#708499",
        "link_color": "#6ab3f3", "button_color": "#5288c1", "button_text_color": "#ffffff",
        "secondary_bg_color": "#232e3c"}
WORDS = {
    "en": {"pay": "Pay", "overdue": "overdue", "method": "Liquid $ balance", "renews": "renews",
           "to_pay": "To pay"},
    "ru": {"pay": "Оплатить", "overdue": "просрочен", "method": "баланс Liquid $",
           "renews": "продлится", "to_pay": "К оплате"},
}
# What a person sees: the rows of each list, their order on the page, and anything that
# sticks out to the right of the screen.
PAGE_JS = """
(() => {
  const rows = (id) => Array.from(document.querySelectorAll('#' + id + ' li'))
      .map(li => li.innerText.replace(/\\s+/g, ' ').trim());
  const top = (id) => { const e = document.getElementById(id);
      return e ? e.getBoundingClientRect().top + window.scrollY : null; };
  const wide = Array.from(document.querySelectorAll('body *')).filter(e => {
      const r = e.getBoundingClientRect(); return r.width > 0 && r.right > window.innerWidth + 1;
  }).map(e => e.tagName + '.' + e.className);
  return {toPay: rows('buyer-to-pay'), subs: rows('buyer-subscriptions'),
          bought: rows('buyer-purchases'), history: rows('buyer-history'),
          order: ['buyer-to-pay', 'buyer-subscriptions', 'buyer-purchases', 'buyer-history']
                 .map(top),
          pay: Array.from(document.querySelectorAll('.buyer-pay')).map(b => b.textContent),
          bg: getComputedStyle(document.body).backgroundColor, wide: wide};
})()
"""


@pytest.fixture
async def served(engine: AsyncEngine) -> AsyncIterator[str]:
    async with pages_on_a_port(engine) as base:
        yield base


async def test_the_buyer_tab_on_a_phone_light_and_dark_english_and_russian(
        chromium, served, engine, make_user, make_invoice, ledger) -> None:
    base = served
    seller = await make_user(username="bakery_shop")
    me = await make_user(balance=20000, username="hungry_buyer")
    overdue = await make_invoice(seller, title="Sourdough loaf, whole grain, sliced",
                                 amount=1250, draft=True, expires_in=None,
                                 due_at=datetime.now(UTC) - timedelta(days=2))
    soon = await make_invoice(seller, title="Croissants", amount=700, expires_in=None,
                              due_at=datetime.now(UTC) + timedelta(days=5))
    for inv in (overdue, soon):
        await ledger.send_invoice(seller.id, inv.public_id, me.telegram_id)
    bought = await make_invoice(seller, title="Birthday cake", amount=4500,
                                payload={"item_id": "cake-large"})
    await ledger.pay_from_balance(bought.public_id, me.id, "browser-cake")
    plan = await create_plan(engine, seller_id=seller.id, name="Bread club",
                             prices={1: 900})
    subscribed = await ledger.subscribe(plan.public_id, me.id, 1)
    assert subscribed.invoice is not None
    await ledger.pay_from_balance(subscribed.invoice, me.id, "browser-club")

    shots = shots_dir()
    async with chromium_page(chromium, block=BLOCK) as page:
        for lang in ("en", "ru"):
            init = sign_init_data(tg_user(me, lang))
            for name, theme in (("light", LIGHT), ("dark", DARK)):
                fragment = (f"tgWebAppData={quote(init, safe='')}"
                            f"&tgWebAppThemeParams={quote(json.dumps(theme), safe='')}"
                            "&tgWebAppVersion=8.0&tgWebAppPlatform=ios")
                await page.goto("about:blank")
                await page.goto(f"{base}/app#{fragment}")
                await page.wait_for("document.querySelectorAll('#buyer-history li').length > 0")
                seen = await page.evaluate(PAGE_JS)
                await page.screenshot(shots / f"buyer-{lang}-{name}.png")
                await page.screenshot(shots / f"buyer-{lang}-{name}-full.png", full_page=True)
                words = WORDS[lang]

                assert len(seen["toPay"]) == 2, seen
                assert "Sourdough" in seen["toPay"][0] and words["overdue"] in seen["toPay"][0]
                assert "Croissants" in seen["toPay"][1] and "7.00 Liquid $" in seen["toPay"][1]
                assert seen["pay"] == [words["pay"]] * 2
                assert seen["order"] == sorted(seen["order"]), seen["order"]  # to pay first
                assert len(seen["subs"]) == 1 and "Bread club" in seen["subs"][0]
                assert words["renews"] in seen["subs"][0]
                assert any("Birthday cake" in r for r in seen["bought"])
                assert any("Birthday cake" in r and words["method"] in r
                           for r in seen["history"]), seen["history"]
                assert seen["wide"] == [], seen["wide"]  # nothing wider than the screen
                dark = seen["bg"] == "rgb(23, 33, 43)"
                assert dark == (name == "dark"), seen["bg"]
                to_pay = await page.evaluate(VISIBLE_JS % ["buyer-to-pay"])
                assert to_pay["buyer-to-pay"]["visible"] and to_pay["buyer-to-pay"]["aboveFold"]
                assert to_pay["scrollWidth"] <= to_pay["viewport"][0]
                assert words["to_pay"] in to_pay["buyer-to-pay"]["text"]

        # Pay opens the pay page here, in the Mini App's own webview.
        await page.evaluate("document.querySelector('.buyer-pay').click()")
        await page.wait_for(f"location.pathname === '/pay/{overdue.public_id}'")
    print(f"\nscreenshots: {shots}")
