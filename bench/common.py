"""Shared benchmark plumbing. Servers and throwaway databases come from ledger.postgres."""

from __future__ import annotations

from ledger.postgres import server, with_database
from ledger.postgres import throwaway_database as scratch_database

__all__ = ["percentile", "scratch_database", "server", "with_database"]


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return sorted_values[index]
