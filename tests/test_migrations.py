"""Migrations: the Alembic stairway, and the SQL files (ledger/sql/) as what the database runs.

Tables live in versioned migrations; functions and triggers in ledger/sql/*.sql, applied as one
set (ledger.sql.apply, called by revisions through migrations/sql.py: apply_sql_files).
"""

import asyncio
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, pool, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

import ledger.sql
from ledger.migrate import alembic_config, downgrade_sync, upgrade_sync
from ledger.postgres import asyncpg_url


async def on_database(url: str, work: Callable[[Connection], Any]) -> Any:
    """Run `work` on one connection in one transaction, committed if it returns."""
    engine = create_async_engine(asyncpg_url(url), poolclass=pool.NullPool)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(work)
    finally:
        await engine.dispose()


def by_name(statements: list[str]) -> dict[str, str]:
    """Definitions keyed by function name or 'trigger <name>' (paybot overloads nothing)."""
    named = {}
    for statement in statements:
        function = re.match(r"CREATE OR REPLACE FUNCTION public\.(\w+)\(", statement)
        trigger = re.match(r"CREATE (?:CONSTRAINT )?TRIGGER (\w+) ", statement)
        assert function or trigger, statement[:80]
        named[function[1] if function else f"trigger {trigger[1]}"] = statement  # type: ignore[index]
    return named


def names_in_files(directory: Path = ledger.sql.SQL_DIR) -> set[str]:
    sources = "\n".join(p.read_text(encoding="utf-8") for p in ledger.sql.files(directory))
    return ({"paybot_error_sqlstate"}  # generated from ledger/errors.py
            | set(re.findall(r"CREATE OR REPLACE FUNCTION (\w+)\(", sources))
            | {f"trigger {t}" for t in re.findall(r"CREATE TRIGGER (\w+)", sources)})


async def test_every_revision_goes_up_down_and_up_again(scratch_database) -> None:
    url = await scratch_database()
    scripts = ScriptDirectory.from_config(alembic_config(url))
    revisions = list(reversed(list(scripts.walk_revisions())))  # base first
    assert revisions, "no migrations found"

    def stairway() -> None:
        for rev in revisions:
            upgrade_sync(url, rev.revision)
            down = rev.down_revision
            # a merge revision has several parents: stepping back to any one of them will do
            downgrade_sync(url, down if isinstance(down, str) else (down or ("base",))[0])
            upgrade_sync(url, rev.revision)
        upgrade_sync(url, "heads")

    await asyncio.to_thread(stairway)


async def test_fresh_head_runs_exactly_the_functions_and_triggers_of_the_files(
        scratch_database) -> None:
    url = await scratch_database()
    await asyncio.to_thread(upgrade_sync, url, "heads")
    at_head = by_name(await on_database(url, ledger.sql.definitions))
    assert set(at_head) == names_in_files()
    # and applying the files again changes nothing: head is the files
    await on_database(url, ledger.sql.apply)
    assert by_name(await on_database(url, ledger.sql.definitions)) == at_head


async def test_an_old_database_upgrades_to_the_files_and_downgrades_to_what_it_had(
        scratch_database) -> None:
    url = await scratch_database()
    await asyncio.to_thread(upgrade_sync, url, "0011")
    before = by_name(await on_database(url, ledger.sql.definitions))
    await asyncio.to_thread(upgrade_sync, url, "heads")
    assert set(by_name(await on_database(url, ledger.sql.definitions))) == names_in_files()
    await asyncio.to_thread(downgrade_sync, url, "0011")
    assert by_name(await on_database(url, ledger.sql.definitions)) == before


def _raise_by_code(definition: str) -> str:
    """A 0011 definition with its errors raised by code, as the files raise them; spacing
    ignored."""
    definition = re.sub(r"RAISE EXCEPTION '(\w+)' USING ERRCODE = 'PB\d+',\s*DETAIL = (.*?);",
                        r"PERFORM paybot_raise('\1', \2);", definition, flags=re.S)
    definition = definition.replace("ERRCODE = 'PB900'",
                                    "ERRCODE = paybot_error_sqlstate('immutable_record')")
    return re.sub(r"\s+", " ", definition)


async def test_the_hand_over_to_the_files_changed_only_what_it_meant_to(scratch_database) -> None:
    url = await scratch_database()
    await asyncio.to_thread(upgrade_sync, url, "0011")
    before = by_name(await on_database(url, ledger.sql.definitions))
    await asyncio.to_thread(upgrade_sync, url, "0012")
    handed_over = await on_database(url, lambda c: c.execute(text(
        "SELECT count(*) FROM paybot_sql_snapshots WHERE revision = '0012'")).scalar_one())
    if not handed_over:
        pytest.skip("a later revision applies the files: 0012's hand-over is history")
    after = by_name(await on_database(url, ledger.sql.definitions))

    assert set(before) - set(after) == set()
    assert set(after) - set(before) == {
        "paybot_error_sqlstate",  # the codes of ledger/errors.py
        "paybot_outbox_notify", "trigger outbox_notify",  # one after-commit wake
    }
    changed = {name for name in before
               if _raise_by_code(before[name]) != re.sub(r"\s+", " ", after[name])}
    assert changed == {
        "paybot_raise",  # reads the generated codes
        # one fulfilment for every path; the balance batch also answers with the invoice
        "paybot_fulfil", "process_invoice_payments", "settle_external_payment",
        # the hot paths wake their own process instead of NOTIFY (outbox.sql)
        "paybot_ton_receive",
    }


