"""ledger/transfers.py on a real PostgreSQL: amounts rules, payers and guests, claims, the
operator's resolutions, contacts — and bad input refused with nothing changed."""

from __future__ import annotations

import base64
import hashlib
import itertools
from dataclasses import replace
from datetime import timedelta

import pytest

from ledger.accounts import balance
from ledger.errors import (
    HoldOfInvoice,
    InvalidResolution,
    InvoiceAlreadyPaid,
    InvoiceNotFound,
    InvoiceNotTon,
    NotEnoughForInvoice,
    NothingHeld,
    TransferNotFound,
    UserNotFound,
)
from ledger.invoice_reads import get_invoice
from ledger.invoices import create_invoice
from ledger.payments import claim_grant, grants_of_user
from ledger.transfer_admin import (
    claim_excess,
    list_transfers,
    resolve_transfer,
    transfers_for_invoice,
)
from ledger.transfers import ChainTransfer, record_transfer, start_cursor
from ledger.users import ensure_user
from tests.conftest import legacy_contact, run_sql
from tests.watchers.conftest import HASH_OF_CASE, RATE, TON, Toncenter, World, run_until_idle
from tests.watchers.standins import DESTINATION, Chain
from watchers.ton_sources import HttpApiSource

# The fixture transactions before the payer-tagged ones (tests/fixtures/ton/README.md).
BARE_CASES = next(i for i, t in enumerate(Chain().txs) if t["case"] == "user_tag")


async def settle_fixtures(world: World, toncenter: Toncenter, visible: int | None = None) -> None:
    if visible is not None:
        toncenter.chain.visible = visible
    watcher = world.watcher(HttpApiSource(toncenter.url, page_size=50))
    try:
        await run_until_idle(watcher)
    finally:
        await watcher.close()


class SyntheticChain:
    """ChainTransfers for ledger-level tests, linked like an account's transactions."""

    _ids = itertools.count(1)

    def __init__(self) -> None:
        self.prev = (0, "0" * 64)
        self.lt = 10**12

    def next(self, value: int, comment: str | None = None, *, invoice: str | None = None,
             deposit: str | None = None, ignore: str | None = None) -> ChainTransfer:
        self.lt += 1000
        tx_hash = hashlib.sha256(f"tx{next(self._ids)}".encode()).hexdigest()
        t = ChainTransfer(
            address=DESTINATION, tx_hash=tx_hash, lt=self.lt, utime=1_800_000_000,
            prev_lt=self.prev[0], prev_hash=self.prev[1], incoming=True,
            source="0:" + "ab" * 32, value_nano=value, body_kind="text" if comment else "empty",
            comment=comment, ignore_reason=ignore, invoice_id=invoice, deposit_code=deposit)
        self.prev = (self.lt, tx_hash)
        return t


async def settle(world: World, t: ChainTransfer):  # type: ignore[no-untyped-def]
    await start_cursor(world.engine, DESTINATION, 0, "0" * 64)  # once; later calls do nothing
    return await record_transfer(world.engine, t, currency="LIQ", ton_rate=RATE)


# --- partial, then complete; the guest's claim -----------------------------------------


async def test_partial_then_completed_and_what_the_pay_page_reads(
        world: World, toncenter: Toncenter) -> None:
    await settle_fixtures(world, toncenter, visible=11)  # up to under_1 (0.99 TON)
    seen = await transfers_for_invoice(world.engine, "5t6v8w2xyz4ab")  # any case
    assert (seen.status, seen.ton_quote, seen.ton_received) == ("pending", TON, 990_000_000)
    assert seen.partial_nano == 990_000_000 and seen.claim_token is None
    assert [t.outcome for t in seen.transfers] == ["partial"]

    await settle_fixtures(world, toncenter, visible=len(Chain().txs))  # under_2 completes it
    seen = await transfers_for_invoice(world.engine, "5T6V8W2XYZ4AB")
    assert (seen.status, seen.ton_received, seen.partial_nano) == ("paid", TON, 0)
    assert [t.outcome for t in seen.transfers] == ["partial", "paid"]
    assert [t.open_hold_nano for t in seen.transfers] == [0, 0]  # released into the payment
    assert seen.claim_token is not None and len(seen.claims) == 1

    # Whoever opens t.me/<bot>?start=claim_<token> gets the item, once.
    grant = await claim_grant(world.engine, seen.claim_token, world.buyer.id)
    assert grant.item_id == "item-5T6V8W2XYZ4AB"
    after = await transfers_for_invoice(world.engine, "5T6V8W2XYZ4AB")
    assert after.claim_token is None and after.claims[0].claimed
    with pytest.raises(InvoiceNotFound):
        await transfers_for_invoice(world.engine, "nope")


