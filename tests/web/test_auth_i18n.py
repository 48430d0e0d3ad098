"""Init data validation and the guest cookie, and language choice (no database needed)."""

from __future__ import annotations

import time

import pytest

from bot.web.auth import (
    AuthError,
    CookieSigner,
    GuestCookie,
    init_data_from_header,
    validate_init_data,
)
from bot.web.i18n import TEXTS, from_accept_language, normalize
from tests.web.conftest import BOT_TOKEN, sign_init_data

USER = {"id": 1234567, "first_name": "Ann", "username": "ann", "language_code": "ru"}


def test_valid_init_data_gives_the_user():
    now = time.time()
    user = validate_init_data(BOT_TOKEN, sign_init_data(USER, auth_date=now - 30), 600, now=now)
    assert (user.telegram_id, user.username, user.language) == (1234567, "ann", "ru")


def test_extra_fields_such_as_signature_are_covered_by_the_hash():
    init = sign_init_data(USER, signature="abc", chat_type="sender")
    assert validate_init_data(BOT_TOKEN, init, 600).telegram_id == 1234567


@pytest.mark.parametrize(
    ("age", "ok"), [(0, True), (599, True), (601, False), (-30, True), (-120, False)]
)
def test_age_limit(age, ok):
    now = 1_800_000_000.0
    init = sign_init_data(USER, auth_date=now - age)
    if ok:
        validate_init_data(BOT_TOKEN, init, 600, now=now)
    else:
        with pytest.raises(AuthError) as err:
            validate_init_data(BOT_TOKEN, init, 600, now=now)
        assert err.value.code == "init_data_expired"


@pytest.mark.parametrize("init", ["", "a" * 5000, "hash=", "auth_date=1&hash=00", "&&&"])
def test_garbage_is_refused(init):
    with pytest.raises(AuthError):
        validate_init_data(BOT_TOKEN, init, 600)


def test_signed_but_unparseable_user_is_refused():
    init = sign_init_data(None, user="{not json}")
    with pytest.raises(AuthError):
        validate_init_data(BOT_TOKEN, init, 600)


def test_authorization_header():
    assert init_data_from_header(None) is None
    assert init_data_from_header("tma a=1&b=2") == "a=1&b=2"
    assert init_data_from_header("TMA  x") == "x"
    with pytest.raises(AuthError):
        init_data_from_header("Bearer x")


def test_cookie_signer():
    signer = CookieSigner(b"secret")
    guest = GuestCookie(CookieSigner.new_guest_key(), "K3M9P")
    cookie = signer.issue("INVOICE1", guest)
    assert signer.read("INVOICE1", cookie) == guest
    assert signer.read("INVOICE2", cookie) is None  # another invoice's cookie
    assert CookieSigner(b"other").read("INVOICE1", cookie) is None
    key, tag, sig = cookie.split(".")
    assert signer.read("INVOICE1", f"{key}.ZZZZZ.{sig}") is None  # another tag
    assert signer.read("INVOICE1", f"{'x' * 24}.{tag}.{sig}") is None  # another browser
    for bad in (None, "", "x", "a.b.c", "1.2", cookie + "x" * 100, cookie.replace("K", "К")):
        assert signer.read("INVOICE1", bad) is None


def test_languages():
    assert from_accept_language("ru-RU,ru;q=0.9,en-US;q=0.8") == "ru"
    assert from_accept_language("en-GB,ru;q=0.9") == "en"
    assert from_accept_language("de-DE,fr;q=0.9") == "en"
    assert from_accept_language("de;q=1,ru;q=0.5,en;q=0.4") == "ru"
    assert from_accept_language("ru;q=bad,en") == "en"
    assert from_accept_language(None) == "en"
    assert normalize("ru_RU") == "ru" and normalize("uk") is None


def test_both_languages_have_every_text():
    assert set(TEXTS["en"]) == set(TEXTS["ru"])
