"""The second factor at sign-in (baton.server.endpoints.mfa): a TOTP code or a recovery code
after the password, enrolment when one is required, and the rules that keep it a factor: the
pending state opens nothing, a code works once, guesses are throttled, a disabled user is out."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
import pytest
from argon2 import PasswordHasher
from starlette.testclient import TestClient

from baton.core import totp
from baton.core.clock import FakeClock
from baton.core.keys import key_encryption_key
from baton.server.endpoints import mfa
from baton.server.runtime import limits as limits_module
from baton.server.runtime.limits import LOCKOUT_FREE_FAILURES
from baton.store.admin import Actor
from baton.store.sql import SQLStore
from tests.one_hop import OneHopTestClient
from tests.support import (
    PASSWORD,
    authorization_request,
    hidden_inputs,
    register_client,
    running_app,
)

# PASSWORD hashed with Argon2id's cheapest parameters (as tests/support.py does).
_HASH = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
KEK = "test-key-encryption-key-of-32-characters!"
SECRET = b"12345678901234567890"
NOW = 1_700_000_010  # 10 s into a time step: t-1 and t+1 are a step away either side
# A code of no step near NOW for SECRET (checked below).
WRONG = next(
    c
    for c in ("000000", "111111", "222222")
    if all(totp.hotp(SECRET, s) != c for s in range(NOW // 30 - 3, NOW // 30 + 4))
)


def _user(store: SQLStore, username: str = "alice", admin: bool = False) -> int:
    created = anyio.run(lambda: store.create_user(username, _HASH, 0, admin=admin))
    return created.id


def _enrolled(store: SQLStore, user_id: int) -> list[str]:
    """Enrols the user with SECRET (no step used yet); their recovery codes."""
    codes = totp.new_recovery_codes()
    sealed = totp.seal_secret(SECRET, key_encryption_key(KEK), user_id)
    done = anyio.run(
        lambda: store.enrol_totp(
            user_id, sealed, 0, totp.recovery_digests(codes, key_encryption_key(KEK)), 0, None
        )
    )
    assert done
    return codes


def _db(tmp_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(tmp_path / "baton.db")


@contextmanager
def _app(tmp_path: Path, kek: bool = True, **settings: Any) -> Iterator[Any]:
    clock = FakeClock(NOW)
    if kek:
        settings["key_encryption_key"] = KEK
    with running_app(tmp_path, clock=clock, **settings) as running:
        yield running


def _password(
    http: TestClient, client: Any, username: str = "alice", password: str = PASSWORD
) -> httpx2.Response:
    """/authorize, then the login form with the password: the response to the password."""
    _verifier, params = authorization_request(client)
    response = http.get("/authorize", params=params)
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
    page = http.get(response.headers["location"])
    fields = hidden_inputs(page.text)
    return http.post("/login", data={**fields, "username": username, "password": password})


def _code(http: TestClient, code: str, path: str = mfa.SECOND_STEP) -> httpx2.Response:
    page = http.get(path)
    assert page.status_code == 200, page.text
    return http.post(path, data={"csrf": hidden_inputs(page.text)["csrf"], "code": code})


def _browser(http: TestClient) -> OneHopTestClient:
    """Another browser (its own cookies) on the same server; used without `with`, whose
    lifespan would close the shared store on exit."""
    return OneHopTestClient(http.app, base_url=str(http.base_url), follow_redirects=False)


def _step_code(step: int) -> str:
    return totp.hotp(SECRET, step)


def _session_amr(tmp_path: Path) -> list[str]:
    with _db(tmp_path) as db:
        row = db.execute("SELECT amr FROM sessions ORDER BY rowid DESC LIMIT 1").fetchone()
    return list(json.loads(row[0]))


def _signed_in(http: TestClient, client: Any) -> bool:
    """Whether /authorize goes on without the login page (the consent page shows)."""
    _verifier, params = authorization_request(client)
    response = http.get("/authorize", params=params)
    return response.status_code == 200 and "Signed in as" in response.text


def test_enrolled_user_needs_a_code_and_the_pending_state_opens_nothing(tmp_path: Path) -> None:
    with _app(tmp_path) as (http, store, _clock):
        client = register_client(store)
        _enrolled(store, _user(store))
        response = _password(http, client)
        assert response.status_code == 303
        assert response.headers["location"] == mfa.SECOND_STEP
        # Only the password so far: /authorize sends the browser to the login page, the
        # console does not open, nobody is signed in.
        _verifier, params = authorization_request(client)
        again = http.get("/authorize", params=params)
        assert again.status_code == 303 and again.headers["location"].startswith("/login")
        console = http.get("/admin/")
        assert console.status_code == 303 and console.headers["location"].startswith("/login")

        done = _code(http, _step_code(totp.time_step(NOW)))
        assert done.status_code == 303, done.text
        assert done.headers["location"].startswith("/authorize?")
        assert _signed_in(http, client)
        assert _session_amr(tmp_path) == ["mfa", "otp", "pwd"]


@pytest.mark.parametrize(("delta", "accepted"), [(-2, False), (-1, True), (1, True), (2, False)])
def test_the_window_is_one_step_either_side(tmp_path: Path, delta: int, accepted: bool) -> None:
    with _app(tmp_path) as (http, store, _clock):
        client = register_client(store)
        _enrolled(store, _user(store))
        _password(http, client)
        response = _code(http, _step_code(totp.time_step(NOW) + delta))
        assert response.status_code == (303 if accepted else 401), response.text
        assert _signed_in(http, client) is accepted


def test_a_code_is_never_accepted_twice(tmp_path: Path) -> None:
    with _app(tmp_path) as (http, store, clock):
        client = register_client(store)
        _enrolled(store, _user(store))
        t = totp.time_step(NOW)
        _password(http, client)
        assert _code(http, _step_code(t)).status_code == 303
        # Another browser with the password and the same code, in the same step: refused.
        other = _browser(http)
        _password(other, client)
        replay = _code(other, _step_code(t))
        assert replay.status_code == 401
        assert "wrong or was used" in replay.text
        # An earlier step's code, though inside the window, is refused too.
        assert _code(other, _step_code(t - 1)).status_code == 401
        # The next step's code works once the clock gets there.
        clock.advance(totp.STEP)
        assert _code(other, _step_code(t + 1)).status_code == 303


def test_a_recovery_code_works_once(tmp_path: Path) -> None:
    with _app(tmp_path) as (http, store, _clock):
        client = register_client(store)
        user_id = _user(store)
        codes = _enrolled(store, user_id)
        _password(http, client)
        assert _code(http, codes[0].upper()).status_code == 303
        assert _session_amr(tmp_path) == ["mfa", "otp", "pwd"]
        state = anyio.run(lambda: store.mfa_state(user_id))
        assert state is not None and state.recovery_codes_left == 9
        other = _browser(http)
        _password(other, client)
        assert _code(other, codes[0]).status_code == 401
        assert _code(other, "aaaaa-aaaaa").status_code == 401
        assert _code(other, codes[1]).status_code == 303


def test_codes_are_checked_by_the_server_clock(tmp_path: Path) -> None:
    """The fake clock decides the step: an old code is refused once time moved on."""
    with _app(tmp_path) as (http, store, clock):
        client = register_client(store)
        _enrolled(store, _user(store))
        code = _step_code(totp.time_step(NOW))
        _password(http, client)
        clock.advance(2 * totp.STEP)
        assert _code(http, code).status_code == 401


def test_the_pending_state_expires(tmp_path: Path) -> None:
    with _app(tmp_path) as (http, store, clock):
        client = register_client(store)
        _enrolled(store, _user(store))
        _password(http, client)
        page = http.get(mfa.SECOND_STEP)
        clock.advance(mfa.PENDING_TTL)
        code = _step_code(totp.time_step(clock.now()))
        late = http.post(mfa.SECOND_STEP, data={**hidden_inputs(page.text), "code": code})
        assert late.status_code == 303 and late.headers["location"].startswith("/login?next=")
        assert http.get(mfa.SECOND_STEP).headers["location"].startswith("/login")
        assert not _signed_in(http, client)


def test_no_pending_state_no_second_step(tmp_path: Path) -> None:
    with _app(tmp_path) as (http, store, _clock):
        _enrolled(store, _user(store))
        page = http.get("/login")
        csrf = hidden_inputs(page.text)["csrf"]
        code = _step_code(totp.time_step(NOW))
        response = http.post(mfa.SECOND_STEP, data={"csrf": csrf, "code": code})
        assert response.status_code == 303 and response.headers["location"] == "/login"
        assert not _signed_in(http, register_client(store))


def _enrol_page_secret(html: str) -> bytes:
    found = re.search(r'<code class="secret" id="secret">([A-Z2-7]+)</code>', html)
    assert found, html
    return totp.from_b32(found.group(1))


def test_admins_enrol_when_the_server_requires_it_of_them(tmp_path: Path) -> None:
    with _app(tmp_path, mfa_for_admins=True) as (http, store, clock):
        client = register_client(store)
        admin_id = _user(store, "root", admin=True)
        _user(store, "bob")
        # A user who is not an administrator signs in with a password.
        other = _browser(http)
        response = _password(other, client, "bob")
        assert response.headers["location"].startswith("/authorize?")

        response = _password(http, client, "root")
        assert response.headers["location"] == mfa.ENROL
        page = http.get(mfa.ENROL)
        secret = _enrol_page_secret(page.text)
        assert len(secret) == 20
        uri = re.search(r'href="(otpauth://totp/[^"]+)"', page.text)
        assert uri and f"secret={totp.b32(secret)}" in uri.group(1).replace("&amp;", "&")
        # The page reloaded offers the same secret (kept sealed in the pending state).
        assert _enrol_page_secret(http.get(mfa.ENROL).text) == secret
        # Not signed in while enrolling.
        assert not _signed_in(http, client)

        wrong = _code(http, _step_code(0), mfa.ENROL)
        assert wrong.status_code == 401
        t = totp.time_step(NOW)
        done = _code(http, totp.hotp(secret, t), mfa.ENROL)
        assert done.status_code == 200, done.text
        codes = re.findall(r"<li><code>([a-z2-7]{5}-[a-z2-7]{5})</code></li>", done.text)
        assert len(codes) == 10 and len(set(codes)) == 10
        assert _signed_in(http, client)
        # The sign-in that enrols proved the password alone (see baton.server.endpoints.mfa).
        assert _session_amr(tmp_path) == ["pwd"]

        with _db(tmp_path) as db:
            sealed, last = db.execute(
                "SELECT totp_secret, totp_last_step FROM users WHERE id = ?", (admin_id,)
            ).fetchone()
            stored = [r[0] for r in db.execute("SELECT digest FROM recovery_codes")]
        assert totp.b32(secret) not in sealed and last == t
        assert sorted(stored) == sorted(totp.recovery_digests(codes, key_encryption_key(KEK)))

        # The next sign-in asks for a code; the enrolment's code (its step spent) is refused.
        clock.advance(1)
        later = _browser(http)
        assert _password(later, client, "root").headers["location"] == mfa.SECOND_STEP
        assert _code(later, totp.hotp(secret, t)).status_code == 401
        assert _code(later, codes[3]).status_code == 303


def test_a_user_enrols_when_required_of_them(tmp_path: Path) -> None:
    with _app(tmp_path) as (http, store, _clock):
        client = register_client(store)
        _user(store)
        assert _password(http, client).headers["location"].startswith("/authorize?")
        actor = Actor("test", None, NOW)
        anyio.run(lambda: store.set_mfa_required("alice", True, actor))
        other = _browser(http)
        assert _password(other, client).headers["location"] == mfa.ENROL
        # Skipping the enrolment does not sign in: the second step has nothing to check.
        skipped = _code(other, _step_code(totp.time_step(NOW)))
        assert skipped.status_code == 303 and skipped.headers["location"].startswith("/login")
        assert not _signed_in(other, client)


def test_enrolment_is_impossible_without_a_key_encryption_key(tmp_path: Path) -> None:
    with _app(tmp_path, kek=False, mfa_for_admins=True) as (http, store, _clock):
        client = register_client(store)
        _user(store, "root", admin=True)
        assert _password(http, client, "root").headers["location"] == mfa.ENROL
        page = http.get(mfa.ENROL)
        assert page.status_code == 503
        assert "BATON_KEY_ENCRYPTION_KEY" in page.text
        assert not _signed_in(http, client)


def test_without_the_key_no_code_signs_in(tmp_path: Path) -> None:
    # Recovery codes are stored keyed by the key-encryption key (baton.core.totp): without it,
    # a recovery code cannot be looked up any more than a TOTP code checked.
    with _app(tmp_path, kek=False) as (http, store, _clock):
        client = register_client(store)
        codes = _enrolled(store, _user(store))
        _password(http, client)
        refused = _code(http, _step_code(totp.time_step(NOW)))
        assert refused.status_code == 503 and "operator" in refused.text
        assert _code(http, codes[0]).status_code == 401
        assert not _signed_in(http, client)


@pytest.fixture
def frozen_lockout_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lockouts' clock stands still: a 1 s lockout does not open while the test runs."""
    frozen = time.time()
    monkeypatch.setattr(
        limits_module, "time", SimpleNamespace(time=lambda: frozen, monotonic=time.monotonic)
    )


