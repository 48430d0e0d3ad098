"""The process's one `Links` (pay page base URL and bot username), made from the settings.

The composition root makes it once and hands the same object to the pay pages, the claims, the
seller API, the callbacks and the bot; the bot corrects `bot_username` from getMe, so a web
buyer's "Log in and pay" opens the same bot that the chat's own links open.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.settings import Settings


@dataclass(slots=True)
class Links:
    """Where an invoice is paid: the pay page's base URL and the bot's username.

    One instance per process, made at the composition root and shared by every edge (pay
    page, claims, seller API, callbacks, the bot): the bot sets `bot_username` from getMe, and
    every link made after that names the bot people really talk to."""

    public_url: str
    bot_username: str


def links_from_settings(settings: Settings) -> Links:
    return Links(settings.web.public_url.rstrip("/"),
                 settings.telegram.bot_username.lstrip("@"))
