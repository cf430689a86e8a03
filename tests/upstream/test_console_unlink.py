"""The console's user page unlinks an upstream account: that account signs in as nobody after,
the user is untouched, and the action is audited; CSRF required."""

from __future__ import annotations

import json

import anyio
from starlette.testclient import TestClient
from tests.server.test_console import admin_session, audit_rows, csrf_of, make_admin

from baton.core.upstream import UpstreamIdentity, UpstreamProvider
from baton.store.admin import Actor
from baton.store.sql import SQLStore

CORP = UpstreamProvider(
    "corp", "Corp", "https://id.corp.example", "baton", None, "openid", False, True, 0
)


def linked_user(store: SQLStore) -> str:
    """A user made by a first sign-in at Corp (its name is Baton's choice)."""
    anyio.run(store.add_upstream, CORP)
    identity = UpstreamIdentity("corp-sub-1")
    outcome = anyio.run(store.upstream_sign_in, CORP, identity, Actor("upstream:corp", None, 10))
    assert outcome.username is not None, outcome.refusal
    return outcome.username


def test_an_upstream_account_is_unlinked_from_the_console(
    http: TestClient, store: SQLStore
) -> None:
    username = linked_user(store)
    make_admin(store)
    admin_session(http)
    page = http.get("/admin/users/claims", params={"username": username})
    assert page.status_code == 200 and "corp-sub-1" in page.text and ">Unlink<" in page.text
    form = {"username": username, "provider_id": "corp", "subject": "corp-sub-1"}

    forged = http.post("/admin/users/unlink", data={**form, "csrf": "nope"})
    assert forged.status_code == 403
    done = http.post("/admin/users/unlink", data={**form, "csrf": csrf_of(page.text)})
    assert done.status_code == 200 and "no longer signs in here" in done.text
    assert "<code>corp-sub-1</code>" not in done.text  # gone from the links table
    user = anyio.run(store.get_user, username)
    assert user is not None and user.disabled_at is None  # the user stays
    (row,) = [r for r in audit_rows(store) if r["action"] == "upstream.unlink"]
    assert row["actor"] == "root" and row["target_id"] == username
    assert json.loads(row["detail"]) == {"provider": "corp", "upstream_subject": "corp-sub-1"}

    again = http.post("/admin/users/unlink", data={**form, "csrf": csrf_of(done.text)})
    assert again.status_code == 404 and "unlinked already" in again.text
