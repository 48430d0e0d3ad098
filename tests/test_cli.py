"""The operator's command line, run as the operator runs it."""

import asyncio
import os
import sys

from ledger.accounts import balance
from ledger.migrate import upgrade
from ledger.postgres import make_engine
from ledger.users import ensure_user


async def paybot(database_url: str, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", *args,
        env=os.environ | {"DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_credit_balance_and_check(database_url, engine, make_user) -> None:
    user = await make_user()
    code, out = await paybot(database_url, "admin", "credit", str(user.telegram_id), "12.50",
                             "--reason", "welcome bonus", "--reference", "cli-1")
    assert code == 0, out
    assert "12.50" in out
    code, out = await paybot(database_url, "admin", "credit", str(user.telegram_id), "12.50",
                             "--reason", "welcome bonus", "--reference", "cli-1")
    assert code == 0 and "nothing changed" in out
    assert await balance(engine, user.id) == 1250
    code, out = await paybot(database_url, "admin", "balance", str(user.telegram_id))
    assert code == 0 and "LIQ\t12.50" in out
    code, out = await paybot(database_url, "admin", "check")
    assert code == 0 and "ledger OK" in out


async def test_bad_operator_input_changes_nothing(database_url, engine, make_user) -> None:
    user = await make_user(balance=100)
    for amount in ("abc", "-5", "0", "1e9999", "1.001"):
        code, out = await paybot(database_url, "admin", "credit", str(user.telegram_id), amount,
                                 "--reason", "x")
        assert code == 2 and "invalid_amount" in out, out
    code, out = await paybot(database_url, "admin", "debit", str(user.telegram_id), "5.00",
                             "--reason", "too much")
    assert code == 2 and "insufficient_funds" in out
    code, out = await paybot(database_url, "admin", "credit", "999", "1", "--reason", "x")
    assert code == 1 and "no user" in out
    assert await balance(engine, user.id) == 100


async def test_check_fails_and_names_the_broken_invariant(scratch_database) -> None:
    url = await scratch_database()
    await upgrade(url)
    engine = make_engine(url, pool_size=1)
    try:
        user = await ensure_user(engine, 42)
        async with engine.connect() as conn:  # corrupt a balance behind the ledger's back
            await conn.exec_driver_sql(
                f"INSERT INTO accounts (user_id, currency, balance) VALUES ({user.id}, 'LIQ', 5)"
            )
    finally:
        await engine.dispose()
    code, out = await paybot(url, "admin", "check")
    assert code == 1
    assert "balance_equals_applied_entries" in out


def test_operator_commands_do_not_load_the_bot() -> None:
    """`paybot admin …` imports the ledger, not aiogram, the web app or the watchers' chain
    client: importing those took seconds per call (issue 11, "a fast operator CLI")."""
    import subprocess
    import sys

    probe = ("import sys, bot.cli; heavy = sorted(m for m in ('aiogram', 'bot.app', 'pytoniq',"
             " 'bot.telegram') if m in sys.modules); print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == ""
