"""USDT (a jetton) in the ledger: a transfer the watcher recognised settles like TON — paid,
partial, excess, late, unmatched, deposit — in the jetton's own units; Liquid $ invoices take
it 1:1; what cannot go anywhere is held in USDT, and nothing of it ever becomes TON."""

from __future__ import annotations

import hashlib
import itertools
import secrets
from decimal import Decimal

import pytest

from ledger.accounts import balance
from ledger.invariants import check_invariants
from ledger.invoice_reads import get_invoice
from ledger.invoices import create_invoice
from ledger.transfer_admin import resolve_transfer
from ledger.transfers import ChainTransfer, record_transfer, start_cursor
from tests.conftest import run_sql

RATE = Decimal(5)  # Liquid $ per TON
USDT = 1_000_000  # micro-USDT per USDT
_ids = itertools.count(1)


class Shop:
    """One followed account with its own cursor: transfers linked like its transactions."""

    def __init__(self, engine) -> None:  # type: ignore[no-untyped-def]
        self.engine = engine
        self.address = "0:" + secrets.token_hex(32)
        self.prev = (0, "0" * 64)
        self.lt = 10**12

    async def receive(self, amount: int, comment: str | None = None, *, asset: str = "USDT",
                      invoice: str | None = None, deposit: str | None = None,
                      tag: str | None = None, ignore: str | None = None,
                      no_notification: bool = False):  # type: ignore[no-untyped-def]
        await start_cursor(self.engine, self.address, 0, "0" * 64)
        self.lt += 1000
        tx_hash = hashlib.sha256(f"jetton-tx{next(_ids)}{self.address}".encode()).hexdigest()
        jetton = asset != "TON"
        t = ChainTransfer(
            address=self.address, tx_hash=tx_hash, lt=self.lt, utime=1_900_000_000,
            prev_lt=self.prev[0], prev_hash=self.prev[1], incoming=True,
            source="0:" + "cd" * 32, value_nano=1 if jetton else amount,
            body_kind="text" if comment else "empty", comment=comment, ignore_reason=ignore,
            invoice_id=invoice, deposit_code=deposit, payer_tag=tag, asset=asset,
            asset_amount=amount if jetton else None, no_notification=no_notification)
        self.prev = (self.lt, tx_hash)
        return tx_hash, await record_transfer(self.engine, t, currency="LIQ", ton_rate=RATE)


@pytest.fixture
def shop(engine) -> Shop:  # type: ignore[no-untyped-def]
    return Shop(engine)


async def _invoice(engine, seller, amount: int = 1250, **kw):  # type: ignore[no-untyped-def]
    return await create_invoice(engine, seller_id=seller.id, title="Coffee", amount=amount,
                                ton_rate=RATE, **kw)


async def _suspense(engine, currency: str) -> int:  # type: ignore[no-untyped-def]
    rows = await run_sql(engine, "SELECT coalesce(sum(e.amount), 0) AS s FROM entries e JOIN"
                                 " accounts a ON a.id = e.account_id WHERE a.system_name ="
                                 " 'suspense' AND a.currency = :c", c=currency)
    return int(rows[0]["s"])


async def test_usdt_pays_a_liquid_dollar_invoice_one_to_one(engine, make_user, shop) -> None:
    seller = await make_user()
    invoice = await _invoice(engine, seller)
    assert invoice.usdt_due == 12_500_000  # 12.50 Liquid $ = 12.50 USDT
    _, paid = await shop.receive(12_500_000, f"INV-{invoice.public_id}",
                                 invoice=invoice.public_id)
    assert (paid.outcome, paid.invoice_status) == ("paid", "paid")
    assert await balance(engine, seller.id) == 1250
    [payment] = await run_sql(engine, "SELECT method, amount FROM payments WHERE invoice_id ="
                                      " :i", i=invoice.id)
    assert payment == {"method": "usdt", "amount": 1250}
    assert await check_invariants(engine) == []


async def test_usdt_in_parts_completes_and_never_mixes_with_ton(engine, make_user, shop) -> None:
    seller = await make_user()
    invoice = await _invoice(engine, seller)
    usdt0, ton0 = await _suspense(engine, "USDT"), await _suspense(engine, "TON")
    _, first = await shop.receive(12_490_000, f"INV-{invoice.public_id}",
                                  invoice=invoice.public_id)
    # 0.01 USDT short; a TON transfer meanwhile is a TON partial, never added to the USDT
    _, ton = await shop.receive(10_000_000, f"INV-{invoice.public_id}", asset="TON",
                                invoice=invoice.public_id)
    assert (first.outcome, ton.outcome) == ("partial", "partial")
    assert await _suspense(engine, "USDT") == usdt0 + 12_490_000
    _, rest = await shop.receive(10_000, f"INV-{invoice.public_id}", invoice=invoice.public_id)
    assert rest.outcome == "paid"
    assert await _suspense(engine, "USDT") == usdt0
    assert await _suspense(engine, "TON") == ton0 + 10_000_000  # TON waits for the operator
    assert (await get_invoice(engine, invoice.public_id)).status == "paid"
    assert await check_invariants(engine) == []