@pytest.mark.usefixtures("frozen_lockout_time")
def test_wrong_codes_are_throttled_like_passwords(tmp_path: Path) -> None:
    with _app(tmp_path) as (http, store, _clock):
        client = register_client(store)
        _enrolled(store, _user(store))
        right = _step_code(totp.time_step(NOW))
        wrong = WRONG
        _password(http, client)  # the right password counts as an attempt until the code
        for _ in range(LOCKOUT_FREE_FAILURES - 1):
            assert _code(http, wrong).status_code == 401
        locked = _code(http, right)
        assert locked.status_code == 429
        assert int(locked.headers["Retry-After"]) >= 1
        assert not _signed_in(http, client)
        # Starting over with the password does not reset the count.
        assert _password(http, client).status_code == 429


@pytest.mark.usefixtures("frozen_lockout_time")
def test_a_right_code_resets_the_throttle(tmp_path: Path) -> None:
    with _app(tmp_path) as (http, store, clock):
        client = register_client(store)
        _enrolled(store, _user(store))
        _password(http, client)
        for _ in range(LOCKOUT_FREE_FAILURES - 2):
            assert _code(http, WRONG).status_code == 401
        assert _code(http, _step_code(totp.time_step(NOW))).status_code == 303
        clock.advance(totp.STEP)
        other = _browser(http)
        _password(other, client)
        for _ in range(LOCKOUT_FREE_FAILURES - 2):
            assert _code(other, WRONG).status_code == 401


