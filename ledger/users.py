"""Users: Telegram people who buy and sell."""

from __future__ import annotations

from ledger.db import Executor, fetch_one
from ledger.errors import UserNotFound
from ledger.ids import new_deposit_code
from ledger.models import User
from ledger.text import clean_line

SUPPORTED_LANGUAGES = ("en", "ru")
NAME_MAX = 64  # Telegram's own limit for a first or last name


def _language(code: str | None) -> str:
    lang = (code or "en").split("-")[0].lower()
    return lang if lang in SUPPORTED_LANGUAGES else "en"


def _name(raw: str | None) -> str | None:
    # Shown to sellers: no bidi overrides or invisible characters (as for titles).
    name = clean_line(raw or "")[:NAME_MAX].strip()
    return name or None


async def ensure_user(
    db: Executor, telegram_id: int, username: str | None = None, language: str | None = None,
    first_name: str | None = None, last_name: str | None = None,
) -> User:
    """Get or create the user for a Telegram id, refreshing username, language and name.

    Telegram sends `first_name` with every update and omits `last_name` when there is none:
    so a given first name replaces both (a removed last name is cleared), while a call without
    one (operator tools, tests) leaves the stored name alone."""
    row = await fetch_one(
        db,
        """
        INSERT INTO users (telegram_id, username, language, deposit_code, first_name, last_name)
        VALUES (:tg, :username, :language, :code, :first, :last)
        ON CONFLICT (telegram_id) DO UPDATE
           SET username = coalesce(EXCLUDED.username, users.username),
               language = CASE WHEN :language_given THEN EXCLUDED.language ELSE users.language END,
               first_name = CASE WHEN :name_given THEN EXCLUDED.first_name
                                 ELSE users.first_name END,
               last_name = CASE WHEN :name_given THEN EXCLUDED.last_name
                                ELSE users.last_name END
        RETURNING *
        """,
        tg=telegram_id,
        username=username,
        language=_language(language),
        language_given=language is not None,
        code=new_deposit_code(),
        first=_name(first_name),
        last=_name(last_name),
        name_given=first_name is not None,
    )
    assert row is not None
    return User.from_row(row)


async def get_user(db: Executor, user_id: int) -> User:
    row = await fetch_one(db, "SELECT * FROM users WHERE id = :id", id=user_id)
    if row is None:
        raise UserNotFound(str(user_id))
    return User.from_row(row)


async def find_user_by_telegram(db: Executor, telegram_id: int) -> User | None:
    row = await fetch_one(db, "SELECT * FROM users WHERE telegram_id = :tg", tg=telegram_id)
    return None if row is None else User.from_row(row)
