"""The console's user pages: the list with its disabled and second-factor badges, and per user a
new password (held to the policy), disable and enable, delete (confirmed), each checked (admins
only, CSRF) and audited; on SQLite and PostgreSQL.

What a user notices: once disabled, their refresh token is refused at once and resource servers
learn it from the revocation feed; once deleted, their name can be given to a new user."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from argon2 import PasswordHasher
from sqlalchemy import Connection, select, update
from starlette.testclient import TestClient

from baton.passwords import NO_PASSWORD
from baton.store.admin import Actor, UserEnded
from baton.store.schema import consents, grants, revocation_events, sessions, users
from baton.store.sql import SQLStore
from tests.server.logout_support import logouts, oidc_app, register_rp, sign_in_to
from tests.server.test_console import admin_session, audit_rows, csrf_of, make_admin
from tests.support import (
    ISSUER,
    RegisteredClient,
    first_pair,
    introspect,
    refresh,
    register_client,
    register_user,
    sign_in,
)

NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id with the cheapest parameters, as `tests.support` hashes."""
    monkeypatch.setattr(
        "baton.server.admin.console.hash_password",
        PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash,
    )


@pytest.fixture
def admin(http: TestClient, store: SQLStore, client: RegisteredClient) -> TestClient:
    make_admin(store)
    admin_session(http)
    return http


def alice_browser(http: TestClient) -> TestClient:
    """A second browser on the same app (its own cookies), for alice."""
    return TestClient(http.app, base_url=ISSUER, follow_redirects=False)


def sql(store: SQLStore, query: Any) -> list[Any]:
    return anyio.run(store.inspect, lambda conn: list(conn.execute(query).all()))


def post(admin: TestClient, action: str, **fields: str) -> Any:
    csrf = csrf_of(admin.get("/admin/users/claims", params={"username": "alice"}).text)
    return admin.post(f"/admin/users/{action}", data={"csrf": csrf, **fields})


def test_the_list_shows_disabled_and_second_factor_badges(
    admin: TestClient, store: SQLStore
) -> None:
    anyio.run(lambda: store.create_user("bob", NO_PASSWORD, 0))

    def mark(conn: Connection) -> None:
        conn.execute(update(users).where(users.c.username == "alice").values(totp_secret="x"))
        conn.execute(update(users).where(users.c.username == "bob").values(disabled_at=5))

    anyio.run(store.runner.write, mark)
    page = admin.get("/admin/users").text
    alice_row = next(row for row in page.split("<tr") if ">alice</a>" in row)
    bob_row = next(row for row in page.split("<tr") if ">bob</a>" in row)
    assert "MFA" in alice_row and "active" in alice_row
    assert "disabled" in bob_row and "MFA" not in bob_row


def test_disabling_ends_the_users_grants_and_sessions_at_once(
    admin: TestClient, store: SQLStore, client: RegisteredClient
) -> None:
    api = register_client(store, resource_server=True, name="api")
    browser = alice_browser(admin)
    pair = first_pair(browser, client)
    assert introspect(admin, api, pair["access_token"])["active"] is True

    # Not without the form's token, nor by alice herself.
    refused = admin.post("/admin/users/disable", data={"csrf": "forged", "username": "alice"})
    assert refused.status_code == 403
    assert sql(store, select(users.c.disabled_at).where(users.c.username == "alice")) == [(None,)]

    done = post(admin, "disable", username="alice")
    assert done.status_code == 200, done.text
    assert "1 grant(s) revoked" in done.text

    # The refresh token is refused at once, the access token is dead to resource servers, and
    # the feed they follow names the grant.
    latest = sql(store, select(grants.c.id, grants.c.revoked_reason))
    assert [reason for _id, reason in latest] == ["admin"]
    answer = refresh(admin, client, pair["refresh_token"])
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"
    assert introspect(admin, api, pair["access_token"])["active"] is False
    assert sql(store, select(revocation_events.c.grant_id)) == [(latest[0][0],)]
    # Her browser session ended with it, and the remembered consent is forgotten.
    ended = sql(store, select(sessions.c.ended_at).join(users).where(users.c.username == "alice"))
    assert ended and all(at is not None for (at,) in ended)
    assert sql(store, select(consents.c.client_id)) == []
    assert browser.get("/logout").text.count("You are not signed in") == 1

    (row,) = [r for r in audit_rows(store) if r["action"] == "user.disable"]
    assert (row["actor"], row["target_id"]) == ("root", "alice")
    assert json.loads(row["detail"]) == {"grants_revoked": 1, "sessions": 1}
    assert "disabled" in admin.get("/admin/users/claims", params={"username": "alice"}).text

    # Enabling lets her sign in again; what the disabling ended stays ended.
    assert post(admin, "enable", username="alice").status_code == 200
    assert sql(store, select(users.c.disabled_at).where(users.c.username == "alice")) == [(None,)]
    assert refresh(admin, client, pair["refresh_token"]).status_code == 400
    assert [r["action"] for r in audit_rows(store)][-2:] == ["user.disable", "user.enable"]


def test_an_administrator_cannot_disable_or_delete_themselves(
    admin: TestClient, store: SQLStore
) -> None:
    csrf = csrf_of(admin.get("/admin/users/claims", params={"username": "root"}).text)
    for action, extra in (("disable", {}), ("delete", {"confirm": "root"})):
        answer = admin.post(
            f"/admin/users/{action}", data={"csrf": csrf, "username": "root", **extra}
        )
        assert answer.status_code == 400 and "yourself" in answer.text
    assert sql(store, select(users.c.disabled_at).where(users.c.username == "root")) == [(None,)]


