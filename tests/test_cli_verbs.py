"""`baton db upgrade --check`, `baton client disable|enable|delete` and `baton consent revoke`,
on SQLite and PostgreSQL: a disabled client's tokens die at once and enabling it revives none; a
deleted client never authenticates again, even enabled behind the command's back; a revoked
consent ends the grants it allowed; `--check` lists what would run and exits 1 until nothing
would. In-process (Click's CliRunner), next to an app serving the same database under a clock
that reads the real time (the commands do)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select
from starlette.testclient import TestClient

from baton.cli import main
from baton.core.clock import FakeClock
from baton.store import migrate
from baton.store.admin import Actor
from baton.store.engines import normalize_url, open_runner
from baton.store.schema import audit_log, consents, grants
from baton.store.sql import SQLStore
from tests.databases import BACKENDS, _admin, admin_url, unavailable
from tests.support import (
    RegisteredClient,
    first_pair,
    introspect,
    refresh,
    register_client,
    register_user,
    running_app,
)

Served = tuple[TestClient, SQLStore, str]


def baton(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input)


def ok(*args: str) -> dict[str, Any]:
    """The command's one JSON object (it must succeed)."""
    result = baton(*args, "--json")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    payload: dict[str, Any] = json.loads(result.stdout)
    return payload


def failed(result: Result, fragment: str) -> None:
    """Exit status 1, nothing on stdout, one `error:` line naming `fragment`."""
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and fragment in line, line


@pytest.fixture
def served(database: Path | str) -> Iterator[Served]:
    """The app on `database` at the real time, and the `--db` of that database."""
    with running_app(database, clock=FakeClock(int(time.time()))) as (http, store, _clock):
        yield http, store, str(database / "baton.db") if isinstance(database, Path) else database


def sql(store: SQLStore, query: Any) -> list[Any]:
    return anyio.run(store.inspect, lambda conn: list(conn.execute(query).all()))


def audited(store: SQLStore, target: str) -> list[tuple[str, str]]:
    rows = sql(
        store,
        select(audit_log.c.actor, audit_log.c.action)
        .where(audit_log.c.target_id == target)
        .order_by(audit_log.c.id),
    )
    return [(actor.split(":")[0], action) for actor, action in rows]


def signed_in(served: Served) -> tuple[RegisteredClient, RegisteredClient, dict[str, Any]]:
    """A client, a resource server, and the tokens alice gave the client."""
    http, store, _db = served
    client = register_client(store)
    resource_server = register_client(store, resource_server=True)
    register_user(store)
    pair = first_pair(http, client)
    assert introspect(http, resource_server, pair["access_token"])["active"] is True
    return client, resource_server, pair


def test_disable_kills_tokens_at_once_and_enable_revives_nothing(served: Served) -> None:
    http, store, db = served
    client, resource_server, pair = signed_in(served)

    assert ok("client", "disable", "--db", db, client.id) == {
        "client_id": client.id,
        "disabled": True,
        "grants_revoked": 1,
    }
    assert introspect(http, resource_server, pair["access_token"])["active"] is False
    assert refresh(http, client, pair["refresh_token"]).status_code == 401  # cannot authenticate
    failed(baton("client", "disable", "--db", db, client.id), "disabled already")

    assert ok("client", "enable", "--db", db, client.id) == {
        "client_id": client.id,
        "disabled": False,
    }
    assert introspect(http, resource_server, pair["access_token"])["active"] is False
    assert refresh(http, client, pair["refresh_token"]).json()["error"] == "invalid_grant"
    failed(baton("client", "enable", "--db", db, client.id), "not disabled")
    assert first_pair(http, client)["access_token"]  # it may obtain new grants again
    assert audited(store, client.id) == [("cli", "client.disable"), ("cli", "client.enable")]
    failed(baton("client", "disable", "--db", db, "cl_nobody"), "no client 'cl_nobody'")