def test_a_disabled_user_is_told_only_after_the_right_password(tmp_path: Path) -> None:
    with _app(tmp_path) as (http, store, _clock):
        client = register_client(store)
        user_id = _user(store)
        with _db(tmp_path) as db:
            db.execute("UPDATE users SET disabled_at = ? WHERE id = ?", (NOW, user_id))
        wrong = _password(http, client, password="not the password")
        assert wrong.status_code == 401 and "disabled" not in wrong.text
        right = _password(http, client)
        assert right.status_code == 403 and "This account is disabled." in right.text
        assert not _signed_in(http, client)


def test_a_user_disabled_during_the_second_step_is_not_signed_in(tmp_path: Path) -> None:
    with _app(tmp_path) as (http, store, _clock):
        client = register_client(store)
        user_id = _user(store)
        _enrolled(store, user_id)
        _password(http, client)
        with _db(tmp_path) as db:
            db.execute("UPDATE users SET disabled_at = ? WHERE id = ?", (NOW, user_id))
        response = _code(http, _step_code(totp.time_step(NOW)))
        assert response.status_code == 303 and response.headers["location"].startswith("/login")
        assert not _signed_in(http, client)


def test_the_second_step_continues_to_the_authorization_request(tmp_path: Path) -> None:
    with _app(tmp_path) as (http, store, _clock):
        client = register_client(store)
        _enrolled(store, _user(store))
        _password(http, client)
        done = _code(http, _step_code(totp.time_step(NOW)))
        query = parse_qs(urlsplit(done.headers["location"]).query)
        assert query["client_id"] == [client.id]
