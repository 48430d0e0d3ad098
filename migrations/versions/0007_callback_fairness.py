"""Callback fairness and short leases.

- `paybot_callback_endpoint(url)`: the endpoint a callback goes to (scheme and authority,
  lowercased). Claims go round-robin over endpoints and sellers, so one seller's backlog
  cannot hold the head of the queue.
- `callback_endpoints`: a circuit breaker per endpoint, shared by all workers. After a few
  consecutive failures the endpoint is skipped by claims until `open_until`, then probed with
  one event at a time until one succeeds.
- `outbox.claimed_by`: the claim a worker holds on an event. Leases are short and renewed by
  the live worker (only while its claim is current), so a crashed worker's events are due
  again within seconds.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from migrations.sql import run_script

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UPGRADE = r"""
-- 'scheme://authority' of an http(s) URL, lowercased (string functions: claims compute it for
-- every due event, and a regular expression costs several times as much).
CREATE FUNCTION paybot_callback_endpoint(url text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT lower(split_part(url, '/', 1) || '//'
                 || split_part(split_part(split_part(url, '/', 3), '?', 1), '#', 1))
$$;

CREATE TABLE callback_endpoints (
    endpoint    text PRIMARY KEY,
    failures    int NOT NULL DEFAULT 0 CHECK (failures >= 0),  -- consecutive, since a success
    open_until  timestamptz NOT NULL DEFAULT '-infinity',      -- claims skip it until then
    updated_at  timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE outbox ADD COLUMN claimed_by uuid;
"""

DOWNGRADE = r"""
ALTER TABLE outbox DROP COLUMN claimed_by;
DROP TABLE callback_endpoints;
DROP FUNCTION paybot_callback_endpoint(text);
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
