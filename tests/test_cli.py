"""The operator's command line. One test runs it as the operator does (`python -m bot.cli`, its
own process: exit code and output cross the process boundary); the others call the same
`main(argv)` in-process, where the subject is what a command does, not the process."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable

import pytest

from bot.cli import main
from ledger.accounts import balance
from ledger.migrate import upgrade
from ledger.postgres import make_engine
from ledger.users import ensure_user
from tests.conftest import run_sql

Paybot = Callable[..., Awaitable[tuple[int, str]]]


async def paybot_process(database_url: str, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", *args,
        env=os.environ | {"DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


@pytest.fixture
def paybot(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Paybot:
    """`paybot <args>` against `database_url`, in this process: (exit code, stdout + stderr)."""

    async def run(database_url: str, *args: str) -> tuple[int, str]:
        monkeypatch.setenv("DATABASE_URL", database_url)
        capsys.readouterr()
        try:  # main() runs its own event loop: a thread of its own
            code = await asyncio.to_thread(main, list(args))
        except SystemExit as e:  # argparse
            code = int(e.code or 0)
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    return run


async def test_credit_balance_and_check(database_url, engine, make_user, paybot) -> None:
    user = await make_user()
    code, out = await paybot_process(database_url, "admin", "credit", str(user.telegram_id),
                                     "12.50", "--reason", "welcome bonus", "--reference", "cli-1")
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


async def test_bad_operator_input_changes_nothing(database_url, engine, make_user,
                                                  paybot) -> None:
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


async def test_check_fails_and_names_the_broken_invariant(scratch_database, paybot) -> None:
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


async def _revisions(url: str) -> list[str] | None:
    engine = make_engine(url, pool_size=1)
    try:
        if not (await run_sql(engine, "SELECT to_regclass('alembic_version') AS t"))[0]["t"]:
            return None
        rows = await run_sql(engine, "SELECT version_num FROM alembic_version")
        return sorted(str(r["version_num"]) for r in rows)
    finally:
        await engine.dispose()


async def test_read_only_commands_do_not_migrate(scratch_database, paybot) -> None:
    """An operator looking (balance, check, transfers, callbacks, token --list) never changes
    the schema under a running paybot: on a database that is not at this code's head the
    command says so, names `paybot migrate`, and leaves the database as it was."""
    from alembic.script import ScriptDirectory

    from ledger.migrate import alembic_config

    looks = [("balance", "42"), ("check",), ("transfers",), ("callbacks",),
             ("token", "42", "--list")]
    url = await scratch_database()
    for look in looks:  # an empty database: nothing is created
        code, out = await paybot(url, "admin", *look)
        assert code == 3 and "no paybot schema" in out and "paybot migrate" in out, (look, out)
    assert await _revisions(url) is None

    script = ScriptDirectory.from_config(alembic_config(url))
    [head] = script.get_heads()
    before = script.get_revision(head).down_revision
    assert isinstance(before, str)
    await upgrade(url, before)  # one migration behind
    for look in looks:
        code, out = await paybot(url, "admin", *look)
        assert code == 3 and f"at revision {before}" in out and head in out, (look, out)
    assert await _revisions(url) == [before]

    code, out = await paybot(url, "migrate")  # what it says to do
    assert code == 0 and await _revisions(url) == [head]
    code, out = await paybot(url, "admin", "balance", "42")
    assert code == 1 and "no user" in out  # an answer about the ledger, not the schema


async def test_a_database_migrated_by_a_newer_paybot_is_left_alone(scratch_database,
                                                                    paybot) -> None:
    """Not even a write command touches it (this code cannot migrate it): the operator is
    told to use the paybot that did."""
    url = await scratch_database()
    await upgrade(url)
    engine = make_engine(url, pool_size=1)
    try:
        await ensure_user(engine, 42)
        await run_sql(engine, "UPDATE alembic_version SET version_num = '9999_from_the_future'")
    finally:
        await engine.dispose()
    for command in (("admin", "credit", "42", "1", "--reason", "x"), ("admin", "check"),
                    ("migrate",)):
        code, out = await paybot(url, *command)
        assert code == 3 and "newer than this paybot" in out, (command, out)
    assert await _revisions(url) == ["9999_from_the_future"]
    engine = make_engine(url, pool_size=1)
    try:
        assert await run_sql(engine, "SELECT 1 FROM entries") == []  # no credit made
    finally:
        await engine.dispose()


def test_operator_commands_do_not_load_the_bot() -> None:
    """`paybot admin …` imports the ledger, not aiogram, the web app or the watchers' chain
    client: importing those took seconds per call (issue 11, "a fast operator CLI")."""
    import subprocess

    probe = ("import sys, bot.cli; heavy = sorted(m for m in ('aiogram', 'bot.app', 'pytoniq',"
             " 'bot.telegram') if m in sys.modules); print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == ""


# --- invoices as documents: the operator's manual payments, voids and write-offs -----------


async def _invoice(ledger, make_user, amount: int = 2000) -> str:  # type: ignore[no-untyped-def]
    from ledger.invoices import new_invoice

    seller = await make_user()
    invoice, _ = await ledger.issue_invoice(new_invoice(seller_id=seller.id, title="Audit",
                                                        amount=amount))
    return invoice.public_id


async def test_operator_records_and_reverses_manual_payments(database_url, engine, ledger,
                                                             make_user, paybot) -> None:
    """A bank transfer arrives in two parts; the operator records both (the same reference
    again records nothing), reverses the second, and the ledger's invariants hold throughout."""
    public_id = await _invoice(ledger, make_user)
    record = ("admin", "payment", "record", public_id, "--amount", "12.50",
              "--reference", "BANK-123", "--date", "2026-11-27", "--note", "wire, part 1")
    code, out = await paybot(database_url, *record)
    assert code == 0 and "7.50 LIQ still due" in out, out
    assert len(out.strip().splitlines()) == 1
    code, out = await paybot(database_url, *record)
    assert code == 0 and "nothing changed" in out, out
    code, out = await paybot(database_url, "admin", "payment", "record", public_id.lower(),
                             "--amount", "7.50", "--reference", "BANK-124")
    assert code == 0 and f"invoice {public_id} paid" in out, out
    second = int(out.split()[1].rstrip(":"))
    code, out = await paybot(database_url, "admin", "check")
    assert code == 0 and "ledger OK" in out, out

    code, out = await paybot(database_url, "admin", "payment", "reverse", str(second),
                             "--reason", "the bank returned it")
    assert code == 0 and "7.50 LIQ still due" in out, out
    code, out = await paybot(database_url, "admin", "payment", "reverse", str(second),
                             "--reason", "the bank returned it")
    assert code == 0, out  # reversing twice is a no-op
    rows = await run_sql(engine, "SELECT p.amount, p.reference, p.received_on, p.recorded_by, "
                                 "r.reason FROM payments p JOIN invoices i ON i.id = p.invoice_id "
                                 "LEFT JOIN payment_reversals r ON r.payment_id = p.id "
                                 "WHERE i.public_id = :id ORDER BY p.id", id=public_id)
    assert [(r["amount"], r["reference"], r["recorded_by"], r["reason"]) for r in rows] == [
        (1250, "BANK-123", None, None), (750, "BANK-124", None, "the bank returned it")]
    assert str(rows[0]["received_on"]) == "2026-11-27"
    [inv] = await run_sql(engine, "SELECT status, amount_paid FROM invoices "
                                  "WHERE public_id = :id", id=public_id)
    assert (inv["status"], inv["amount_paid"]) == ("pending", 1250)
    code, out = await paybot(database_url, "admin", "check")
    assert code == 0 and "ledger OK" in out, out


