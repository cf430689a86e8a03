"""`baton user list|set-password|disable|enable|delete`, and the password policy of `user create`:
one JSON object with `--json`, one `error:` line and exit status 1 for a refusal, a password
never on argv. A disabled user's refresh token stops working at once; a deleted user's name can
be given again. In-process (Click's CliRunner) on SQLite, next to an app serving the same file
under a clock that reads the real time (the commands do)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner, Result
from sqlalchemy import select, update
from starlette.testclient import TestClient

from baton.cli import main
from baton.core.clock import FakeClock
from baton.passwords import verify_password
from baton.store.schema import audit_log, grants, revocation_events, users
from baton.store.sql import SQLStore
from tests.support import (
    RegisteredClient,
    first_pair,
    refresh,
    register_client,
    register_user,
    running_app,
)

GOOD = "a passphrase nobody uses"


def baton(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input, env=env)


def ok(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    result = baton(*args, input=input, env=env)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def failed(result: Result, *fragments: str) -> str:
    """Exit status 1, nothing on stdout, one `error:` line on stderr naming each fragment."""
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in line, line
    return line


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id with the cheapest parameters (as `tests.support` hashes): the production ones
    cost each hash a tenth of a second, and tests/test_cli.py checks those."""
    monkeypatch.setattr(
        "baton.cli.users.hash_password",
        PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash,
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, SQLStore, str]]:
    """The app on a SQLite file, at the real time, and the `--db` of that file."""
    with running_app(tmp_path, clock=FakeClock(int(time.time()))) as (http, store, _clock):
        yield http, store, str(tmp_path / "baton.db")


def sql(store: SQLStore, query: Any) -> list[Any]:
    return anyio.run(store.inspect, lambda conn: list(conn.execute(query).all()))


def users_listed(db: str) -> dict[str, dict[str, Any]]:
    payload = json.loads(ok("user", "list", "--db", db, "--json").stdout)
    return {u["username"]: u for u in payload["users"]}


def test_list_json_parses_and_shows_each_users_state(
    served: tuple[TestClient, SQLStore, str],
) -> None:
    http, store, db = served
    client = register_client(store)
    register_user(store)
    first_pair(http, client)  # alice signs in
    ok("user", "create", "--db", db, "--username", "root", "--admin", "--password-stdin",
       input=GOOD + "\n")  # fmt: skip
    ok("user", "create", "--db", db, "--username", "bob", "--password-stdin", input=GOOD + "\n")
    anyio.run(
        store.runner.write,
        lambda conn: conn.execute(
            update(users).where(users.c.username == "bob").values(mfa_required=True)
        ),
    )
    ok("user", "disable", "--db", db, "bob")

    listed = users_listed(db)
    assert list(listed) == ["alice", "bob", "root"]
    alice, bob, root = listed["alice"], listed["bob"], listed["root"]
    assert isinstance(alice["last_sign_in"], int) and bob["last_sign_in"] is None
    assert (root["admin"], bob["admin"]) == (True, False)
    assert (bob["disabled"], alice["disabled"]) == (True, False)
    assert (bob["mfa_required"], bob["mfa_enrolled"]) == (True, False)
    assert set(alice) >= {"email", "created_at", "has_password", "password_changed_at"}
    text = ok("user", "list", "--db", db).stdout
    assert "disabled" in text.splitlines()[2] and text.splitlines()[0].startswith("USER")


def test_create_applies_the_password_policy(served: tuple[TestClient, SQLStore, str]) -> None:
    _http, store, db = served
    common = baton("user", "create", "--db", db, "--username", "a", "--password-stdin",
                   "--password-min-length", "8", input="Password123\n")  # fmt: skip
    failed(common, "most common passwords")
    short = baton("user", "create", "--db", db, "--username", "a", "--password", "too short")
    failed(short, "at least 12 characters")
    # The flag's default is the server's option, from the same variable.
    env = {"BATON_PASSWORD_MIN_LENGTH": "30"}
    longer = baton("user", "create", "--db", db, "--username", "a", "--password-stdin",
                   input=GOOD + "\n", env=env)  # fmt: skip
    failed(longer, "at least 30 characters")
    failed(baton("user", "create", "--db", db, "--username", "deleted-7", "--password", GOOD))
    assert sql(store, select(users.c.username)) == []


