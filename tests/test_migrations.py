"""Alembic stairway: every revision upgrades, downgrades and upgrades again cleanly."""

import asyncio

from alembic.script import ScriptDirectory

from ledger.migrate import alembic_config, downgrade_sync, upgrade_sync


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
