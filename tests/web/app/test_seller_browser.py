"""The seller's tab in a real browser (headless chromium at 390x844), light and dark, English
and Russian, with payments over several months: the figures are on screen, both charts are
images the browser decoded, and nothing is wider than the phone. Screenshots are kept (see
tests/web/test_browser.py: $PAYBOT_SCREENSHOTS or a temporary directory, printed)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from urllib.parse import quote

import pytest

from ledger.invoices import new_invoice
from tests.conftest import run_sql
from tests.web.cdp import chromium_page
from tests.web.conftest import sign_init_data, tg_user
from tests.web.test_browser import BLOCK, served, shots_dir  # noqa: F401 (a fixture)

THEMES = {
    "light": {"bg_color": "#ffffff", "text_color": "#000000", "hint_color": "#999999",
              "link_color": "#2481cc", "button_color": "#2481cc", "button_text_color": "#ffffff",
              "secondary_bg_color": "#efeff4"},
    "dark": {"bg_color": "#17212b", "text_color": "#f5f5f5", "hint_color": "#708499",
             "link_color": "#6ab3f3", "button_color": "#5288c1", "button_text_color": "#ffffff",
             "secondary_bg_color": "#232e3c"},
}

SEEN_JS = """
(() => {
  const box = (id) => {
    const el = document.getElementById(id);
    if (!el) return null;
    const r = el.getBoundingClientRect();
    return {text: el.textContent.trim(), visible: r.width > 0 && r.height > 0,
            right: r.right, width: r.width};
  };
  const img = (id) => {
    const el = document.getElementById(id);
    return el ? {decoded: el.complete && el.naturalWidth > 0,
                 width: el.getBoundingClientRect().width, alt: el.alt} : null;
  };
  const wide = [...document.querySelectorAll("body *")].filter((el) => {
    const r = el.getBoundingClientRect();
    return r.width > 0 && (r.right > window.innerWidth + 1 || r.left < -1);
  }).map((el) => el.tagName + "." + el.className);
  return {revenue: box("seller-revenue"), month: box("seller-month"), open: box("seller-open"),
          conversion: box("seller-conversion"), invoices: box("seller-invoices"),
          top: box("seller-top"), chart: img("seller-chart-revenue"),
          methods: img("seller-chart-methods"), wide: wide,
          scrollWidth: document.documentElement.scrollWidth, width: window.innerWidth};
})()
"""

CHARTS_READY = """
(() => ["seller-chart-revenue", "seller-chart-methods"].every((id) => {
  const el = document.getElementById(id);
  return el && el.complete && el.naturalWidth > 0;
}) && document.querySelectorAll("#seller-invoices > li:not(.empty)").length > 0)()
"""


def _months_back(n: int) -> date:
    today = datetime.now(UTC).date().replace(day=1)
    index = today.year * 12 + today.month - 1 - n
    return date(index // 12, index % 12 + 1, 10)


@pytest.fixture
async def seller_with_history(ledger, make_user, engine):  # type: ignore[no-untyped-def]
    seller = await make_user(username="bakery")
    buyer = await make_user(balance=100_000, username="regular_customer")
    today = datetime.now(UTC).date()
    for i, (title, amount) in enumerate([("Sourdough loaf", 1_250), ("Croissant box", 3_400),
                                         ("Birthday cake", 8_900)]):
        invoice, _ = await ledger.issue_invoice(
            new_invoice(seller_id=seller.id, amount=amount, title=title))
        await ledger.pay_from_balance(invoice.public_id, buyer.id, f"b{i}")
    catering, _ = await ledger.issue_invoice(
        new_invoice(seller_id=seller.id, amount=25_000, title="Office catering"))
    await ledger.record_manual_payment(catering.public_id, seller_id=seller.id, amount=10_000,
                                       received_on=today, reference="BANK-77")
    await ledger.issue_invoice(new_invoice(
        seller_id=seller.id, amount=4_500, title="Wedding tasting",
        due_at=datetime.now(UTC) + timedelta(days=5)))
    # Earlier months: payments cannot be dated back (the row is immutable, its time the
    # database's), so the daily rollups the dashboard reads stand for them during the test,
    # and are zeroed after it (a zero row counts as none) so that the invariants still hold.
    for n, amount in [(1, 42_000), (2, 18_500), (3, 30_250), (5, 12_000), (8, 51_000),
                      (11, 9_900)]:
        await run_sql(engine, "INSERT INTO revenue_daily (seller_id, day, currency, method,"
                      " amount, payments) VALUES (:s, :d, 'LIQ', :m, :a, 3)",
                      s=seller.id, d=_months_back(n), m="internal" if n % 2 else "card:stripe",
                      a=amount)
    yield seller
    await run_sql(engine, "UPDATE revenue_daily SET amount = 0, payments = 0"
                  " WHERE seller_id = :s AND day < :d", s=seller.id, d=today.replace(day=1))


@pytest.mark.parametrize("lang", ["en", "ru"])
async def test_seller_tab_on_a_phone(chromium, served, seller_with_history, lang) -> None:  # noqa: F811
    base, requested = served
    init = sign_init_data(tg_user(seller_with_history, lang))
    shots = shots_dir()
    async with chromium_page(chromium, block=BLOCK) as page:
        for theme, params in THEMES.items():
            fragment = (f"tgWebAppData={quote(init, safe='')}&tgWebAppVersion=8.0"
                        f"&tgWebAppThemeParams={quote(json.dumps(params), safe='')}")
            await page.goto("about:blank")
            await page.goto(f"{base}/app?view=seller#{fragment}")
            try:
                await page.wait_for(CHARTS_READY)
            except TimeoutError:
                await page.screenshot(shots / f"seller-{lang}-{theme}-stuck.png", full_page=True)
                state = await page.evaluate(
                    "[document.getElementById('app-message').textContent,"
                    " [...document.querySelectorAll('img')].map(i => [i.id, i.src, i.complete,"
                    " i.naturalWidth])]")
                raise AssertionError(f"the tab did not finish: {state}; {requested}") from None
            seen = await page.evaluate(SEEN_JS)
            await page.screenshot(shots / f"seller-{lang}-{theme}.png")
            await page.screenshot(shots / f"seller-{lang}-{theme}-full.png", full_page=True)

            for name in ("revenue", "month", "open", "conversion", "invoices", "top"):
                assert seen[name] and seen[name]["visible"], (name, seen[name])
            assert "Liquid $" in seen["revenue"]["text"]
            # This month 12.50 + 34.00 + 89.00 + 100.00; the months before 1,636.50.
            assert "1872.00 Liquid $" in seen["revenue"]["text"], seen["revenue"]
            assert "235.50 Liquid $" in seen["month"]["text"], seen["month"]
            assert "195.00 Liquid $" in seen["open"]["text"]  # 150.00 + 45.00 still due
            assert "150.00 Liquid $" in seen["invoices"]["text"]  # what the catering still owes
            for chart in ("chart", "methods"):
                assert seen[chart]["decoded"] and seen[chart]["width"] >= 300, seen[chart]
            assert "235.50" in seen["chart"]["alt"]
            assert seen["wide"] == [] and seen["scrollWidth"] <= seen["width"], seen["wide"]
        print(f"\nscreenshots: {shots}")
    assert any("/app/api/seller/charts/revenue.svg" in line and line.startswith("200")
               for line in requested)
