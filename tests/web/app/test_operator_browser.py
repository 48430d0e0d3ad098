"""The operator's tab in a real browser at phone size (390x844), light and dark, English and
Russian, with a held transfer and a failed callback: the counts, the rows with their buttons,
the invariants' badge, nothing wider than the screen; then "Send again" (confirmed) sends the
callback again and the section reloads without it. Screenshots are kept (PAYBOT_SCREENSHOTS,
else a temporary directory)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from urllib.parse import quote

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.settings import OperatorSettings, Settings
from tests.web.app.test_buyer_browser import DARK, LIGHT
from tests.web.app.test_operator import failed_callback, held_transfer
from tests.web.cdp import chromium_page
from tests.web.conftest import pages_on_a_port, sign_init_data
from tests.web.test_browser import BLOCK, shots_dir

OPERATOR_ID = 9_100_000_001
WORDS = {
    "en": {"held": "Held transfers", "callbacks": "Failed callbacks", "resolve": "Resolve",
           "again": "Send again", "ok": "All hold", "reason": "no invoice named"},
    "ru": {"held": "Удержанные переводы", "callbacks": "Недоставленные колбэки",
           "resolve": "Разобрать", "again": "Отправить снова", "ok": "Все соблюдены",
           "reason": "счёт не указан"},
}
PAGE_JS = """
(() => {
  const rows = (id) => Array.from(document.querySelectorAll('#' + id + ' li'))
      .map(li => li.innerText.replace(/\\s+/g, ' ').trim());
  const head = (id) => { const h = document.querySelector('#' + id + ' h2');
      return h ? h.innerText.replace(/\\s+/g, ' ').trim() : null; };
  const wide = Array.from(document.querySelectorAll('body *')).filter(e => {
      const r = e.getBoundingClientRect(); return r.width > 0 && r.right > window.innerWidth + 1;
  }).map(e => e.tagName + '.' + e.className);
  const tx = (h) => document.querySelector('li[data-tx="' + h + '"]');
  return {held: rows('op-held'), callbacks: rows('op-callbacks'),
          heads: ['op-held', 'op-callbacks', 'op-payouts', 'op-invariants'].map(head),
          invariants: (document.getElementById('op-inv-status') || {}).textContent,
          figures: Array.from(document.querySelectorAll('.op-figures .figure'))
                     .map(f => f.innerText.replace(/\\s+/g, ' ').trim()),
          buttons: Array.from(document.querySelectorAll('#view button')).map(b => b.textContent),
          bg: getComputedStyle(document.body).backgroundColor, wide: wide,
          scrollWidth: document.documentElement.scrollWidth, width: window.innerWidth};
})()
"""


@pytest.fixture
async def served(engine: AsyncEngine) -> AsyncIterator[str]:
    def operators(settings: Settings) -> None:
        settings.operator = OperatorSettings(telegram_ids=[OPERATOR_ID])

    async with pages_on_a_port(engine, operators) as base:
        yield base


async def test_the_operator_tab_on_a_phone_light_and_dark_english_and_russian(
        chromium, served, engine, make_user, make_invoice) -> None:
    base = served
    tx = await held_transfer(engine, 2_500_000_000, "paid for order 1182, thanks!")
    event_id, _ = await failed_callback(engine, make_user, make_invoice)

    shots = shots_dir()
    async with chromium_page(chromium, block=BLOCK) as page:
        for lang in ("en", "ru"):
            init = sign_init_data({"id": OPERATOR_ID, "first_name": "Desk",
                                   "username": "desk_night", "language_code": lang})
            for name, theme in (("light", LIGHT), ("dark", DARK)):
                fragment = (f"tgWebAppData={quote(init, safe='')}"
                            f"&tgWebAppThemeParams={quote(json.dumps(theme), safe='')}"
                            "&tgWebAppVersion=8.0&tgWebAppPlatform=ios")
                await page.goto("about:blank")
                await page.goto(f"{base}/app?view=operator#{fragment}")
                await page.wait_for("document.querySelectorAll('#op-held li').length > 0")
                seen = await page.evaluate(PAGE_JS)
                await page.screenshot(shots / f"operator-{lang}-{name}.png")
                await page.screenshot(shots / f"operator-{lang}-{name}-full.png", full_page=True)
                words = WORDS[lang]

                mine = [r for r in seen["held"] if "paid for order 1182" in r]
                assert len(mine) == 1 and "2.5 TON" in mine[0] and words["reason"] in mine[0]
                assert any("INV-" in r and "connection failed" in r
                           for r in seen["callbacks"]), seen["callbacks"]
                assert seen["heads"][0].startswith(words["held"])
                assert seen["heads"][1].startswith(words["callbacks"])
                assert words["resolve"] in seen["buttons"] and words["again"] in seen["buttons"]
                assert seen["invariants"] == words["ok"]
                assert seen["wide"] == [] and seen["scrollWidth"] <= seen["width"], seen["wide"]
                assert (seen["bg"] == "rgb(23, 33, 43)") == (name == "dark"), seen["bg"]

        # The resolve form opens under its row and stays on the screen.
        await page.evaluate(f"document.querySelector('li[data-tx=\"{tx}\"] button').click()")
        await page.wait_for(f"!document.querySelector('li[data-tx=\"{tx}\"] form').hidden")
        await page.screenshot(shots / "operator-ru-dark-resolve.png")
        assert (await page.evaluate(PAGE_JS))["wide"] == []

        # "Send again", confirmed: the callback is queued again and its row is gone.
        await page.evaluate("window.confirm = () => true")
        await page.evaluate(
            f"document.querySelector('li[data-event=\"{event_id}\"] button').click()")
        await page.wait_for(f"!document.querySelector('li[data-event=\"{event_id}\"]')"
                            " && document.getElementById('app-message').textContent"
                            " === 'Готово.'")
        await page.screenshot(shots / "operator-ru-dark-after.png")
    print(f"\nscreenshots: {shots}")