async def test_an_overpayment_in_usdt_is_held_in_usdt(engine, make_user, shop) -> None:
    seller = await make_user()
    invoice = await _invoice(engine, seller)
    usdt0 = await _suspense(engine, "USDT")
    tx, over = await shop.receive(13_000_000, f"INV-{invoice.public_id}",
                                  invoice=invoice.public_id)
    assert (over.outcome, over.held_nano) == ("excess", 500_000)
    assert await _suspense(engine, "USDT") == usdt0 + 500_000
    assert await check_invariants(engine) == []
    # The operator credits the buyer: 0.50 USDT is 0.50 Liquid $
    buyer = await make_user()
    await resolve_transfer(engine, tx, credit_user_id=buyer.id, note="excess back",
                           currency="LIQ", ton_rate=RATE)
    assert await balance(engine, buyer.id) == 50
    assert await _suspense(engine, "USDT") == usdt0
    assert await check_invariants(engine) == []


async def test_a_usdt_deposit_credits_liquid_dollars(engine, make_user, shop) -> None:
    user = await make_user()
    _, dep = await shop.receive(3_000_000, f"DEP-{user.deposit_code}",
                                deposit=user.deposit_code)
    assert (dep.outcome, dep.credited) == ("deposit", 300)
    assert await balance(engine, user.id) == 300
    assert await check_invariants(engine) == []


@pytest.mark.parametrize("case", ["unknown", "late", "no_notification", "ton_invoice"])
async def test_usdt_that_pays_nothing_is_held_in_usdt(engine, make_user, shop, case) -> None:
    seller = await make_user()
    invoice = await _invoice(engine, seller)
    kw: dict[str, object] = {}
    if case == "late":
        await shop.receive(12_500_000, "first", invoice=invoice.public_id)
        kw = {"invoice": invoice.public_id}
    elif case == "no_notification":
        kw = {"no_notification": True, "invoice": invoice.public_id}
    elif case == "ton_invoice":
        ton = await create_invoice(engine, seller_id=seller.id, title="T", amount=10**9,
                                   currency="TON")
        assert ton.usdt_due is None
        kw = {"invoice": ton.public_id}
    before = await _suspense(engine, "USDT")
    _, held = await shop.receive(2_000_000, "something", **kw)  # type: ignore[arg-type]
    expected = {"unknown": "unmatched", "late": "late_or_duplicate",
                "no_notification": "unmatched", "ton_invoice": "unmatched"}[case]
    assert (held.outcome, held.held_nano) == (expected, 2_000_000)
    assert await _suspense(engine, "USDT") == before + 2_000_000
    assert await check_invariants(engine) == []


async def test_a_fake_jetton_is_recorded_and_never_counted(engine, make_user, shop) -> None:
    seller = await make_user()
    invoice = await _invoice(engine, seller)
    usdt0 = await _suspense(engine, "USDT")
    _, fake = await shop.receive(10**12, f"INV-{invoice.public_id}", invoice=invoice.public_id,
                                 ignore="fake jetton: notification not from our USDT wallet")
    assert fake.outcome == "ignored"
    assert (await get_invoice(engine, invoice.public_id)).status == "pending"
    assert await _suspense(engine, "USDT") == usdt0
    [row] = await run_sql(engine, "SELECT asset, asset_amount, note FROM ton_transfers"
                                  " WHERE id = :i", i=fake.transfer_id)
    assert row["asset"] == "USDT" and row["asset_amount"] == 10**12
    assert row["note"].startswith("fake jetton")


async def test_our_jetton_wallet_is_remembered_once(ledger) -> None:
    master, owner = "0:" + "11" * 32, "0:" + secrets.token_hex(32)
    assert await ledger.jetton_wallet(master, owner) is None
    ours = "0:" + "22" * 32
    assert await ledger.remember_jetton_wallet("USDT", master, owner, ours) == ours
    # a later, different answer never replaces the one notifications are checked against
    assert await ledger.remember_jetton_wallet("USDT", master, owner, "0:" + "33" * 32) == ours
    assert await ledger.jetton_wallet(master, owner) == ours
    with pytest.raises(ValueError):
        await ledger.remember_jetton_wallet("USDT", master, owner, "EQ-not-raw")


async def test_the_seller_refunds_the_difference_to_the_wallet_that_sent_it(
        engine, ledger, make_user, shop) -> None:
    from ledger.errors import InvoiceNotFound, NothingHeld

    seller, stranger = await make_user(), await make_user()
    invoice = await _invoice(engine, seller)
    usdt0 = await _suspense(engine, "USDT")
    await shop.receive(13_000_000, f"INV-{invoice.public_id}", invoice=invoice.public_id)
    assert await ledger.excess_held(invoice.public_id) == {"USDT": 500_000}
    with pytest.raises(InvoiceNotFound):  # another seller's invoice looks like none
        await ledger.refund_excess(invoice.public_id, seller_id=stranger.id)
    [payout] = await ledger.refund_excess(invoice.public_id, seller_id=seller.id,
                                          note="overpaid")
    assert (payout.kind, payout.asset, payout.amount) == ("refund", "USDT", 500_000)
    assert payout.destination == "0:" + "cd" * 32  # the jetton's original sender
    assert payout.status == "queued"
    assert await ledger.excess_held(invoice.public_id) == {}
    assert await _suspense(engine, "USDT") == usdt0
    with pytest.raises(NothingHeld):  # twice: nothing is sent twice
        await ledger.refund_excess(invoice.public_id, seller_id=seller.id)
    assert await balance(engine, seller.id) == 1250  # the seller keeps what the invoice asked
    assert await check_invariants(engine) == []