async def test_operator_voids_and_writes_off_invoices(database_url, engine, ledger, make_user,
                                                      paybot) -> None:
    unpaid, part_paid = await _invoice(ledger, make_user), await _invoice(ledger, make_user)
    code, out = await paybot(database_url, "admin", "invoice", "void", unpaid,
                             "--reason", "issued by mistake")
    assert (code, out.strip()) == (0, f"invoice {unpaid} void")
    code, out = await paybot(database_url, "admin", "payment", "record", part_paid,
                             "--amount", "5", "--reference", "CASH-1")
    assert code == 0, out
    code, out = await paybot(database_url, "admin", "invoice", "void", part_paid)
    assert code == 2 and "invoice_partly_paid" in out, out  # money was recorded: not void
    code, out = await paybot(database_url, "admin", "invoice", "uncollectible", part_paid,
                             "--reason", "client went bust")
    assert (code, out.strip()) == (0, f"invoice {part_paid} uncollectible")
    rows = await run_sql(engine, "SELECT public_id, status FROM invoices WHERE public_id IN "
                                 "(:a, :b) ORDER BY public_id", a=unpaid, b=part_paid)
    assert {r["public_id"]: r["status"] for r in rows} == {
        unpaid: "void", part_paid: "uncollectible"}


async def test_bad_manual_payments_change_nothing(database_url, engine, ledger, make_user,
                                                  paybot) -> None:
    """Each refused with one sentence and exit 2; the invoice and the ledger as they were."""
    public_id = await _invoice(ledger, make_user)
    voided = await _invoice(ledger, make_user)
    assert (await paybot(database_url, "admin", "invoice", "void", voided))[0] == 0
    record = ("admin", "payment", "record")
    for args, code_ in [
        ((public_id, "--amount", "abc", "--reference", "R-1"), "invalid_amount"),
        ((public_id, "--amount", "-5", "--reference", "R-1"), "invalid_amount"),
        ((public_id, "--amount", "20.01", "--reference", "R-1"), "manual_payment_too_large"),
        (("NOSUCHINVOICE", "--amount", "1", "--reference", "R-1"), "invoice_not_found"),
        ((voided, "--amount", "1", "--reference", "R-1"), "invoice_void"),
        ((public_id, "--amount", "1", "--reference", "R-1", "--date", "27.11.2026"),
         "is not a date"),
    ]:
        code, out = await paybot(database_url, *record, *args)
        assert code == 2 and code_ in out, (args, out)
        assert "Traceback" not in out
    for args, code_ in [(("payment", "reverse", "999999999", "--reason", "x"),
                         "payment_not_found"),
                        (("invoice", "uncollectible", "NOSUCHINVOICE"), "invoice_not_found")]:
        code, out = await paybot(database_url, "admin", *args)
        assert code == 2 and code_ in out, (args, out)
    rows = await run_sql(engine, "SELECT i.amount_paid, count(p.id) AS n FROM invoices i "
                                 "LEFT JOIN payments p ON p.invoice_id = i.id "
                                 "WHERE i.public_id = :id GROUP BY i.id", id=public_id)
    assert rows == [{"amount_paid": 0, "n": 0}]


