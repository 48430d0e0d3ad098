"""`paybot demo`: a newcomer without a Telegram token gets a seller, a buyer and two invoices to
look at, in a data dir of its own; running it again shows the same demo."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

from ledger.invariants import check_invariants
from ledger.postgres import embedded_postgres, make_engine
from tests.conftest import run_sql

PUBLIC = "https://demo.example.test"


async def _demo(data_dir: Path) -> tuple[int, str]:
    env = os.environ | {
        "WEB_PUBLIC_URL": PUBLIC,
        # The demo never uses a configured database: this one does not even exist.
        "DATABASE_URL": "postgresql://nobody:@/nowhere?host=/nonexistent",
        "TELEGRAM_BOT_TOKEN": "",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "demo", "--no-serve", "--data-dir", str(data_dir),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_demo_from_scratch_and_again(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo-data"
    code, out = await _demo(data_dir)
    assert code == 0, out
    urls = re.findall(rf"{re.escape(PUBLIC)}/pay/([0-9A-Z]{{13}})", out)
    assert len(urls) == 2, out
    assert "[paid] paid from the buyer's balance" in out
    assert "[pending] waiting for TON, comment INV-" in out
    assert "paybot admin balance 1000002" in out and "paybot admin token 1000001" in out
    assert "balance 37.50 Liquid $" in out  # the buyer, after paying 12.50 of 50.00

    code, again = await _demo(data_dir)
    assert code == 0, again
    assert re.findall(rf"{re.escape(PUBLIC)}/pay/([0-9A-Z]{{13}})", again) == urls
    assert "balance 37.50 Liquid $" in again  # nothing issued or paid twice

    with embedded_postgres(data_dir) as url:
        engine = make_engine(url, pool_size=1)
        try:
            rows = await run_sql(
                engine, "SELECT i.public_id, i.status, i.title, count(p.id) AS payments "
                        "FROM invoices i LEFT JOIN payments p ON p.invoice_id = i.id "
                        "GROUP BY i.id ORDER BY i.id")
            assert rows == [
                {"public_id": urls[0], "status": "paid", "title": "Coffee beans", "payments": 1},
                {"public_id": urls[1], "status": "pending", "title": "Tea sampler",
                 "payments": 0},
            ]
            assert await check_invariants(engine) == []
        finally:
            await engine.dispose()
