"""The process's one `Links` (pay page base URL and bot username), made from the settings.

The composition root makes it once and hands the same object to the pay pages, the claims, the
seller API, the callbacks and the bot; the bot corrects `bot_username` from getMe, so a web
buyer's "Log in and pay" opens the same bot that the chat's own links open.
"""

from __future__ import annotations

from bot.settings import Settings
from ledger.sellers import Links


def links_from_settings(settings: Settings) -> Links:
    return Links(settings.web.public_url.rstrip("/"),
                 settings.telegram.bot_username.lstrip("@"))
