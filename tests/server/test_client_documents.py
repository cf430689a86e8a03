"""Client ID metadata documents end to end: an https `client_id` whose document, served by a real
HTTPS server on loopback (the development allowance, `client_documents_allow_private`), registers
a public client that authorizes through the real pages and refreshes; every document that cannot
be used gives a page that says why, and never a redirect."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.testclient import TestClient

from baton.config import Settings
from baton.core.clock import FakeClock
from baton.server.runtime import documents as documents_module
from baton.server.runtime.documents import (
    TOKEN_REUSE,
    ClientDocuments,
    DocumentError,
    url_problem,
)
from baton.store.admin import Actor
from baton.store.base import CLIENT_ID_LENGTH, Client, RegisteredVia
from baton.store.sql import SQLStore
from tests.server.document_host import DocumentHost, Served, document_host
from tests.support import (
    REDIRECT_URI,
    RegisteredClient,
    authorize,
    pkce_pair,
    redeem,
    refresh,
    register_user,
    running_app,
    sign_in,
)

_paths = itertools.count()


@pytest.fixture(scope="module")
def host() -> Iterator[DocumentHost]:
    with document_host() as running:
        yield running


def serving(host: DocumentHost, **settings: Any) -> Any:
    """An app under a fake clock that trusts the document host's certificate."""
    settings.setdefault("client_documents_allow_private", True)
    settings.setdefault("dynamic_client_scopes", ("read", "write"))
    return settings


@pytest.fixture
def app(
    host: DocumentHost, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[TestClient, SQLStore, FakeClock]]:
    extra: dict[str, Any] = getattr(request, "param", {})
    with running_app(tmp_path, **serving(host, **extra)) as (http, store, clock):
        documents: ClientDocuments = http.app.state.baton.documents  # type: ignore[attr-defined]
        documents.ssl_context = host.ssl_context()
        documents.timeout = 3.0  # generous: a loaded CI machine's TLS handshake
        register_user(store)
        yield http, store, clock


def with_settings(**settings: Any) -> pytest.MarkDecorator:
    """The `app` fixture with these Settings fields."""
    return pytest.mark.parametrize("app", [settings], indirect=True, ids=[""])


def new_path() -> str:
    return f"/clients/{next(_paths)}.json"


def document(url: str, **members: Any) -> dict[str, Any]:
    return {
        "client_id": url,
        "client_name": "Doc App",
        "redirect_uris": [REDIRECT_URI],
        "application_type": "native",
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "scope": "read write",
        **members,
    }


def published(host: DocumentHost, **members: Any) -> tuple[str, str]:
    """A valid document at a new path: (its path, its URL)."""
    path = new_path()
    url = host.url(path)
    host.serve_json(path, document(url, **members), **{"Cache-Control": "max-age=600"})
    return path, url


def request_params(client_id: str) -> dict[str, str]:
    _, challenge = pkce_pair()
    return {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "read",
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }


def consent_page(http: TestClient, client_id: str, **headers: str) -> str:
    params = request_params(client_id)
    response = http.get("/authorize", params=params, headers=headers)
    if response.status_code == 303 and response.headers["location"].startswith("/login"):
        assert sign_in(http, response.headers["location"]).status_code == 303
        response = http.get("/authorize", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.text


def refused_page(http: TestClient, client_id: str) -> str:
    """The page an unusable document gives: a 400 page, never a redirect to the client."""
    response = http.get("/authorize", params=request_params(client_id))
    assert response.status_code == 400, (response.status_code, response.headers, response.text)
    assert "location" not in response.headers
    return response.text


# -- the whole flow -------------------------------------------------------------------------------


def test_a_document_client_authorizes_through_the_pages_and_refreshes(
    app: tuple[TestClient, SQLStore, FakeClock], host: DocumentHost
) -> None:
    http, store, _ = app
    path, url = published(host)
    client = RegisteredClient(url, None)
    page = consent_page(http, url)
    assert "Doc App" in page and "localhost" in page
    assert "not verified by this server" in page
    query, verifier = authorize(http, client, scope="read")
    token = redeem(http, client, query, verifier)
    assert token.status_code == 200, token.text
    assert token.json()["scope"] == "read"
    refreshed = refresh(http, client, token.json()["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    # One fetch for the consent page, the allow and the code: the row is the cache.
    assert host.count(path) == 1
    stored = anyio.run(store.get_client, url)
    assert stored is not None
    assert (stored.registered_via, stored.is_public, stored.require_pkce) == (
        RegisteredVia.DOCUMENT,
        True,
        True,
    )
    assert stored.name == "Doc App" and stored.redirect_uris == (REDIRECT_URI,)
    assert stored.registration["client_name"] == "Doc App"


def test_the_scope_is_narrowed_to_what_the_operator_allows(
    app: tuple[TestClient, SQLStore, FakeClock], host: DocumentHost
) -> None:
    http, store, _ = app
    _, url = published(host, scope="read write admin")
    consent_page(http, url)
    stored = anyio.run(store.get_client, url)
    assert stored is not None and stored.scope == "read write"
    response = http.get("/authorize", params={**request_params(url), "scope": "admin"})
    # A scope error goes back to the client, by a link on the error page: the document's host
    # is not one the operator trusts (RFC 9700 §4.11.2, no open redirector).
    assert response.status_code == 400 and "location" not in response.headers
    assert "error=invalid_scope" in response.text


def test_a_document_without_application_type_may_use_a_loopback_redirect(
    app: tuple[TestClient, SQLStore, FakeClock], host: DocumentHost
) -> None:
    """As MCP clients publish them: loopback redirects, no application_type (the draft defines
    none): read as a native app's, not refused as a web app's."""
    http, store, _ = app
    path = new_path()
    url = host.url(path)
    members = {k: v for k, v in document(url).items() if k != "application_type"}
    host.serve_json(path, members)
    consent_page(http, url)
    stored = anyio.run(store.get_client, url)
    assert stored is not None and stored.registration["application_type"] == "native"
    # Said explicitly, "web" keeps its rule.
    _, web = published(host, application_type="web")
    assert "must use https for a web application" in refused_page(http, web)


# -- the cache ------------------------------------------------------------------------------------


def test_a_fresh_copy_is_used_and_a_stale_one_fetched_again(
    app: tuple[TestClient, SQLStore, FakeClock], host: DocumentHost
) -> None:
    http, _, clock = app
    path, url = published(host)
    consent_page(http, url)
    consent_page(http, url)
    assert host.count(path) == 1
    clock.advance(601)  # max-age=600
    consent_page(http, url)
    assert host.count(path) == 2


def test_max_age_0_is_fetched_every_time(
    app: tuple[TestClient, SQLStore, FakeClock], host: DocumentHost
) -> None:
    http, _, _ = app
    path = new_path()
    url = host.url(path)
    host.serve_json(path, document(url), **{"Cache-Control": "max-age=0"})
    consent_page(http, url)  # two requests: one before signing in, one after
    assert host.count(path) == 2
    consent_page(http, url)
    assert host.count(path) == 3


def code_grant(http: TestClient, client: RegisteredClient) -> str:
    """A refresh token of `client`'s, through the pages and the code exchange."""
    query, verifier = authorize(http, client, scope="read")
    token = redeem(http, client, query, verifier)
    assert token.status_code == 200, token.text
    refresh_token: str = token.json()["refresh_token"]
    return refresh_token


def fetches_per_request(
    http: TestClient, host: DocumentHost, path: str, client: RegisteredClient, refresh_token: str
) -> tuple[list[int], str]:
    """The fetches of `path` by two refreshes and two junk revocations naming the client
    (anyone can send those), request by request; and the last refresh token."""
    counts = []
    for _ in range(2):
        before = host.count(path)
        response = refresh(http, client, refresh_token)
        assert response.status_code == 200, response.text
        refresh_token = response.json()["refresh_token"]
        counts.append(host.count(path) - before)
    for _ in range(2):
        before = host.count(path)
        http.post("/revoke", data={"token": "junk", "client_id": client.id})
        counts.append(host.count(path) - before)
    return counts, refresh_token


def test_a_document_that_forbids_reuse_is_not_fetched_per_request_at_the_token_endpoints(
    app: tuple[TestClient, SQLStore, FakeClock], host: DocumentHost
) -> None:
    """no-store is honoured at /authorize (above), but at /token and /revoke the document is
    reused for `TOKEN_REUSE` seconds after this process fetched it: a fetch per request would
    be anyone's to order (junk tokens at /revoke), and each refresh would pay for one."""
    http, _, clock = app
    path = new_path()
    url = host.url(path)
    host.serve_json(path, document(url), **{"Cache-Control": "no-store"})
    client = RegisteredClient(url, None)
    refresh_token = code_grant(http, client)
    counts, refresh_token = fetches_per_request(http, host, path, client, refresh_token)
    assert counts == [0, 0, 0, 0]  # fetched by /authorize a moment ago
    clock.advance(TOKEN_REUSE)
    counts, _ = fetches_per_request(http, host, path, client, refresh_token)
    assert counts == [1, 0, 0, 0]


def test_a_refreshed_row_is_used_as_its_fetch_stored_it(
    app: tuple[TestClient, SQLStore, FakeClock],
    host: DocumentHost,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without any reuse time, a request refreshes its client's row once: the row its fetch
    stored is the one it authenticates on, not a copy read again (and found stale again)."""
    monkeypatch.setattr(documents_module, "TOKEN_REUSE", 0)
    http, _, _ = app
    path = new_path()
    url = host.url(path)
    host.serve_json(path, document(url), **{"Cache-Control": "max-age=0"})
    client = RegisteredClient(url, None)
    counts, _ = fetches_per_request(http, host, path, client, code_grant(http, client))
    assert counts == [1, 1, 1, 1]


def test_a_document_that_became_invalid_refuses_new_authorizations_until_fixed(
    app: tuple[TestClient, SQLStore, FakeClock], host: DocumentHost
) -> None:
    http, _, clock = app
    path, url = published(host)
    consent_page(http, url)
    host.serve_json(path, document("https://elsewhere.example/app"))
    clock.advance(601)
    assert "does not match" in refused_page(http, url)
    # Errors are not cached: fixed, it works at once.
    host.serve_json(path, document(url))
    consent_page(http, url)


def test_a_disabled_document_client_stays_disabled(
    app: tuple[TestClient, SQLStore, FakeClock], host: DocumentHost
) -> None:
    http, store, clock = app
    path, url = published(host)
    consent_page(http, url)
    anyio.run(store.admin().disable_client, url, Actor("root", None, clock.now()))
    clock.advance(10_000)
    assert "unknown client" in refused_page(http, url)
    assert host.count(path) == 1  # not even fetched
    stored = anyio.run(store.get_client, url)
    assert stored is not None and stored.disabled_at is not None


def test_an_operators_client_with_a_url_id_is_never_replaced_by_a_document(
    app: tuple[TestClient, SQLStore, FakeClock], host: DocumentHost
) -> None:
    http, store, _ = app
    path, url = published(host, client_name="Impostor")
    anyio.run(
        store.create_client,
        Client(
            id=url,
            name="Operator's app",
            secret_digest=None,
            is_public=True,
            is_resource_server=False,
            redirect_uris=(REDIRECT_URI,),
            scope="read",
            created_at=0,
        ),
    )
    page = consent_page(http, url)
    assert "Operator" in page and "Impostor" not in page
    assert "not verified" not in page
    assert host.count(path) == 0


# -- documents that cannot be used ----------------------------------------------------------------


def test_a_client_id_that_differs_from_the_url(
    app: tuple[TestClient, SQLStore, FakeClock], host: DocumentHost
) -> None:
    path = new_path()
    url = host.url(path)
    host.serve_json(path, document(url + "x"))
    page = refused_page(app[0], url)
    assert "metadata document at" in page and "its client_id does not match its URL" in page


def not_fetched(page: str, caplog: pytest.LogCaptureFixture, detail: str) -> None:
    """The page says only that the document could not be fetched; the log says why. The
    details (addresses, refused or timed-out connections) would let whoever chose the URL map
    the server's network."""
    assert "it could not be fetched" in page
    assert detail not in page
    assert detail in caplog.text


def test_a_redirect_to_another_host(
    app: tuple[TestClient, SQLStore, FakeClock],
    host: DocumentHost,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = new_path()
    host.serve(
        path, Served(b"", status=302, headers={"Location": "https://attacker.example/doc.json"})
    )
    not_fetched(refused_page(app[0], host.url(path)), caplog, "attacker.example")


@with_settings(client_documents_allow_private=False)
def test_a_private_address_is_refused_without_the_development_allowance(
    app: tuple[TestClient, SQLStore, FakeClock],
    host: DocumentHost,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path, url = published(host)
    not_fetched(refused_page(app[0], url), caplog, "loopback address")
    assert host.count(path) == 0


def test_where_a_document_could_not_be_fetched_from_is_not_told_on_the_page(
    app: tuple[TestClient, SQLStore, FakeClock], caplog: pytest.LogCaptureFixture
) -> None:
    """Port probing: a closed port and an open one must not be told apart on the page."""
    url = "https://127.0.0.1:9/client.json"  # the discard port: nothing listens
    not_fetched(refused_page(app[0], url), caplog, "connection failed")


def test_a_document_too_large(
    app: tuple[TestClient, SQLStore, FakeClock],
    host: DocumentHost,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, url = published(host, software_id="x" * 100, contacts=["a" * 300] * 20)
    not_fetched(refused_page(app[0], url), caplog, "larger than 5120 bytes")


def test_a_slow_document(
    app: tuple[TestClient, SQLStore, FakeClock],
    host: DocumentHost,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = new_path()
    url = host.url(path)
    body = json.dumps(document(url)).encode()
    host.serve(path, Served(body, delay=0.6))
    app[0].app.state.baton.documents.timeout = 0.3  # type: ignore[attr-defined]
    not_fetched(refused_page(app[0], url), caplog, "no complete answer within 0.3 seconds")


def test_invalid_json(app: tuple[TestClient, SQLStore, FakeClock], host: DocumentHost) -> None:
    path = new_path()
    host.serve(path, Served(b'{"client_id": '))
    assert "it is not valid JSON" in refused_page(app[0], host.url(path))


def test_a_javascript_redirect_uri(
    app: tuple[TestClient, SQLStore, FakeClock], host: DocumentHost
) -> None:
    _, url = published(host, redirect_uris=["javascript:alert(1)"])
    page = refused_page(app[0], url)
    assert "could not be used" in page and "javascript" in page


def test_a_secret_in_the_document(
    app: tuple[TestClient, SQLStore, FakeClock], host: DocumentHost
) -> None:
    _, url = published(host, client_secret="s3cret")
    assert "must not contain client_secret" in refused_page(app[0], url)
    _, url = published(host, token_endpoint_auth_method="client_secret_basic")
    assert "token_endpoint_auth_method" in refused_page(app[0], url)


@with_settings(client_documents_denied_hosts=("*.test", "localhost"))
def test_a_denied_host_is_not_fetched(
    app: tuple[TestClient, SQLStore, FakeClock], host: DocumentHost
) -> None:
    path, url = published(host)
    assert "does not accept clients from localhost" in refused_page(app[0], url)
    assert host.count(path) == 0


def test_urls_the_draft_forbids_are_not_fetched(
    app: tuple[TestClient, SQLStore, FakeClock], host: DocumentHost
) -> None:
    for url in (
        host.url("/a/../clients/x.json"),
        host.url("/clients/x.json#frag"),
        f"https://user@localhost:{host.port}/x.json",
    ):
        assert "its URL is not allowed" in refused_page(app[0], url)
    # The URL is the client's to choose: shown escaped.
    page = refused_page(app[0], "https://localhost:1/<b>x</b>.json")
    assert "&lt;b&gt;x" in page and "<b>x" not in page
    # Without a path: not a document URL at all (and nothing fetched).
    assert url_problem(f"https://localhost:{host.port}") == "it must contain a path"
    assert url_problem("https://app.example/%2e%2e/x") is not None


@with_settings(client_metadata_documents=False)
def test_documents_turned_off(
    app: tuple[TestClient, SQLStore, FakeClock], host: DocumentHost
) -> None:
    path, url = published(host)
    assert "unknown client" in refused_page(app[0], url)
    assert host.count(path) == 0


# -- the consent page -----------------------------------------------------------------------------


@with_settings(client_documents_trusted_hosts=("localhost",))
def test_a_trusted_host_shows_no_warning(
    app: tuple[TestClient, SQLStore, FakeClock], host: DocumentHost
) -> None:
    _, url = published(host)
    page = consent_page(app[0], url)
    assert "localhost" in page and "not verified" not in page


def test_the_warning_is_translated(
    app: tuple[TestClient, SQLStore, FakeClock], host: DocumentHost
) -> None:
    _, url = published(host)
    assert "nicht von diesem Server" in consent_page(app[0], url, **{"Accept-Language": "de"})
    assert "pas vérifiés par ce serveur" in consent_page(app[0], url, **{"Accept-Language": "fr"})


def test_a_dynamically_registered_client_is_not_verified(
    app: tuple[TestClient, SQLStore, FakeClock],
) -> None:
    http, store, _ = app
    anyio.run(
        store.create_client,
        Client(
            id="dyn_1",
            name="Self-registered",
            secret_digest=None,
            is_public=True,
            is_resource_server=False,
            redirect_uris=(REDIRECT_URI,),
            scope="read",
            created_at=0,
            registered_via=RegisteredVia.DYNAMIC,
            client_uri="https://tool.example/about",
        ),
    )
    page = consent_page(http, "dyn_1")
    assert "registered itself" in page and "tool.example" in page
    assert "not verified by this server" in page


# -- one fetch for concurrent requests ------------------------------------------------------------


class _Store:
    def __init__(self) -> None:
        self.saved: list[Client] = []

    async def get_client(self, client_id: str) -> Client | None:
        return None

    async def registered_resources(self) -> frozenset[str]:
        return frozenset()

    async def save_document_client(self, client: Client) -> Client | None:
        self.saved.append(client)
        return client


def test_concurrent_first_requests_fetch_once(host: DocumentHost) -> None:
    path = new_path()
    url = host.url(path)
    host.serve(path, Served(json.dumps(document(url)).encode(), delay=0.1))
    store = _Store()
    settings = Settings(issuer="https://as.example", client_documents_allow_private=True)
    documents = ClientDocuments(settings, store, FakeClock())
    documents.ssl_context = host.ssl_context()

    async def many() -> list[Client | None]:
        return list(await asyncio.gather(*(documents.client(url) for _ in range(5))))

    found = asyncio.run(many())
    assert all(c is not None and c.id == url for c in found)
    assert host.count(path) == 1 and len(store.saved) == 1
    # A failure is shared too, and not remembered.
    host.serve(path, Served(b"nope", delay=0.1))

    async def failing() -> list[object]:
        return list(
            await asyncio.gather(*(documents.client(url) for _ in range(3)), return_exceptions=True)
        )

    errors = asyncio.run(failing())
    assert all(isinstance(e, DocumentError) for e in errors)
    assert host.count(path) == 1  # reset by serve(): one fetch for the three


def test_a_document_url_longer_than_a_client_id_is_refused_with_a_clear_page() -> None:
    """The URL is the client id, which the schema holds up to CLIENT_ID_LENGTH characters."""
    url = "https://app.example/" + "m" * CLIENT_ID_LENGTH
    problem = url_problem(url)
    assert problem is not None and "longer than" in problem
