"""The upstream sign-in's one transaction (`baton.store.sql.upstream`), on SQLite and
PostgreSQL: link by `sub`, by verified e-mail only when allowed and unambiguous, a user made
with a free name, refusals that write nothing."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from tests.support import migrated_store, register_user

from baton.core.upstream import Linked, UpstreamIdentity, UpstreamProvider
from baton.core.user_claims import ClaimChanges
from baton.store.admin import Actor
from baton.store.sql import SQLStore

ACTOR = Actor("upstream:corp", "127.0.0.1", 1000)


def provider(**changes: bool) -> UpstreamProvider:
    return UpstreamProvider(
        "corp",
        "Corp",
        "https://id.corp.example",
        "baton",
        None,
        "openid",
        changes.get("link_by_email", False),
        changes.get("create_users", False),
        0,
    )


@pytest.fixture
def store(database: Path | str) -> SQLStore:
    found = migrated_store(database if isinstance(database, str) else database / "b.db")
    anyio.run(found.add_upstream, provider())
    return found


def with_email(store: SQLStore, username: str, email: str) -> None:
    register_user(store, username)
    changes = ClaimChanges({"email": email}, email_verified=True)
    anyio.run(store.set_user_claims, username, changes, 0)


def test_linking_rules(store: SQLStore) -> None:
    with_email(store, "ann", "ann@corp.example")
    verified = UpstreamIdentity("sub-ann", "ann@corp.example", True)
    # Not allowed to link by e-mail: refused, nothing written.
    refused = anyio.run(store.upstream_sign_in, provider(), verified, ACTOR)
    assert refused.user_id is None and "No account is linked" in (refused.refusal or "")
    # Allowed, and verified: linked.
    linked = anyio.run(store.upstream_sign_in, provider(link_by_email=True), verified, ACTOR)
    assert (linked.username, linked.how) == ("ann", Linked.EMAIL)
    # From then on the link holds, whatever the e-mail says.
    moved = UpstreamIdentity("sub-ann", "other@corp.example", False)
    again = anyio.run(store.upstream_sign_in, provider(), moved, ACTOR)
    assert (again.username, again.how) == ("ann", Linked.LINK)
    assert linked.user_id is not None
    [link] = anyio.run(store.upstream_links_of, linked.user_id)
    assert (link.subject, link.email, link.last_used_at) == ("sub-ann", "other@corp.example", 1000)


def test_an_ambiguous_email_is_refused(store: SQLStore) -> None:
    with_email(store, "b1", "same@corp.example")
    with_email(store, "b2", "same@corp.example")
    identity = UpstreamIdentity("sub-b", "same@corp.example", True)
    found = anyio.run(store.upstream_sign_in, provider(link_by_email=True), identity, ACTOR)
    assert found.user_id is None and "Several accounts" in (found.refusal or "")


def test_a_made_user_takes_a_free_name(store: SQLStore) -> None:
    register_user(store, "dave")  # the upstream's preferred_username is taken
    identity = UpstreamIdentity("sub-dave", "dave@corp.example", True, "dave", (), {"name": "D"})
    made = anyio.run(store.upstream_sign_in, provider(create_users=True), identity, ACTOR)
    assert made.how == Linked.CREATED
    assert made.username is not None and made.username.startswith("corp-")
    user = anyio.run(store.get_user, made.username)
    assert user is not None
    assert (user.email, user.email_verified) == ("dave@corp.example", True)
    assert user.profile == {"name": "D"}
