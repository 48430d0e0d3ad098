"""Dependencies point inward: the ledger imports no edge (no bot, watchers, aiogram, aiohttp,
pytoniq, yarl, APScheduler) and the watchers do not import the bot. The contracts are in
pyproject.toml ([tool.importlinter]); import-linter checks the real import graph."""

from __future__ import annotations

from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parent.parent


def test_dependencies_point_inward(monkeypatch, capsys) -> None:
    monkeypatch.chdir(ROOT)  # the contracts are read from pyproject.toml here
    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)
    assert code == 0, capsys.readouterr().out[-3000:]
