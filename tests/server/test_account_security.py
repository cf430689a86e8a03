"""The signed-in user's own two-step verification (baton.server.endpoints.account): turning it
on, new recovery codes, turning it off; each action behind the password again (throttled like
sign-ins) and the page's CSRF token; refused to users whose sign-in is managed elsewhere."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
import pytest
from starlette.testclient import TestClient

from baton.core import totp
from baton.core.clock import FakeClock
from baton.core.keys import key_encryption_key
from baton.server.endpoints import account, mfa
from baton.server.runtime.limits import LOCKOUT_FREE_FAILURES
from baton.store.admin import Actor
from baton.store.sql import SQLStore
from tests.server.test_mfa import (
    KEK,
    NOW,
    SECRET,
    WRONG,
    _browser,
    _enrolled,
    _user,
    frozen_lockout_time,  # noqa: F401 (a fixture)
)
from tests.support import PASSWORD, hidden_inputs, running_app, sign_in

_CODES = re.compile(r"<li><code>([a-z2-7]{5}-[a-z2-7]{5})</code></li>")


@contextmanager
def _app(tmp_path: Path, **settings: Any) -> Iterator[tuple[TestClient, SQLStore, FakeClock]]:
    settings.setdefault("key_encryption_key", KEK)
    with running_app(tmp_path, clock=FakeClock(NOW), **settings) as running:
        yield running


def _login(http: TestClient, username: str = "alice") -> httpx2.Response:
    """The password at the login form (what comes next: signed in, or the second step)."""
    fields = hidden_inputs(http.get("/login").text)
    return http.post("/login", data={**fields, "username": username, "password": PASSWORD})


def _signed_in(http: TestClient, username: str = "alice") -> None:
    response = _login(http, username)
    assert response.status_code == 303 and response.headers["location"] == "/", response.text


def _csrf(http: TestClient) -> str:
    page = http.get(account.PAGE)
    assert page.status_code == 200, page.text
    return hidden_inputs(page.text)["csrf"]


def _post(http: TestClient, path: str, code: str, password: str = PASSWORD) -> httpx2.Response:
    return http.post(path, data={"csrf": _csrf(http), "password": password, "code": code})


def _now_code(clock: FakeClock, secret: bytes = SECRET) -> str:
    return totp.totp(secret, clock.now())


def _audits(tmp_path: Path, action: str) -> list[tuple[str, str]]:
    with sqlite3.connect(tmp_path / "baton.db") as db:
        rows = db.execute(
            "SELECT actor, target_id FROM audit_log WHERE action = ?", (action,)
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


def _second_step(http: TestClient, code: str) -> int:
    """A sign-in in a new browser: the password, then `code`; the second step's status."""
    other = _browser(http)
    assert _login(other).headers["location"] == mfa.SECOND_STEP
    page = other.get(mfa.SECOND_STEP)
    fields = hidden_inputs(page.text)
    return other.post(mfa.SECOND_STEP, data={**fields, "code": code}).status_code


def test_not_signed_in_goes_to_the_login_page(tmp_path: Path) -> None:
    with _app(tmp_path) as (http, _store, _clock):
        for path in (account.PAGE, account.TURN_ON):
            response = http.get(path)
            assert response.status_code == 303
            location = urlsplit(response.headers["location"])
            assert location.path == "/login"
            assert parse_qs(location.query) == {"next": [account.PAGE]}
        # A form with a good CSRF token of this browser, but nobody signed in.
        fields = hidden_inputs(http.get("/login").text)
        data = {**fields, "password": PASSWORD, "code": "123456"}
        response = http.post(account.TURN_OFF, data=data)
        assert response.status_code == 303 and response.headers["location"].startswith("/login")


def test_signing_in_from_the_page_comes_back_to_it(tmp_path: Path) -> None:
    with _app(tmp_path) as (http, store, _clock):
        _user(store)
        to_login = http.get(account.PAGE).headers["location"]
        signed = sign_in(http, to_login)
        assert signed.status_code == 303 and signed.headers["location"] == account.PAGE


def test_the_home_and_sign_out_pages_link_to_the_page(tmp_path: Path) -> None:
    with _app(tmp_path) as (http, store, _clock):
        _user(store)
        _signed_in(http)
        assert f'href="{account.PAGE}"' in http.get("/").text
        assert f'href="{account.PAGE}"' in http.get("/logout").text


def _shown_secret(html: str) -> bytes:
    return totp.from_b32(re.findall(r'<code class="secret" id="secret">([A-Z2-7]+)<', html)[0])


