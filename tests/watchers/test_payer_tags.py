"""The attack from issue 10, on real @ton/sandbox transactions through the watcher: the comment
`INV-<id>` and the shop's address are public, so whoever watches the chain could claim a guest's
purchase. Now the comment names the payer (`INV-<id>-<tag>`) and only the payer gets the item."""

from __future__ import annotations

import pytest

from ledger.accounts import balance
from ledger.errors import ClaimNotFound, TagTaken
from ledger.payers import bind_user, guest_purchase, tag_for_guest
from ledger.payments import grants_of_user
from ledger.users import ensure_user
from tests.conftest import run_sql
from tests.watchers.conftest import (
    EXPECTED,
    GUEST_KEY,
    GUEST_PROOF,
    GUEST_TAG,
    HASH_OF_CASE,
    RATE,
    USER_TAG,
    Toncenter,
    World,
    run_until_idle,
)
from tests.watchers.standins import TXS
from watchers.ton_sources import HttpApiSource

ATTACKER_KEY = "attacker-browser-opened-early"
LATECOMER_KEY = "browser-arriving-after-the-payment"


async def settle_all(world: World, toncenter: Toncenter) -> None:
    watcher = world.watcher(HttpApiSource(toncenter.url, page_size=50))
    try:
        await run_until_idle(watcher)
    finally:
        await watcher.close()


async def state(world: World) -> object:
    return (await run_sql(world.engine, "SELECT * FROM payer_tags ORDER BY id"),
            await run_sql(world.engine, "SELECT id, user_id FROM grants ORDER BY id"),
            await run_sql(world.engine, "SELECT id, released_at FROM ton_holds ORDER BY id"),
            await run_sql(world.engine, "SELECT count(*) AS n FROM entries"))


async def test_the_users_tag_hands_them_the_item_and_the_excess_at_once(
        world: World, toncenter: Toncenter) -> None:
    await settle_all(world, toncenter)
    (t,) = await run_sql(world.engine, """
        SELECT t.outcome, t.user_id, t.credited, t.held_nano, t.claim_token, p.tag
          FROM ton_transfers t JOIN payer_tags p ON p.id = t.payer_tag_id
         WHERE t.tx_hash = :h""", h=HASH_OF_CASE["user_tag"])
    assert t == {"outcome": "excess", "user_id": world.buyer.id, "credited": 250,
                 "held_nano": 0, "claim_token": None, "tag": USER_TAG[1]}
    assert [g.item_id for g in await grants_of_user(world.engine, world.buyer.id)] == [
        f"item-{USER_TAG[0]}"]
    assert await balance(world.engine, world.buyer.id) == 250  # 0.5 TON at the locked 5.00


async def test_a_guests_purchase_cannot_be_taken_by_a_watcher_of_the_chain(
        world: World, toncenter: Toncenter) -> None:
    invoice, tag = GUEST_TAG
    # An attacker opens the pay page before the payment (its own browser, its own tag).
    attacker_tag = await tag_for_guest(world.engine, invoice, ATTACKER_KEY)
    await settle_all(world, toncenter)  # the guest paid 1.2 TON with "inv-…-g7hlo"
    latecomer_tag = await tag_for_guest(world.engine, invoice, LATECOMER_KEY)

    mine = await guest_purchase(world.engine, invoice, GUEST_KEY)
    assert mine is not None and (mine.status, mine.received_nano, mine.claim) == (
        "paid", 1_200_000_000, {"claimed": False})
    for key in (ATTACKER_KEY, LATECOMER_KEY):  # before or after the payment: nothing
        theirs = await guest_purchase(world.engine, invoice, key)
        assert theirs is not None and (theirs.status, theirs.claim) == (None, None)
    # Someone else's cookie copied from another invoice: no tag there.
    assert await guest_purchase(world.engine, USER_TAG[0], GUEST_KEY) is None

    # The attacker read the tag off the chain; without the proof it gets nothing.
    attacker = await ensure_user(world.engine, 6666)
    before = await state(world)
    for proof in (None, attacker_tag.proof, latecomer_tag.proof, GUEST_PROOF.upper()):
        with pytest.raises(ClaimNotFound):
            await bind_user(world.engine, invoice, tag.lower(), attacker.id, proof=proof,
                            ton_rate=RATE)
    assert await state(world) == before

    # The guest opens the bot through the link only their browser was shown.
    guest = await ensure_user(world.engine, 7777)
    await bind_user(world.engine, invoice, tag, guest.id, proof=GUEST_PROOF, ton_rate=RATE)
    assert [g.item_id for g in await grants_of_user(world.engine, guest.id)] == [
        f"item-{invoice}"]
    assert await balance(world.engine, guest.id) == 100  # the 0.2 TON excess at 5.00
    after = await state(world)
    with pytest.raises(TagTaken):  # the link used again by a second account
        await bind_user(world.engine, invoice, tag, attacker.id, proof=GUEST_PROOF)
    await bind_user(world.engine, invoice, tag, guest.id, proof=GUEST_PROOF)  # again: no-op
    assert await state(world) == after
    assert await balance(world.engine, guest.id) == 100
    assert await grants_of_user(world.engine, attacker.id) == []
    assert await world.invariants() == []


async def test_bare_foreign_and_unknown_references_pay_but_nobody_claims_them(
        world: World, toncenter: Toncenter) -> None:
    # Browsers that were on the pages of bare-paid invoices before the payments.
    for invoice in ("7Q4M2X9KTBHWA", "0R2T4V6X8Z0B1", "3W5Y7A9C1E3GH"):
        await tag_for_guest(world.engine, invoice, ATTACKER_KEY)
    await settle_all(world, toncenter)
    rows = await run_sql(world.engine, """
        SELECT t.tx_hash, t.outcome, t.note, t.payer_tag_id, g.user_id, g.claim_token
          FROM ton_transfers t JOIN grants g ON g.payment_id = t.payment_id
         WHERE t.tx_hash IN (:plain, :foreign, :unknown)""",
        plain=HASH_OF_CASE["plain"], foreign=HASH_OF_CASE["foreign_tag"],
        unknown=HASH_OF_CASE["unknown_tag"])
    assert len(rows) == 3
    for r in rows:  # paid; the item waits for the operator; no tag, so no browser has it
        assert r["outcome"] == "paid" and r["payer_tag_id"] is None
        assert r["user_id"] is None and r["claim_token"]
    # The buyer's tag of another invoice named nobody here.
    assert [g.item_id for g in await grants_of_user(world.engine, world.buyer.id)] == [
        f"item-{USER_TAG[0]}"]
    for invoice in ("7Q4M2X9KTBHWA", "0R2T4V6X8Z0B1", "3W5Y7A9C1E3GH"):
        seen = await guest_purchase(world.engine, invoice, ATTACKER_KEY)
        assert seen is not None and (seen.status, seen.claim) == (None, None)


async def test_every_incoming_transfer_is_recorded_with_its_outcome(
        world: World, toncenter: Toncenter) -> None:
    await settle_all(world, toncenter)
    assert await world.outcomes() == EXPECTED
    assert len(EXPECTED) == len(TXS)
    assert await world.invariants() == []
