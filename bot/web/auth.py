"""Who is asking: Telegram Mini App init data (buyers), and the pay page's guest cookie.

Init data is checked with aiogram's `safe_parse_webapp_init_data` (the HMAC Telegram signs it
with) and, because that helper does not, against a maximum age of its `auth_date`: a leaked
init data string must not pay invoices forever.

The guest cookie marks the browser that had this invoice's page open before a guest payment
arrived; only that browser is shown the guest's claim link (see bot/web/claims.py).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
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


class CookieSigner:
    """Signs `<issued>.<nonce>` for one invoice; tampering or another invoice's cookie fails."""

    def __init__(self, secret: bytes) -> None:
        self._key = hashlib.sha256(b"paybot guest cookie\0" + secret).digest()

    def _sign(self, invoice: str, body: str) -> str:
        msg = f"{invoice}.{body}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()[:32]

    def issue(self, invoice: str, now: float | None = None) -> str:
        body = f"{int(time.time() if now is None else now)}.{secrets.token_urlsafe(9)}"
        return f"{body}.{self._sign(invoice, body)}"

    def issued_at(self, invoice: str, cookie: str | None) -> datetime | None:
        """When a valid cookie for `invoice` was issued; None for missing or bad ones."""
        # Cookies are client text: compare_digest refuses non-ASCII str, and isdigit() accepts
        # other scripts' digits, so anything not ASCII is simply not our cookie.
        if not cookie or len(cookie) > 100 or not cookie.isascii():
            return None
        body, _, sig = cookie.rpartition(".")
        issued, _, _nonce = body.partition(".")
        if not issued.isdigit() or not hmac.compare_digest(sig, self._sign(invoice, body)):
            return None
        return datetime.fromtimestamp(int(issued), UTC)
