"""The upstream sign-in's one transaction (`baton.store.sql.upstream`), on SQLite and
PostgreSQL: link by `sub`, by verified e-mail only when allowed, unambiguous, and to a user
whose own address is verified, no administrator and not yet linked to that provider; a user
made with a name of the `sub`; a deleted user's account refused; a lost race run again;
refusals that write nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy.exc import IntegrityError
from tests.support import migrated_store

from baton.core.upstream import Linked, UpstreamIdentity, UpstreamProvider, username_for
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


def with_email(
    store: SQLStore, username: str, email: str, *, verified: bool = True, admin: bool = False
) -> None:
    anyio.run(lambda: store.create_user(username, "x", 0, admin=admin))
    changes = ClaimChanges({"email": email}, email_verified=verified)
    anyio.run(store.set_user_claims, username, changes, 0)


def sign_in(store: SQLStore, identity: UpstreamIdentity, **changes: bool) -> Any:
    return anyio.run(store.upstream_sign_in, provider(**changes), identity, ACTOR)


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


def test_a_made_user_is_named_after_the_sub(store: SQLStore) -> None:
    identity = UpstreamIdentity("sub-dave", "dave@corp.example", True, (), {"name": "D"})
    made = sign_in(store, identity, create_users=True)
    assert made.how == Linked.CREATED
    assert made.username == username_for("corp", "sub-dave")
    user = anyio.run(store.get_user, made.username)
    assert user is not None
    assert (user.email, user.email_verified) == ("dave@corp.example", True)
    assert user.profile == {"name": "D"}


def test_an_unverified_local_address_is_not_linked_by(store: SQLStore) -> None:
    # An address the upstream did not verify is copied as unverified; another upstream account
    # with that address verified is then not linked to that user, but gets its own.
    planted = UpstreamIdentity("attacker", "victim@corp.example", False)
    first = sign_in(store, planted, create_users=True, link_by_email=True)
    user = anyio.run(store.get_user, first.username)
    assert user is not None and (user.email, user.email_verified) == ("victim@corp.example", False)
    victim = UpstreamIdentity("victim", "victim@corp.example", True)
    second = sign_in(store, victim, create_users=True, link_by_email=True)
    assert second.how == Linked.CREATED and second.user_id != first.user_id
    # Without --create-users: refused, not linked.
    with_email(store, "vera", "vera@corp.example", verified=False)
    refused = sign_in(store, UpstreamIdentity("v", "vera@corp.example", True), link_by_email=True)
    assert refused.user_id is None and "No account is linked" in (refused.refusal or "")


def test_an_administrator_is_never_linked_by_email(store: SQLStore) -> None:
    with_email(store, "root", "root@corp.example", admin=True)
    found = sign_in(store, UpstreamIdentity("r", "root@corp.example", True), link_by_email=True)
    assert found.user_id is None and "No account is linked" in (found.refusal or "")


def test_a_user_linked_to_the_provider_is_not_linked_again_by_email(store: SQLStore) -> None:
    with_email(store, "ann", "ann@corp.example")
    first = sign_in(store, UpstreamIdentity("ann-1", "ann@corp.example", True), link_by_email=True)
    assert (first.username, first.how) == ("ann", Linked.EMAIL)
    other = UpstreamIdentity("ann-2", "ann@corp.example", True)
    refused = sign_in(store, other, link_by_email=True)
    assert refused.user_id is None and "No account is linked" in (refused.refusal or "")


def test_addresses_match_whatever_their_case(store: SQLStore) -> None:
    with_email(store, "ann", "Ann@Corp.Example")
    found = sign_in(store, UpstreamIdentity("a", "ann@CORP.example", True), link_by_email=True)
    assert (found.username, found.how) == ("ann", Linked.EMAIL)


def test_a_deleted_users_upstream_account_is_refused(store: SQLStore) -> None:
    identity = UpstreamIdentity("sub-gone", None, False)
    made = sign_in(store, identity, create_users=True)
    assert made.username is not None
    assert anyio.run(store.admin().delete_user, made.username, ACTOR) is not None
    again = sign_in(store, identity, create_users=True)
    assert again.user_id is None and "was deleted" in (again.refusal or "")


def test_a_first_sign_in_that_loses_a_race_uses_the_winners_link(
    store: SQLStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two first sign-ins of one account at once: the other one commits its user and link first,
    # and this one's insert fails on the key. It is run once more, and finds that link.
    real = store._write
    calls = []

    async def racing(work: Callable[[Any], Any]) -> Any:
        calls.append(work)
        if len(calls) == 1:
            await real(work)  # the other request's transaction, committed
            raise IntegrityError("INSERT INTO upstream_links", {}, Exception("duplicate key"))
        return await real(work)

    monkeypatch.setattr(store, "_write", racing)
    identity = UpstreamIdentity("sub-race", None, False)
    found = sign_in(store, identity, create_users=True)
    assert found.how == Linked.LINK and found.username == username_for("corp", "sub-race")
    assert len(calls) == 2
