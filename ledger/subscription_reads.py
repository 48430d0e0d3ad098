"""What a seller is shown of subscriptions beyond their own row, read in bulk: who subscribed
and the latest period's invoice (the seller API's views and the `subscription_*` callbacks)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ledger.db import Executor, fetch_all
from ledger.ids import parse_invoice_id
from ledger.subscriptions import Subscription


@dataclass(frozen=True, slots=True)
class SubscriptionFacts:
    telegram_id: int
    username: str | None
    latest_invoice: str | None  # public id of the latest period's invoice (None: a trial)


async def subscription_facts(db: Executor, subscription_ids: Iterable[int]
                             ) -> dict[int, SubscriptionFacts]:
    """By subscription id, in one query."""
    ids = sorted(set(subscription_ids))
    if not ids:
        return {}
    rows = await fetch_all(
        db,
        """SELECT s.id, u.telegram_id, u.username,
                  (SELECT i.public_id FROM subscription_periods p
                     JOIN invoices i ON i.id = p.invoice_id
                    WHERE p.subscription_id = s.id
                    ORDER BY p.period_index DESC LIMIT 1) AS latest_invoice
             FROM subscriptions s JOIN users u ON u.id = s.subscriber_id
            WHERE s.id = ANY(CAST(:ids AS bigint[]))""",
        ids=ids)
    return {r["id"]: SubscriptionFacts(r["telegram_id"], r["username"], r["latest_invoice"])
            for r in rows}


async def subscriptions_by_public_id(db: Executor, public_ids: Iterable[str]
                                     ) -> dict[str, Subscription]:
    """The subscriptions (with their plan's id and name) among `public_ids`, in one query;
    ids that name none are left out."""
    wanted = sorted({c for c in map(parse_invoice_id, public_ids) if c is not None})
    if not wanted:
        return {}
    rows = await fetch_all(
        db,
        """SELECT s.*, p.public_id AS plan_public_id, p.name AS plan_name
             FROM subscriptions s JOIN plans p ON p.id = s.plan_id
            WHERE s.public_id = ANY(CAST(:ids AS text[]))""",
        ids=wanted)
    return {r["public_id"]: Subscription.from_row(r) for r in rows}
