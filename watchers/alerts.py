"""The alerts job: operators are told in Telegram when something is stuck, once per incident.

Every run (each minute) looks at three things:
- `watcher_lag`: the TON watcher has not settled everything it saw for more than the threshold
  (METRICS_LAG_ALERT_SECONDS; a source that stays down counts too). A process whose watcher
  stands by (another replica follows the chain) has no opinion.
- `callbacks_failing`: a seller callback still undelivered after failed attempts an hour after
  it was queued, or one given up on in the last hour.
- `invariants`: `paybot admin check` finds a violation (checked at most every
  INVARIANTS_EVERY_SECONDS: the checks read the whole ledger).

An incident is told once when it starts and once when it clears. Its state lives in the outbox
itself: an `operator.alert` event {kind, state: open|cleared, detail} is written only when the
latest one of that kind says otherwise (under a transaction-scoped advisory lock, so replicas
running the job together write it once). No new table; the state survives restarts.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.db import fetch_one, transaction
from ledger.invariants import check_invariants
from watchers.jobs import JOB_DEFAULTS

log = logging.getLogger(__name__)

EVENT = "operator.alert"
INVARIANTS_EVERY_SECONDS = 900.0
OPEN, CLEARED = "open", "cleared"
_LOCK_KEY = int.from_bytes(hashlib.sha256(b"paybot.alerts").digest()[:8], "big", signed=True)

# The latest state of the kind (none yet: cleared), and the new one written only if it differs.
# The lookup reads a partial index of the operator alerts alone (migration 0018), and this
# process remembers the state (see Alerts._known).
_TRANSITION = """
INSERT INTO outbox (topic, event_type, payload)
SELECT 'telegram', :event, jsonb_build_object('kind', CAST(:kind AS text),
                                              'state', CAST(:state AS text),
                                              'detail', CAST(:detail AS text))
 WHERE coalesce((SELECT payload ->> 'state' FROM outbox
                  WHERE event_type = 'operator.alert'  -- literal: its partial index (0018)
                    AND payload ->> 'kind' = :kind
                  ORDER BY id DESC LIMIT 1), 'cleared') <> :state
RETURNING id
"""

_CALLBACKS_FAILING = """
SELECT (SELECT count(*) FROM outbox WHERE topic = 'callback' AND delivered_at IS NULL
           AND failed_at IS NULL AND last_error IS NOT NULL
           AND created_at < now() - interval '1 hour') AS stuck,
       (SELECT count(*) FROM outbox WHERE topic = 'callback'
           AND failed_at > now() - interval '1 hour') AS given_up
"""


class LagSource(Protocol):
    behind: int

    def lag_seconds(self, now: float | None = None) -> float | None: ...


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    open: bool
    detail: str


async def record_state(engine: AsyncEngine, kind: str, state: str, detail: str) -> bool:
    """Write the incident's new state unless it is already the latest; True when written."""
    async with transaction(engine) as conn:
        await fetch_one(conn, "SELECT pg_advisory_xact_lock(:k)", k=_LOCK_KEY)
        row = await fetch_one(conn, _TRANSITION, event=EVENT, kind=kind, state=state,
                              detail=detail[:1000])
    return row is not None


async def callbacks_finding(engine: AsyncEngine) -> Finding:
    row = await fetch_one(engine, _CALLBACKS_FAILING)
    stuck, given_up = (row["stuck"], row["given_up"]) if row else (0, 0)
    return Finding("callbacks_failing", bool(stuck or given_up),
                   f"{stuck} undelivered for over an hour, {given_up} given up in the last hour")


async def invariants_finding(engine: AsyncEngine) -> Finding:
    violations = await check_invariants(engine)
    return Finding("invariants", bool(violations),
                   "\n".join(violations[:5]) + (f"\n… {len(violations) - 5} more"
                                                if len(violations) > 5 else ""))


def lag_finding(watcher: LagSource | None, threshold: float) -> Finding | None:
    lag = watcher.lag_seconds() if watcher is not None else None
    if watcher is None or lag is None:
        return None  # this process does not follow the chain: no opinion
    return Finding("watcher_lag", lag > threshold,
                   f"{lag:.0f} s behind, {watcher.behind} transaction(s) not settled")


@dataclass
class Alerts:
    engine: AsyncEngine
    watcher: LagSource | None = None
    lag_threshold: float = 300.0
    invariants_every: float = INVARIANTS_EVERY_SECONDS
    _known: dict[str, str] = field(default_factory=dict)  # kind -> state last seen written
    _invariants_at: float = float("-inf")

    async def run(self) -> list[Finding]:
        """One run; returns the findings whose state was written now (told to operators)."""
        findings: list[Finding | None] = [lag_finding(self.watcher, self.lag_threshold)]
        findings.append(await callbacks_finding(self.engine))
        if time.monotonic() - self._invariants_at >= self.invariants_every:
            findings.append(await invariants_finding(self.engine))
            self._invariants_at = time.monotonic()
        return await self._record([f for f in findings if f is not None])

    async def _record(self, findings: Sequence[Finding]) -> list[Finding]:
        told = []
        for f in findings:
            state = OPEN if f.open else CLEARED
            if self._known.get(kind := f.kind) == state:
                continue  # nothing changed as far as this process knows: no write
            if await record_state(self.engine, kind, state, f.detail):
                told.append(f)
                log.warning("alert %s %s: %s", kind, state, f.detail)
            self._known[kind] = state
        return told

    async def job(self) -> None:
        """The scheduled entry point: logs a failure, never raises into the scheduler."""
        try:
            await self.run()
        except Exception:
            log.exception("alerts job failed")


def schedule_alerts(scheduler: AsyncIOScheduler, engine: AsyncEngine, *,
                    watcher: LagSource | None, interval_seconds: float,
                    lag_threshold: float) -> Alerts:
    alerts = Alerts(engine, watcher, lag_threshold=lag_threshold)
    scheduler.add_job(alerts.job, "interval", seconds=interval_seconds, id="alerts",
                      **JOB_DEFAULTS)
    return alerts
