"""When a stored metadata-document client is used again (`ClientDocuments.client` for
/authorize, `ClientDocuments.authenticating` for /token, /introspect and /revoke): the
operator's current settings apply to a row stored before them, and an expired row is refreshed
(or refused) before a client authenticates with it. A real HTTPS document host on loopback; the
store is a dict."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from baton.config import Settings
from baton.core.clock import FakeClock
from baton.server.runtime.documents import (
    CEILING,
    RETRY_UNREACHABLE,
    TOKEN_REUSE,
    ClientDocuments,
    DocumentError,
    host_matches,
    host_of,
)
from baton.store.base import Client
from tests.server.document_host import DocumentHost, Served, document_host

_paths = itertools.count()
REDIRECT_URI = "http://127.0.0.1/callback"


@pytest.fixture(scope="module")
def host() -> Iterator[DocumentHost]:
    with document_host() as running:
        yield running


class _Store:
    """Rows by id, as `save_document_client` leaves them."""

    def __init__(self) -> None:
        self.rows: dict[str, Client] = {}

    async def get_client(self, client_id: str) -> Client | None:
        return self.rows.get(client_id)

    async def registered_resources(self) -> frozenset[str]:
        return frozenset()

    async def save_document_client(self, client: Client) -> Client | None:
        self.rows[client.id] = client
        return client


def documents_of(host: DocumentHost, **settings: Any) -> ClientDocuments:
    settings.setdefault("client_documents_allow_private", True)
    settings.setdefault("dynamic_client_scopes", ("read", "write"))
    found = ClientDocuments(
        Settings(issuer="https://as.example", **settings), _Store(), FakeClock()
    )
    found.ssl_context = host.ssl_context()
    return found


def published(host: DocumentHost, **members: Any) -> tuple[str, str]:
    """A valid document at a new path, fresh for 600 seconds: (its path, its URL)."""
    path = f"/reuse/{next(_paths)}.json"
    url = host.url(path)
    host.serve_json(path, document(url, **members), **{"Cache-Control": "max-age=600"})
    return path, url


def document(url: str, **members: Any) -> dict[str, Any]:
    return {
        "client_id": url,
        "client_name": "Doc App",
        "redirect_uris": [REDIRECT_URI],
        "application_type": "native",
        "token_endpoint_auth_method": "none",
        "scope": "read write",
        **members,
    }


def run(documents: ClientDocuments, call: str, arg: Any) -> Any:
    return asyncio.run(getattr(documents, call)(arg))


# -- L4: the operator's current settings, on every use ------------------------------------------


def test_a_host_denied_after_its_client_was_stored_is_refused_at_once(host: DocumentHost) -> None:
    path, url = published(host)
    documents = documents_of(host)
    stored = run(documents, "client", url)
    assert stored is not None
    documents.settings = replace(documents.settings, client_documents_denied_hosts=(host_of(url),))
    with pytest.raises(DocumentError, match="does not accept clients"):
        run(documents, "client", url)  # the row is still fresh: refused without a fetch
    with pytest.raises(DocumentError, match="does not accept clients"):
        run(documents, "authenticating", stored)
    assert host.count(path) == 1


def test_scopes_narrowed_after_a_client_was_stored_narrow_its_row(host: DocumentHost) -> None:
    path, url = published(host)
    documents = documents_of(host)
    assert run(documents, "client", url).scope == "read write"
    documents.settings = replace(documents.settings, dynamic_client_scopes=("read",))
    narrowed = run(documents, "client", url)
    assert narrowed.scope == "read"
    assert host.count(path) == 2  # fetched again though fresh, once
    assert run(documents, "client", url) == narrowed and host.count(path) == 2


def test_host_patterns_written_in_unicode_match_the_ascii_urls() -> None:
    """URLs are ASCII (a client id with an internationalized name is in its IDNA form)."""
    assert host_matches("xn--bcher-kva.example", ("bücher.example",))
    assert host_matches("docs.xn--bcher-kva.example", ("*.Bücher.example",))
    assert not host_matches("xn--bcher-kva.example", ("*.bücher.example",))
    assert not host_matches("bucher.example", ("bücher.example",))


# -- M2: an expired row, at /token, /introspect and /revoke -------------------------------------


def stale_row(host: DocumentHost, documents: ClientDocuments, **members: Any) -> tuple[str, Client]:
    path, url = published(host, **members)
    stored = run(documents, "client", url)
    assert stored is not None
    assert isinstance(documents.clock, FakeClock)
    documents.clock.advance(601)  # max-age=600
    return path, stored


KEYED = {"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "https://k.example/jwks"}


def test_a_fresh_row_is_used_without_a_fetch_and_another_client_without_any_work(
    host: DocumentHost,
) -> None:
    path, url = published(host)
    documents = documents_of(host)
    stored = run(documents, "client", url)
    assert run(documents, "authenticating", stored) is stored
    assert host.count(path) == 1
    operators = replace(stored, id="plain", registered_via=None, document_expires_at=None)
    assert run(documents, "authenticating", operators) is operators


def test_an_expired_row_is_refreshed_before_its_client_authenticates(host: DocumentHost) -> None:
    documents = documents_of(host)
    path, stored = stale_row(host, documents, **KEYED)
    assert stored.jwks_uri == "https://k.example/jwks"
    host.serve_json(path, document(stored.id, **{**KEYED, "jwks_uri": "https://k.example/new"}))
    refreshed = run(documents, "authenticating", stored)
    assert refreshed.jwks_uri == "https://k.example/new"
    assert host.count(path) == 1


@pytest.mark.parametrize("keyed", [False, True], ids=["public", "private_key_jwt"])
def test_an_expired_row_whose_document_is_now_invalid_or_gone_is_refused(
    host: DocumentHost, keyed: bool
) -> None:
    documents = documents_of(host)
    path, stored = stale_row(host, documents, **(KEYED if keyed else {}))
    host.serve_json(path, document("https://elsewhere.example/app"))
    with pytest.raises(DocumentError, match="does not match"):
        run(documents, "authenticating", stored)
    host.serve(path, Served(b"gone", status=404))
    with pytest.raises(DocumentError, match="could not be fetched"):
        run(documents, "authenticating", stored)


def test_a_document_that_forbids_reuse_is_reused_for_a_while_at_the_token_endpoints(
    host: DocumentHost,
) -> None:
    """Only the row this process's fetch stored (or a later one), only for `TOKEN_REUSE`
    seconds, and not once the operator narrowed what document clients may hold."""
    documents = documents_of(host)
    clock = documents.clock
    assert isinstance(clock, FakeClock)
    path = f"/reuse/{next(_paths)}.json"
    url = host.url(path)
    host.serve_json(path, document(url), **{"Cache-Control": "no-store"})
    stored = run(documents, "client", url)
    assert stored.document_expires_at == clock.now()  # no-store: expired at once
    clock.advance(TOKEN_REUSE - 1)
    assert run(documents, "authenticating", stored) is stored
    assert host.count(path) == 1
    # A copy older than that fetch (read before it landed) is not what it stored.
    older = replace(stored, document_expires_at=stored.document_expires_at - 1)
    refreshed = run(documents, "authenticating", older)
    assert refreshed is not older and host.count(path) == 2
    # Narrowed scopes are applied at once.
    documents.settings = replace(documents.settings, dynamic_client_scopes=("read",))
    assert run(documents, "authenticating", refreshed).scope == "read"
    assert host.count(path) == 3
    clock.advance(TOKEN_REUSE)
    run(documents, "authenticating", documents.store.rows[url])  # type: ignore[attr-defined]
    assert host.count(path) == 4


def test_an_unreachable_document_keeps_a_public_client_but_not_a_keyed_one(
    host: DocumentHost,
) -> None:
    """A CDN's outage must not strand a public client's users (its refresh tokens); a
    private_key_jwt client's keys come from the document, which cannot be confirmed. An
    unreachable URL is not tried again for a while: each request would wait out the limit."""
    documents = documents_of(host)
    clock = documents.clock
    assert isinstance(clock, FakeClock)
    public_path, public = stale_row(host, documents)
    keyed_path, keyed = stale_row(host, documents, **KEYED)
    documents.timeout = 0.3
    for served in (Served(b"down", status=503), Served(json.dumps({}).encode(), delay=0.6)):
        host.serve(public_path, served)
        host.serve(keyed_path, served)
        for _ in range(2):
            assert run(documents, "authenticating", public) is public
            with pytest.raises(DocumentError, match="cannot be confirmed"):
                run(documents, "authenticating", keyed)
        assert (host.count(public_path), host.count(keyed_path)) == (1, 1)
        clock.advance(RETRY_UNREACHABLE)
    # Back: the next request fetches it and goes on with the refreshed row.
    host.serve_json(keyed_path, document(keyed.id, **KEYED))
    assert run(documents, "authenticating", keyed).document_expires_at > clock.now()
    # Documents turned off: nothing is fetched; the same rule.
    documents.settings = replace(documents.settings, client_metadata_documents=False)
    clock.advance(CEILING)
    assert run(documents, "authenticating", public) is public
    with pytest.raises(DocumentError, match="cannot be confirmed"):
        run(documents, "authenticating", keyed)


def path_of(client: Client) -> str:
    return "/" + client.id.split("/", 3)[3]
