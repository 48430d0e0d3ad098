"""The alerts job: an incident is told to the operators once when it starts and once when it
clears, however many runs see it and however many processes run the job."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.invoices import create_invoice
from ledger.outbox import mark_failed
from ledger.payments import pay_from_balance
from tests.conftest import run_sql
from watchers.alerts import Alerts


class Watcher:
    """Stands in for the TON watcher's view of its last poll."""

    def __init__(self) -> None:
        self.lag: float | None = 0.0
        self.behind = 0

    def lag_seconds(self, now: float | None = None) -> float | None:
        return self.lag


async def told(engine: AsyncEngine, kind: str, after: int) -> list[str]:
    rows = await run_sql(engine, "SELECT payload ->> 'state' AS state FROM outbox "
                                 "WHERE event_type = 'operator.alert' AND topic = 'telegram' "
                                 "AND payload ->> 'kind' = :kind AND id > :after ORDER BY id",
                         kind=kind, after=after)
    return [r["state"] for r in rows]


async def newest_id(engine: AsyncEngine) -> int:
    return (await run_sql(engine, "SELECT coalesce(max(id), 0) AS id FROM outbox"))[0]["id"]


async def test_watcher_lag_is_told_once_when_it_starts_and_once_when_it_clears(
        engine: AsyncEngine) -> None:
    start = await newest_id(engine)
    watcher = Watcher()
    alerts = Alerts(engine, watcher, lag_threshold=300)
    for _ in range(3):
        await alerts.run()
    assert await told(engine, "watcher_lag", start) == []  # never lagged, nothing to say

    watcher.lag, watcher.behind = 900.0, 4
    for _ in range(5):
        await alerts.run()
    assert await told(engine, "watcher_lag", start) == ["open"]
    [detail] = await run_sql(engine, "SELECT payload ->> 'detail' AS d FROM outbox WHERE "
                                     "event_type = 'operator.alert' AND id > :a", a=start)
    assert detail["d"] == "900 s behind, 4 transaction(s) not settled"

    # Another process (a replica, or this one restarted) sees the same incident: not told again.
    await Alerts(engine, watcher, lag_threshold=300).run()
    assert await told(engine, "watcher_lag", start) == ["open"]

    watcher.lag, watcher.behind = 2.0, 0
    for _ in range(4):
        await alerts.run()
    assert await told(engine, "watcher_lag", start) == ["open", "cleared"]

    watcher.lag = 301.0  # it came back: a new incident
    for _ in range(3):
        await alerts.run()
    assert await told(engine, "watcher_lag", start) == ["open", "cleared", "open"]

    # A replica whose watcher stands by has no opinion: it clears nothing.
    standby = Watcher()
    standby.lag = None
    await Alerts(engine, standby, lag_threshold=300).run()
    watcher.lag = 0.0
    await alerts.run()
    assert await told(engine, "watcher_lag", start) == ["open", "cleared", "open", "cleared"]


async def test_a_callback_given_up_on_is_an_incident(engine: AsyncEngine,
                                                     make_user: Any) -> None:
    seller, buyer = await make_user(), await make_user(balance=1000)
    inv = await create_invoice(engine, seller_id=seller.id, title="Jam", amount=300,
                               payload={"callback_url": "https://shop.example/paid"})
    await pay_from_balance(engine, inv.public_id, buyer.id, "alerts-1")
    [callback] = await run_sql(engine, "SELECT id FROM outbox WHERE topic = 'callback' AND "
                                       "payload ->> 'invoice' = :i", i=inv.public_id)
    await mark_failed(engine, callback["id"], "gave up after 12 attempts: HTTP 500")
    alerts = Alerts(engine, None)
    await alerts.run()
    await alerts.run()
    # Open now (told by this run, or still open from an earlier failure of this test session).
    [latest] = await run_sql(engine, "SELECT payload ->> 'state' AS state FROM outbox WHERE "
                                     "event_type = 'operator.alert' AND payload ->> 'kind' = "
                                     "'callbacks_failing' ORDER BY id DESC LIMIT 1")
    assert latest["state"] == "open"
    start = await newest_id(engine)
    for _ in range(3):
        await Alerts(engine, None).run()
    assert await told(engine, "callbacks_failing", start) == []