def test_a_secret_seen_without_the_password_is_never_the_one_enrolled(tmp_path: Path) -> None:
    """The turn-on page asks no password: whoever uses an unattended session may read its
    secret. The owner's own visit, or a failed confirmation, offers another one."""
    with _app(tmp_path) as (http, store, clock):
        _user(store)
        _signed_in(http)
        seen = _shown_secret(http.get(account.TURN_ON).text)  # someone else, for a moment
        owners_page = http.get(account.TURN_ON)
        secret = _shown_secret(owners_page.text)
        assert secret != seen
        # The code of the secret seen earlier does not confirm: a new secret is offered.
        data = {"csrf": hidden_inputs(owners_page.text)["csrf"], "password": PASSWORD}
        stale = http.post(account.TURN_ON, data={**data, "code": _now_code(clock, seen)})
        assert stale.status_code == 401 and _shown_secret(stale.text) not in (seen, secret)
        fresh = _shown_secret(stale.text)
        clock.advance(30)
        done = http.post(account.TURN_ON, data={**data, "code": _now_code(clock, fresh)})
        assert done.status_code == 200, done.text
        state = anyio.run(store.mfa_state, 1)
        assert state is not None and state.sealed_secret is not None
        assert totp.open_secret(state.sealed_secret, key_encryption_key(KEK), 1) == fresh


def test_a_user_turns_it_on_and_then_signs_in_with_a_code(tmp_path: Path) -> None:
    with _app(tmp_path) as (http, store, clock):
        _user(store)
        _signed_in(http)
        assert "Two-step verification is off" in http.get(account.PAGE).text
        offer = http.get(account.TURN_ON)
        assert offer.status_code == 200
        secret = totp.from_b32(
            re.findall(r'<code class="secret" id="secret">([A-Z2-7]+)<', offer.text)[0]
        )
        assert "otpauth://totp/" in offer.text
        csrf = hidden_inputs(offer.text)["csrf"]
        code = _now_code(clock, secret)
        wrong_password = http.post(
            account.TURN_ON, data={"csrf": csrf, "password": "not it", "code": code}
        )
        assert wrong_password.status_code == 401 and "password is wrong" in wrong_password.text
        # A failed confirmation offers a new secret, in place of the one shown before.
        assert _shown_secret(wrong_password.text) != secret
        wrong_code = http.post(
            account.TURN_ON, data={"csrf": csrf, "password": PASSWORD, "code": WRONG}
        )
        assert wrong_code.status_code == 401
        assert not _audits(tmp_path, "user.mfa_enrol")
        secret = _shown_secret(wrong_code.text)
        code = _now_code(clock, secret)

        done = http.post(account.TURN_ON, data={"csrf": csrf, "password": PASSWORD, "code": code})
        assert done.status_code == 200, done.text
        codes = _CODES.findall(done.text)
        assert len(codes) == 10 and len(set(codes)) == 10
        assert _audits(tmp_path, "user.mfa_enrol") == [("alice", "alice")]
        page = http.get(account.PAGE).text
        assert "Two-step verification is on" in page and "10 recovery codes left." in page

        # Signing in now asks for a code; a recovery code works, once.
        clock.advance(totp.STEP)
        assert _second_step(http, codes[0]) == 303
        assert _second_step(http, codes[0]) == 401
        assert _second_step(http, _now_code(clock, secret)) == 303


def test_new_recovery_codes_replace_the_old_ones(tmp_path: Path) -> None:
    with _app(tmp_path) as (http, store, clock):
        user_id = _user(store)
        _signed_in(http)
        old = _enrolled(store, user_id)
        # A recovery code is not a TOTP code: it does not renew them (and is not spent).
        refused = _post(http, account.RENEW, old[0])
        assert refused.status_code == 401
        renewed = _post(http, account.RENEW, _now_code(clock))
        assert renewed.status_code == 200, renewed.text
        new = _CODES.findall(renewed.text)
        assert len(new) == 10 and not set(new) & set(old)
        assert _audits(tmp_path, "user.mfa_recovery_renew") == [("alice", "alice")]
        with sqlite3.connect(tmp_path / "baton.db") as db:
            detail = db.execute(
                "SELECT detail FROM audit_log WHERE action = 'user.mfa_recovery_renew'"
            ).fetchone()[0]
        assert json.loads(detail) == {"codes": 10}
        # The code's step is spent: the same code does not renew them again.
        assert _post(http, account.RENEW, _now_code(clock)).status_code == 401

        assert _second_step(http, old[0]) == 401
        assert _second_step(http, new[0]) == 303
        assert _second_step(http, new[0]) == 401


def test_a_user_turns_it_off_with_a_code(tmp_path: Path) -> None:
    with _app(tmp_path) as (http, store, _clock):
        user_id = _user(store)
        _signed_in(http)
        codes = _enrolled(store, user_id)
        assert _post(http, account.TURN_OFF, WRONG).status_code == 401
        done = _post(http, account.TURN_OFF, codes[0])  # a recovery code will do
        assert done.status_code == 200, done.text
        assert "Two-step verification is off" in done.text
        assert _audits(tmp_path, "user.mfa_turn_off") == [("alice", "alice")]
        state = anyio.run(store.mfa_state, user_id)
        assert state is not None and (state.sealed_secret, state.recovery_codes_left) == (None, 0)
        assert _login(_browser(http)).headers["location"] == "/"  # the password alone


