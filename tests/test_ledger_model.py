"""Hypothesis drives the real ledger and a ten-line model side by side; they must agree."""

import asyncio
import itertools
import secrets

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from ledger import errors
from ledger.accounts import adjust_balance, balance
from ledger.invariants import check_invariants
from ledger.invoices import cancel_invoice, create_invoice
from ledger.payments import pay_from_balance
from ledger.postgres import make_engine
from ledger.users import ensure_user

_tg = itertools.count(secrets.randbelow(10**9) * 1000 + 500_000_000_000)


def test_ledger_agrees_with_a_simple_model(database_url: str) -> None:
    loop = asyncio.new_event_loop()
    engine = make_engine(database_url, pool_size=2)  # lives on this test's own event loop
    run = loop.run_until_complete

    class LedgerModel(RuleBasedStateMachine):
        users = Bundle("users")
        invoices = Bundle("invoices")

        def __init__(self) -> None:
            super().__init__()
            self.balances: dict[int, int] = {}
            self.inv: dict[str, dict] = {}
            self.keys: dict[tuple[int, str], str] = {}

        @initialize(target=users)
        def first_user(self) -> int:
            return self._new_user(0)

        def _new_user(self, funding: int) -> int:
            user = run(ensure_user(engine, next(_tg)))
            self.balances[user.id] = 0
            if funding:
                run(adjust_balance(engine, user.id, funding, "LIQ", "seed"))
                self.balances[user.id] = funding
            return user.id

        @rule(target=users, funding=st.integers(0, 5000))
        def add_user(self, funding: int) -> int:
            return self._new_user(funding)

        @rule(target=invoices, seller=users, amount=st.integers(1, 3000),
              multi=st.booleans(), max_uses=st.none() | st.integers(1, 3))
        def issue(self, seller: int, amount: int, multi: bool, max_uses: int | None) -> str:
            inv = run(create_invoice(engine, seller_id=seller, title="t", amount=amount,
                                     kind="multi_use" if multi else "one_time",
                                     max_uses=max_uses if multi else None))
            self.inv[inv.public_id] = dict(seller=seller, amount=amount, multi=multi,
                                           max_uses=max_uses if multi else None, uses=0,
                                           status="pending")
            return inv.public_id

        @rule(invoice=invoices, buyer=users, key=st.sampled_from(["a", "b", "c"]))
        def pay(self, invoice: str, buyer: int, key: str) -> None:
            m = self.inv[invoice]
            expected: type[Exception] | None = None
            replay = False
            if (buyer, key) in self.keys:
                if self.keys[(buyer, key)] != invoice:
                    expected = errors.IdempotencyKeyReused
                else:
                    replay = True
            elif buyer == m["seller"]:
                expected = errors.OwnInvoice
            elif m["status"] == "cancelled":
                expected = errors.InvoiceCancelled
            elif m["status"] == "paid":
                expected = errors.InvoiceAlreadyPaid
            elif self.balances[buyer] < m["amount"]:
                expected = errors.InsufficientFunds
            try:
                result = run(pay_from_balance(engine, invoice, buyer, key))
            except errors.LedgerError as exc:
                assert expected is not None and isinstance(exc, expected), (exc, expected)
                return
            assert expected is None, f"expected {expected}"
            assert result.replayed == replay
            if replay:
                return
            self.keys[(buyer, key)] = invoice
            self.balances[buyer] -= m["amount"]
            self.balances[m["seller"]] += m["amount"]
            m["uses"] += 1
            if not m["multi"] or m["uses"] == m["max_uses"]:
                m["status"] = "paid"
            assert result.invoice_status == m["status"]

        @rule(invoice=invoices, actor=users)
        def cancel(self, invoice: str, actor: int) -> None:
            m = self.inv[invoice]
            try:
                run(cancel_invoice(engine, invoice, actor))
            except errors.NotInvoiceSeller:
                assert actor != m["seller"]
                return
            except errors.InvoiceAlreadyPaid:
                assert m["status"] == "paid"
                return
            assert actor == m["seller"] and m["status"] in ("pending", "cancelled")
            m["status"] = "cancelled"

        @rule(user=users, amount=st.integers(-3000, 3000).filter(bool))
        def adjust(self, user: int, amount: int) -> None:
            try:
                run(adjust_balance(engine, user, amount, "LIQ", "operator"))
            except errors.InsufficientFunds:
                assert self.balances[user] + amount < 0
                return
            assert self.balances[user] + amount >= 0
            self.balances[user] += amount

        @invariant()
        def balances_agree(self) -> None:
            for user, expected in self.balances.items():
                assert run(balance(engine, user)) == expected

        def teardown(self) -> None:
            assert run(check_invariants(engine)) == []

    try:
        run_state_machine_as_test(
            LedgerModel,
            settings=settings(max_examples=30, stateful_step_count=25, deadline=None,
                              suppress_health_check=list(HealthCheck)),
        )
    finally:
        run(engine.dispose())
        loop.close()
