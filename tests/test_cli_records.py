"""`baton consent list`, `baton grants show`, `baton events list`, `baton audit export` and the
audited `baton grants revoke`: what the admin API's records routes can do, on the command line
too (issue 27). In process (Click's CliRunner), on the SQLite file an app serves."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner, Result
from starlette.testclient import TestClient

from baton.cli import main
from baton.core.user_claims import ClaimChanges
from baton.core.vocabulary import SecurityEventKind
from baton.store.admin import Actor
from baton.store.sql import SQLStore
from tests.support import RegisteredClient, first_pair, register_client, register_user, running_app

Served = tuple[TestClient, SQLStore, str]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with running_app(tmp_path) as (http, store, _clock):
        yield http, store, f"sqlite:///{tmp_path / 'baton.db'}"


def baton(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def ok_json(*args: str) -> dict[str, Any]:
    result = baton(*args, "--json")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    payload: dict[str, Any] = json.loads(result.stdout)
    return payload


def _signed_in(served: Served) -> tuple[RegisteredClient, dict[str, Any]]:
    http, store, _db = served
    register_user(store)
    client = register_client(store, scope="read")
    return client, first_pair(http, client, scope="read")


def test_consent_list_shows_the_remembered_consents(served: Served) -> None:
    _http, store, db = served
    register_user(store, "bob")
    bob = anyio.run(store.get_user, "bob")
    assert bob is not None
    clients = [register_client(store, scope="read write") for _ in range(2)]
    for client in clients:
        anyio.run(store.remember_consent, bob.id, client.id, frozenset({"read"}), (), 50)
    listed = ok_json("consent", "list", "--db", db)["consents"]
    assert [(c["username"], c["client_id"]) for c in listed] == sorted(
        ("bob", c.id) for c in clients
    )
    assert listed[0]["scope"] == "read" and listed[0]["expires_at"] is None
    one = ok_json("consent", "list", "--db", db, "--client", clients[0].id)["consents"]
    assert [c["client_id"] for c in one] == [clients[0].id]
    assert ok_json("consent", "list", "--db", db, "--user", "nobody")["consents"] == []
    text = baton("consent", "list", "--db", db).stdout.splitlines()
    assert text[0].split() == ["USER", "CLIENT", "EXPIRES", "SCOPE"] and len(text) == 3


def test_grants_show_prints_the_family_and_revoke_is_audited(served: Served) -> None:
    _http, store, db = served
    client, pair = _signed_in(served)
    (summary,) = anyio.run(store.list_grants, client.id, "alice")
    grant_id = summary.grant.id
    shown = ok_json("grants", "show", "--db", db, grant_id)
    # (The app's clock is a fake one, the command's the real one: the status is not asserted.)
    assert shown["id"] == grant_id and shown["expires_at"] == summary.grant.expires_at
    assert shown["revoked_at"] is None and shown["username"] == "alice"
    assert shown["family"]["generations"] == 1
    result = baton("grants", "show", "--db", db, grant_id)
    assert pair["access_token"] not in result.stdout + json.dumps(shown)
    assert pair["refresh_token"] not in result.stdout + json.dumps(shown)
    assert f"grant:       {grant_id}" in result.stdout
    missing = baton("grants", "show", "--db", db, "grt_nothing")
    assert missing.exit_code == 1 and "grt_nothing" in missing.stderr

    assert ok_json("grants", "revoke", "--db", db, grant_id)["revoked"] is True
    assert ok_json("grants", "show", "--db", db, grant_id)["status"] == "revoked"
    rows, _ = anyio.run(store.admin().audit)
    assert [(r.action, r.target_id) for r in rows][:1] == [("grant.revoke", grant_id)]
    assert rows[0].actor.startswith("cli:")


def test_audit_export_prints_json_lines_from_a_cursor(served: Served) -> None:
    _http, store, db = served
    admin = store.admin()
    for n in range(5):
        actor = Actor("cli:test", None, 100 + n)
        anyio.run(admin.create_user_with_claims, f"u{n}", "x", ClaimChanges(), actor)
    seen: list[dict[str, Any]] = []
    after = 0
    for _ in range(10):
        result = baton("audit", "export", "--db", db, "--after", str(after), "--limit", "2")
        assert result.exit_code == 0, result.stderr
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert len(lines) <= 2
        seen += lines
        (note,) = result.stderr.splitlines()
        following = int(note.removeprefix("next-after: "))
        if not lines:
            assert following == after
            break
        assert following == int(lines[-1]["id"])
        after = following
    assert [r["target_id"] for r in seen] == [f"u{n}" for n in range(5)]
    assert [int(r["id"]) for r in seen] == sorted(int(r["id"]) for r in seen)
    assert seen[0]["action"] == "user.create" and seen[0]["detail"]["admin"] is False
    refused = baton("audit", "export", "--db", db, "--limit", "0")
    assert refused.exit_code == 2


def test_events_list_shows_the_newest_security_events(served: Served) -> None:
    _http, store, db = served
    admin = store.admin()
    for n, kind in enumerate(["login_lockout", "client_disabled", "login_lockout"]):
        event = functools.partial(admin.record_security_event, subject=f"s{n}")
        anyio.run(event, SecurityEventKind(kind), 100 + n)
    listed = ok_json("events", "list", "--db", db)["events"]
    assert [e["username"] for e in listed] == ["s2", "s1", "s0"]
    lockouts = ok_json("events", "list", "--db", db, "--kind", "login_lockout", "--limit", "1")
    assert [e["username"] for e in lockouts["events"]] == ["s2"]
    text = baton("events", "list", "--db", db).stdout.splitlines()
    assert text[0].split()[:3] == ["ID", "WHEN", "KIND"] and len(text) == 4
    assert baton("events", "list", "--db", db, "--kind", "nonsense").exit_code == 2
