"""Browser sessions held server-side (issue 21, H2 and L2): nothing read from the database signs
anyone in, logout and "sign out everywhere" end every copy of a session cookie at once, and the
files holding the session key and the database are the owner's alone (0600)."""

from __future__ import annotations

import base64
import json
import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from itsdangerous import TimestampSigner
from sqlalchemy import Connection, select
from starlette.testclient import TestClient

from baton.core.clock import FakeClock
from baton.server.runtime.sessions import COOKIE
from baton.store.schema import audit_log, metadata, server_secrets
from baton.store.sql import SQLStore
from tests.cli_processes import BatonProcesses
from tests.server.test_console import admin_session, audit_rows, csrf_of, make_admin
from tests.support import REDIRECT_URI, RegisteredClient, authorize, running_app, sign_in

AUTHORIZE = "/authorize?" + urlencode(
    {
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGlSstw-cM",
        "code_challenge_method": "S256",
    }
)


def signed_in_at_authorize(http: TestClient, client: RegisteredClient) -> bool:
    """Whether /authorize takes the browser for a signed-in user (no detour through /login)."""
    response = http.get(f"{AUTHORIZE}&client_id={client.id}")
    location = response.headers.get("location", "")
    return not (response.status_code == 303 and location.startswith("/login"))


def enters_admin(http: TestClient) -> bool:
    response = http.get("/admin/clients")
    return response.status_code == 200 and "New client" in response.text


def with_cookie(http: TestClient, value: str) -> TestClient:
    http.cookies.clear()
    http.cookies.set(COOKIE, value)
    return http


def forged(key: bytes, content: dict[str, Any]) -> str:
    """A cookie as the server used to sign them (itsdangerous, salt `baton.session`)."""
    signer = TimestampSigner(key, salt="baton.session")
    return signer.sign(base64.b64encode(json.dumps(content).encode())).decode()


def every_stored_value(store: SQLStore) -> list[bytes]:
    """Every value of every row of every table: what a read of the database yields."""

    def work(conn: Connection) -> list[bytes]:
        found: list[bytes] = []
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)):
                for value in row:
                    if isinstance(value, bytes | str) and value:
                        found.append(value if isinstance(value, bytes) else value.encode())
        return found

    return anyio.run(store.inspect, work)


def test_a_cookie_forged_from_anything_in_the_database_opens_nothing(
    http: TestClient, store: SQLStore, client: RegisteredClient
) -> None:
    make_admin(store)
    admin_session(http)  # a live admin session: its row is in the database too
    assert enters_admin(http)
    admin = anyio.run(store.get_user, "root")
    assert admin is not None
    secrets_rows = anyio.run(
        store.inspect, lambda conn: conn.execute(select(server_secrets.c.value)).scalars().all()
    )
    values = every_stored_value(store)
    assert all(bytes(v) in values for v in secrets_rows)
    real_key: TimestampSigner = http.app.state.session_signer  # type: ignore[attr-defined]
    attempts = []
    for value in values:
        text = value.decode("latin-1")
        for content in ({"uid": admin.id}, {"sid": text}, {"sid": value.hex()}):
            attempts.append(forged(value, content))
        # Even with the session key itself, only a session id signs in: not a user id, not a
        # session row's digest.
        for content in ({"uid": admin.id}, {"sid": text}, {"sid": value.hex()}):
            attempts.append(real_key.sign(base64.b64encode(json.dumps(content).encode())).decode())
    for cookie in attempts:
        browser = with_cookie(http, cookie)
        assert not enters_admin(browser)
        assert not signed_in_at_authorize(browser, client)


def test_logout_ends_the_session_for_a_cookie_copied_before(
    http: TestClient, store: SQLStore, client: RegisteredClient
) -> None:
    authorize(http, client)  # signs alice in
    copied = http.cookies[COOKIE]
    assert signed_in_at_authorize(http, client)
    logout = http.post("/logout", data={"csrf": csrf_of(http.get("/logout").text)})
    assert logout.status_code == 200
    assert not signed_in_at_authorize(http, client)
    # The copy taken before the logout (a shared computer, a stolen cookie) is dead too.
    assert not signed_in_at_authorize(with_cookie(http, copied), client)


