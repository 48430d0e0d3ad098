"""GET /api/v1/reports/dashboard and the streamed exports /api/v1/exports/{payments,invoices}
.{csv,xlsx}: what a seller's accountant gets, and a clear 422 for a period that makes no
sense."""

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from openpyxl import load_workbook

from ledger.core import Ledger
from ledger.invoices import new_invoice

TODAY = datetime.now(UTC).date()
PERIOD = {"from": TODAY.isoformat(), "to": TODAY.isoformat()}
EMPTY = {"from": (TODAY - timedelta(days=30)).isoformat(),
         "to": (TODAY - timedelta(days=1)).isoformat()}


async def paid_invoices(engine, seller, make_user, count: int = 3):  # type: ignore[no-untyped-def]
    ledger = Ledger(engine)
    buyer = await make_user(balance=100_000, username="bob_pays")
    invoices = []
    for i in range(count):
        invoice, _ = await ledger.issue_invoice(new_invoice(
            seller_id=seller.user.id, title=f"Lesson «{i}»", amount=1_000 + i))
        await ledger.pay_from_balance(invoice.public_id, buyer.id, f"k{i}")
        invoices.append(invoice)
    return invoices


async def test_dashboard_answers_the_period(api, engine, make_seller, make_user) -> None:
    seller = await make_seller()
    await paid_invoices(engine, seller, make_user)
    r = await api.get("/api/v1/reports/dashboard", params=PERIOD, headers=seller.auth)
    assert r.status == 200, await r.text()
    body = await r.json()
    assert body["revenue_by_month"] == [{
        "month": TODAY.strftime("%Y-%m"), "currency": "LIQ", "amount": "30.03",
        "amount_minor": 3_003, "payments": 3}]
    assert body["revenue_by_method"][0]["method"] == "internal"
    assert body["conversion"] == {"issued": 3, "paid": 3, "rate": 1.0}
    assert body["outstanding"] == {"open": [], "overdue": []}
    assert [(i["item"], i["amount_minor"]) for i in body["top_items"]] == [
        ("Lesson «2»", 1_002), ("Lesson «1»", 1_001), ("Lesson «0»", 1_000)]
    assert body["subscriptions"] == []  # none yet
    # Without a period: the last 12 months, ending today.
    r = await api.get("/api/v1/reports/dashboard", headers=seller.auth)
    body = await r.json()
    assert body["to"] == TODAY.isoformat() and body["from"].endswith("-01")
    assert body["revenue_by_month"][0]["amount_minor"] == 3_003


async def test_payments_csv_is_streamed_with_a_header(api, engine, make_seller,
                                                       make_user) -> None:
    seller = await make_seller()
    invoices = await paid_invoices(engine, seller, make_user)
    r = await api.get("/api/v1/exports/payments.csv", params=PERIOD, headers=seller.auth)
    assert r.status == 200
    assert r.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert r.headers["Transfer-Encoding"] == "chunked"  # streamed, not built then sent
    assert "attachment" in r.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO((await r.read()).decode("utf-8-sig"))))
    assert [(x["invoice_id"], x["buyer"], x["method"], x["amount"]) for x in rows] == [
        (inv.public_id, "@bob_pays", "internal", f"{10 + i / 100:.2f}")
        for i, inv in enumerate(invoices)]


async def test_invoices_xlsx_opens_in_a_spreadsheet(api, engine, make_seller,
                                                     make_user) -> None:
    seller = await make_seller()
    invoices = await paid_invoices(engine, seller, make_user, count=2)
    r = await api.get("/api/v1/exports/invoices.xlsx", params=PERIOD, headers=seller.auth)
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("application/vnd.openxmlformats")
    sheet = load_workbook(io.BytesIO(await r.read()), read_only=True).active
    header, *rows = list(sheet.values)
    assert header[:3] == ("number", "invoice_id", "status")
    assert [(row[1], row[2], row[7], row[12]) for row in rows] == [
        (inv.public_id, "paid", f"Lesson «{i}»", 10 + i / 100) for i, inv in enumerate(invoices)]


@pytest.mark.parametrize("path", ["payments.csv", "invoices.csv", "payments.xlsx",
                                  "invoices.xlsx"])
async def test_an_empty_period_is_a_file_with_its_header(api, engine, make_seller, make_user,
                                                         path: str) -> None:
    seller = await make_seller()
    await paid_invoices(engine, seller, make_user, count=1)
    r = await api.get(f"/api/v1/exports/{path}", params=EMPTY, headers=seller.auth)
    assert r.status == 200
    data = await r.read()
    if path.endswith(".csv"):
        lines = data.decode("utf-8-sig").splitlines()
        assert len(lines) == 1 and lines[0].split(",")[0] in ("payment_id", "number")
    else:
        assert len(list(load_workbook(io.BytesIO(data), read_only=True).active.values)) == 1


@pytest.mark.parametrize(("params", "says"), [
    ({"from": "2026-03-02", "to": "2026-03-01"}, "from must not be after to"),
    ({"from": "2019-01-01", "to": "2025-06-01"}, "a period is at most 5 years"),
    ({"from": "2026-03-01", "status": "paid"}, "unknown parameter 'status'"),
    ({"from": "yesterday"}, "from must be a date as YYYY-MM-DD"),
    ({"to": "2026-03-01T10:00:00Z"}, "to must be a date as YYYY-MM-DD"),
])
@pytest.mark.parametrize("path", ["reports/dashboard", "exports/payments.csv",
                                  "exports/invoices.xlsx"])
async def test_a_period_that_makes_no_sense_is_refused(api, make_seller, path: str,
                                                       params: dict[str, str],
                                                       says: str) -> None:
    seller = await make_seller()
    r = await api.get(f"/api/v1/{path}", params=params, headers=seller.auth)
    assert r.status == 422
    error = (await r.json())["error"]
    assert error["code"] == "invalid_request" and error["message"].startswith(says)


async def test_reports_need_a_token(api) -> None:
    r = await api.get("/api/v1/exports/payments.csv")
    assert r.status == 401


async def test_exports_at_once_are_capped_and_the_next_is_told_to_retry(
        api, engine, make_seller, make_user) -> None:
    """Each export holds a database connection while it runs: past EXPORTS_AT_ONCE the next
    is 503 with Retry-After, so downloads cannot take the pool from payments."""
    import asyncio

    from bot.api import reports
    from tests.waiting import wait_until

    seller = await make_seller()
    await paid_invoices(engine, seller, make_user, count=1)
    url = "/api/v1/exports/payments.csv"
    # Exports that cannot read yet (the payments are locked) hold their places.
    locking = engine.execution_options(isolation_level="READ COMMITTED")
    async with locking.connect() as locker:
        await locker.begin()
        await locker.exec_driver_sql("LOCK TABLE payments IN ACCESS EXCLUSIVE MODE")
        held = [asyncio.create_task(api.get(url, params=PERIOD, headers=seller.auth))
                for _ in range(reports.EXPORTS_AT_ONCE)]
        await wait_until(lambda: reports._exporting == reports.EXPORTS_AT_ONCE,
                         "the exports to be under way")
        r = await api.get(url, params=PERIOD, headers=seller.auth)
        assert r.status == 503 and r.headers["Retry-After"] == str(reports.EXPORT_RETRY_AFTER)
        assert (await r.json())["error"]["code"] == "busy"
        await locker.rollback()
    for response in await asyncio.gather(*held):
        assert response.status == 200
        assert "@bob_pays" in await response.text()  # the whole file, once the lock is gone
    r = await api.get(url, params=PERIOD, headers=seller.auth)  # places free again
    assert r.status == 200
