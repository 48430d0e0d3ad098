"""A seller's reports: the dashboard reads daily rollups that every payment and reversal keeps
exact in its own transaction, and exports stream a period's payments and invoices with the
columns an accountant expects."""

import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.exc import DBAPIError

from ledger.documents import Buyer
from ledger.invoices import new_invoice
from ledger.reports import (
    INVOICE_COLUMNS,
    PAYMENT_COLUMNS,
    dashboard,
    export_rows,
    period_error,
)
from ledger.totals import Line, TaxRate
from tests.conftest import run_sql

TODAY = datetime.now(UTC).date()
MONTH = TODAY.strftime("%Y-%m")


async def invoice_of(ledger, seller, amount: int = 10_000, **kw):  # type: ignore[no-untyped-def]
    kw.setdefault("title", "Audit")
    invoice, _ = await ledger.issue_invoice(new_invoice(seller_id=seller.id, amount=amount, **kw))
    return invoice


async def rows_of(engine, kind, seller_id, start=TODAY, end=TODAY):  # type: ignore[no-untyped-def]
    return [row async for row in export_rows(engine, kind, seller_id, start, end)]


async def test_dashboard_shows_revenue_outstanding_and_conversion(ledger, make_user) -> None:
    seller, buyer = await make_user(), await make_user(balance=50_000)
    by_balance = await invoice_of(ledger, seller, 2_500)
    await ledger.pay_from_balance(by_balance.public_id, buyer.id, "k1")
    by_bank = await invoice_of(ledger, seller, 10_000)
    kept = await ledger.record_manual_payment(by_bank.public_id, seller_id=seller.id,
                                              amount=4_000, received_on=TODAY, reference="B-1")
    undone = await ledger.record_manual_payment(by_bank.public_id, seller_id=seller.id,
                                                amount=6_000, received_on=TODAY, reference="B-2")
    await ledger.reverse_manual_payment(undone.payment_id, seller_id=seller.id,
                                        reason="bounced")
    due = await invoice_of(ledger, seller, 700, due_at=datetime.now(UTC) + timedelta(days=3))
    assert kept.invoice.amount_paid == 4_000

    d = await dashboard(ledger.engine, seller.id, TODAY, TODAY)
    # What was received, less what was reversed: 25.00 by balance, 40.00 by bank.
    assert [(m.month, m.currency, m.amount, m.payments) for m in d.by_month] == [
        (MONTH, "LIQ", 6_500, 2)]
    assert [(m.method, m.amount, m.payments) for m in d.by_method] == [
        ("manual", 4_000, 1), ("internal", 2_500, 1)]
    # Open: the reopened bank invoice (60.00 still due) and the one due in three days.
    assert [(s.currency, s.amount, s.count) for s in d.open] == [("LIQ", 6_700, 2)]
    assert d.overdue == []
    assert (d.issued, d.paid, d.conversion) == (3, 1, 0.3333)

    later = await dashboard(ledger.engine, seller.id, TODAY, TODAY,
                            now=due.due_at + timedelta(seconds=1))
    assert [(s.currency, s.amount, s.count) for s in later.overdue] == [("LIQ", 700, 1)]

    # Another period, another seller: nothing of this.
    assert (await dashboard(ledger.engine, seller.id, TODAY - timedelta(days=40),
                            TODAY - timedelta(days=1))).by_month == []
    other = await dashboard(ledger.engine, buyer.id, TODAY, TODAY)
    assert (other.by_month, other.open, other.issued) == ([], [], 0)


async def test_rollups_agree_with_the_payments_under_concurrent_payments(ledger,
                                                                         make_user) -> None:
    seller = await make_user()
    buyers = [await make_user(balance=1_000) for _ in range(12)]
    invoices = [await invoice_of(ledger, seller, 100 + i) for i in range(12)]
    # Paid at once: the batcher settles them in shared statements.
    await asyncio.gather(*(ledger.pay_from_balance(inv.public_id, b.id, f"c{i}")
                           for i, (inv, b) in enumerate(zip(invoices, buyers, strict=True))))
    d = await dashboard(ledger.engine, seller.id, TODAY, TODAY)
    assert [(m.amount, m.payments) for m in d.by_month] == [(sum(range(100, 112)), 12)]
    # And across every seller the other tests paid: the rollup is the payments less reversals.
    drift = await run_sql(ledger.engine, """
        SELECT * FROM (
            SELECT i.seller_id, (p.created_at AT TIME ZONE 'UTC')::date AS day, p.currency,
                   p.method, sum(p.amount) AS amount, count(*) AS payments
              FROM payments p JOIN invoices i ON i.id = p.invoice_id
             WHERE NOT EXISTS (SELECT 1 FROM payment_reversals v WHERE v.payment_id = p.id)
             GROUP BY 1, 2, 3, 4) truth
        FULL JOIN (SELECT * FROM revenue_daily WHERE payments <> 0) r
          USING (seller_id, day, currency, method)
         WHERE truth.amount IS DISTINCT FROM r.amount
            OR truth.payments IS DISTINCT FROM r.payments""")
    assert drift == []


