"""The store's writes of OpenID Connect registration data, on SQLite and PostgreSQL: a client's
OIDC settings (nothing else of the client), and a user's claims with their `updated_at`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio

from baton.core.client_metadata import OidcSettings, checked
from baton.core.user_claims import ClaimChanges, check
from baton.store.sql import SQLStore
from tests.support import migrated_store, register_client, register_user


def test_client_oidc_settings_round_trip_and_touch_nothing_else(database: Path | str) -> None:
    store = migrated_store(database if isinstance(database, str) else database / "b.db")
    try:
        registered = register_client(store, redirect_uris=("https://app.example/cb",))
        before = anyio.run(store.get_client, registered.id)
        assert before is not None
        settings = checked(
            OidcSettings(
                id_token_signed_response_alg="EdDSA",
                subject_type="pairwise",
                sector_identifier_uri="https://rp.example/s.json",
                post_logout_redirect_uris=("https://app.example/bye",),
                backchannel_logout_uri="https://app.example/logout",
                backchannel_logout_session_required=True,
                require_nonce=True,
                allowed_origins=(),
            ),
            before.redirect_uris,
        )
        assert anyio.run(store.update_client_oidc, replace(before, **settings.fields()))
        after = anyio.run(store.get_client, registered.id)
        assert after is not None and OidcSettings.of(after) == settings
        assert after.allowed_origins == ()  # none, not "derived"
        assert replace(after, **OidcSettings().fields()) == replace(
            before, **OidcSettings().fields()
        )
        listed = anyio.run(store.list_clients)
        assert [c.id for c in listed] == [registered.id]
        ghost = replace(before, id="cl_ghost")
        assert not anyio.run(store.update_client_oidc, ghost)
    finally:
        anyio.run(store.close)


def test_user_claims_are_merged_in_the_transaction(database: Path | str) -> None:
    store: SQLStore = migrated_store(database if isinstance(database, str) else database / "b.db")
    try:
        register_user(store)

        def set_claims(now: int, verified: bool | None = None, **values: str) -> tuple[Any, ...]:
            found = anyio.run(
                store.set_user_claims, "alice", check(ClaimChanges(values, verified)), now
            )
            assert found is not None
            return found

        _, first = set_claims(10, True, email="alice@example.com", name="Alice", locale="en")
        assert (first.email, first.email_verified, first.updated_at) == (
            "alice@example.com",
            True,
            10,
        )
        _, second = set_claims(20, locale="", given_name="Alice")
        assert second.profile == {"name": "Alice", "given_name": "Alice"}
        assert second.email_verified and second.updated_at == 20
        stored = anyio.run(store.get_user, "alice")
        assert stored == second
        _, same = set_claims(30, name="Alice")
        assert same.updated_at == 20  # nothing changed
        assert anyio.run(store.set_user_claims, "nobody", ClaimChanges({"name": "x"}), 1) is None
    finally:
        anyio.run(store.close)