def test_set_password_asks_twice_and_never_takes_argv(
    served: tuple[TestClient, SQLStore, str],
) -> None:
    _http, store, db = served
    register_user(store)
    differ = baton("user", "set-password", "--db", db, "alice", input=f"{GOOD}\nsomething else\n")
    assert differ.exit_code != 0
    assert baton("user", "set-password", "--db", db, "alice", "--password", GOOD).exit_code == 2
    failed(
        baton("user", "set-password", "--db", db, "alice", input="qwertyuiop123\nqwertyuiop123\n"),
        "most common passwords",
    )

    done = ok("user", "set-password", "--db", db, "alice", "--json", input=f"{GOOD}\n{GOOD}\n")
    assert json.loads(done.stdout.splitlines()[-1]) == {"username": "alice"}
    ((stored, changed_at),) = sql(store, select(users.c.password_hash, users.c.password_changed_at))
    assert verify_password(stored, GOOD) and isinstance(changed_at, int)
    other = "another good passphrase"
    ok("user", "set-password", "--db", db, "alice", "--password-stdin", input=other + "\n")
    ((stored,),) = sql(store, select(users.c.password_hash))
    assert verify_password(stored, other)
    actions = sql(store, select(audit_log.c.actor, audit_log.c.action, audit_log.c.detail))
    assert [a for _, a, _ in actions] == ["user.set_password"] * 2
    assert all(actor.startswith("cli:") and detail is None for actor, _, detail in actions)
    failed(
        baton("user", "set-password", "--db", db, "nobody", "--password-stdin", input=GOOD),
        "no user 'nobody'",
    )


def test_a_disabled_users_refresh_token_stops_working_at_once(
    served: tuple[TestClient, SQLStore, str],
) -> None:
    http, store, db = served
    client: RegisteredClient = register_client(store)
    register_user(store)
    pair = first_pair(http, client)

    disabled = json.loads(ok("user", "disable", "--db", db, "alice", "--json").stdout)
    assert disabled == {"username": "alice", "sessions_ended": 1, "grants_revoked": 1}
    answer = refresh(http, client, pair["refresh_token"])
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"
    ((grant_id,),) = sql(store, select(grants.c.id))
    assert sql(store, select(revocation_events.c.grant_id)) == [(grant_id,)]

    shown = json.loads(ok("user", "show", "--db", db, "alice", "--json").stdout)
    assert shown["disabled"] is True
    assert "disabled:       yes" in ok("user", "show", "--db", db, "alice").stdout
    failed(baton("user", "disable", "--db", db, "alice"), "disabled already")
    failed(baton("user", "disable", "--db", db, "nobody"), "no user 'nobody'")
    assert ok("user", "enable", "--db", db, "alice").stdout == "enabled alice\n"
    failed(baton("user", "enable", "--db", db, "alice"), "is not disabled")
    # Enabling revives nothing the disabling ended.
    assert refresh(http, client, pair["refresh_token"]).status_code == 400


def test_a_deleted_users_name_can_be_created_again(
    served: tuple[TestClient, SQLStore, str],
) -> None:
    http, store, db = served
    client = register_client(store)
    register_user(store)
    ok("user", "set", "--db", db, "alice", "--email", "alice@example.com", "--name", "Alice")
    pair = first_pair(http, client)

    kept = baton("user", "delete", "--db", db, "alice", input="n\n")
    failed(kept, "nothing deleted")
    assert "alice" in users_listed(db)

    gone = json.loads(ok("user", "delete", "--db", db, "alice", "--yes", "--json").stdout)
    assert gone == {"username": "alice", "sessions_ended": 1, "grants_revoked": 1}
    assert refresh(http, client, pair["refresh_token"]).status_code == 400
    assert users_listed(db) == {}
    failed(baton("user", "show", "--db", db, "alice"), "no user 'alice'")
    ((old_id, name, email, profile),) = sql(
        store, select(users.c.id, users.c.username, users.c.email, users.c.profile)
    )
    assert (name, email, profile) == (f"deleted-{old_id}", None, None)

    again = ok("user", "create", "--db", db, "--username", "alice", "--password-stdin", "--json",
               input=GOOD + "\n")  # fmt: skip
    assert json.loads(again.stdout)["id"] != old_id
    assert users_listed(db)["alice"]["email"] is None
    (deletion,) = sql(store, select(audit_log.c.detail).where(audit_log.c.action == "user.delete"))
    assert json.loads(deletion[0])["renamed_to"] == f"deleted-{old_id}"
    failed(baton("user", "delete", "--db", db, "nobody", "--yes"), "no user 'nobody'")