@pytest.mark.parametrize("how", ["per-user", "admins"])
def test_it_cannot_be_turned_off_when_required(tmp_path: Path, how: str) -> None:
    with _app(tmp_path, mfa_for_admins=how == "admins") as (http, store, clock):
        user_id = _user(store, admin=how == "admins")
        codes = _enrolled(store, user_id)
        if how == "per-user":
            anyio.run(lambda: store.set_mfa_required("alice", True, Actor("cli", None, 0)))
        assert _login(http).headers["location"] == mfa.SECOND_STEP
        fields = hidden_inputs(http.get(mfa.SECOND_STEP).text)
        assert http.post(mfa.SECOND_STEP, data={**fields, "code": codes[0]}).status_code == 303
        page = http.get(account.PAGE).text
        assert "it cannot be turned off" in page and account.TURN_OFF not in page
        refused = _post(http, account.TURN_OFF, _now_code(clock))
        assert refused.status_code == 403
        state = anyio.run(store.mfa_state, user_id)
        assert state is not None and state.sealed_secret is not None
        assert not _audits(tmp_path, "user.mfa_turn_off")


@pytest.mark.usefixtures("frozen_lockout_time")
def test_wrong_passwords_are_throttled_like_sign_ins(tmp_path: Path) -> None:
    with _app(tmp_path) as (http, store, clock):
        user_id = _user(store)
        _signed_in(http)
        _enrolled(store, user_id)
        for _ in range(LOCKOUT_FREE_FAILURES):
            assert _post(http, account.RENEW, _now_code(clock), "wrong").status_code == 401
        locked = _post(http, account.RENEW, _now_code(clock))  # even the right password
        assert locked.status_code == 429 and int(locked.headers["Retry-After"]) >= 1
        # The account is locked for sign-ins too: the same throttle.
        assert _login(_browser(http)).status_code == 429
        assert not _audits(tmp_path, "user.mfa_recovery_renew")


def test_a_form_without_the_page_token_is_refused(tmp_path: Path) -> None:
    with _app(tmp_path) as (http, store, clock):
        user_id = _user(store)
        _signed_in(http)
        _enrolled(store, user_id)
        for path in (account.TURN_OFF, account.RENEW, account.TURN_ON):
            data = {"csrf": "forged", "password": PASSWORD, "code": _now_code(clock)}
            assert http.post(path, data=data).status_code == 403
        state = anyio.run(store.mfa_state, user_id)
        assert state is not None and state.sealed_secret is not None
        assert state.recovery_codes_left == 10


def test_a_user_without_a_password_is_told_it_is_managed_elsewhere(tmp_path: Path) -> None:
    with _app(tmp_path) as (http, store, clock):
        _user(store)
        _signed_in(http)
        # As for a user of a login app or an upstream provider: no password of Baton's.
        with sqlite3.connect(tmp_path / "baton.db") as db:
            db.execute("UPDATE users SET password_hash = '!' WHERE username = 'alice'")
        page = http.get(account.PAGE)
        assert page.status_code == 200 and "managed elsewhere" in page.text
        assert account.TURN_ON not in page.text and "<form" not in page.text
        assert http.get(account.TURN_ON).status_code == 403
        csrf = hidden_inputs(http.get("/logout").text)["csrf"]
        for path in (account.TURN_ON, account.RENEW, account.TURN_OFF):
            data = {"csrf": csrf, "password": "", "code": _now_code(clock)}
            refused = http.post(path, data=data)
            assert refused.status_code == 403 and "managed elsewhere" in refused.text
        assert not _audits(tmp_path, "user.mfa_enrol")


def test_without_a_key_encryption_key_nothing_can_be_turned_on(tmp_path: Path) -> None:
    with _app(tmp_path, key_encryption_key=None) as (http, store, _clock):
        _user(store)
        _signed_in(http)
        response = http.get(account.TURN_ON)
        assert response.status_code == 503 and "BATON_KEY_ENCRYPTION_KEY" in response.text


def test_the_page_speaks_french_and_german(tmp_path: Path) -> None:
    with _app(tmp_path) as (http, store, _clock):
        _user(store)
        _signed_in(http)
        french = http.get(account.PAGE, headers={"Accept-Language": "fr"}).text
        assert "Sécurité du compte" in french and "est désactivée" in french
        german = http.get(account.PAGE, headers={"Accept-Language": "de"}).text
        assert "Kontosicherheit" in german and "ist ausgeschaltet" in german
