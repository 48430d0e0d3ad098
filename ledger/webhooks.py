"""A seller's webhook settings: the default callback URL and the secret that signs every
callback."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ledger.db import Executor, fetch_all, fetch_one
from ledger.errors import (
    InvalidWebhookUrl,
)

WEBHOOK_URL_MAX = 512

@dataclass(frozen=True, slots=True)
class WebhookSettings:
    user_id: int
    url: str | None  # the default callback URL for invoices without their own
    secret: str  # signs every callback to this seller

_ENSURE_WEBHOOKS = """
WITH ins AS (INSERT INTO seller_webhooks (user_id)
             SELECT u FROM unnest(CAST(:ids AS bigint[])) AS u
             ON CONFLICT (user_id) DO NOTHING
             RETURNING user_id, url, secret)
SELECT user_id, url, secret FROM ins
UNION ALL
SELECT user_id, url, secret FROM seller_webhooks WHERE user_id = ANY(CAST(:ids AS bigint[]))
"""

async def webhooks_of(db: Executor, seller_ids: Iterable[int]) -> dict[int, WebhookSettings]:
    """Webhook settings per seller, creating each missing seller's secret on first need."""
    ids = sorted(set(seller_ids))
    found: dict[int, WebhookSettings] = {}
    for _attempt in range(2):  # a row inserted concurrently is invisible to this snapshot once
        rows = await fetch_all(db, _ENSURE_WEBHOOKS, ids=[i for i in ids if i not in found])
        found.update({r["user_id"]: WebhookSettings(r["user_id"], r["url"], r["secret"])
                      for r in rows})
        if len(found) == len(ids):
            break
    return found

async def get_webhook(db: Executor, seller_user_id: int) -> WebhookSettings:
    return (await webhooks_of(db, [seller_user_id]))[seller_user_id]

def check_webhook_url(url: str) -> str:
    """The URL's syntax (http or https, a host, not too long); network checks happen when a
    callback is sent (watchers/callbacks.py)."""
    from urllib.parse import urlsplit

    url = url.strip()
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise InvalidWebhookUrl("it does not parse as a URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidWebhookUrl("it must be an http(s) URL with a host")
    if len(url) > WEBHOOK_URL_MAX:
        raise InvalidWebhookUrl(f"it is longer than {WEBHOOK_URL_MAX} characters")
    return url

async def set_webhook_url(db: Executor, seller_user_id: int, url: str | None) -> WebhookSettings:
    """Set (or, with None, clear) the seller's default callback URL."""
    clean = check_webhook_url(url) if url else None
    row = await fetch_one(
        db,
        """
        INSERT INTO seller_webhooks (user_id, url) VALUES (:user, :url)
        ON CONFLICT (user_id) DO UPDATE SET url = EXCLUDED.url, updated_at = now()
        RETURNING user_id, url, secret
        """,
        user=seller_user_id, url=clean,
    )
    assert row is not None
    return WebhookSettings(row["user_id"], row["url"], row["secret"])

async def rotate_webhook_secret(db: Executor, seller_user_id: int) -> WebhookSettings:
    """A new signing secret; callbacks sent from now on are signed with it."""
    row = await fetch_one(
        db,
        """
        INSERT INTO seller_webhooks (user_id) VALUES (:user)
        ON CONFLICT (user_id) DO UPDATE
           SET secret = paybot_new_webhook_secret(), updated_at = now()
        RETURNING user_id, url, secret
        """,
        user=seller_user_id,
    )
    assert row is not None
    return WebhookSettings(row["user_id"], row["url"], row["secret"])
