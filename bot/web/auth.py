"""Who is asking: Telegram Mini App init data (buyers), and the pay page's guest cookie.

Init data is checked with aiogram's `safe_parse_webapp_init_data` (the HMAC Telegram signs it
with) and, because that helper does not, against a maximum age of its `auth_date`: a leaked
init data string must not pay invoices forever.

The guest cookie carries the browser's secret guest key and the payer tag the ledger bound to
it (ledger/payers.py); only that browser is shown what was paid with its tag and the link
that proves it in Telegram (see bot/web/claims.py).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC
from functools import lru_cache

from aiogram.utils.web_app import WebAppUser, safe_parse_webapp_init_data

MAX_INIT_DATA = 4096  # real init data is well under 1 KB
MAX_TELEGRAM_ID = 2**63 - 1  # Telegram ids fit a signed 64-bit integer; so does our column
CLOCK_SKEW = 60  # seconds an auth_date may lie in the future (clock drift)


class AuthError(Exception):
    """Init data is missing, forged, malformed or too old. `code` goes into the 401 body."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


@dataclass(frozen=True, slots=True)
class MiniAppUser:
    telegram_id: int
    username: str | None
    language: str | None


def init_data_from_header(value: str | None) -> str | None:
    """The init data of an `Authorization: tma <initData>` header, None when absent."""
    if not value:
        return None
    scheme, _, data = value.partition(" ")
    if scheme.lower() != "tma":
        raise AuthError("bad_auth_scheme", "use 'Authorization: tma <initData>'")
    return data.strip()


def validate_init_data(
    token: str | None, init_data: str, max_age: int, now: float | None = None
) -> MiniAppUser:
    """The Telegram user of valid, fresh init data; AuthError otherwise."""
    if not token:
        raise AuthError("mini_app_disabled", "Mini App sign-in is not configured")
    if not init_data or len(init_data) > MAX_INIT_DATA:
        raise AuthError("invalid_init_data", "init data is missing or too long")
    auth_date, user = _signed(token, init_data)
    now = time.time() if now is None else now
    age = now - auth_date
    if age > max_age or age < -CLOCK_SKEW:
        raise AuthError("init_data_expired", "init data is too old; reopen the Mini App")
    if user is None:
        raise AuthError("invalid_init_data", "init data carries no user")
    if not 0 < user.telegram_id <= MAX_TELEGRAM_ID:  # signed, but no Telegram id: refuse
        raise AuthError("invalid_init_data", "init data carries an impossible user id")
    return user


@lru_cache(maxsize=4096)
def _signed(token: str, init_data: str) -> tuple[float, MiniAppUser | None]:
    """auth_date and user of init data whose signature is valid; AuthError otherwise (not
    remembered). Remembered per exact string: a Mini App sends the same init data with every
    request (status polls, payments), and checking and parsing it (parse_qsl twice, pydantic
    models) cost more CPU than the rest of a payment request. The age is checked on each use."""
    try:
        data = safe_parse_webapp_init_data(token, init_data)
    except ValueError:  # bad signature, or a signed payload that does not parse
        raise AuthError("invalid_init_data", "init data signature is not valid") from None
    auth_date = data.auth_date
    if auth_date.tzinfo is None:
        auth_date = auth_date.replace(tzinfo=UTC)
    user: WebAppUser | None = data.user
    found = None if user is None else MiniAppUser(user.id, user.username, user.language_code)
    return auth_date.timestamp(), found


# --- guest cookie -------------------------------------------------------------------------

GUEST_COOKIE = "pb_guest"
_KEY_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_TAG_RE = re.compile(r"[0-9A-Z]{5}")


@dataclass(frozen=True, slots=True)
class GuestCookie:
    """What a valid guest cookie says: this browser's secret key and its payer tag."""

    guest_key: str
    tag: str


class CookieSigner:
    """Signs `<guest_key>.<tag>` for one invoice; tampering or another invoice's cookie fails.

    The guest key is random and secret (HttpOnly): it is what the ledger binds the guest's tag
    to, so only this browser can see what was paid with that tag. No time is in it: who may
    claim is decided by the tag a transfer carried, never by when a cookie was issued."""

    def __init__(self, secret: bytes) -> None:
        self._key = hashlib.sha256(b"paybot guest cookie\0" + secret).digest()

    def _sign(self, invoice: str, body: str) -> str:
        msg = f"{invoice}.{body}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()[:32]

    @staticmethod
    def new_guest_key() -> str:
        return secrets.token_urlsafe(18)  # 24 characters, 144 bits

    def issue(self, invoice: str, guest: GuestCookie) -> str:
        body = f"{guest.guest_key}.{guest.tag}"
        return f"{body}.{self._sign(invoice, body)}"

    def read(self, invoice: str, cookie: str | None) -> GuestCookie | None:
        """The guest key and tag of a valid cookie for `invoice`; None for missing or bad ones."""
        # Cookies are client text: compare_digest refuses non-ASCII str, and the patterns are
        # ASCII-only, so anything not ASCII is simply not our cookie.
        if not cookie or len(cookie) > 120 or not cookie.isascii():
            return None
        body, _, sig = cookie.rpartition(".")
        guest_key, _, tag = body.partition(".")
        if not _KEY_RE.fullmatch(guest_key) or not _TAG_RE.fullmatch(tag):
            return None
        if not hmac.compare_digest(sig, self._sign(invoice, body)):
            return None
        return GuestCookie(guest_key, tag)