def test_only_administrators_act_on_users(
    http: TestClient, store: SQLStore, client: RegisteredClient
) -> None:
    anyio.run(lambda: store.create_user("bob", NO_PASSWORD, 0))
    page = http.get("/admin/users")
    sign_in(http, page.headers["location"], "alice")
    csrf = csrf_of(http.get("/logout").text)
    answer = http.post("/admin/users/disable", data={"csrf": csrf, "username": "bob"})
    assert answer.status_code == 403
    assert sql(store, select(users.c.disabled_at).where(users.c.username == "bob")) == [(None,)]


def test_setting_a_password_holds_it_to_the_policy(
    admin: TestClient, store: SQLStore, client: RegisteredClient
) -> None:
    differ = post(admin, "password", username="alice", password=NEW_PASSWORD, password_again="x")
    assert differ.status_code == 400 and "differ" in differ.text
    common = post(
        admin, "password", username="alice", password="password1234", password_again="password1234"
    )
    assert common.status_code == 400 and "most common passwords" in common.text
    short = post(admin, "password", username="alice", password="tiny", password_again="tiny")
    assert short.status_code == 400 and "at least 12 characters" in short.text
    assert [r["action"] for r in audit_rows(store)] == []

    done = post(
        admin, "password", username="alice", password=NEW_PASSWORD, password_again=NEW_PASSWORD
    )
    assert done.status_code == 200 and "Saved the new password" in done.text
    (row,) = audit_rows(store)
    assert row["action"] == "user.set_password" and row["detail"] is None
    assert NEW_PASSWORD not in json.dumps(row)
    # Alice signs in with the new password, not the old one.
    browser = alice_browser(admin)
    old = sign_in(browser, "/login")
    assert old.status_code != 303
    new = sign_in(browser, "/login", "alice", NEW_PASSWORD)
    assert new.status_code == 303


def test_deleting_needs_the_name_typed_and_frees_it(
    admin: TestClient, store: SQLStore, client: RegisteredClient
) -> None:
    pair = first_pair(alice_browser(admin), client)
    unconfirmed = post(admin, "delete", username="alice", confirm="alicia")
    assert unconfirmed.status_code == 400 and "Type the username" in unconfirmed.text
    assert sql(store, select(users.c.id).where(users.c.username == "alice"))

    done = post(admin, "delete", username="alice", confirm="alice")
    assert done.status_code == 200 and "the name is free again" in done.text
    assert ">alice</a>" not in done.text  # the list no longer shows her, nor her tombstone
    assert "deleted-" not in done.text
    assert refresh(admin, client, pair["refresh_token"]).status_code == 400

    ((user_id, name, password_hash, email, profile),) = sql(
        store,
        select(
            users.c.id, users.c.username, users.c.password_hash, users.c.email, users.c.profile
        ).where(users.c.username.like("deleted-%")),
    )
    assert (name, password_hash, email, profile) == (f"deleted-{user_id}", NO_PASSWORD, None, None)
    # The grant stays as revoked history, under the tombstone.
    assert sql(store, select(grants.c.user_id, grants.c.revoked_reason)) == [(user_id, "admin")]
    assert sql(store, select(sessions.c.user_id).where(sessions.c.user_id == user_id)) == []
    (row,) = [r for r in audit_rows(store) if r["action"] == "user.delete"]
    assert row["target_id"] == "alice"
    assert json.loads(row["detail"])["renamed_to"] == f"deleted-{user_id}"

    # The name is free: a new alice is a new user, with nothing of the old one's.
    again = anyio.run(lambda: store.create_user("alice", NO_PASSWORD, 0))
    assert again.id != user_id
    assert "alice" in admin.get("/admin/users").text


def test_disabling_tells_relying_parties_and_spares_no_offline_grant(
    database: Path | str,
) -> None:
    """Disabling is no sign-out: a grant with offline_access dies too, and each relying party
    with a back-channel logout URI is told once per grant."""
    with oidc_app(database) as (http, store, clock):
        register_user(store)
        rp = register_rp(store, backchannel_uri="http://127.0.0.1:9/backchannel")
        online = sign_in_to(http, store, rp, "openid read")
        offline = sign_in_to(http, store, rp, "openid offline_access read")
        actor = Actor("root", None, clock.now())
        ended = anyio.run(store.admin().disable_user, "alice", actor)
        assert ended == UserEnded(sessions=1, grants_revoked=2)
        assert anyio.run(store.admin().disable_user, "alice", actor) is None
        for signed_in in (online, offline):
            answer = http.post(
                "/introspect", data={"token": signed_in["access_token"]}, auth=rp.basic
            )
            assert answer.json()["active"] is False
        told = [json.loads(row.payload) for row in logouts(store)]
        assert len(told) == 2 and {t["subject"] for t in told} == {"alice"}
        assert {t["sid"] for t in told} == {online["sid"]}


def test_a_disabled_administrators_session_opens_no_console_page(
    admin: TestClient, store: SQLStore
) -> None:
    """Disabling ends the sessions; should one survive (a sign-in racing the disabling), the
    console still refuses it."""
    anyio.run(
        store.runner.write,
        lambda conn: conn.execute(
            update(users).where(users.c.username == "root").values(disabled_at=1)
        ),
    )
    answer = admin.get("/admin/users")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
