"""One table of ledger errors, mapped once per edge: the same refusal gets the same HTTP status
on the seller API and on the pay pages, and the bot has a sentence for each."""

from __future__ import annotations

import json

import pytest

from bot.api.errors import from_ledger
from bot.settings import Settings
from bot.web.routes import PayPages
from bot.web.view import PayConfig
from ledger.core import Ledger
from ledger.errors import BY_SQLSTATE, ERRORS, InsufficientFunds, Kind, NotInvoiceSeller


def test_every_error_has_one_code_a_kind_and_at_most_one_sqlstate() -> None:
    codes = [cls.code for cls in ERRORS]
    assert len(codes) == len(set(codes)), "two errors share a code"
    states = [cls.sqlstate for cls in ERRORS if cls.sqlstate]
    assert len(states) == len(set(states)) == len(BY_SQLSTATE)
    assert all(s.startswith("PB") and len(s) == 5 for s in states)
    assert all(isinstance(cls.kind, Kind) for cls in ERRORS)


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.code)
def test_the_same_error_gets_the_same_status_on_every_http_route(cls) -> None:
    pages = PayPages(Ledger(None), PayConfig.from_settings(Settings()))  # type: ignore[arg-type]
    exc = cls(json.dumps({"needed": 500, "available": 100}) if cls is InsufficientFunds
              else None, **({"needed": 500, "available": 100} if cls is InsufficientFunds else {}))
    api = from_ledger(exc)
    page = pages._ledger_error(exc, "en")
    assert api.status == page.status, cls
    assert 400 <= api.status < 500
    assert api.code == json.loads(page.body)["error"]["code"]  # type: ignore[arg-type]


def test_another_sellers_invoice_looks_missing_on_http() -> None:
    api = from_ledger(NotInvoiceSeller("ABC"))
    assert (api.status, api.code) == (404, "invoice_not_found")
