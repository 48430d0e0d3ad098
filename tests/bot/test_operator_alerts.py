"""Operator alerts (watchers/alerts.py) reach every operator in their language: one message
when an incident starts, one when it clears."""

from __future__ import annotations

from aiogram import Bot

from bot.telegram import Notifier
from ledger.core import Ledger
from watchers.alerts import Alerts


class Watcher:
    def __init__(self, lag: float) -> None:
        self.lag, self.behind = lag, 2

    def lag_seconds(self, now: float | None = None) -> float | None:
        return self.lag


async def test_an_incident_is_told_when_it_starts_and_when_it_clears(
    person, engine, bot: Bot, bot_api  # type: ignore[no-untyped-def]
) -> None:
    await Notifier(Ledger(engine), bot).deliver_due()  # what other tests left
    en, ru = await person(), await person(language="ru")
    notifier = Notifier(Ledger(engine), bot, operators=(en.id, ru.id))
    watcher = Watcher(lag=1200.0)
    alerts = Alerts(engine, watcher, lag_threshold=300)
    await alerts.run()
    await notifier.deliver_due()
    await alerts.run()  # still lagging: nothing new
    await notifier.deliver_due()
    # (Other kinds may be open from other tests' leftovers: only the watcher's are counted.)
    def about_watcher(chat: int) -> list[str]:
        return [m.plain for m in bot_api.messages(chat) if "TON" in m.plain]

    [opened] = about_watcher(en.id)
    assert opened == ("🚨 Alert: the TON watcher is behind\n"
                            "1200 s behind, 2 transaction(s) not settled")
    [opened_ru] = about_watcher(ru.id)
    assert opened_ru.startswith("🚨 Тревога: наблюдатель TON отстаёт\n")

    watcher.lag, watcher.behind = 1.0, 0
    await alerts.run()
    await notifier.deliver_due()
    assert about_watcher(en.id)[-1] == (
        "✅ Cleared: the TON watcher is behind\n1 s behind, 0 transaction(s) not settled")
    assert len(about_watcher(ru.id)) == 2
