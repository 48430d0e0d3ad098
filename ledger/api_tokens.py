"""A seller's API tokens: issued once (only a hash is kept), listed, revoked, and the
lookup every API request authenticates with."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from ledger.db import Executor, fetch_all, fetch_one
from ledger.errors import (
    MAX_ACTIVE_TOKENS,
    TooManyTokens,
)

TOKEN_PREFIX = "pbk_"

_TOKEN_RE = re.compile(r"pbk_[A-Za-z0-9_-]{43}")

@dataclass(frozen=True, slots=True)
class ApiToken:
    id: int
    user_id: int
    hint: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

@dataclass(frozen=True, slots=True)
class ApiPrincipal:
    """Who is calling: the token and the seller it belongs to."""

    token_id: int
    user_id: int

def hash_token(token: str) -> bytes:
    # Tokens carry 256 random bits, so a plain SHA-256 is enough (no slow KDF needed).
    return hashlib.sha256(token.encode()).digest()

async def issue_token(db: Executor, seller_user_id: int) -> tuple[str, int]:
    """A new API token for the seller: (plaintext, token id). The plaintext is not stored;
    show it once."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = await fetch_one(
        db,
        """
        INSERT INTO api_tokens (user_id, token_hash, hint)
        SELECT :user, :hash, :hint
         WHERE (SELECT count(*) FROM api_tokens
                 WHERE user_id = :user AND revoked_at IS NULL) < :max
        RETURNING id
        """,
        user=seller_user_id, hash=hash_token(token), hint=token[:8], max=MAX_ACTIVE_TOKENS,
    )
    if row is None:
        raise TooManyTokens()
    return token, int(row["id"])

async def revoke_token(db: Executor, seller_user_id: int, token_id: int) -> bool:
    """Revoke one of the seller's tokens at once. False when it is not theirs or not active."""
    row = await fetch_one(
        db,
        "UPDATE api_tokens SET revoked_at = now() "
        "WHERE id = :id AND user_id = :user AND revoked_at IS NULL RETURNING id",
        id=token_id, user=seller_user_id,
    )
    return row is not None

async def list_tokens(db: Executor, seller_user_id: int) -> list[ApiToken]:
    rows = await fetch_all(
        db,
        "SELECT id, user_id, hint, created_at, last_used_at, revoked_at FROM api_tokens "
        "WHERE user_id = :user ORDER BY id",
        user=seller_user_id,
    )
    return [ApiToken(**dict(r)) for r in rows]

async def authenticate(db: Executor, token: str) -> ApiPrincipal | None:
    """The principal for an active token, else None. One round trip; last_used_at is
    refreshed at most once a minute so that reads do not all become writes."""
    if not _TOKEN_RE.fullmatch(token):
        return None
    row = await fetch_one(
        db,
        """
        WITH t AS (SELECT id, user_id, last_used_at FROM api_tokens
                    WHERE token_hash = :hash AND revoked_at IS NULL),
             touch AS (UPDATE api_tokens a SET last_used_at = now() FROM t
                        WHERE a.id = t.id AND (t.last_used_at IS NULL
                                               OR t.last_used_at < now() - interval '1 minute')
                       RETURNING a.id)
        SELECT t.id, t.user_id, (SELECT count(*) FROM touch) AS touched FROM t
        """,
        hash=hash_token(token),
    )
    return ApiPrincipal(int(row["id"]), int(row["user_id"])) if row else None
