"""A callback worker in its own process, for the kill-and-restart test:
`python -m tests.api.callback_worker DATABASE_URL [LEASE_SECONDS]` makes one delivery pass
(without LEASE_SECONDS: the production setting, API_CALLBACK_LEASE_SECONDS)."""

from __future__ import annotations

import asyncio
import sys

from bot.settings import ApiSettings
from ledger.core import Ledger
from ledger.postgres import make_engine
from tests.api.conftest import RENDER, LoopbackOnlySender
from watchers.callbacks import deliver_due


async def main(url: str, lease: float) -> None:
    engine = make_engine(url, pool_size=2)
    sender = LoopbackOnlySender(allow_private=True, timeout=60.0)
    try:
        print("claiming", flush=True)
        await deliver_due(Ledger(engine), sender, RENDER, limit=100, lease_seconds=lease)
    finally:
        await sender.close()
        await engine.dispose()


if __name__ == "__main__":
    lease = float(sys.argv[2]) if len(sys.argv) > 2 else ApiSettings().callback_lease_seconds
    asyncio.run(main(sys.argv[1], lease))