def test_sign_out_everywhere_from_the_console_ends_every_session_of_that_user(
    http: TestClient, store: SQLStore, client: RegisteredClient
) -> None:
    browsers = []
    for _ in range(3):  # alice, signed in on three browsers
        http.cookies.clear()
        authorize(http, client)
        browsers.append(http.cookies[COOKIE])
    http.cookies.clear()
    make_admin(store)
    admin_session(http)
    admin_cookie = http.cookies[COOKIE]
    page = http.get("/admin/users")
    assert page.status_code == 200 and "Sign out everywhere" in page.text
    done = http.post(
        "/admin/users/sign-out", data={"csrf": csrf_of(page.text), "username": "alice"}
    )
    assert done.status_code == 200
    assert "3 session(s) ended" in done.text
    for cookie in browsers:
        assert not signed_in_at_authorize(with_cookie(http, cookie), client)
    assert enters_admin(with_cookie(http, admin_cookie))  # only alice's sessions ended
    (row,) = [r for r in audit_rows(store) if r["action"] == "user.sign_out_everywhere"]
    assert (row["actor"], row["target_kind"], row["target_id"]) == ("root", "user", "alice")
    assert json.loads(row["detail"]) == {"sessions": 3}
    # An unknown user is said so, and nothing is audited.
    csrf = csrf_of(http.get("/admin/users").text)
    unknown = http.post("/admin/users/sign-out", data={"csrf": csrf, "username": "mallory"})
    assert unknown.status_code == 404
    # Without the form's CSRF token, nothing happens.
    http.cookies.clear()
    authorize(http, client)
    alice = http.cookies[COOKIE]
    with_cookie(http, admin_cookie)
    refused = http.post("/admin/users/sign-out", data={"csrf": "x", "username": "alice"})
    assert refused.status_code == 403
    assert signed_in_at_authorize(with_cookie(http, alice), client)
    count = anyio.run(
        store.inspect,
        lambda conn: len(conn.execute(select(audit_log.c.id)).all()),
    )
    assert count == 1


def test_a_session_ends_eight_hours_after_sign_in(tmp_path: Path) -> None:
    with running_app(tmp_path) as (http, store, clock):
        from tests.support import register_client, register_user

        register_user(store)
        client = register_client(store)
        authorize(http, client)
        clock.advance(8 * 3600 - 1)
        assert signed_in_at_authorize(http, client)
        clock.advance(1)
        assert not signed_in_at_authorize(http, client)


