"""`paybot admin transfers [--unmatched]` and `paybot admin resolve`, run as the operator
would: the real CLI (once as a process, then its `main` in a thread, which is faster) against
the scenario's database."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from bot.cli import main
from ledger.accounts import balance
from tests.watchers.conftest import HASH_OF_CASE, Toncenter, World
from tests.watchers.test_ledger_transfers import settle_fixtures

ROOT = Path(__file__).resolve().parents[2]


async def subprocess_paybot(world: World, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "DATABASE_URL": world.url, "LEDGER_TON_RATE": "5",
           "LEDGER_CURRENCY": "LIQ", "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "admin", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_operator_lists_and_resolves_transfers(
        world: World, toncenter: Toncenter, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    await settle_fixtures(world, toncenter)
    code, out, _ = await subprocess_paybot(world, "transfers")  # the real entry point
    assert code == 0 and len(out.splitlines()) == 21  # incoming: not deploy/bounce_send/outgoing

    monkeypatch.setenv("DATABASE_URL", world.url)
    monkeypatch.setenv("LEDGER_TON_RATE", "5")
    monkeypatch.setenv("LEDGER_CURRENCY", "LIQ")

    async def paybot(_: World, *args: str) -> tuple[int, str, str]:
        try:
            code = await asyncio.to_thread(main, ["admin", *args])
        except SystemExit as e:  # argparse
            code = int(e.code or 0)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    assert "'INV-7Q4M2X9KTBHWA'" in out and "deposit" in out and "(binary)" in out
    code, out, _ = await paybot(world, "transfers", "--unmatched")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 10
    wrong = next(line for line in lines if HASH_OF_CASE["wrong_comment"] in line)
    assert "unmatched" in wrong and "held 1 TON (unmatched)" in wrong

    tx = HASH_OF_CASE["no_comment"]
    code, out, err = await paybot(world, "resolve", tx, "--credit", "1003", "--note", "ticket 7")
    assert code == 0, err
    assert "0.3 TON credited to Telegram user 1003: 1.50 LIQ" in out
    assert await balance(world.engine, world.depositor.id) == 1500 + 150
    code, out, err = await paybot(world, "resolve", tx, "--credit", "1003")  # once
    assert code == 2 and "nothing_held" in err
    assert await balance(world.engine, world.depositor.id) == 1500 + 150

    code, out, err = await paybot(world, "resolve", HASH_OF_CASE["wrong_comment"],
                                  "--apply", "INV-8B2D4F6H8K0MP")
    assert code == 0, err
    assert "1 TON applied to INV-8B2D4F6H8K0MP: paid, invoice paid" in out
    code, out, err = await paybot(world, "resolve", HASH_OF_CASE["late"],
                                  "--refund-note", "sent back in 4f3c...")
    assert code == 0 and "recorded as refunded" in out
    code, out, _ = await paybot(world, "transfers", "--unmatched")
    assert len(out.splitlines()) == 7

    # One invoice's story: 0.99 TON, then the rest, paid.
    code, out, err = await paybot(world, "transfers", "--invoice", "inv-5t6v8w2xyz4ab")
    head, *rows = out.splitlines()
    assert code == 0, err
    assert head.startswith("INV-5T6V8W2XYZ4AB\tpaid\t") and "received 1 TON" in head
    assert [r.split("\t")[3] for r in rows if "\t" in r] == ["partial", "paid"]
    code, _, err = await paybot(world, "transfers", "--invoice", "nope")
    assert code == 2 and "invoice_not_found" in err

    # Bad input: a clear message, a non-zero exit, nothing changed.
    code, _, err = await paybot(world, "resolve", "zz", "--refund-note", "x")
    assert code == 2 and "transfer_not_found" in err
    code, _, err = await paybot(world, "resolve", HASH_OF_CASE["duplicate"], "--credit", "4242")
    assert code == 1 and "no user with Telegram id 4242" in err
    code, _, err = await paybot(world, "resolve", HASH_OF_CASE["duplicate"])
    assert code == 2 and "one of the arguments" in err  # argparse: pick one action
    code, _, err = await paybot(world, "check")
    assert code == 0
