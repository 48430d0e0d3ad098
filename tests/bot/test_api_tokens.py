"""/api in the bot: the seller's active tokens listed, a new one shown once, any one revoked
(after a confirmation, by its owner only), and at the limit a way out instead of a dead end."""

from __future__ import annotations

from ledger.api_tokens import authenticate, issue_token
from ledger.errors import MAX_ACTIVE_TOKENS
from tests.conftest import run_sql


async def _active_hints(engine, user_id: int) -> list[str]:  # type: ignore[no-untyped-def]
    rows = await run_sql(engine, "SELECT hint FROM api_tokens WHERE user_id = :u "
                                 "AND revoked_at IS NULL ORDER BY id", u=user_id)
    return [str(r["hint"]) for r in rows]


async def test_a_new_token_is_shown_once_and_listed(person, engine) -> None:
    seller = await person()
    [menu] = await seller.send("/api")
    assert menu.plain.startswith("🔑 You have no API tokens.")
    assert menu.button_texts == ["➕ New token"]
    tap = await seller.tap(menu, "New token")
    [shown] = tap.sent
    token = shown.plain.split("\n")[1]
    assert token.startswith("pbk_") and "Authorization: Bearer" in shown.plain
    assert await authenticate(engine, token) is not None
    [listed] = tap.edited
    assert listed.message_id == menu.message_id
    assert f"(1 of {MAX_ACTIVE_TOKENS} active)" in listed.plain
    assert f"• {token[:8]}… — created " in listed.plain and "last used never" in listed.plain
    assert token not in listed.plain  # the list never shows a whole token
    assert listed.button_texts == ["➕ New token", f"✖ Revoke {token[:8]}…"]


async def test_revoke_from_the_bot(person, engine) -> None:
    seller = await person()
    keep, _ = await issue_token(engine, seller.user.id)
    gone, gone_id = await issue_token(engine, seller.user.id)
    [menu] = await seller.send("/api")
    assert "(2 of 20 active)" in menu.plain
    [ask] = (await seller.tap(menu, f"Revoke {gone[:8]}")).edited
    assert ask.plain.startswith(f"Revoke {gone[:8]}…?")
    assert await authenticate(engine, gone) is not None  # asking is not revoking
    tap = await seller.tap(ask, "Yes, revoke it")
    assert tap.answer_text == f"Token {gone[:8]}… revoked." and not tap.alert
    [after] = tap.edited
    assert "(1 of 20 active)" in after.plain and gone[:8] not in after.plain
    assert await authenticate(engine, gone) is None
    assert await authenticate(engine, keep) is not None

    again = await seller.press(ask, f"api:revoke:{gone_id}")  # the confirmation tapped twice
    assert again.alert and again.answer_text == "That token is not active any more."
    assert await _active_hints(engine, seller.user.id) == [keep[:8]]


async def test_at_the_limit_the_bot_offers_revoking(person, engine) -> None:
    seller = await person()
    for _ in range(MAX_ACTIVE_TOKENS):
        await issue_token(engine, seller.user.id)
    [menu] = await seller.send("/api")
    assert f"({MAX_ACTIVE_TOKENS} of {MAX_ACTIVE_TOKENS} active)" in menu.plain
    assert "revoke one below to get a new one" in menu.plain
    assert "➕ New token" not in menu.button_texts
    assert len(menu.button_texts) == MAX_ACTIVE_TOKENS  # one revoke button per token
    oldest = menu.button_texts[0].removeprefix("✖ Revoke ").removesuffix("…")
    [ask] = (await seller.tap(menu, menu.button_texts[0])).edited
    [after] = (await seller.tap(ask, "Yes, revoke it")).edited
    assert after.button_texts[0] == "➕ New token"  # room again
    [shown] = (await seller.tap(after, "New token")).sent
    assert shown.plain.split("\n")[1].startswith("pbk_")
    hints = await _active_hints(engine, seller.user.id)
    assert len(hints) == MAX_ACTIVE_TOKENS and oldest not in hints


async def test_a_stale_new_token_button_at_the_limit(person, engine) -> None:
    seller = await person()
    [menu] = await seller.send("/api")
    for _ in range(MAX_ACTIVE_TOKENS):  # filled meanwhile (the HTTP side, another chat)
        await issue_token(engine, seller.user.id)
    tap = await seller.tap(menu, "New token")
    assert tap.alert and "maximum number of active API tokens" in (tap.answer_text or "")
    assert tap.sent == []
    assert len(await _active_hints(engine, seller.user.id)) == MAX_ACTIVE_TOKENS


async def test_nobody_revokes_another_sellers_token(person, engine) -> None:
    owner, other = await person(), await person()
    token, token_id = await issue_token(engine, owner.user.id)
    [menu] = await other.send("/api")
    for action in ("ask", "revoke"):
        tap = await other.press(menu, f"api:{action}:{token_id}")
        assert tap.alert and tap.answer_text == "That token is not active any more."
    assert await authenticate(engine, token) is not None


async def test_russian_seller(person, engine) -> None:
    seller = await person(language="ru")
    await issue_token(engine, seller.user.id)
    [menu] = await seller.send("/api")
    assert "API-токены для HTTP API (активных: 1 из 20)" in menu.plain
    assert "использован ни разу" in menu.plain
    assert menu.button_texts[0] == "➕ Новый токен"