def test_the_cli_signs_a_user_out_everywhere(database: Path | str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from baton.cli import main

    # The CLI reads the real clock: the server's fake one starts there.
    with running_app(database, clock=FakeClock(int(time.time()))) as (http, store, _clock):
        from tests.support import register_client, register_user

        register_user(store)
        client = register_client(store)
        authorize(http, client)
        assert signed_in_at_authorize(http, client)
        db = database if isinstance(database, str) else f"sqlite:///{database / 'baton.db'}"
        result = CliRunner().invoke(
            main, ["user", "signout", "--db", db, "--username", "alice", "--json"]
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == {"username": "alice", "sessions_ended": 1}
        assert not signed_in_at_authorize(http, client)
        unknown = CliRunner().invoke(main, ["user", "signout", "--db", db, "--username", "bob"])
        assert unknown.exit_code == 1 and "no user 'bob'" in unknown.stderr


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(scope="module")
def baton() -> Iterator[BatonProcesses]:
    """`baton.run(*args)`: `baton ARGS` as a process of its own, forked from one that imported
    the CLI once (a `python -m baton.cli` spends a second on its imports)."""
    with BatonProcesses() as processes:
        yield processes


def test_database_files_are_created_0600(baton: BatonProcesses, tmp_path: Path) -> None:
    """`baton db upgrade` (and every command, and `baton serve`) creates the SQLite database, its
    WAL, shared memory and writer lock 0600 from the first byte, whatever the umask."""
    from baton.store.engines import open_runner

    previous = os.umask(0o022)
    try:
        path = tmp_path / "baton.db"
        result = baton.run("db", "upgrade", "--db", str(path), timeout=120)
        assert result.returncode == 0, result.stderr
        assert _mode(path) == 0o600
        assert _mode(Path(f"{path}-writer.lock")) == 0o600
        # While a server has it open, the WAL and the shared memory exist: 0600 too.
        store = SQLStore.open(str(path))

        async def write_and_look() -> dict[str, int]:
            await store.create_user("carol", "x", 0)
            found = {s: _mode(Path(f"{path}{s}")) for s in ("", "-wal", "-shm", "-writer.lock")}
            await store.close()
            return found

        assert anyio.run(write_and_look) == dict.fromkeys(
            ("", "-wal", "-shm", "-writer.lock"), 0o600
        )
        # A database created 0644 by an older version is tightened when opened.
        old = tmp_path / "old.db"
        old.touch(mode=0o644)
        os.chmod(old, 0o644)
        runner = open_runner(str(old))
        anyio.run(runner.close)
        assert _mode(old) == 0o600
    finally:
        os.umask(previous)


def test_serve_generates_the_session_key_0600_before_it_listens(
    baton: BatonProcesses, tmp_path: Path
) -> None:
    db = tmp_path / "baton.db"
    assert baton.run("db", "upgrade", "--db", str(db), timeout=120).returncode == 0
    with socket.socket() as taken:  # serve stops at the listen; the key is made before it
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = str(taken.getsockname()[1])
        serve = ("serve", "--db", str(db), "--port", port)
        first = baton.run(*serve, timeout=120)
        key_file = Path(f"{db}-session.key")
        assert f"Generated the session key in {key_file}" in first.stderr
        assert _mode(key_file) == 0o600
        key = key_file.read_text().strip()
        assert len(key) >= 32
        reader = SQLStore.open(str(db))
        assert key.encode() not in every_stored_value(reader)
        anyio.run(reader.close)
        second = baton.run(*serve, timeout=120)
        assert "Generated" not in second.stderr  # the same key again
        assert key_file.read_text().strip() == key
        # A key file others may read is refused.
        os.chmod(key_file, 0o644)
        refused = baton.run(*serve, timeout=120)
        assert refused.returncode == 1
        assert "chmod 600" in refused.stderr


def test_a_session_key_file_is_generated_once_and_shared(tmp_path: Path) -> None:
    from baton.server.runtime.sessions import load_session_key

    path = tmp_path / "state" / "session.key"
    key, generated = load_session_key(path)
    assert generated and _mode(path) == 0o600
    assert load_session_key(path) == (key, False)
    assert [p.name for p in path.parent.iterdir()] == ["session.key"]  # no temporary left


def test_a_short_session_key_is_refused(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from baton.cli import main

    db = str(tmp_path / "x.db")
    assert CliRunner().invoke(main, ["db", "upgrade", "--db", db]).exit_code == 0
    result = CliRunner().invoke(main, ["serve", "--db", db], env={"BATON_SESSION_KEY": "short"})
    assert result.exit_code == 1
    assert "BATON_SESSION_KEY: the session key must have at least 32 characters" in result.stderr


def test_workers_of_one_server_share_the_session_key(tmp_path: Path) -> None:
    """The cookie one app instance signed is accepted by another built from the same settings
    (as `baton serve --workers N` builds each worker from the key it read before starting)."""
    key = "k" * 40
    with running_app(tmp_path, session_key=key) as (http, store, _clock):
        from tests.support import register_client, register_user

        register_user(store)
        client = register_client(store)
        authorize(http, client)
        cookie = http.cookies[COOKIE]
    with running_app(tmp_path, session_key=key) as (other, _store, _clock):
        assert signed_in_at_authorize(with_cookie(other, cookie), client)
    with running_app(tmp_path, session_key="z" * 40) as (stranger, _store, _clock):
        assert not signed_in_at_authorize(with_cookie(stranger, cookie), client)


def test_signing_in_again_ends_the_session_the_browser_held(
    http: TestClient, store: SQLStore, client: RegisteredClient
) -> None:
    authorize(http, client)
    before = http.cookies[COOKIE]
    make_admin(store)
    signed = sign_in(http, "/login?next=%2Fadmin%2Fclients", "root")  # same browser, as root
    assert signed.status_code == 303
    assert enters_admin(http)
    assert not signed_in_at_authorize(with_cookie(http, before), client)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    content=st.dictionaries(
        st.sampled_from(["uid", "sid", "csrf", "other"]),
        st.one_of(
            st.integers(),
            st.text(max_size=60),
            st.lists(st.integers(), max_size=3),
            st.none(),
            st.just("A" * 43),
        ),
    )
)
def test_no_cookie_content_signs_anyone_in_or_breaks_a_page(
    tmp_path_factory: pytest.TempPathFactory, content: dict[str, Any]
) -> None:
    """Whatever a cookie signed with the real key says (a user id, a session id of any shape
    or type), only a session id issued at sign-in signs anyone in, and no page fails."""
    global _APP
    if _APP is None:
        _APP = running_app(tmp_path_factory.mktemp("cookies"))
        http, store, _clock = _APP.__enter__()
        make_admin(store)
        _RUNNING.append((http, store))
    http, _store = _RUNNING[0]
    signer: TimestampSigner = http.app.state.session_signer  # type: ignore[attr-defined]
    cookie = signer.sign(base64.b64encode(json.dumps(content).encode())).decode()
    browser = with_cookie(http, cookie)
    for path in ("/admin/clients", "/", "/logout", "/login"):
        response = browser.get(path)
        assert response.status_code in (200, 303), (path, response.status_code)
    assert not enters_admin(browser)


_APP: Any = None
_RUNNING: list[tuple[TestClient, SQLStore]] = []


@pytest.fixture(scope="module", autouse=True)
def _close_the_shared_app() -> Iterator[None]:
    yield
    global _APP
    if _APP is not None:
        _APP.__exit__(None, None, None)
        _APP = None
        _RUNNING.clear()
