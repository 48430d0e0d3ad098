"""Every @ton/sandbox fixture transaction, read through each source, gets its outcome — and
the money lands where it should, through balanced entries."""

from __future__ import annotations

import asyncpg
import pytest

from ledger.accounts import balance
from ledger.invoice_reads import get_invoice
from ledger.payments import grants_of_user
from tests.conftest import run_sql
from tests.watchers.conftest import (
    EXPECTED,
    HASH_OF_CASE,
    TON,
    Toncenter,
    World,
    run_until_idle,
)
from tests.watchers.standins import TXS, Chain, FixtureLiteBalancer
from watchers.ton_sources import HttpApiSource, LiteserverSource, TransactionSource


async def assert_fixture_world(world: World) -> None:
    """The state after every fixture transaction was settled once."""
    assert await world.outcomes() == EXPECTED
    rows = await run_sql(world.engine, "SELECT tx_hash, note, held_nano, excess_nano, credited "
                                       "FROM ton_transfers")
    by_case = {r["tx_hash"]: r for r in rows}
    note = {c: by_case[h]["note"] for c, h in HASH_OF_CASE.items()}
    assert note["wrong_comment"] == "unknown invoice"
    assert note["no_comment"] == "no comment"
    assert note["binary_body"] == "binary body"
    assert note["invalid_utf8"] == "comment is not valid UTF-8"
    assert note["non_ascii"] == "no invoice or deposit reference"
    assert note["duplicate"] == "invoice already paid"
    assert note["late"] == "invoice cancelled"
    assert note["bounced"].startswith("bounced")
    assert note["aborted"] == note["prefund"] == "aborted transaction"
    held = {c: by_case[h]["held_nano"] for c, h in HASH_OF_CASE.items()}
    assert held["lowercase_spaces"] == TON  # a guest's excess, held for claim or refund
    assert held["over"] == TON // 2
    assert held["under_1"] == 990_000_000  # held while partial, released by under_2
    assert by_case[HASH_OF_CASE["over"]]["excess_nano"] == TON // 2
    assert by_case[HASH_OF_CASE["deposit"]]["credited"] == 1500  # 3 TON at 5.00 = 15.00 LIQ

    status = {pid: (await get_invoice(world.engine, pid)).status for pid in world.invoices}
    assert status == {
        "7Q4M2X9KTBHWA": "paid", "3N8P5R1CVD6YE": "paid", "9F2G7H4JKM0NQ": "paid",
        "5T6V8W2XYZ4AB": "paid", "1C3D5E7F9G0HJ": "paid", "2K4M6N8P0Q1RS": "cancelled",
        "8B2D4F6H8K0MP": "pending",  # the aborted dust transfer did not count
        "4A6C8E0G2J4KM": "paid", "6D8F0H2K4M6PR": "paid", "0R2T4V6X8Z0B1": "paid",
        "3W5Y7A9C1E3GH": "paid",
    }
    under = await get_invoice(world.engine, "5T6V8W2XYZ4AB")
    assert under.ton_received == TON
    payments = await run_sql(world.engine, """
        SELECT i.public_id, p.method, p.external_ref, g.claim_token IS NOT NULL AS claim
          FROM payments p JOIN invoices i ON i.id = p.invoice_id
          JOIN grants g ON g.payment_id = p.id""")
    assert sorted(p["public_id"] for p in payments) == sorted(
        ["7Q4M2X9KTBHWA", "3N8P5R1CVD6YE", "9F2G7H4JKM0NQ", "5T6V8W2XYZ4AB", "1C3D5E7F9G0HJ",
         "4A6C8E0G2J4KM", "6D8F0H2K4M6PR", "0R2T4V6X8Z0B1", "3W5Y7A9C1E3GH"])
    assert all(p["method"] == "ton" for p in payments)
    # Only the buyer's tag named a payer; everyone else's item waits under a claim.
    assert {p["public_id"] for p in payments if not p["claim"]} == {"4A6C8E0G2J4KM"}

    # The payer tags: the buyer's got the item and 0.5 TON at the locked 5.00 at once; the
    # guest's (typed "g7hlo") is linked to its tag with the 0.2 TON excess held; another
    # invoice's tag and an unknown one paid as bare references, noted.
    tagged = {c: by_case[HASH_OF_CASE[c]] for c in ("user_tag", "guest_tag", "foreign_tag",
                                                    "unknown_tag")}
    assert (tagged["user_tag"]["credited"], tagged["user_tag"]["held_nano"]) == (250, 0)
    assert (tagged["guest_tag"]["credited"], tagged["guest_tag"]["held_nano"]) == (
        None, 200_000_000)
    assert tagged["foreign_tag"]["note"] == "unknown payer tag K3M9P"
    assert tagged["unknown_tag"]["note"] == "unknown payer tag ZZZZZ"
    assert tagged["user_tag"]["note"] is None and tagged["guest_tag"]["note"] is None
    assert [g.item_id for g in await grants_of_user(world.engine, world.buyer.id)] == [
        "item-4A6C8E0G2J4KM"]
    assert await balance(world.engine, world.buyer.id) == 250

    # Where the money is (entries, pending credits included): 18.3 TON came in.
    sums = await world.account_sums()
    seller = f"user:{world.seller.id}"
    assert sums[("chain_inflow", "TON")] == -18_300_000_000
    assert sums[("suspense", "TON")] == 5_800_000_000  # unmatched, late, duplicate, excess
    # became Liquid $: three LIQ invoices, the buyer's credited excess and the deposit
    assert sums[("fx", "TON")] == 7_500_000_000
    assert sums[(seller, "TON")] == 5 * TON
    assert sums[(seller, "LIQ")] == 2000
    assert sums[("chain_inflow", "LIQ")] == -3750
    assert await balance(world.engine, world.depositor.id) == 1500
    assert await world.invariants() == []


