"""Who may be in a paid channel: the reads behind join requests and removals.

A Telegram person is entitled to a channel while any subscription of theirs to a plan granting
that channel is entitled (trialing, active, or past due within its grace period) — the rule of
`Subscription.entitled`. Read at the moment of the decision (a join request, a removal about to
be sent), never cached: a payment a second ago counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from ledger.db import Executor, fetch_all, fetch_one

# Driven from the person (users.telegram_id, then their subscriptions, then each plan by its
# key): a handful of index lookups however many subscribers the channel has.
_ENTITLED = """
SELECT EXISTS (
    SELECT 1
      FROM users u
      JOIN subscriptions s ON s.subscriber_id = u.id
      JOIN plans p ON p.id = s.plan_id
     WHERE u.telegram_id = :telegram_id
       AND p.channel_chat_id = :chat_id
       AND (s.status IN ('trialing', 'active')
            OR (s.status = 'past_due' AND s.grace_until > :now))
) AS entitled
"""


@dataclass(frozen=True, slots=True)
class ChannelPlan:
    """A plan on sale that grants the channel (what a refused person is offered)."""

    public_id: str
    name: str


async def entitled_to_channel(db: Executor, chat_id: int, telegram_id: int,
                              now: datetime | None = None) -> bool:
    """Whether the person with this Telegram id may be a member of the channel at `now`."""
    row = await fetch_one(db, _ENTITLED, chat_id=chat_id, telegram_id=telegram_id,
                          now=now or datetime.now(UTC))
    return bool(row and row["entitled"])


async def plans_of_channel(db: Executor, chat_id: int, limit: int = 5) -> list[ChannelPlan]:
    """The active plans granting the channel, oldest first (at most `limit`)."""
    rows = await fetch_all(
        db, "SELECT public_id, name FROM plans WHERE channel_chat_id = :chat_id "
            "AND status = 'active' ORDER BY id LIMIT :limit", chat_id=chat_id, limit=limit)
    return [ChannelPlan(r["public_id"], r["name"]) for r in rows]
