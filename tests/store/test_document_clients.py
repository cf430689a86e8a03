"""The rows of metadata-document clients (`baton.store.sql.documents`): a fetch rewrites what the
document says and nothing an operator decided, and never takes an operator's client id."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import anyio

from baton.store.admin import Actor
from baton.store.base import Client, NewCode, RegisteredVia
from tests.support import migrated_store, register_user

URL = "https://app.example/client.json"


def _client(**fields: object) -> Client:
    base = Client(
        id=URL,
        name="App",
        secret_digest=None,
        is_public=True,
        is_resource_server=False,
        redirect_uris=("https://app.example/cb",),
        scope="read",
        created_at=100,
        registered_via=RegisteredVia.DOCUMENT,
        registration={"client_name": "App"},
        document_expires_at=400,
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def test_a_document_row_is_inserted_then_updated_keeping_the_operators_decisions(
    database: Path | str, tmp_path: Path
) -> None:
    where = database if isinstance(database, str) else tmp_path / "baton.db"
    store = migrated_store(where)
    try:
        assert anyio.run(store.save_document_client, _client()) == _client()
        anyio.run(store.admin().disable_client, URL, Actor("root", None, 200))
        fetched_again = _client(
            name="App 2",
            redirect_uris=("https://app.example/cb2",),
            created_at=300,
            document_expires_at=900,
        )
        stored = anyio.run(store.save_document_client, fetched_again)
        assert stored is not None
        assert (stored.name, stored.redirect_uris, stored.document_expires_at) == (
            "App 2",
            ("https://app.example/cb2",),
            900,
        )
        # Still disabled, still created when it was first seen.
        assert stored.disabled_at == 200 and stored.created_at == 100
    finally:
        anyio.run(store.close)


def test_an_operators_client_is_never_overwritten(database: Path | str, tmp_path: Path) -> None:
    where = database if isinstance(database, str) else tmp_path / "baton.db"
    store = migrated_store(where)
    try:
        operators = _client(name="Operator's", registered_via=None, registration={})
        anyio.run(store.create_client, operators)
        assert anyio.run(store.save_document_client, _client(name="Impostor")) is None
        assert anyio.run(store.get_client, URL) == operators
    finally:
        anyio.run(store.close)


def test_an_unused_document_client_is_forgotten_long_after_its_document_expired(
    database: Path | str, tmp_path: Path
) -> None:
    """Anyone can make a document client's row by naming a valid document at /authorize: a row
    nothing names goes once its document expired `expiry` seconds ago (the URL is fetched again
    if it comes back); a used one, or one an operator disabled, stays."""
    where = database if isinstance(database, str) else tmp_path / "baton.db"
    store = migrated_store(where)
    try:
        unused = _client()  # its document expired at 400
        used = _client(id="https://used.example/client.json")
        disabled = _client(id="https://disabled.example/client.json")
        for client in (unused, used, disabled):
            anyio.run(store.save_document_client, client)
        anyio.run(store.admin().disable_client, disabled.id, Actor("root", None, 200))
        register_user(store)
        user = anyio.run(store.get_user, "alice")
        assert user is not None
        code = NewCode(
            digest=b"d" * 32,
            client_id=used.id,
            user_id=user.id,
            redirect_uri=used.redirect_uris[0],
            scope="read",
            code_challenge=None,
            created_at=300,
            expires_at=360,
        )
        anyio.run(store.save_code, code)
        assert anyio.run(store.forget_unused_document_clients, 400 + 99, 100) == 0  # too soon
        assert anyio.run(store.forget_unused_document_clients, 400 + 101, 100) == 1
        assert anyio.run(store.get_client, unused.id) is None
        assert anyio.run(store.get_client, used.id) is not None
        assert anyio.run(store.get_client, disabled.id) is not None
    finally:
        anyio.run(store.close)


def test_a_refetch_finishing_after_the_client_was_deleted_leaves_its_tombstone(
    database: Path | str, tmp_path: Path
) -> None:
    """A fetch under way while an operator deletes the client must not give the tombstone back
    its redirect URIs (or make it public again)."""
    where = database if isinstance(database, str) else tmp_path / "baton.db"
    store = migrated_store(where)
    try:
        anyio.run(store.save_document_client, _client())
        anyio.run(store.admin().delete_client, URL, Actor("root", None, 200))
        tombstone = anyio.run(store.get_client, URL)
        assert tombstone is not None and tombstone.deleted_at == 200
        stored = anyio.run(store.save_document_client, _client(document_expires_at=900))
        assert stored == tombstone
        assert anyio.run(store.get_client, URL) == tombstone
    finally:
        anyio.run(store.close)
