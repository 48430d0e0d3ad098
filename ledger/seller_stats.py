"""What a seller earned in a period, and a user's balances in every currency."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ledger.db import Executor, fetch_all
from ledger.money import DECIMALS


@dataclass(frozen=True, slots=True)
class Volume:
    currency: str
    amount: int
    payments: int

@dataclass(frozen=True, slots=True)
class SellerStats:
    since: datetime
    until: datetime
    created: int  # invoices created in the period
    paid: int  # ...of which at least one payment arrived (at any time)
    by_status: dict[str, int]
    volume: list[Volume]  # payments received in the period, per currency

    @property
    def conversion(self) -> float:
        return round(self.paid / self.created, 4) if self.created else 0.0

async def seller_stats(
    db: Executor, seller_id: int, since: datetime, until: datetime
) -> SellerStats:
    rows = await fetch_all(
        db,
        """
        SELECT 'status' AS kind, status AS key, count(*) AS n, count(*) FILTER (WHERE uses > 0)
               AS paid, 0::numeric AS amount
          FROM invoices
         WHERE seller_id = :seller AND created_at >= :since AND created_at < :until
         GROUP BY status
        UNION ALL
        SELECT 'volume', p.currency, count(*), 0, sum(p.amount)
          FROM invoices i JOIN payments p ON p.invoice_id = i.id
         WHERE i.seller_id = :seller AND p.created_at >= :since AND p.created_at < :until
         GROUP BY p.currency
        """,
        seller=seller_id, since=since, until=until,
    )
    by_status = dict.fromkeys(("pending", "paid", "cancelled", "expired"), 0)
    paid = 0
    volume: list[Volume] = []
    for r in rows:
        if r["kind"] == "status":
            by_status[r["key"]] = int(r["n"])
            paid += int(r["paid"])
        else:
            volume.append(Volume(r["key"], int(r["amount"]), int(r["n"])))
    volume.sort(key=lambda v: v.currency)
    return SellerStats(since, until, sum(by_status.values()), paid, by_status, volume)

async def balances(db: Executor, user_id: int) -> dict[str, int]:
    """Spendable balance per currency (applied plus pending credits), zero when none."""
    rows = await fetch_all(
        db,
        """
        SELECT a.currency, a.balance + coalesce((SELECT sum(e.amount) FROM entries e
                     WHERE e.account_id = a.id AND e.balance_after IS NULL), 0) AS total
          FROM accounts a WHERE a.user_id = :user
        """,
        user=user_id,
    )
    found = {r["currency"]: int(r["total"]) for r in rows}
    return {currency: found.get(currency, 0) for currency in sorted(DECIMALS)}
