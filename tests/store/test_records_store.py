"""The admin API's record queries (`baton.store.sql.records`) on SQLite and PostgreSQL: pages
along a key cover every row once, in the order of the database's own `ORDER BY`, whatever the
names; a user made through the API is made with their claims and audited in one go."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from baton.core.user_claims import ClaimChanges
from baton.store.admin import Actor
from baton.store.base import UserExists
from baton.store.sql import SQLStore
from tests.support import migrated_store, register_client, register_user

ACTOR = Actor("client:cl_test", "10.0.0.1", 100)
NAMES = ["Zoë", "alice", "Alice", "bob", "b", "ß", "émile", "z z", "_x", "0"]


def _store(database: Path | str) -> SQLStore:
    return migrated_store(database if isinstance(database, str) else database / "baton.db")


def test_user_pages_cover_every_user_once(database: Path | str) -> None:
    store = _store(database)
    admin = store.admin()
    for name in NAMES:
        register_user(store, name)
    anyio.run(admin.delete_user, "b", ACTOR)
    seen: list[str] = []
    after: str | None = None
    for _ in range(20):
        page, after = anyio.run(admin.user_page, after, 3)
        assert len(page) <= 3
        seen += [row.user.username for row in page]
        if after is None:
            break
    everyone, last = anyio.run(admin.user_page, None, 200)
    assert last is None
    assert seen == [row.user.username for row in everyone]
    assert sorted(seen) == sorted(set(NAMES) - {"b"})  # each once; the deleted one left out
    found = anyio.run(admin.user_record, "b")
    assert found is not None and found.user.deleted_at is not None


def test_consent_pages_cover_every_consent_once(database: Path | str) -> None:
    store = _store(database)
    admin = store.admin()
    clients = [register_client(store).id for _ in range(3)]
    for name in NAMES[:4]:
        register_user(store, name)
        user = anyio.run(store.get_user, name)
        assert user is not None
        for client_id in clients:
            anyio.run(store.remember_consent, user.id, client_id, frozenset({"read"}), (), 10)
    seen: list[tuple[str, str]] = []
    after: tuple[str, str] | None = None
    for _ in range(20):
        page, after = anyio.run(admin.consent_page, None, None, after, 5, 50)
        seen += [(c.username, c.client_id) for c in page]
        if after is None:
            break
    assert len(seen) == len(set(seen)) == 12
    one, _ = anyio.run(admin.consent_page, NAMES[1], clients[0], None, 50, 50)
    assert [(c.username, c.client_id, c.scope) for c in one] == [
        (NAMES[1], clients[0], frozenset({"read"}))
    ]


def test_a_user_made_with_claims_is_audited_with_their_names_only(database: Path | str) -> None:
    store = _store(database)
    admin = store.admin()
    claims = ClaimChanges({"email": "c@example.com", "name": "Carol"}, True)
    made = anyio.run(admin.create_user_with_claims, "carol", "hash", claims, ACTOR)
    assert (
        made.email == "c@example.com" and made.email_verified and made.profile == {"name": "Carol"}
    )
    assert not made.is_admin
    rows, _ = anyio.run(admin.audit)
    assert [(r.actor, r.action, r.target_id) for r in rows] == [
        ("client:cl_test", "user.create", "carol")
    ]
    assert rows[0].detail is not None and "c@example.com" not in rows[0].detail
    with pytest.raises(UserExists):
        anyio.run(admin.create_user_with_claims, "carol", "hash", ClaimChanges(), ACTOR)
    assert len(anyio.run(admin.audit)[0]) == 1  # the refusal wrote nothing
