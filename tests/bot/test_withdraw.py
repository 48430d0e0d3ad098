"""/withdraw in the bot: checked at once, confirmed with a button, ordered once; every refusal
is a sentence and leaves the balance as it was; /history shows withdrawals and where they
stand; the user is told when one is sent or given back. (Settings: LIQ balance at 5.00 per
TON, the default limits — 100 TON a day, approval above 20 TON — and TON_WALLET is ours.)"""

from __future__ import annotations

from ledger import payouts
from ledger.accounts import balance
from ledger.addresses import friendly
from ledger.core import Ledger
from tests.bot.conftest import TON_WALLET
from tests.conftest import run_sql
from tests.test_payouts import drain_in_flight

TON = 10**9
WALLET = friendly("0:" + "cd" * 32, bounceable=False)  # the user's own, mainnet, UQ…


async def orders(engine, user_id: int) -> list[payouts.Payout]:  # type: ignore[no-untyped-def]
    return await payouts.list_payouts(engine, user_id=user_id)


async def test_a_withdrawal_is_confirmed_then_ordered_once(person, engine) -> None:  # type: ignore[no-untyped-def]
    buyer = await person(balance=200_00)
    [usage] = await buyer.send("/withdraw")
    assert "/withdraw TON 2.5" in usage.plain and "100 TON" in usage.plain
    [ask] = await buyer.send(f"/withdraw ton 2 {WALLET}")
    assert ask.plain.startswith(f"Withdraw 2 TON to {WALLET}?")
    assert "Your balance pays 10.00 Liquid $" in ask.plain
    assert await balance(engine, buyer.user.id) == 200_00  # nothing happens before the tap
    tap = await buyer.tap(ask, "Withdraw")
    [done] = tap.edited
    [p] = await orders(engine, buyer.user.id)
    assert done.plain.startswith(f"✅ Withdrawal #{p.id} of 2 TON to {WALLET} is on its way")
    assert (p.status, p.amount, p.destination_given) == ("queued", 2 * TON, WALLET)
    again = await buyer.press(ask, "wd:ok")  # the old button again
    assert again.alert and "no longer waiting" in (again.answer_text or "")
    assert len(await orders(engine, buyer.user.id)) == 1
    assert await balance(engine, buyer.user.id) == 190_00


async def test_cancel_withdraws_nothing(person, engine) -> None:  # type: ignore[no-untyped-def]
    buyer = await person(balance=50_00)
    [ask] = await buyer.send(f"/withdraw TON 1 {WALLET}")
    tap = await buyer.tap(ask, "Cancel")
    assert tap.edited[0].plain == "Cancelled: nothing was withdrawn."
    assert (await buyer.press(ask, "wd:ok")).alert
    assert await orders(engine, buyer.user.id) == []
    assert await balance(engine, buyer.user.id) == 50_00


async def test_bad_withdrawals_get_a_sentence_and_change_nothing(person, engine) -> None:  # type: ignore[no-untyped-def]
    buyer = await person(balance=20_00)
    testnet = friendly("0:" + "cd" * 32, bounceable=False, testnet=True)
    said = {}
    for label, text in {
        "malformed": f"/withdraw TON 1 {WALLET[:-2]}xx",
        "network": f"/withdraw TON 1 {testnet}",
        "ours": f"/withdraw TON 1 {TON_WALLET}",
        "asset": f"/withdraw DOGE 1 {WALLET}",
        "amount": f"/withdraw TON 1.0000000001 {WALLET}",
    }.items():
        [reply] = await buyer.send(text)
        said[label] = reply.plain
    assert said["malformed"].startswith("This is not a TON address")
    assert said["network"].startswith("This address is for the other TON network")
    assert said["ours"].startswith("This address belongs to paybot itself")
    assert said["asset"] == "Withdrawals are sent in TON or USDT."
    assert said["amount"] == "The amount is not valid."  # more than TON's 9 decimals
    [ask] = await buyer.send(f"/withdraw TON 5 {WALLET}")  # 25.00 from 20.00
    tap = await buyer.tap(ask, "Withdraw")
    assert tap.alert and "Not enough" in (tap.answer_text or "")
    assert await orders(engine, buyer.user.id) == []
    assert await balance(engine, buyer.user.id) == 20_00


async def test_the_daily_limit_says_what_is_left(person, engine) -> None:  # type: ignore[no-untyped-def]
    buyer = await person(balance=600_00)
    [ask] = await buyer.send(f"/withdraw TON 19 {WALLET}")
    await buyer.tap(ask, "Withdraw")
    [ask] = await buyer.send(f"/withdraw TON 90 {WALLET}")  # 19 + 90 > 100 TON a day
    tap = await buyer.tap(ask, "Withdraw")
    assert tap.alert and tap.answer_text == ("That is more than you may withdraw today: "
                                             "81 TON left.")
    assert len(await orders(engine, buyer.user.id)) == 1
    assert await balance(engine, buyer.user.id) == 600_00 - 95_00


async def test_a_large_withdrawal_waits_for_the_operator_and_history_shows_it(
        person, engine, bot) -> None:  # type: ignore[no-untyped-def]
    from bot.telegram.notifier import Notifier

    buyer = await person(balance=200_00)
    [ask] = await buyer.send(f"/withdraw TON 25 {WALLET}")
    tap = await buyer.tap(ask, "Withdraw")
    assert "waits for the operator's approval" in tap.edited[0].plain
    [small] = await buyer.send(f"/withdraw TON 1 {WALLET}")
    await buyer.tap(small, "Withdraw")
    big, one = sorted(await orders(engine, buyer.user.id), key=lambda p: -p.amount)
    [history] = await buyer.send("/history")
    assert "Withdrawals" in history.plain
    short = f"{WALLET[:6]}…{WALLET[-6:]}"
    assert f"25 TON → {short} · waiting for approval" in history.plain
    assert f"1 TON → {short} · queued" in history.plain
    assert "withdrawal" in history.plain  # the debit in the statement, named
    notifier = Notifier(Ledger(engine), bot)
    await notifier.deliver_due()  # whatever other tests left
    await payouts.reject(engine, big.id, note="please verify your account")
    await notifier.deliver_due()
    told = buyer.last.plain
    assert told.startswith(f"↩️ Your withdrawal #{big.id} of 25 TON was not approved: "
                           "please verify your account. The money is back on your balance.")
    await drain_in_flight(engine)  # one message in flight at a time (shared database)
    h = "ab" * 30 + f"{one.id:04x}"
    await payouts.mark_signed(engine, one.id, seqno=1, valid_until=2_000_000_000,
                              ext_msg_hash=h, boc=b"x")
    await payouts.landed(engine, h, "cd" * 32, sent=True)
    await notifier.deliver_due()
    assert buyer.last.plain.startswith(f"✅ Your withdrawal #{one.id} of 1 TON was sent to "
                                       f"{WALLET}.")
    assert await balance(engine, buyer.user.id) == 200_00 - 5_00
    rows = await run_sql(engine, "SELECT count(*) AS n FROM outbox WHERE failed_at IS NOT NULL "
                                 "AND event_type LIKE 'payout.%'")
    assert rows == [{"n": 0}]
