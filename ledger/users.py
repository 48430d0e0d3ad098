"""Users: Telegram people who buy and sell."""

from __future__ import annotations

from ledger.db import Executor, fetch_one
from ledger.errors import UserNotFound
from ledger.ids import new_deposit_code, normalize_code
from ledger.models import User

SUPPORTED_LANGUAGES = ("en", "ru")


def _language(code: str | None) -> str:
    lang = (code or "en").split("-")[0].lower()
    return lang if lang in SUPPORTED_LANGUAGES else "en"


async def ensure_user(
    db: Executor, telegram_id: int, username: str | None = None, language: str | None = None
) -> User:
    """Get or create the user for a Telegram id, refreshing username and language."""
    row = await fetch_one(
        db,
        """
        INSERT INTO users (telegram_id, username, language, deposit_code)
        VALUES (:tg, :username, :language, :code)
        ON CONFLICT (telegram_id) DO UPDATE
           SET username = coalesce(EXCLUDED.username, users.username),
               language = CASE WHEN :language_given THEN EXCLUDED.language ELSE users.language END
        RETURNING *
        """,
        tg=telegram_id,
        username=username,
        language=_language(language),
        language_given=language is not None,
        code=new_deposit_code(),
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


async def find_user_by_deposit_code(db: Executor, code: str) -> User | None:
    row = await fetch_one(
        db, "SELECT * FROM users WHERE deposit_code = :code", code=normalize_code(code)
    )
    return None if row is None else User.from_row(row)
