"""A TON watcher in its own process, run until it is idle — for the kill test to SIGKILL.

    python -m tests.watchers.run_watcher --database-url URL --api-url URL [--delay S]

`--delay` sleeps after each settled transaction, so a kill can land anywhere in a run.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from decimal import Decimal

from ledger.postgres import make_engine
from ledger.transfers import ChainTransfer, TransferResult
from tests.watchers.standins import DESTINATION
from watchers.ton_sources import HttpApiSource
from watchers.ton_watcher import TonWatcher


async def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--database-url", required=True)
    p.add_argument("--api-url", required=True)
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--page-size", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=4)
    args = p.parse_args(argv)

    async def pause(transfer: ChainTransfer, result: TransferResult) -> None:
        print(f"settled {transfer.tx_hash} {result.outcome}", flush=True)
        await asyncio.sleep(args.delay)

    engine = make_engine(args.database_url, pool_size=2)
    watcher = TonWatcher(engine, HttpApiSource(args.api_url, page_size=args.page_size),
                         DESTINATION, currency="LIQ", ton_rate=Decimal("5"), on_settled=pause,
                         retry_base=0.01, retry_max=0.1, concurrency=args.concurrency)
    try:
        for _ in range(2000):
            settled = await watcher.poll_once()
            if watcher.active and settled == 0:
                print("idle", flush=True)
                return 0
            if not watcher.active:
                # A killed predecessor's session (and its lock) may take a moment to go away.
                await asyncio.sleep(0.02)
        return 1
    finally:
        await watcher.close()
        await engine.dispose()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(asyncio.run(main(sys.argv[1:])))
