"""Dependencies point inward: the ledger imports no edge (no bot, watchers, aiogram, aiohttp,
pytoniq, yarl, APScheduler) and the watchers do not import the bot. The contracts are in
pyproject.toml ([tool.importlinter]); import-linter checks the real import graph."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_dependencies_point_inward() -> None:
    # In a process of its own: import-linter configures logging, which would take the log
    # capture away from the tests that run after this one.
    check = ("import sys; from importlinter.cli import lint_imports; "
             f"sys.exit(lint_imports(config_filename={str(ROOT / 'pyproject.toml')!r}, "
             "no_cache=True))")
    run = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True,
                         text=True, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