async def test_a_rollup_row_cannot_be_deleted(ledger, make_user) -> None:
    seller = await make_user()
    invoice = await invoice_of(ledger, seller)
    await ledger.record_manual_payment(invoice.public_id, seller_id=seller.id, amount=10_000,
                                       received_on=TODAY, reference="X")
    with pytest.raises(DBAPIError, match="not allowed"):
        await run_sql(ledger.engine, "DELETE FROM revenue_daily WHERE seller_id = :s",
                      s=seller.id)


async def test_payments_export_has_the_accountants_columns(ledger, make_user) -> None:
    seller = await make_user()
    buyer = await make_user(balance=10_000, username="alice_buys")
    paid = await invoice_of(ledger, seller, 1_250)
    await ledger.pay_from_balance(paid.public_id, buyer.id, "k")
    by_bank = await invoice_of(ledger, seller, 3_000)
    manual = await ledger.record_manual_payment(by_bank.public_id, seller_id=seller.id,
                                                amount=3_000, received_on=TODAY,
                                                reference="SWIFT-9")
    await ledger.reverse_manual_payment(manual.payment_id, seller_id=seller.id,
                                        reason="wrong client")

    rows = [dict(zip(PAYMENT_COLUMNS, r, strict=True))
            for r in await rows_of(ledger.engine, "payments", seller.id)]
    assert [(r["invoice_id"], r["buyer"], r["method"], r["reference"], r["currency"],
             r["amount"], r["reversal_reason"]) for r in rows] == [
        (paid.public_id, "@alice_buys", "internal", None, "LIQ", Decimal("12.50"), None),
        (by_bank.public_id, "", "manual", "SWIFT-9", "LIQ", Decimal("30.00"), "wrong client"),
    ]
    assert rows[0]["invoice_number"] == paid.number
    assert rows[0]["paid_at"].date() == TODAY and rows[0]["reversed_at"] is None
    assert rows[1]["reversed_at"] is not None
    # An empty period, or another seller's: no rows.
    assert await rows_of(ledger.engine, "payments", seller.id, TODAY - timedelta(days=9),
                         TODAY - timedelta(days=1)) == []
    assert await rows_of(ledger.engine, "payments", buyer.id) == []


async def test_invoices_export_has_lines_buyer_tax_and_totals(ledger, make_user) -> None:
    seller = await make_user()
    invoice = await invoice_of(
        ledger, seller, None,
        lines=[Line("Consulting", Decimal("1.5"), 12_000, tax_rate="VAT"),
               Line("Report", Decimal(1), 5_000, tax_rate="VAT")],
        tax_rates=[TaxRate("VAT", Decimal(20))], buyer=Buyer(name="Acme Ltd"))
    plain = await invoice_of(ledger, seller, 900)
    await ledger.record_manual_payment(plain.public_id, seller_id=seller.id, amount=400,
                                       received_on=TODAY, reference="P-1")

    rows = {r[1]: dict(zip(INVOICE_COLUMNS, r, strict=True))
            for r in await rows_of(ledger.engine, "invoices", seller.id)}
    doc = rows[invoice.public_id]
    assert (doc["number"], doc["status"], doc["buyer"], doc["lines"]) == (
        invoice.number, "pending", "Acme Ltd", "Consulting; Report")
    assert (doc["subtotal"], doc["tax"], doc["total"], doc["amount_due"]) == (
        Decimal("230.00"), Decimal("46.00"), Decimal("276.00"), Decimal("276.00"))
    assert (rows[plain.public_id]["lines"], rows[plain.public_id]["amount_paid"],
            rows[plain.public_id]["amount_due"]) == ("Audit", Decimal("4.00"), Decimal("5.00"))


@pytest.mark.parametrize(("start", "end", "error"), [
    (date(2026, 3, 2), date(2026, 3, 1), "from must not be after to"),
    (date(2020, 1, 1), date(2025, 1, 1), "a period is at most 5 years"),
    (date(2024, 2, 29), date(2029, 2, 28), "a period is at most 5 years"),
    (date(2020, 1, 2), date(2025, 1, 1), None),
    (date(2026, 3, 1), date(2026, 3, 1), None),
])
def test_a_period_is_checked(start: date, end: date, error: str | None) -> None:
    assert period_error(start, end) == error


