"""ledger/payers.py on a real PostgreSQL: payer tags decide who gets a TON purchase.

A user's tag hands them the item and the excess at once; a guest's tag keeps the item under a
claim only that guest can take (bind_user with the proof shown to their browser); a bare or
foreign reference still pays, and nobody gets the item but through the operator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from ledger.accounts import balance
from ledger.errors import (
    ClaimNotFound,
    InvalidContact,
    InvalidGuestKey,
    InvoiceNotFound,
    OwnInvoice,
    TagTaken,
    UnknownTag,
    UserNotFound,
)
from ledger.invoice_reads import get_invoice
from ledger.invoices import create_invoice
from ledger.payers import (
    bind_user,
    canonical_contact,
    find_tag,
    guest_purchase,
    normalize_tag,
    set_contact,
    tag_for_guest,
    tag_for_user,
)
from ledger.payments import grants_of_user
from ledger.transfer_admin import transfers_for_invoice
from ledger.transfers import record_transfer, start_cursor
from ledger.users import ensure_user
from tests.conftest import run_sql
from tests.watchers.conftest import RATE, TON, World, make_world
from tests.watchers.standins import DESTINATION
from tests.watchers.test_ledger_transfers import SyntheticChain

GUEST = "g" * 20 + "-guest-one"
OTHER_GUEST = "h" * 20 + "_guest_two"


@pytest.fixture
async def w(scratch_database: Any) -> AsyncIterator[World]:
    world = await make_world(await scratch_database())
    await start_cursor(world.engine, DESTINATION, 0, "0" * 64)
    yield world
    await world.engine.dispose()


async def new_invoice(w: World, currency: str = "LIQ") -> str:
    if currency == "TON":
        inv = await create_invoice(w.engine, seller_id=w.seller.id, title="Beans", amount=TON,
                                   currency="TON", payload={"item_id": "beans"})
    else:
        inv = await create_invoice(w.engine, seller_id=w.seller.id, title="Beans", amount=500,
                                   currency="LIQ", ton_rate=RATE, payload={"item_id": "beans"})
    return inv.public_id


async def pay(w: World, chain: SyntheticChain, invoice: str, value: int, tag: str | None,
              comment: str | None = None) -> Any:
    t = chain.next(value, comment or f"INV-{invoice}" + (f"-{tag}" if tag else ""),
                   invoice=invoice)
    return await record_transfer(w.engine, replace(t, payer_tag=tag), currency="LIQ",
                                 ton_rate=RATE)


async def snapshot(w: World) -> Any:
    """Everything a wrong claim could change."""
    return (await run_sql(w.engine, "SELECT * FROM payer_tags ORDER BY id"),
            await run_sql(w.engine, "SELECT id, user_id, claimed_at FROM grants ORDER BY id"),
            await run_sql(w.engine, "SELECT id, released_at FROM ton_holds ORDER BY id"),
            await run_sql(w.engine, "SELECT count(*) AS n FROM entries"))


# --- issuing tags ----------------------------------------------------------------------------


async def test_tags_are_stable_per_payer_and_shaped_for_a_wallet_comment(w: World) -> None:
    inv = await new_invoice(w)
    mine = await tag_for_user(w.engine, inv, w.buyer.id)
    assert await tag_for_user(w.engine, inv.lower(), w.buyer.id) == mine  # idempotent
    assert mine.comment == f"INV-{inv}-{mine.tag}" and len(mine.comment) == 23
    assert normalize_tag(mine.tag) == mine.tag and mine.user_id == w.buyer.id
    assert mine.proof is None  # a user's tag needs no proof: they are the user
    guest = await tag_for_guest(w.engine, inv, GUEST)
    assert await tag_for_guest(w.engine, inv, GUEST) == guest
    assert guest.guest_key == GUEST and guest.user_id is None and guest.proof
    other = await tag_for_guest(w.engine, inv, OTHER_GUEST)
    assert len({mine.tag, guest.tag, other.tag}) == 3
    # Another invoice: another tag space.
    inv2 = await new_invoice(w)
    assert (await tag_for_user(w.engine, inv2, w.buyer.id)).invoice_public_id == inv2
    # Found in any case, with Crockford look-alikes mapped; never across invoices.
    looks = guest.tag.lower().replace("1", "l").replace("0", "o")
    assert await find_tag(w.engine, inv.lower(), looks) == guest
    assert await find_tag(w.engine, inv2, guest.tag) != guest
    assert await find_tag(w.engine, inv, "ZZZZZZ") is None
    assert await find_tag(w.engine, "nope", guest.tag) is None


async def test_bad_requests_for_tags_change_nothing(w: World) -> None:
    inv = await new_invoice(w)
    with pytest.raises(OwnInvoice):
        await tag_for_user(w.engine, inv, w.seller.id)
    with pytest.raises(UserNotFound):
        await tag_for_user(w.engine, inv, 10**12)
    with pytest.raises(InvoiceNotFound):
        await tag_for_user(w.engine, "INV-ZZZZZZZZZZZZZ", w.buyer.id)
    for bad in ("", "short", "x" * 200, "no spaces allowed here", "ключ" * 10):
        with pytest.raises(InvalidGuestKey):
            await tag_for_guest(w.engine, inv, bad)
    assert await run_sql(w.engine, "SELECT * FROM payer_tags t JOIN invoices i "
                                   "ON i.id = t.invoice_id WHERE i.public_id = :p", p=inv) == []


# --- settling by tag -------------------------------------------------------------------------


async def test_a_users_tag_grants_the_item_and_credits_the_excess_at_once(w: World) -> None:
    inv = await new_invoice(w)
    tag = await tag_for_user(w.engine, inv, w.buyer.id)
    result = await pay(w, SyntheticChain(), inv, 3 * TON // 2, tag.tag)
    assert (result.outcome, result.claim_token, result.held_nano, result.credited) == (
        "excess", None, 0, 250)  # 0.5 TON at the invoice's locked 5.00
    assert [g.item_id for g in await grants_of_user(w.engine, w.buyer.id)] == ["beans"]
    assert await balance(w.engine, w.buyer.id) == 250
    seen = await transfers_for_invoice(w.engine, inv)
    assert seen.claims == [] and seen.excess_held_nano == 0
    assert seen.transfers[0].user_id == w.buyer.id
    assert await w.invariants() == []


async def test_a_guests_purchase_goes_only_to_the_guest_who_proves_it(w: World) -> None:
    inv = await new_invoice(w)
    paying = await tag_for_guest(w.engine, inv, GUEST)
    early = await tag_for_guest(w.engine, inv, OTHER_GUEST)  # opened the page before the payment
    assert (await guest_purchase(w.engine, inv, GUEST)).status is None  # type: ignore[union-attr]
    result = await pay(w, SyntheticChain(), inv, 6 * TON // 5, paying.tag.lower())
    assert (result.outcome, result.held_nano) == ("excess", TON // 5)  # held with the claim
    assert result.claim_token

    mine = await guest_purchase(w.engine, inv, GUEST)
    assert mine is not None and (mine.status, mine.received_nano, mine.claim) == (
        "paid", 6 * TON // 5, {"claimed": False})
    theirs = await guest_purchase(w.engine, inv, OTHER_GUEST)
    assert theirs is not None and (theirs.status, theirs.claim) == (None, None)
    assert await guest_purchase(w.engine, inv, "z" * 30) is None  # a browser with no tag
    assert await guest_purchase(w.engine, inv, "forged cookie!") is None

    # The tag is public on chain: without the proof shown to the paying browser, nothing.
    before = await snapshot(w)
    for proof in (None, "", early.proof, "x" * 22, "y" * 300):
        with pytest.raises(ClaimNotFound):
            await bind_user(w.engine, inv, paying.tag, w.buyer.id, proof=proof, ton_rate=RATE)
    # The other guest's own proof binds their own (empty) tag, never the paying one.
    await bind_user(w.engine, inv, early.tag, w.depositor.id, proof=early.proof)
    assert await grants_of_user(w.engine, w.depositor.id) == []
    with pytest.raises(TagTaken):  # the depositor already holds a tag of this invoice
        await bind_user(w.engine, inv, paying.tag, w.depositor.id, proof=paying.proof)
    assert (await snapshot(w))[1:] == before[1:]

    bound = await bind_user(w.engine, inv, paying.tag, w.buyer.id, proof=paying.proof,
                            ton_rate=RATE)
    assert bound.user_id == w.buyer.id
    assert [g.item_id for g in await grants_of_user(w.engine, w.buyer.id)] == ["beans"]
    assert await balance(w.engine, w.buyer.id) == 100  # 0.2 TON at the locked 5.00
    assert (await guest_purchase(w.engine, inv, GUEST)).claim == {"claimed": True}  # type: ignore[union-attr]
    # Again by the same account: nothing more. By a second account: TagTaken, nothing changed.
    after = await snapshot(w)
    assert await bind_user(w.engine, inv, paying.tag, w.buyer.id, proof=paying.proof) == bound
    stranger = await ensure_user(w.engine, 4242)
    with pytest.raises(TagTaken):
        await bind_user(w.engine, inv, paying.tag, stranger.id, proof=paying.proof)
    assert await snapshot(w) == after
    assert await balance(w.engine, w.buyer.id) == 100
    assert await w.invariants() == []


async def test_a_bare_reference_pays_but_no_browser_can_claim_it(w: World) -> None:
    inv = await new_invoice(w, "TON")
    await tag_for_guest(w.engine, inv, GUEST)  # was on the page before the payment
    result = await pay(w, SyntheticChain(), inv, TON, None)
    assert result.outcome == "paid" and result.claim_token  # waits for the operator
    assert (await get_invoice(w.engine, inv)).status == "paid"
    seen = await guest_purchase(w.engine, inv, GUEST)
    assert seen is not None and (seen.status, seen.claim) == (None, None)
    late = await tag_for_guest(w.engine, inv, OTHER_GUEST)  # arrived after the payment
    assert (await guest_purchase(w.engine, inv, OTHER_GUEST)).status is None  # type: ignore[union-attr]
    await bind_user(w.engine, inv, late.tag, w.buyer.id, proof=late.proof)
    assert await grants_of_user(w.engine, w.buyer.id) == []
    assert await w.invariants() == []


async def test_unknown_and_foreign_tags_pay_as_bare_and_are_noted(w: World) -> None:
    chain = SyntheticChain()
    inv, other = await new_invoice(w), await new_invoice(w)
    foreign = await tag_for_user(w.engine, other, w.buyer.id)
    used = await pay(w, chain, inv, TON, foreign.tag)  # another invoice's tag: no payer
    assert used.outcome == "paid" and used.claim_token and used.credited is None
    unknown = await pay(w, chain, other, TON, "ZZZZZ")
    assert unknown.outcome == "paid" and unknown.claim_token
    notes = await run_sql(w.engine, "SELECT note, payer_tag_id FROM ton_transfers ORDER BY id")
    assert notes == [{"note": f"unknown payer tag {foreign.tag}", "payer_tag_id": None},
                     {"note": "unknown payer tag ZZZZZ", "payer_tag_id": None}]
    assert await grants_of_user(w.engine, w.buyer.id) == []  # not even to the foreign tag's user
    assert await w.invariants() == []


async def test_a_late_tagged_transfer_is_recorded_and_held(w: World) -> None:
    inv = await new_invoice(w, "TON")
    tag = await tag_for_user(w.engine, inv, w.buyer.id)
    chain = SyntheticChain()
    await pay(w, chain, inv, TON, tag.tag)
    again = await pay(w, chain, inv, TON, tag.tag)
    assert (again.outcome, again.held_nano) == ("late_or_duplicate", TON)
    rows = await run_sql(w.engine, "SELECT outcome, payer_tag_id FROM ton_transfers ORDER BY id")
    assert [r["outcome"] for r in rows] == ["paid", "late_or_duplicate"]
    assert await w.invariants() == []


# --- contacts --------------------------------------------------------------------------------


def test_contacts_are_canonical() -> None:
    assert canonical_contact(" @Some_Buyer ") == "@some_buyer"
    assert canonical_contact("https://t.me/Some_Buyer") == "@some_buyer"
    assert canonical_contact("Ann.Lee@Example.COM") == "Ann.Lee@example.com"
    for bad in ("", "@ab", "not an email", "a@b", "@@x", "<a@b.co>", "@" + "x" * 40):
        with pytest.raises(InvalidContact):
            canonical_contact(bad)


async def test_only_the_guests_browser_sets_its_contact(w: World) -> None:
    inv = await new_invoice(w)
    guest = await tag_for_guest(w.engine, inv, GUEST)
    mine = await tag_for_user(w.engine, inv, w.buyer.id)
    done = await set_contact(w.engine, inv, guest.tag.lower(), GUEST, "@Ann_Lee")
    assert done.contact == "@ann_lee"
    assert (await find_tag(w.engine, inv, guest.tag)).contact == "@ann_lee"  # type: ignore[union-attr]
    before = await snapshot(w)
    with pytest.raises(InvalidContact):
        await set_contact(w.engine, inv, guest.tag, GUEST, "call me maybe")
    for tag, key in ((guest.tag, OTHER_GUEST), (mine.tag, GUEST), ("ZZZZZ", GUEST),
                     ("!!", GUEST), (guest.tag, "bad key")):
        with pytest.raises(UnknownTag):
            await set_contact(w.engine, inv, tag, key, "ann@example.com")
    with pytest.raises(InvoiceNotFound):
        await set_contact(w.engine, "nope", guest.tag, GUEST, "ann@example.com")
    assert await snapshot(w) == before
    with pytest.raises(UnknownTag):
        await bind_user(w.engine, inv, "ZZZZZ", w.buyer.id, proof=guest.proof)