def http(toncenter: Toncenter, page_size: int) -> HttpApiSource:
    return HttpApiSource(toncenter.url, "test-key", page_size=page_size)


async def test_http_source_settles_every_fixture_case(world: World, toncenter: Toncenter) -> None:
    watcher = world.watcher(http(toncenter, page_size=4))
    try:
        assert await run_until_idle(watcher) == len(TXS)
    finally:
        await watcher.close()
    await assert_fixture_world(world)
    # 24 transactions through pages of 4: walked back page by page from the head, each page
    # asked from the previous one's predecessor (lt + hash), never past the cursor.
    pages = -(-len(TXS) // 4)
    first_poll, second_poll = toncenter.chain.requests[:pages], toncenter.chain.requests[pages:]
    assert "lt" not in first_poll[0] and "to_lt" not in first_poll[0]
    assert [r["limit"] for r in first_poll] == ["4"] * pages
    assert all("lt" in r and "hash" in r and r["archival"] == "true" for r in first_poll[1:])
    assert all(r["X-API-Key"] == "test-key" for r in toncenter.chain.headers)
    # The next poll asks only for what is newer than the cursor: nothing.
    assert second_poll == [{"address": second_poll[0]["address"], "limit": "4",
                            "archival": "true", "to_lt": str(TXS[-1]["lt"])}]


async def test_liteserver_source_settles_every_fixture_case(world: World) -> None:
    client = FixtureLiteBalancer(Chain())

    async def connect() -> FixtureLiteBalancer:
        return client

    watcher = world.watcher(LiteserverSource(connect, page_size=3))
    try:
        assert await run_until_idle(watcher) == len(TXS)
    finally:
        await watcher.close()
    await assert_fixture_world(world)
    assert client.calls[0][0] == "raw_get_account_state"  # the head, then walking back
    assert {c[0] for c in client.calls[1:]} >= {"get_transactions"}
    assert client.closed


@pytest.mark.parametrize("source_kind", ["http", "liteserver"])
async def test_transfers_arriving_over_time(world: World, toncenter: Toncenter,
                                            source_kind: str) -> None:
    """The chain grows between polls (and by more than a page at once): each poll settles
    exactly what is new, and the end state is the same as in one go."""
    chain = toncenter.chain
    source: TransactionSource
    if source_kind == "http":
        source = http(toncenter, page_size=2)
    else:
        client = FixtureLiteBalancer(chain)

        async def connect() -> FixtureLiteBalancer:
            return client

        source = LiteserverSource(connect, page_size=2)
    watcher = world.watcher(source)
    try:
        seen = 0
        for visible in (0, 1, 2, 3, 9, 10, 10, 17, len(TXS)):
            chain.visible = visible
            seen += await watcher.poll_once()
            assert seen == visible
        assert await watcher.poll_once() == 0
    finally:
        await watcher.close()
    await assert_fixture_world(world)


async def test_restart_settles_nothing_twice(world: World, toncenter: Toncenter) -> None:
    first = world.watcher(http(toncenter, page_size=50))
    await run_until_idle(first)
    await first.close()
    before = await run_sql(world.engine, "SELECT count(*) AS n FROM entries")
    again = world.watcher(http(toncenter, page_size=50))
    try:
        assert await again.poll_once() == 0
    finally:
        await again.close()
    assert await run_sql(world.engine, "SELECT count(*) AS n FROM entries") == before
    await assert_fixture_world(world)


async def test_start_lt_leaves_the_history_before_it_alone(world: World,
                                                         toncenter: Toncenter) -> None:
    """A wallet with a past: TON_START_LT = its last transaction's lt before paybot."""
    deposit = next(t for t in TXS if t["case"] == "deposit")
    watcher = world.watcher(http(toncenter, page_size=2), start_lt=int(deposit["lt"]))
    try:
        assert await run_until_idle(watcher) == 8
    finally:
        await watcher.close()
    after = ("aborted", "bounce_send", "bounced", "outgoing", "user_tag", "guest_tag",
             "foreign_tag", "unknown_tag")
    assert await world.outcomes() == {c: EXPECTED[c] for c in after}
    assert await balance(world.engine, world.depositor.id) == 0


async def test_settlements_wake_this_process_and_send_no_notify(
        world: World, toncenter: Toncenter) -> None:
    """After commit, the watcher wakes its own process's delivery once per settlement that
    queued something, and its concurrent settlements send no NOTIFY (whose database-wide lock
    would serialize their commits): nothing waits for a poll, nothing is slowed."""
    heard: list[str] = []
    listener = await asyncpg.connect(world.url)
    await listener.add_listener("paybot_outbox", lambda *args: heard.append(args[-1]))
    woken = []
    watcher = world.watcher(http(toncenter, page_size=4), after_commit=lambda: woken.append(1))
    try:
        assert await run_until_idle(watcher) == len(TXS)
        # A NOTIFY from a committed transaction would have reached this connection by now:
        # this round trip is answered after anything the server already queued for it.
        await listener.execute("SELECT 1")
    finally:
        await watcher.close()
        await listener.close()
    settled = await run_sql(world.engine, "SELECT count(*) AS n FROM ton_transfers "
                                          "WHERE outcome <> 'ignored'")
    assert len(woken) == settled[0]["n"] > 0
    assert heard == []
    events = await run_sql(world.engine, "SELECT count(*) AS n FROM outbox")
    assert events[0]["n"] > 0  # there was something to deliver
