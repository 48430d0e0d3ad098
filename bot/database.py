"""Where `paybot` gets its database: DATABASE_URL, or an embedded PostgreSQL in its data dir.

Its own module so that the operator CLI reaches the database without importing the bot, the
web app or the watchers (`paybot admin …` stays fast)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.settings import DatabaseSettings
from ledger.postgres import embedded_postgres


@contextlib.contextmanager
def database(settings: DatabaseSettings) -> Iterator[str]:
    """DATABASE_URL when set; otherwise an embedded PostgreSQL for the life of the block."""
    if settings.database_url is not None:
        yield settings.database_url.get_secret_value()
        return
    with embedded_postgres(settings.data_dir) as url:
        yield url


def _migrations() -> tuple[set[str], set[str]]:
    """(the heads, every revision) of this code's migrations."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from ledger.migrate import ROOT

    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    script = ScriptDirectory.from_config(cfg)
    return set(script.get_heads()), {s.revision for s in script.walk_revisions()}


@dataclass(frozen=True, slots=True)
class Schema:
    """Where a database's migrations are, against this code's."""

    found: frozenset[str]  # the database's alembic revisions (none: never migrated)
    heads: frozenset[str]  # this code's
    known: frozenset[str]  # every revision this code has

    @property
    def current(self) -> bool:
        return self.found == self.heads

    @property
    def newer(self) -> bool:
        """Migrated by a later paybot: `paybot migrate` here cannot help."""
        return bool(self.found - self.known)

    def problem(self) -> str | None:
        """None when current; otherwise what is wrong and what to do, in one sentence."""
        if self.current:
            return None
        want, have = ", ".join(sorted(self.heads)), ", ".join(sorted(self.found))
        if not self.found:
            return (f"the database has no paybot schema yet (this paybot needs revision {want}):"
                    " run `paybot migrate` first")
        if self.newer:
            return (f"the database schema is at revision {have}, newer than this paybot knows "
                    f"({want}): use the paybot version that migrated it")
        return (f"the database schema is at revision {have}, this paybot needs {want}: "
                "run `paybot migrate` first (read-only commands do not migrate)")


async def schema(engine: AsyncEngine) -> Schema:
    """Reads the database's migration state; changes nothing."""
    async with engine.connect() as conn:
        migrated = (await conn.exec_driver_sql(
            "SELECT to_regclass('alembic_version') IS NOT NULL")).scalar_one()
        found = {str(r[0]) for r in await conn.exec_driver_sql(
            "SELECT version_num FROM alembic_version")} if migrated else set()
    heads, known = _migrations()
    return Schema(frozenset(found), frozenset(heads), frozenset(known))