def test_delete_keeps_a_tombstone_that_never_authenticates(served: Served) -> None:
    http, store, db = served
    client, resource_server, pair = signed_in(served)
    refused = baton("client", "delete", "--db", db, client.id, input="n\n")
    failed(refused, "nothing deleted")

    deleted = ok("client", "delete", "--db", db, client.id, "--yes")
    assert deleted == {"client_id": client.id, "deleted": True, "grants_revoked": 1}
    assert introspect(http, resource_server, pair["access_token"])["active"] is False
    assert refresh(http, client, pair["refresh_token"]).status_code == 401
    # The history stays: the grant row still names the client, revoked.
    (revoked_at,) = sql(store, select(grants.c.revoked_at).where(grants.c.client_id == client.id))
    assert revoked_at[0] is not None

    listed = [c["client_id"] for c in ok("client", "list", "--db", db)["clients"]]
    assert client.id not in listed and resource_server.id in listed
    everything = {c["client_id"]: c for c in ok("client", "list", "--db", db, "--all")["clients"]}
    assert everything[client.id]["deleted"] is True
    assert everything[client.id]["redirect_uris"] == []
    assert everything[resource_server.id]["deleted"] is False
    for verb in ("enable", "disable", "update", "delete"):
        failed(baton("client", verb, "--db", db, client.id, "--yes")
               if verb == "delete" else baton("client", verb, "--db", db, client.id),
               "deleted")  # fmt: skip

    # Nor by the console (its enable and secret rotation are the admin store's): a deleted
    # client is never enabled nor given a secret again, and its list leaves it out.
    actor = Actor("test", None, int(time.time()))
    admin = store.admin()
    assert anyio.run(admin.enable_client, client.id, actor) is False
    assert anyio.run(admin.rotate_secret, client.id, b"\x00" * 32, actor) is False
    assert client.id not in {c.id for c in anyio.run(admin.clients)}
    assert refresh(http, client, pair["refresh_token"]).status_code == 401
    assert audited(store, client.id)[:2] == [("cli", "client.disable"), ("cli", "client.delete")]


def test_consent_revoke_forgets_consent_and_ends_the_grants(served: Served) -> None:
    http, store, db = served
    client, resource_server, pair = signed_in(served)
    other = register_client(store)
    kept = first_pair(http, other)

    remembered = select(func.count()).select_from(consents).where(consents.c.client_id == client.id)
    assert sql(store, remembered) == [(1,)]
    revoked = ok("consent", "revoke", "--db", db, "--user", "alice", "--client", client.id)
    assert revoked == {"username": "alice", "client_id": client.id, "grants_revoked": 1}
    assert introspect(http, resource_server, pair["access_token"])["active"] is False
    assert introspect(http, resource_server, kept["access_token"])["active"] is True
    assert sql(store, remembered) == [(0,)]
    assert audited(store, "alice") == [("cli", "subject.consents.delete")]

    failed(baton("consent", "revoke", "--db", db, "--user", "bob", "--client", client.id), "bob")
    failed(
        baton("consent", "revoke", "--db", db, "--user", "alice", "--client", "cl_x"),
        "no client 'cl_x'",
    )


@pytest.fixture(params=BACKENDS)
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database never migrated: a SQLite file's URL, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield str(tmp_path / "fresh.db")
        return
    name = f"baton_check_{int(time.time() * 1000) % 10**9}"
    try:
        anyio.run(_admin, f'CREATE DATABASE "{name}"')
    except OSError as exc:
        unavailable(str(exc))
    try:
        yield normalize_url(admin_url()).set(database=name).render_as_string(hide_password=False)
    finally:
        anyio.run(_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def check(db: str) -> tuple[int, dict[str, Any]]:
    result = baton("db", "upgrade", "--check", "--db", db, "--json")
    return result.exit_code, json.loads(result.stdout)


def test_upgrade_check_lists_pending_migrations_and_runs_none(empty_db: str) -> None:
    status, plan = check(empty_db)
    assert status == 1 and plan["current"] is None and plan["head"] == migrate.head()
    revisions = [p["revision"] for p in plan["pending"]]
    assert revisions[0] == "0001" and revisions[-1] == plan["head"]
    assert plan["pending"][0]["title"] == "initial schema"
    assert check(empty_db)[1]["current"] is None  # checking applied nothing

    async def to_0008() -> None:
        runner = open_runner(empty_db)
        try:
            await migrate.upgrade(runner, "0008")
        finally:
            await runner.close()

    anyio.run(to_0008)
    status, plan = check(empty_db)
    assert (status, plan["current"], plan["head"]) == (1, "0008", migrate.head())
    assert plan["pending"][0] == {
        "revision": "0009",
        "title": "The ID token of a sealed replay in a column of its own",
    }
    assert plan["pending"][-1]["revision"] == migrate.head()
    text = baton("db", "upgrade", "--check", "--db", empty_db)
    assert text.exit_code == 1 and "0009  The ID token of a sealed replay" in text.stdout

    assert baton("db", "upgrade", "--db", empty_db).exit_code == 0
    head = migrate.head()
    current: dict[str, Any] = {"current": head, "head": head, "pending": [], "problem": None}
    assert check(empty_db) == (0, current)
    assert "no migration pending" in baton("db", "upgrade", "--check", "--db", empty_db).stdout


def test_upgrade_check_keeps_database_errors_to_one_line(tmp_path: Path) -> None:
    """As every command's: one `error:` line naming the fix, no traceback (a real process, since
    `baton.script` turns the error into that line)."""
    missing = str(tmp_path / "missing" / "x.db")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    done = subprocess.run(
        [sys.executable, "-m", "baton.cli", "db", "upgrade", "--check", "--db", missing],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
    )
    assert (done.returncode, done.stdout) == (1, "")
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and "does not exist" in line, done.stderr
