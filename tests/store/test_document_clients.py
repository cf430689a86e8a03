"""The rows of metadata-document clients (`baton.store.sql.documents`): a fetch rewrites what the
document says and nothing an operator decided, and never takes an operator's client id."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import anyio

from baton.store.admin import Actor
from baton.store.base import Client, RegisteredVia
from tests.support import migrated_store

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