async def test_a_guests_excess_is_held_and_claimed_with_the_purchase(
        world: World, toncenter: Toncenter) -> None:
    await settle_fixtures(world, toncenter, visible=BARE_CASES)
    seen = await transfers_for_invoice(world.engine, "3N8P5R1CVD6YE")  # 2 TON for 1 TON
    assert seen.excess_held_nano == TON and seen.claim_token
    token = seen.claim_token
    # Not claimed yet, or claimed by somebody else: no excess for this user.
    assert await claim_excess(world.engine, token, world.buyer.id, currency="LIQ",
                              ton_rate=RATE) == 0
    await claim_grant(world.engine, token, world.buyer.id)
    stranger = await ensure_user(world.engine, 1999)
    assert await claim_excess(world.engine, token, stranger.id, currency="LIQ",
                              ton_rate=RATE) == 0
    assert await claim_excess(world.engine, token, world.buyer.id, currency="LIQ",
                              ton_rate=RATE) == 500  # 1 TON at 5.00
    assert await claim_excess(world.engine, token, world.buyer.id, currency="LIQ",
                              ton_rate=RATE) == 0  # once
    assert await balance(world.engine, world.buyer.id) == 500
    assert (await transfers_for_invoice(world.engine, "3N8P5R1CVD6YE")).excess_held_nano == 0
    assert await world.invariants() == []