def _copy_of_files(tmp_path: Path) -> Path:
    copy = tmp_path / "sql"
    shutil.copytree(ledger.sql.SQL_DIR, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return copy


def _edit(path: Path, old: str, new: str) -> None:
    source = path.read_text(encoding="utf-8")
    assert source.count(old) == 1, old
    path.write_text(source.replace(old, new), encoding="utf-8")


def _drop_statement(path: Path, start: str, end: str) -> None:
    source = path.read_text(encoding="utf-8")
    i = source.index(start)
    path.write_text(source[:i] + source[source.index(end, i) + len(end):], encoding="utf-8")


async def test_a_changed_file_is_applied_and_what_left_the_files_is_dropped(
        scratch_database, tmp_path: Path) -> None:
    url = await scratch_database()
    await asyncio.to_thread(upgrade_sync, url, "heads")
    files = _copy_of_files(tmp_path)
    # a body changed
    _edit(files / "outbox.sql", "SELECT lower(split_part(url, '/', 1)",
          "SELECT upper(split_part(url, '/', 1)")
    # a signature changed (no DROP written anywhere)
    _edit(files / "grants.sql",
          "grant_item_to_user(p_user bigint, p_item text)",
          "grant_item_to_user(p_user bigint, p_item text, p_note text DEFAULT NULL)")
    # a function and a trigger gone from the files
    _drop_statement(files / "grants.sql", "CREATE OR REPLACE FUNCTION claim_grant(", "END $$;")
    _drop_statement(files / "outbox.sql", "CREATE TRIGGER outbox_notify", ";")

    await on_database(url, lambda c: ledger.sql.apply(c, files))

    def state(c: Connection) -> tuple[Any, ...]:
        return (
            c.execute(text("SELECT paybot_callback_endpoint('https://Shop.Example/cb?x')"))
             .scalar_one(),
            c.execute(text("SELECT array_agg(oid::regprocedure::text ORDER BY 1) FROM pg_proc"
                           " WHERE proname IN ('grant_item_to_user', 'claim_grant')")).scalar_one(),
            c.execute(text("SELECT count(*) FROM pg_trigger WHERE tgname = 'outbox_notify'"))
             .scalar_one(),
        )

    assert await on_database(url, state) == (
        "HTTPS://SHOP.EXAMPLE", ["grant_item_to_user(bigint,text,text)"], 0)
    assert set(by_name(await on_database(url, ledger.sql.definitions))) == names_in_files(files)


async def test_a_broken_body_fails_the_apply_and_changes_nothing(
        scratch_database, tmp_path: Path) -> None:
    url = await scratch_database()
    await asyncio.to_thread(upgrade_sync, url, "heads")
    before = await on_database(url, ledger.sql.definitions)
    files = _copy_of_files(tmp_path)
    _edit(files / "grants.sql", "UPDATE grants SET user_id = p_user, claimed_at = now()",
          "UPDATE grants SET user_id = p_user claimed_at = now()")  # a missing comma
    with pytest.raises(DBAPIError, match="syntax error"):
        await on_database(url, lambda c: ledger.sql.apply(c, files))
    assert await on_database(url, ledger.sql.definitions) == before


def test_the_newest_revision_applying_the_files_applies_these_files() -> None:
    scripts = ScriptDirectory.from_config(alembic_config("postgresql://localhost/unused"))
    declared = next(rev.module.SQL_FILES_SHA256 for rev in scripts.walk_revisions()  # head first
                    if hasattr(rev.module, "SQL_FILES_SHA256"))
    assert declared == ledger.sql.checksum(), (
        "ledger/sql/ (or an error's sqlstate) changed: add a revision that calls "
        f"apply_sql_files(revision, SQL_FILES_SHA256) with SQL_FILES_SHA256 = "
        f"{ledger.sql.checksum()!r}")


async def test_on_a_fresh_database_only_the_last_revision_applying_the_files_applies_them(
        scratch_database, tmp_path: Path) -> None:
    """The files are the head definitions: an earlier revision that applied them steps aside
    (they may need tables a later revision creates); the last one applies them."""
    from alembic import command

    url = await scratch_database()
    scripts = tmp_path / "migrations"
    shutil.copytree(Path(alembic_config(url).get_main_option("script_location") or ""), scripts,
                    ignore=shutil.ignore_patterns("__pycache__"))
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    (scripts / "versions" / "9999_later_change.py").write_text(
        '"""A later change of functions."""\n\n'
        "from migrations.sql import apply_sql_files, restore_sql_files\n\n"
        f'revision = "9999"\ndown_revision = "{head}"\nbranch_labels = None\n'
        "depends_on = None\n"
        f"SQL_FILES_SHA256 = {ledger.sql.checksum()!r}\n\n\n"
        "def upgrade() -> None:\n    apply_sql_files(revision, SQL_FILES_SHA256)\n\n\n"
        "def downgrade() -> None:\n    restore_sql_files(revision)\n", encoding="utf-8")
    config = alembic_config(url)
    config.set_main_option("script_location", str(scripts))

    def applied() -> list[str]:
        return asyncio.run(on_database(url, lambda c: list(c.execute(text(
            "SELECT revision FROM paybot_sql_snapshots ORDER BY 1")).scalars())))

    def functions() -> set[str]:
        return set(by_name(asyncio.run(on_database(url, ledger.sql.definitions))))

    def walk() -> None:
        command.upgrade(config, "0011")
        at_0011 = functions()
        command.upgrade(config, head)  # 0012 and every later applier step aside
        assert (applied(), functions()) == ([], at_0011)
        command.upgrade(config, "9999")
        assert (applied(), functions()) == (["9999"], names_in_files())
        command.downgrade(config, head)
        assert (applied(), functions()) == ([], at_0011)

    await asyncio.to_thread(walk)