async def test_operator_extends_and_cancels_a_subscription(database_url, ledger, make_user,
                                                           paybot) -> None:
    seller, buyer = await make_user(), await make_user(balance=1000)
    plan = await ledger.create_plan(seller.id, "Club", {1: 500})
    first = await ledger.subscribe(plan.public_id, buyer.id, 1)
    assert first.invoice is not None
    await ledger.pay_from_balance(first.invoice, buyer.id, "k")
    sub = await ledger.subscription(first.subscription.public_id)
    code, out = await paybot(database_url, "admin", "subscription", "extend", sub.public_id,
                             "--months", "2", "--reason", "outage in November")
    longer = await ledger.subscription(sub.public_id)
    assert (code, out.strip()) == (0, f"subscription {sub.public_id} active; until "
                                      f"{longer.current_period_end.date().isoformat()}")
    assert longer.current_period_end > sub.current_period_end
    code, out = await paybot(database_url, "admin", "subscription", "extend", sub.public_id,
                             "--months", "2", "--reason", " ")
    assert code == 2 and "invalid_plan" in out, out
    code, out = await paybot(database_url, "admin", "subscription", "cancel", sub.public_id)
    assert code == 0 and "cancelled" in out, out
    code, out = await paybot(database_url, "admin", "subscription", "cancel", sub.public_id)
    assert code == 2 and "subscription_ended" in out, out