async def test_saying_you_pay_does_not_make_you_the_payer_of_a_bare_transfer(
        world: World, toncenter: Toncenter) -> None:
    """A logged-in buyer said they pay, then a bare `INV-<id>` arrived: anyone could have sent
    it (the reference is public), so the item waits for proof and the excess stays held. The
    payer is whoever the comment's payer tag names (tests/watchers/test_payer_tags.py)."""
    await legacy_contact(world.engine, "1C3D5E7F9G0HJ", user_id=world.buyer.id)
    await legacy_contact(world.engine, "3N8P5R1CVD6YE", email="guest@example.com")
    await settle_fixtures(world, toncenter, visible=BARE_CASES)

    over = await transfers_for_invoice(world.engine, "1C3D5E7F9G0HJ")
    (t,) = over.transfers
    assert (t.outcome, t.excess_nano, t.credited, t.user_id) == ("excess", TON // 2, None, None)
    assert t.open_hold_nano == TON // 2 and over.claim_token
    assert await balance(world.engine, world.buyer.id) == 0
    assert await grants_of_user(world.engine, world.buyer.id) == []
    events = await run_sql(world.engine, "SELECT payload FROM outbox WHERE event_type = "
                                         "'balance.credited'")
    assert {(e["payload"]["recipient"], e["payload"]["kind"]) for e in events} == {  # type: ignore[index]
        (world.depositor.id, "deposit")}
    guest = await transfers_for_invoice(world.engine, "3N8P5R1CVD6YE")
    assert guest.excess_held_nano == TON and guest.claim_token  # email only: still a guest
    assert await world.invariants() == []


# --- the amount rules, one by one ----------------------------------------------------------


async def test_multi_use_invoice_and_rules_at_the_edges(world: World) -> None:
    chain = SyntheticChain()
    inv = await create_invoice(world.engine, seller_id=world.seller.id, title="Ticket",
                               amount=TON, currency="TON", kind="multi_use", max_uses=2)
    no_ton = await create_invoice(world.engine, seller_id=world.seller.id, title="LIQ only",
                                  amount=100)
    old = await create_invoice(world.engine, seller_id=world.seller.id, title="Old",
                               amount=TON, currency="TON")
    await run_sql(world.engine, "UPDATE invoices SET expires_at = now() - interval '1 minute' "
                                "WHERE id = :id", id=old.id)
    cases = [
        (chain.next(TON, invoice=inv.public_id), "paid", None),
        (chain.next(600_000_000, invoice=inv.public_id), "partial", None),
        (chain.next(600_000_000, invoice=inv.public_id), "excess", None),  # 2nd use, 0.2 over
        (chain.next(TON, invoice=inv.public_id), "late_or_duplicate", "invoice already paid"),
        (chain.next(TON, invoice=no_ton.public_id), "unmatched", "invoice has no TON price"),
        (chain.next(TON, invoice=old.public_id), "late_or_duplicate", "invoice expired"),
        (chain.next(1, deposit=world.depositor.deposit_code), "unmatched",
         "deposit too small to credit"),
        (chain.next(TON, deposit="0000000000"), "unmatched", "unknown deposit code"),
        (chain.next(5, "x\x00y" * 3000), "unmatched", "no invoice or deposit reference"),
        (chain.next(TON, ignore="bounced"), "ignored", "bounced"),
    ]
    for t, outcome, note in cases:
        result = await settle(world, t)
        assert result.outcome == outcome, t
        rows = await run_sql(world.engine, "SELECT note FROM ton_transfers WHERE tx_hash = :h",
                             h=t.tx_hash)
        assert rows[0]["note"] == note
    after = await get_invoice(world.engine, inv.public_id)
    assert (after.status, after.uses, after.ton_received) == ("paid", 2, 2_200_000_000)
    stored = await run_sql(world.engine, "SELECT comment FROM ton_transfers WHERE value_nano = 5")
    assert "\x00" not in str(stored[0]["comment"]) and len(str(stored[0]["comment"])) == 2000
    assert await world.invariants() == []


async def test_lateness_is_judged_by_when_the_transfer_was_made(world: World) -> None:
    """The watcher was down: a transfer made before the expiry is seen only after the invoice
    was marked expired. The buyer paid on time, so the invoice is paid; one made after the
    expiry is late."""
    import time

    from ledger.invoices import expire_due_invoices

    chain = SyntheticChain()
    on_time = await create_invoice(world.engine, seller_id=world.seller.id, title="On time",
                                   amount=TON, currency="TON")
    too_late = await create_invoice(world.engine, seller_id=world.seller.id, title="Too late",
                                    amount=TON, currency="TON")
    await run_sql(world.engine, "UPDATE invoices SET expires_at = now() - interval '1 minute' "
                                "WHERE id IN (:a, :b)", a=on_time.id, b=too_late.id)
    await expire_due_invoices(world.engine)
    assert (await get_invoice(world.engine, on_time.public_id)).status == "expired"
    now = int(time.time())
    sent_before = replace(chain.next(TON, invoice=on_time.public_id), utime=now - 300)
    sent_after = replace(chain.next(TON, invoice=too_late.public_id), utime=now - 10)
    assert (await settle(world, sent_before)).outcome == "paid"
    assert (await get_invoice(world.engine, on_time.public_id)).status == "paid"
    late = await settle(world, sent_after)
    assert late.outcome == "late_or_duplicate"
    assert (await get_invoice(world.engine, too_late.public_id)).status == "expired"
    assert await world.invariants() == []


async def test_bad_transfer_input_is_refused(world: World) -> None:
    t = SyntheticChain().next(TON)
    for bad in (replace(t, tx_hash="XYZ"), replace(t, prev_hash="12"),
                replace(t, value_nano=-1)):
        with pytest.raises(ValueError):
            await settle(world, bad)
    with pytest.raises(ValueError):
        await record_transfer(world.engine, t, currency="EUR", ton_rate=RATE)
    assert await run_sql(world.engine, "SELECT * FROM ton_transfers") == []


# --- the operator ------------------------------------------------------------------------


async def test_operator_resolves_each_held_transfer_once(
        world: World, toncenter: Toncenter) -> None:
    await settle_fixtures(world, toncenter)
    held = await list_transfers(world.engine, unmatched=True)
    assert {t.tx_hash for t in held} == {HASH_OF_CASE[c] for c in (
        "lowercase_spaces", "non_ascii", "no_comment", "binary_body", "invalid_utf8",
        "wrong_comment", "over", "duplicate", "late", "guest_tag")}
    everything = await list_transfers(world.engine)
    assert len(everything) == 21  # incoming only: not deploy / bounce_send / outgoing

    async def suspense_sum() -> int:
        return (await world.account_sums())[("suspense", "TON")]

    start = await suspense_sum()
    # A buyer typed the id wrong: the operator applies it to the invoice meant.
    wrong = HASH_OF_CASE["wrong_comment"]
    done = await resolve_transfer(world.engine, wrong, apply_invoice="INV-8B2D4F6H8K0MP",
                                  currency="LIQ", ton_rate=RATE)
    assert (done.action, done.outcome, done.invoice_status, done.amount_nano) == (
        "apply", "paid", "paid", TON)
    assert done.claim_token  # a guest: the item waits for the claim
    with pytest.raises(NothingHeld):
        await resolve_transfer(world.engine, wrong, apply_invoice="8B2D4F6H8K0MP",
                               currency="LIQ", ton_rate=RATE)
    # 0.3 TON cannot pay a 1 TON invoice: refused, nothing changed.
    no_comment = HASH_OF_CASE["no_comment"]
    fresh = await create_invoice(world.engine, seller_id=world.seller.id, title="Fresh",
                                 amount=TON, currency="TON", expires_in=timedelta(days=1))
    with pytest.raises(NotEnoughForInvoice) as err:
        await resolve_transfer(world.engine, no_comment, apply_invoice=fresh.public_id,
                               currency="LIQ", ton_rate=RATE)
    assert (err.value.needed, err.value.available) == (TON, 300_000_000)
    assert (await get_invoice(world.engine, fresh.public_id)).ton_received == 0
    # ...so it is credited to the sender, whom the operator identified (base64 hash too).
    b64 = base64.b64encode(bytes.fromhex(no_comment)).decode()
    done = await resolve_transfer(world.engine, b64, credit_user_id=world.depositor.id,
                                  currency="LIQ", ton_rate=RATE)
    assert done.credited == 150
    assert await balance(world.engine, world.depositor.id) == 1500 + 150
    # The late payment was sent back on chain.
    done = await resolve_transfer(world.engine, HASH_OF_CASE["late"],
                                  refund_note="refunded in tx abc", currency="LIQ",
                                  ton_rate=RATE)
    assert done.action == "refund"
    assert await suspense_sum() == start - TON - 300_000_000 - TON

    # Bad input: a clear error, nothing changed.
    dup = HASH_OF_CASE["duplicate"]
    bad_calls = [
        (TransferNotFound, dict(tx_hash="ab" * 32, refund_note="x")),
        (TransferNotFound, dict(tx_hash="not a hash", refund_note="x")),
        (NothingHeld, dict(tx_hash=HASH_OF_CASE["plain"], refund_note="x")),
        (NothingHeld, dict(tx_hash=HASH_OF_CASE["bounced"], refund_note="x")),
        (InvalidResolution, dict(tx_hash=dup)),
        (InvalidResolution, dict(tx_hash=dup, refund_note="x", credit_user_id=world.buyer.id)),
        (InvalidResolution, dict(tx_hash=dup, refund_note="   ")),
        (InvoiceNotFound, dict(tx_hash=dup, apply_invoice="INV-???")),
        (InvoiceNotFound, dict(tx_hash=dup, apply_invoice="ZZZZZZZZZZZZZ")),
        (InvoiceAlreadyPaid, dict(tx_hash=dup, apply_invoice="7Q4M2X9KTBHWA")),
        (UserNotFound, dict(tx_hash=dup, credit_user_id=10**12)),
    ]
    no_ton = await create_invoice(world.engine, seller_id=world.seller.id, title="x", amount=1)
    bad_calls.append((InvoiceNotTon, dict(tx_hash=dup, apply_invoice=no_ton.public_id)))
    before = await world.account_sums()
    for error, kwargs in bad_calls:
        with pytest.raises(error):
            await resolve_transfer(world.engine, currency="LIQ", ton_rate=RATE,
                                   **kwargs)  # type: ignore[arg-type]
    assert await world.account_sums() == before
    assert await world.invariants() == []


async def test_a_stranded_partial_goes_to_another_invoice(world: World) -> None:
    chain = SyntheticChain()
    a = await create_invoice(world.engine, seller_id=world.seller.id, title="A", amount=TON,
                             currency="TON")
    b = await create_invoice(world.engine, seller_id=world.seller.id, title="B", amount=TON,
                             currency="TON")
    part = chain.next(700_000_000, invoice=a.public_id)
    assert (await settle(world, part)).outcome == "partial"
    with pytest.raises(HoldOfInvoice):  # it already counts toward A
        await resolve_transfer(world.engine, part.tx_hash, apply_invoice=a.public_id,
                               currency="LIQ", ton_rate=RATE)
    assert (await settle(world, chain.next(400_000_000, invoice=b.public_id))).outcome \
        == "partial"
    done = await resolve_transfer(world.engine, part.tx_hash, apply_invoice=b.public_id,
                                  currency="LIQ", ton_rate=RATE)
    # 0.7 + B's own 0.4 = 1.1 TON: B paid, 0.1 TON excess held for B's guest.
    assert (done.outcome, done.held_nano) == ("excess", 100_000_000)
    seen = await transfers_for_invoice(world.engine, b.public_id)
    assert (seen.status, seen.partial_nano, seen.excess_held_nano) == ("paid", 0, 100_000_000)
    assert (await get_invoice(world.engine, a.public_id)).status == "pending"
    assert await world.invariants() == []