async def test_conversion_counts_invoices_by_their_day_of_issue(ledger, make_user) -> None:
    from ledger.invariants import check_invariants
    from ledger.reports import dashboard as dash

    seller, buyer = await make_user(), await make_user(balance=50_000)
    paid = await invoice_of(ledger, seller, 1_000)
    await ledger.pay_from_balance(paid.public_id, buyer.id, "conv-1")
    await invoice_of(ledger, seller, 2_000)  # issued, still open
    draft = await invoice_of(ledger, seller, 3_000, draft=True)
    d = await dash(ledger.engine, seller.id, TODAY, TODAY)
    assert (d.issued, d.paid) == (2, 1)  # a draft is not issued yet

    issued = await ledger.finalize_invoice(seller.id, draft.public_id)
    by_bank = await ledger.record_manual_payment(issued.public_id, seller_id=seller.id,
                                                 amount=3_000, received_on=TODAY,
                                                 reference="W-1")
    d = await dash(ledger.engine, seller.id, TODAY, TODAY)
    assert (d.issued, d.paid, d.conversion) == (3, 2, 0.6667)

    # A reversal reopens the invoice: it is no longer counted as paid.
    await ledger.reverse_manual_payment(by_bank.payment_id, seller_id=seller.id, reason="bounced")
    d = await dash(ledger.engine, seller.id, TODAY, TODAY)
    assert (d.issued, d.paid) == (3, 1)
    # Yesterday had none of this.
    yesterday = TODAY - timedelta(days=1)
    assert (await dash(ledger.engine, seller.id, yesterday, yesterday)).issued == 0
    assert await check_invariants(ledger.engine) == []


async def test_top_items_are_the_best_sellers_of_the_months_net_of_reversals(
        ledger, make_user) -> None:
    from ledger.invariants import check_invariants
    from ledger.reports import months_of, top_items

    seller, buyer = await make_user(), await make_user(balance=100_000)
    for i, (title, amount) in enumerate([("Tea", 500), ("Tea", 500), ("Coffee", 900),
                                         ("Cake", 300), ("Mug", 1_200)]):
        invoice = await invoice_of(ledger, seller, amount, title=title)
        await ledger.pay_from_balance(invoice.public_id, buyer.id, f"top-{i}")
    mug = await invoice_of(ledger, seller, 5_000, title="Mug")
    by_bank = await ledger.record_manual_payment(mug.public_id, seller_id=seller.id,
                                                 amount=5_000, received_on=TODAY, reference="M")
    await ledger.reverse_manual_payment(by_bank.payment_id, seller_id=seller.id, reason="oops")

    top = await top_items(ledger.engine, seller.id, TODAY, TODAY, limit=3)
    assert [(t.item, t.amount, t.payments) for t in top] == [
        ("Mug", 1_200, 1), ("Tea", 1_000, 2), ("Coffee", 900, 1)]
    # Kept per month: any day of this month reads the whole month.
    first, last = months_of(TODAY, TODAY)
    assert first == TODAY.replace(day=1) and last >= TODAY and (last + timedelta(days=1)).day == 1
    assert await top_items(ledger.engine, buyer.id, TODAY, TODAY) == []
    assert await check_invariants(ledger.engine) == []


async def test_mrr_and_churn_of_a_sellers_subscriptions(ledger, make_user) -> None:
    from ledger.reports import subscription_summary

    seller = await make_user()
    assert await subscription_summary(ledger.engine, seller.id) == []
    monthly = await ledger.create_plan(seller.id, "Club", {1: 900, 3: 2_400})
    subs = []
    for i, months in enumerate([1, 1, 3]):
        buyer = await make_user(balance=10_000)
        sub = await ledger.subscribe(monthly.public_id, buyer.id, months)
        await ledger.pay_from_balance(sub.invoice, buyer.id, f"sub-{i}")
        subs.append(sub.subscription.public_id)
    # Forty days on: all three were live thirty days ago; one ended since.
    await ledger.cancel_subscription(subs[0], actor_id=None, at_period_end=False)
    later = datetime.now(UTC) + timedelta(days=40)
    await run_sql(ledger.engine, """
        UPDATE subscriptions SET created_at = created_at - interval '40 days'
         WHERE seller_id = :s""", s=seller.id)
    await run_sql(ledger.engine, """
        UPDATE subscription_periods p SET starts_at = starts_at - interval '40 days'
          FROM subscriptions s WHERE s.id = p.subscription_id AND s.seller_id = :s""",
                  s=seller.id)
    await run_sql(ledger.engine, """
        UPDATE subscriptions SET ended_at = now() + interval '30 days'
         WHERE seller_id = :s AND ended_at IS NOT NULL""", s=seller.id)
    [summary] = await subscription_summary(ledger.engine, seller.id, now=later)
    # 9.00 a month, and 24.00 for three months = 8.00 a month.
    assert (summary.currency, summary.mrr, summary.active) == ("LIQ", 900 + 800, 2)
    assert (summary.churned, summary.churn_rate) == (1, 0.3333)
