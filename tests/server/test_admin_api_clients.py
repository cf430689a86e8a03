"""The admin API's clients and signing keys (issue 27), as a platform's tooling uses them: a
client created over the API is used at once in a real flow, a changed redirect URI is what
/authorize honours next, a rotated secret and a disabled client fail at once (a client this
process has cached too), two administrators cannot silently overwrite each other (If-Match), and
every write leaves an audit row naming the calling client. Bad input is a 400 problem, never a
500.

In-process on SQLite under a fake clock, one server for the module; each test makes its own
clients, so none sees another's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner
from sqlalchemy import select
from starlette.testclient import TestClient

from baton.cli import main
from baton.core.clock import FakeClock
from baton.store.admin import Actor
from baton.store.base import Client
from baton.store.schema import audit_log
from baton.store.sql import SQLStore
from baton.store.sql.client_admin import STALE
from tests.databases import empty_tables
from tests.support import (
    REDIRECT_URI,
    RegisteredClient,
    client_credentials_token,
    first_pair,
    introspect,
    refresh,
    register_client,
    register_user,
    running_app,
)

KEK = "k" * 40
API = "/admin/api/v1"
ADMIN_SCOPES = "admin:clients:read admin:clients:write admin:keys:read admin:keys:write"
Running = tuple[TestClient, SQLStore, FakeClock, Path]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    folder = tmp_path_factory.mktemp("admin-clients")
    with running_app(folder, key_encryption_key=KEK) as (http, store, clock):
        register_user(store)
        yield http, store, clock, folder / "baton.db"


@pytest.fixture
def http(running: Running) -> TestClient:
    running[0].cookies.clear()
    return running[0]


@pytest.fixture
def store(running: Running) -> SQLStore:
    return running[1]


@pytest.fixture(scope="module")
def admin(running: Running) -> RegisteredClient:
    """The platform's admin client, registered as docs/admin-api.md says."""
    return register_client(running[1], scope=ADMIN_SCOPES, name="platform tooling")


@pytest.fixture(scope="module")
def resource_server(running: Running) -> RegisteredClient:
    return register_client(running[1], resource_server=True, scope="", name="an API")


def token_of(http: TestClient, client: RegisteredClient, scope: str = ADMIN_SCOPES) -> str:
    return client_credentials_token(http, client, scope)


@pytest.fixture(scope="module")
def bearer(running: Running, admin: RegisteredClient) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_of(running[0], admin)}"}


def create(http: TestClient, bearer: dict[str, str], **body: Any) -> dict[str, Any]:
    body.setdefault("name", "Photo app")
    answer = http.post(f"{API}/clients", json=body, headers=bearer)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def audit_rows(store: SQLStore, target: str) -> list[tuple[str, str, Any]]:
    def work(conn: Any) -> list[tuple[str, str, Any]]:
        stmt = select(audit_log.c.actor, audit_log.c.action, audit_log.c.detail)
        stmt = stmt.where(audit_log.c.target_id == target).order_by(audit_log.c.id)
        return [
            (actor, action, json.loads(detail) if detail else None)
            for actor, action, detail in conn.execute(stmt)
        ]

    return anyio.run(store.runner.read, work)


def client_credentials(http: TestClient, client_id: str, secret: str) -> int:
    data = {"grant_type": "client_credentials", "scope": "read"}
    return http.post("/token", data=data, auth=(client_id, secret)).status_code


def problem_of(answer: Any, status: int) -> str:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["cache-control"] == "no-store"
    detail: str = answer.json()["detail"]
    return detail


# -- create, read, list ------------------------------------------------------------------------


def test_a_confidential_client_created_gets_tokens_at_once(
    http: TestClient, store: SQLStore, admin: RegisteredClient, bearer: dict[str, str]
) -> None:
    answer = http.post(
        f"{API}/clients",
        json={"name": "Billing job", "scope": "read write", "require_pkce": True},
        headers=bearer,
    )
    assert answer.status_code == 201, answer.text
    assert answer.headers["cache-control"] == "no-store"
    created = answer.json()
    client_id, secret = created["client_id"], created["client_secret"]
    assert answer.headers["location"] == f"{API}/clients/{client_id}"
    assert created["public"] is False and created["scope"] == "read write"
    assert client_credentials(http, client_id, secret) == 200

    shown = http.get(answer.headers["location"], headers=bearer)
    assert shown.status_code == 200
    assert "client_secret" not in shown.json() and secret not in shown.text
    assert shown.json() == {k: v for k, v in created.items() if k != "client_secret"}
    assert shown.headers["etag"] == answer.headers["etag"]

    ((actor, action, detail),) = audit_rows(store, client_id)
    assert (actor, action) == (f"client:{admin.id}", "client.create")
    assert secret not in json.dumps(detail)


def test_a_public_client_created_runs_a_code_flow(http: TestClient, bearer: dict[str, str]) -> None:
    created = create(http, bearer, public=True, redirect_uris=[REDIRECT_URI], scope="read write")
    assert "client_secret" not in created
    assert created["require_pkce"] is True
    pair = first_pair(http, RegisteredClient(created["client_id"], None))
    assert pair["access_token"] and pair["refresh_token"]


def test_a_resource_server_and_a_client_allowed_its_resource(
    http: TestClient, bearer: dict[str, str]
) -> None:
    uri = "https://photos-api.example/"
    api = create(http, bearer, name="Photos API", resource_server=True, resource_uri=uri)
    assert (api["resource_server"], api["resource_uri"]) == (True, uri)
    taken = http.post(
        f"{API}/clients",
        json={"name": "Impostor", "resource_server": True, "resource_uri": uri},
        headers=bearer,
    )
    assert "already registered" in problem_of(taken, 409)
    app = create(http, bearer, scope="read", resources=[uri, uri])
    assert app["resources"] == [uri]  # once, as `--resource` twice gives it
    answer = http.post(
        "/token",
        data={"grant_type": "client_credentials", "scope": "read", "resource": uri},
        auth=(app["client_id"], app["client_secret"]),
    )
    assert answer.status_code == 200, answer.text


def test_the_api_shows_a_client_as_the_cli_does(
    running: Running, http: TestClient, bearer: dict[str, str]
) -> None:
    created = create(
        http,
        bearer,
        redirect_uris=["https://photos.example/cb"],
        allowed_origins=["https://photos.example"],
        post_logout_redirect_uris=["https://photos.example/bye"],
        client_uri="https://photos.example/",
        subject_type="pairwise",
        id_token_signed_response_alg="EdDSA",
    )
    assert created["id_token_signed_response_alg"] == "Ed25519"  # as the CLI stores it
    shown = http.get(f"{API}/clients/{created['client_id']}", headers=bearer).json()
    result = CliRunner().invoke(
        main, ["client", "show", created["client_id"], "--db", f"sqlite:///{running[3]}", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == shown


def test_the_list_pages_with_a_cursor_and_hides_deleted_clients(
    http: TestClient, bearer: dict[str, str]
) -> None:
    made = [create(http, bearer, name=f"listed {n}")["client_id"] for n in range(3)]
    gone = made[1]
    assert http.delete(f"{API}/clients/{gone}", headers=bearer).status_code == 204

    def every(query: str) -> list[str]:
        seen: list[str] = []
        cursor: str | None = None
        while True:
            url = f"{API}/clients?limit=2{query}" + (f"&cursor={cursor}" if cursor else "")
            page = http.get(url, headers=bearer)
            assert page.status_code == 200, page.text
            assert len(page.json()["items"]) <= 2
            seen += [c["client_id"] for c in page.json()["items"]]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                return seen

    listed = every("")
    assert len(listed) == len(set(listed))
    assert made[0] in listed and made[2] in listed and gone not in listed
    with_deleted = every("&include_deleted=true")
    assert gone in with_deleted and set(listed) < set(with_deleted)


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=x", "limit"),
        ("cursor=%FF%FE", "cursor"),
        ("cursor=bm90IGpzb24", "cursor"),
        ("cursor=WzEsMl0", "cursor"),  # [1, 2]: an id that is no string
        ("include_deleted=yes", "include_deleted"),
    ],
)
def test_a_bad_list_query_is_a_400(
    http: TestClient, bearer: dict[str, str], query: str, fragment: str
) -> None:
    assert fragment in problem_of(http.get(f"{API}/clients?{query}", headers=bearer), 400)


def test_an_unknown_client_is_a_404_whatever_its_id(
    http: TestClient, bearer: dict[str, str]
) -> None:
    for client_id in ("cl_nope", "cl_é", "x" * 300, "%00"):
        assert problem_of(http.get(f"{API}/clients/{client_id}", headers=bearer), 404)
        answer = http.post(f"{API}/clients/{client_id}/disable", headers=bearer)
        assert answer.status_code == 404


# -- bad bodies ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "name is required"),
        ({"name": ""}, "name must be"),
        ({"name": "x" * 201}, "name must be"),
        ({"name": 7}, "name must be a string"),
        ({"name": "a", "colour": "red"}, 'unknown field "colour"'),
        ({"name": "a", "client_id": "cl_mine"}, '"client_id" cannot be changed'),
        ({"name": "a", "public": "yes"}, "public must be true or false"),
        ({"name": "a", "redirect_uris": "https://a.example/cb"}, "redirect_uris must be an array"),
        ({"name": "a", "redirect_uris": [1]}, "each of redirect_uris must be a string"),
        ({"name": "a", "redirect_uris": ["https://a.example/"] * 101}, "at most 100"),
        ({"name": "a", "redirect_uris": ["http://a.example/cb"]}, "http"),
        ({"name": "a", "scope": 'read "write'}, "scope"),
        ({"name": "a", "remember_consent": True}, "public clients only"),
        ({"name": "a", "public": True, "require_pkce": False}, "PKCE cannot be optional"),
        ({"name": "a", "public": True, "resource_server": True}, "must be a confidential"),
        ({"name": "a", "resource_uri": "https://api.example/"}, "identifies a resource server"),
        ({"name": "a", "resources": ["https://nowhere.example/"]}, "no registered resource"),
        ({"name": "a", "id_token_signed_response_alg": "HS256"}, "unsupported ID token"),
        ({"name": "a", "subject_type": "secret"}, "unknown subject type"),
        ({"name": "a", "allowed_origins": ["https://a.example/path"]}, "origin"),
        ({"name": "a", "login_url": "ftp://login.example/"}, "login_url"),
        ({"name": "a", "backchannel_logout_session_required": True}, "backchannel logout URI"),
    ],
)
def test_a_bad_registration_is_a_400_saying_why(
    http: TestClient, bearer: dict[str, str], body: dict[str, Any], fragment: str
) -> None:
    answer = http.post(f"{API}/clients", json=body, headers=bearer)
    assert fragment in problem_of(answer, 400)


@pytest.mark.parametrize(
    ("content", "content_type", "fragment"),
    [
        (b"{", "application/json", "not valid JSON"),
        (b"[1, 2]", "application/json", "must be a JSON object"),
        (b'{"name": NaN}', "application/json", "not valid JSON"),
        (b"name=a", "application/x-www-form-urlencoded", "Content-Type: application/json"),
        ('{"name": "\udcff"}'.encode("utf-8", "surrogatepass"), "application/json", "name"),
        (b"[" * 100_000, "application/json", ""),
    ],
)
def test_a_body_that_is_no_json_object_is_refused(
    http: TestClient, bearer: dict[str, str], content: bytes, content_type: str, fragment: str
) -> None:
    headers = {**bearer, "Content-Type": content_type}
    answer = http.post(f"{API}/clients", content=content, headers=headers)
    assert answer.status_code in (400, 413), answer.text
    assert fragment in answer.json()["detail"]


@pytest.mark.parametrize(
    "field",
    [
        "name",
        "scope",
        "redirect_uris",
        "post_logout_redirect_uris",
        "allowed_origins",
        "resources",
        "login_url",
        "client_uri",
        "sector_identifier_uri",
        "backchannel_logout_uri",
        "id_token_signed_response_alg",
        "subject_type",
        "resource_uri",
    ],
)
@pytest.mark.parametrize("text", ["\\udcff", "\\u0000", "caf\\u00e9 \\u2028"])
def test_no_text_in_any_field_makes_a_500(
    http: TestClient, bearer: dict[str, str], field: str, text: str
) -> None:
    """Lone surrogates (JSON escapes them), NUL and non-ASCII, in every field."""
    listed = field.endswith("s") and field not in ("client_uri", "backchannel_logout_uri")
    value = f'["https://a.example/{text}"]' if listed else f'"https://a.example/{text}"'
    extra = ', "resource_server": true' if field == "resource_uri" else ""
    content = f'{{"name": "a"{extra}, "{field}": {value}}}'.encode()
    if field == "name":
        content = f'{{"name": "{text}"}}'.encode()
    headers = {**bearer, "Content-Type": "application/json"}
    answer = http.post(f"{API}/clients", content=content, headers=headers)
    assert answer.status_code in (201, 400), answer.text
    created = http.post(f"{API}/clients", json={"name": "patched"}, headers=bearer).json()
    patched = http.patch(
        f"{API}/clients/{created['client_id']}",
        content=content.replace(b'"name": "a", ', b"").replace(b', "resource_server": true', b""),
        headers=headers,
    )
    assert patched.status_code in (200, 400), patched.text


def test_the_cli_refuses_what_the_api_refuses(
    running: Running, http: TestClient, bearer: dict[str, str]
) -> None:
    """One rule: the same registration is refused by both, for the same reason."""
    body = {"name": "a", "public": True, "require_pkce": False}
    api = problem_of(http.post(f"{API}/clients", json=body, headers=bearer), 400)
    db = f"sqlite:///{running[3]}"
    result = CliRunner().invoke(
        main, ["client", "create", "--db", db, "--name", "a", "--public", "--pkce-optional"]
    )
    assert result.exit_code == 1
    assert api in result.stderr


# -- update ----------------------------------------------------------------------------------------


def test_new_redirect_uris_are_what_authorize_honours_next(
    http: TestClient, store: SQLStore, admin: RegisteredClient, bearer: dict[str, str]
) -> None:
    created = create(http, bearer, redirect_uris=[REDIRECT_URI], scope="read")
    client_id = created["client_id"]
    moved = "http://127.0.0.1:9000/moved"  # (a loopback redirect URI's port is any port)

    def authorize(redirect_uri: str) -> int:
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": "read",
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256",
        }
        return http.get("/authorize", params=params).status_code

    assert authorize(REDIRECT_URI) == 303 and authorize(moved) == 400
    read = http.get(f"{API}/clients/{client_id}", headers=bearer).headers["etag"]
    answer = http.patch(
        f"{API}/clients/{client_id}", json={"redirect_uris": [moved]}, headers=bearer
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["redirect_uris"] == [moved]
    assert answer.headers["etag"] != read
    assert authorize(moved) == 303 and authorize(REDIRECT_URI) == 400

    *_, (actor, action, detail) = audit_rows(store, client_id)
    assert (actor, action, detail) == (
        f"client:{admin.id}",
        "client.update",
        {"redirect_uris": [moved]},
    )


def test_a_patch_changes_only_what_it_names(http: TestClient, bearer: dict[str, str]) -> None:
    created = create(
        http,
        bearer,
        redirect_uris=["https://a.example/cb"],
        scope="read",
        allowed_origins=["https://other.example"],
        login_url="https://login.example/",
    )
    url = f"{API}/clients/{created['client_id']}"
    patch = {"name": "Renamed", "scope": "read write", "login_url": None, "require_nonce": True}
    answer = http.patch(url, json=patch, headers=bearer)
    assert answer.status_code == 200, answer.text
    after = answer.json()
    changed = {"name": "Renamed", "scope": "read write", "login_url": None, "require_nonce": True}
    assert after == {k: v for k, v in created.items() if k != "client_secret"} | changed
    # null restores the default: the origins derived from the redirect URIs again.
    answer = http.patch(url, json={"allowed_origins": None}, headers=bearer)
    assert answer.json()["allowed_origins"] is None
    answer = http.patch(url, json={"allowed_origins": []}, headers=bearer)
    assert answer.json()["allowed_origins"] == []


def test_a_new_scope_is_granted_at_once_by_the_server_that_took_the_patch(
    http: TestClient, bearer: dict[str, str]
) -> None:
    created = create(http, bearer, scope="read")
    client = RegisteredClient(created["client_id"], created["client_secret"])
    assert token_of(http, client, "read")  # the client is in this process's cache now
    patched = http.patch(f"{API}/clients/{client.id}", json={"scope": "read write"}, headers=bearer)
    assert patched.status_code == 200
    assert token_of(http, client, "write")


@pytest.mark.parametrize(
    ("patch", "fragment"),
    [
        ({"public": True}, '"public" cannot be changed'),
        ({"resource_uri": "https://a.example/"}, '"resource_uri" cannot be changed'),
        ({"disabled_at": None}, "/disable"),
        ({"client_secret": "mine"}, "/secret"),
        ({"name": None}, "name cannot be removed"),
        ({"redirect_uris": ["https://a.example/#frag"]}, "fragment"),
        ({"nickname": "x"}, 'unknown field "nickname"'),
        ({"é" * 500: 1}, "unknown field"),
    ],
)
def test_a_bad_patch_is_a_400_and_changes_nothing(
    http: TestClient, bearer: dict[str, str], patch: dict[str, Any], fragment: str
) -> None:
    created = create(http, bearer, redirect_uris=["https://a.example/cb"])
    url = f"{API}/clients/{created['client_id']}"
    before = http.get(url, headers=bearer)
    assert fragment in problem_of(http.patch(url, json=patch, headers=bearer), 400)
    after = http.get(url, headers=bearer)
    assert after.json() == before.json() and after.headers["etag"] == before.headers["etag"]


def test_a_pairwise_clients_sector_does_not_move_with_its_redirect_uris(
    http: TestClient, bearer: dict[str, str]
) -> None:
    created = create(http, bearer, redirect_uris=["https://a.example/cb"], subject_type="pairwise")
    url = f"{API}/clients/{created['client_id']}"
    same_host = {"redirect_uris": ["https://a.example/cb", "https://a.example/other"]}
    assert http.patch(url, json=same_host, headers=bearer).status_code == 200
    moved = {"redirect_uris": ["https://b.example/cb"]}
    assert "every user's sub" in problem_of(http.patch(url, json=moved, headers=bearer), 400)
    anchored = {**moved, "sector_identifier_uri": "https://a.example/sector.json"}
    assert http.patch(url, json=anchored, headers=bearer).status_code == 200


def test_if_match_stops_a_lost_update(http: TestClient, bearer: dict[str, str]) -> None:
    """Two administrators read the client; the first saves; the second's save, made from what
    it read, is refused rather than silently undoing the first's."""
    created = create(http, bearer, redirect_uris=["https://a.example/cb"], scope="read")
    url = f"{API}/clients/{created['client_id']}"
    read = http.get(url, headers=bearer).headers["etag"]

    first = http.patch(url, json={"scope": "read write"}, headers={**bearer, "If-Match": read})
    assert first.status_code == 200, first.text
    assert first.headers["etag"] != read

    second = http.patch(url, json={"name": "Second admin's"}, headers={**bearer, "If-Match": read})
    assert "changed since it was read" in problem_of(second, 412)
    assert second.headers["etag"] == first.headers["etag"]
    assert http.get(url, headers=bearer).json()["name"] == "Photo app"

    retried = http.patch(
        url, json={"name": "Second admin's"}, headers={**bearer, "If-Match": second.headers["etag"]}
    )
    assert retried.status_code == 200
    assert retried.json()["scope"] == "read write"  # the first's change kept
    # `*` and a list naming the current one match; without If-Match the patch applies.
    assert (
        http.patch(url, json={"name": "b"}, headers={**bearer, "If-Match": "*"}).status_code == 200
    )
    current = http.get(url, headers=bearer).headers["etag"]
    matched = http.patch(url, json={"name": "c"}, headers={**bearer, "If-Match": f'"x", {current}'})
    assert matched.status_code == 200
    assert http.patch(url, json={"name": "d"}, headers=bearer).status_code == 200
    # A disabling in between is a change too.
    etag = http.get(url, headers=bearer).headers["etag"]
    assert http.post(f"{url}/disable", headers=bearer).status_code == 200
    late = http.patch(url, json={"name": "e"}, headers={**bearer, "If-Match": etag})
    assert late.status_code == 412


def test_the_store_refuses_an_edit_made_from_a_stale_read(
    http: TestClient, store: SQLStore, bearer: dict[str, str]
) -> None:
    """The check holds between two requests racing: the second write's transaction finds the
    row no longer what it read."""
    created = create(http, bearer, redirect_uris=["https://a.example/cb"], scope="read")
    admin = store.admin()
    actor = Actor("client:racer", None, 0)
    read = anyio.run(admin.client, created["client_id"])
    assert isinstance(read, Client)
    first = Client(**{**_fields(read), "scope": "read write"})
    second = Client(**{**_fields(read), "name": "other"})
    assert anyio.run(admin.update_registration, read, first, actor) == {"scope": "read write"}
    assert anyio.run(admin.update_registration, read, second, actor) is STALE
    stored = anyio.run(admin.client, created["client_id"])
    assert stored is not None and (stored.name, stored.scope) == ("Photo app", "read write")


def _fields(client: Client) -> dict[str, Any]:
    return {name: getattr(client, name) for name in Client.__dataclass_fields__}


# -- secret, disable, enable, delete ---------------------------------------------------------------


def test_a_rotated_secret_replaces_the_old_one_at_once(
    http: TestClient, store: SQLStore, admin: RegisteredClient, bearer: dict[str, str]
) -> None:
    created = create(http, bearer, scope="read")
    client_id, old = created["client_id"], created["client_secret"]
    assert client_credentials(http, client_id, old) == 200  # now in this process's cache
    answer = http.post(f"{API}/clients/{client_id}/secret", headers=bearer)
    assert answer.status_code == 200, answer.text
    new = answer.json()["client_secret"]
    assert new != old and answer.json()["client_id"] == client_id
    assert client_credentials(http, client_id, old) == 401
    assert client_credentials(http, client_id, new) == 200
    *_, (actor, action, detail) = audit_rows(store, client_id)
    assert (actor, action, detail) == (f"client:{admin.id}", "client.rotate_secret", None)

    public = create(http, bearer, public=True, redirect_uris=[REDIRECT_URI])
    refused = http.post(f"{API}/clients/{public['client_id']}/secret", headers=bearer)
    assert "public client has no secret" in problem_of(refused, 409)


def test_a_disabled_clients_tokens_die_at_once(
    http: TestClient,
    store: SQLStore,
    admin: RegisteredClient,
    bearer: dict[str, str],
    resource_server: RegisteredClient,
) -> None:
    created = create(http, bearer, redirect_uris=[REDIRECT_URI], scope="read write")
    client = RegisteredClient(created["client_id"], created["client_secret"])
    pair = first_pair(http, client)
    assert refresh(http, client, pair["refresh_token"]).status_code == 200  # cached here now
    machine = token_of(http, client, "read")
    assert introspect(http, resource_server, machine)["active"] is True

    answer = http.post(f"{API}/clients/{client.id}/disable", headers=bearer)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"client_id": client.id, "disabled": True, "grants_revoked": 2}
    assert introspect(http, resource_server, machine) == {"active": False}
    assert introspect(http, resource_server, pair["access_token"]) == {"active": False}
    assert client_credentials(http, client.id, created["client_secret"]) == 401
    shown = http.get(f"{API}/clients/{client.id}", headers=bearer).json()
    assert shown["disabled_at"] is not None
    again = http.post(f"{API}/clients/{client.id}/disable", headers=bearer)
    assert "disabled already" in problem_of(again, 409)

    assert http.post(f"{API}/clients/{client.id}/enable", headers=bearer).json() == {
        "client_id": client.id,
        "disabled": False,
    }
    assert introspect(http, resource_server, machine) == {"active": False}  # nothing revived
    assert client_credentials(http, client.id, created["client_secret"]) == 200
    again = http.post(f"{API}/clients/{client.id}/enable", headers=bearer)
    assert "not disabled" in problem_of(again, 409)
    actions = [(actor, action) for actor, action, _ in audit_rows(store, client.id)]
    assert actions[-2:] == [
        (f"client:{admin.id}", "client.disable"),
        (f"client:{admin.id}", "client.enable"),
    ]


def test_a_deleted_client_is_a_tombstone(
    http: TestClient, store: SQLStore, admin: RegisteredClient, bearer: dict[str, str]
) -> None:
    created = create(http, bearer, scope="read", redirect_uris=["https://a.example/cb"])
    client_id, secret = created["client_id"], created["client_secret"]
    url = f"{API}/clients/{client_id}"
    answer = http.delete(url, headers=bearer)
    assert answer.status_code == 204 and answer.content == b""
    shown = http.get(url, headers=bearer).json()
    assert shown["deleted"] is True and shown["redirect_uris"] == []
    assert client_credentials(http, client_id, secret) == 401
    for method, path in (
        ("DELETE", ""),
        ("PATCH", ""),
        ("POST", "/enable"),
        ("POST", "/disable"),
        ("POST", "/secret"),
    ):
        again = http.request(method, url + path, headers=bearer, json={"name": "back"})
        assert "deleted" in problem_of(again, 409), (method, path)
    actions = [action for _actor, action, _ in audit_rows(store, client_id)]
    assert actions == ["client.create", "client.disable", "client.delete"]


def test_a_client_cannot_disable_or_delete_itself_but_may_rotate_its_secret(
    running: Running, store: SQLStore
) -> None:
    """An operator's script pointed at the wrong id must not cut off the admin client running
    it; rotating its own secret is ordinary credential hygiene."""
    http = running[0]
    own = register_client(store, scope=ADMIN_SCOPES, name="self-managing tooling")
    headers = {"Authorization": f"Bearer {token_of(http, own)}"}
    url = f"{API}/clients/{own.id}"
    assert "cannot disable itself" in problem_of(http.post(f"{url}/disable", headers=headers), 409)
    assert "cannot delete itself" in problem_of(http.delete(url, headers=headers), 409)
    assert http.get(url, headers=headers).json()["disabled_at"] is None
    refusals = [a for _actor, a, d in audit_rows(store, own.id) if d and d.get("refused") == 409]
    assert refusals == ["client.disable", "client.delete"]

    rotated = http.post(f"{url}/secret", headers=headers)
    assert rotated.status_code == 200
    assert http.get(url, headers=headers).status_code == 200  # its token lives on
    assert client_credentials(http, own.id, own.secret or "") == 401
    fresh = RegisteredClient(own.id, rotated.json()["client_secret"])
    assert token_of(http, fresh)


# -- signing keys ----------------------------------------------------------------------------------


def test_keys_list_public_halves_and_rotate_publishes_ahead(
    http: TestClient, store: SQLStore, admin: RegisteredClient, bearer: dict[str, str]
) -> None:
    listed = http.get(f"{API}/keys", headers=bearer)
    assert listed.status_code == 200, listed.text
    keys = listed.json()["items"]
    assert keys and all("d" not in k["public_jwk"] and "p" not in k["public_jwk"] for k in keys)
    assert {"signing"} <= {k["state"] for k in keys}

    now = http.app.state.baton.clock.now()  # type: ignore[attr-defined]
    # The first key to sign access tokens signs at once; it takes over RS256's ID tokens from
    # the key the server made for them, which stays published an hour more.
    answer = http.post(f"{API}/keys/rotate", json={"alg": "RS256"}, headers=bearer)
    assert answer.status_code == 200, answer.text
    first = answer.json()
    assert (first["alg"], first["purpose"], first["activates_at"]) == ("RS256", None, now)
    assert first["old_keys_retire_at"] == now + 3600
    # The next one is published ahead of signing, as `baton keys rotate --publish-ahead`.
    answer = http.post(
        f"{API}/keys/rotate", json={"alg": "ES256", "publish_ahead": 900}, headers=bearer
    )
    new = answer.json()
    assert new["activates_at"] == now + 900
    assert new["old_keys_retire_at"] == now + 900 + 3600
    kids = {k["kid"]: k for k in http.get(f"{API}/keys", headers=bearer).json()["items"]}
    assert kids[new["kid"]]["state"] == "pending"
    assert new["kid"] in {k["kid"] for k in http.get("/jwks.json").json()["keys"]}
    *_, (actor, action, detail) = audit_rows(store, new["kid"])
    assert (actor, action) == (f"client:{admin.id}", "key.rotate")
    assert detail["alg"] == "ES256"
    assert kids[first["kid"]]["state"] == "signing"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"alg": "HS256"}, "alg must be one of"),
        ({"alg": 1}, "alg must be one of"),
        ({"publish_ahead": -1}, "publish_ahead"),
        ({"publish_ahead": "600"}, "publish_ahead"),
        ({"publish_ahead": 10**20}, "publish_ahead"),
        ({"max_access_ttl": 0}, "max_access_ttl"),
        ({"id_token_only": "yes"}, "id_token_only"),
        ({"kid": "mine"}, 'unknown field "kid"'),
    ],
)
def test_a_bad_rotation_is_a_400_and_rotates_nothing(
    http: TestClient, bearer: dict[str, str], body: dict[str, Any], fragment: str
) -> None:
    before = http.get(f"{API}/keys", headers=bearer).json()
    answer = http.post(f"{API}/keys/rotate", json=body, headers=bearer)
    assert fragment in problem_of(answer, 400)
    assert http.get(f"{API}/keys", headers=bearer).json() == before


def test_without_a_key_encryption_key_there_is_nothing_to_rotate(tmp_path: Path) -> None:
    with running_app(tmp_path) as (http, store, _clock):
        admin = register_client(store, scope=ADMIN_SCOPES)
        headers = {"Authorization": f"Bearer {token_of(http, admin)}"}
        assert http.get(f"{API}/keys", headers=headers).json() == {
            "items": [],
            "next_cursor": None,
        }
        answer = http.post(f"{API}/keys/rotate", json={}, headers=headers)
        assert "no key-encryption key" in problem_of(answer, 409)


# -- the CLI does what the API does ----------------------------------------------------------------


def cli(running: Running, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(main, [*args, "--db", f"sqlite:///{running[3]}", "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    payload: dict[str, Any] = json.loads(result.stdout)
    return payload


def test_the_cli_changes_what_the_api_changes_through_the_same_audited_call(
    running: Running, http: TestClient, store: SQLStore, bearer: dict[str, str]
) -> None:
    created = create(http, bearer, redirect_uris=[REDIRECT_URI], scope="read")
    client_id, old = created["client_id"], created["client_secret"]
    url = f"{API}/clients/{client_id}"
    read = http.get(url, headers=bearer).headers["etag"]
    moved = "http://127.0.0.1:9000/moved"
    shown = cli(
        running,
        "client",
        "update",
        client_id,
        "--name",
        "Renamed by hand",
        "--redirect-uri",
        moved,
        "--pkce-optional",
    )
    assert (shown["name"], shown["redirect_uris"], shown["require_pkce"]) == (
        "Renamed by hand",
        [moved],
        False,
    )
    assert http.get(url, headers=bearer).json() == shown
    # An API client holding the ETag from before the command cannot overwrite it.
    stale = http.patch(url, json={"name": "x"}, headers={**bearer, "If-Match": read})
    assert stale.status_code == 412
    actor, action, detail = audit_rows(store, client_id)[-1]
    assert actor.startswith("cli:") and action == "client.update"
    assert detail == {"name": "Renamed by hand", "redirect_uris": [moved], "require_pkce": False}

    assert client_credentials(http, client_id, old) == 200  # cached in the server now
    rotated = cli(running, "client", "rotate-secret", client_id)
    assert client_credentials(http, client_id, old) == 401
    assert client_credentials(http, client_id, rotated["client_secret"]) == 200


def test_the_cli_lists_keys_as_the_api_does(
    running: Running, http: TestClient, bearer: dict[str, str]
) -> None:
    api = http.get(f"{API}/keys", headers=bearer).json()["items"]
    listed = cli(running, "keys", "list")["keys"]
    assert {k["kid"]: k["public_jwk"] for k in listed} == {k["kid"]: k["public_jwk"] for k in api}
    assert {k["state"] for k in listed} <= {"pending", "signing", "verifying", "retired"}


def test_on_postgresql_the_same_calls_hold(postgres_database: str) -> None:
    """The conditional write compares every column of the row as PostgreSQL types them (bytea,
    booleans, JSON text, NULLs), and the rest of the routes' SQL runs there too."""
    empty_tables(postgres_database)
    with running_app(postgres_database, key_encryption_key=KEK) as (http, store, _clock):
        admin = register_client(store, scope=ADMIN_SCOPES)
        bearer = {"Authorization": f"Bearer {token_of(http, admin)}"}
        created = create(http, bearer, redirect_uris=[REDIRECT_URI], scope="read")
        client_id, secret = created["client_id"], created["client_secret"]
        url = f"{API}/clients/{client_id}"
        etag = http.get(url, headers=bearer).headers["etag"]
        patch = {"scope": "read write", "allowed_origins": ["https://a.example"]}
        first = http.patch(url, json=patch, headers={**bearer, "If-Match": etag})
        assert first.status_code == 200, first.text
        assert (
            http.patch(url, json={"name": "x"}, headers={**bearer, "If-Match": etag}).status_code
            == 412
        )
        read = anyio.run(store.admin().client, client_id)
        assert read is not None
        actor = Actor("client:racer", None, 0)
        edited = Client(**{**_fields(read), "name": "one"})
        assert anyio.run(store.admin().update_registration, read, edited, actor) == {"name": "one"}
        assert anyio.run(store.admin().update_registration, read, edited, actor) is STALE

        assert client_credentials(http, client_id, secret) == 200
        rotated = http.post(f"{url}/secret", headers=bearer).json()["client_secret"]
        assert client_credentials(http, client_id, secret) == 401
        assert http.post(f"{url}/disable", headers=bearer).json()["grants_revoked"] == 1
        assert client_credentials(http, client_id, rotated) == 401
        assert http.delete(url, headers=bearer).status_code == 204
        page = http.get(f"{API}/clients?limit=1&include_deleted=true", headers=bearer).json()
        query = f"cursor={page['next_cursor']}&include_deleted=true"
        rest = http.get(f"{API}/clients?{query}", headers=bearer).json()
        assert [c["client_id"] for c in page["items"] + rest["items"]] == [admin.id, client_id]
        rotation = http.post(f"{API}/keys/rotate", json={}, headers=bearer)
        assert rotation.status_code == 200, rotation.text


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--pkce-optional",), "PKCE cannot be optional"),
        (("--redirect-uri", "http://a.example/cb"), "http"),
        (("--resource", "https://nowhere.example/"), "no registered resource"),
        (("--resource", "https://a.example/", "--no-resources"), "not both"),
        (("--name", ""), "name must be"),
        (("--name", "x" * 201), "name must be"),
    ],
)
def test_the_cli_update_refuses_what_the_api_refuses(
    running: Running, http: TestClient, bearer: dict[str, str], args: tuple[str, ...], fragment: str
) -> None:
    created = create(http, bearer, public=True, redirect_uris=[REDIRECT_URI])
    db = f"sqlite:///{running[3]}"
    result = CliRunner().invoke(main, ["client", "update", "--db", db, created["client_id"], *args])
    assert result.exit_code == 1 and fragment in result.stderr, result.output
    shown = http.get(f"{API}/clients/{created['client_id']}", headers=bearer).json()
    assert shown == created


def test_the_cli_rotates_no_public_or_deleted_clients_secret(
    running: Running, http: TestClient, bearer: dict[str, str]
) -> None:
    db = f"sqlite:///{running[3]}"
    public = create(http, bearer, public=True, redirect_uris=[REDIRECT_URI])["client_id"]
    gone = create(http, bearer)["client_id"]
    assert http.delete(f"{API}/clients/{gone}", headers=bearer).status_code == 204
    for client_id, fragment in (
        (public, "is public"),
        (gone, "was deleted"),
        ("cl_no", "no client"),
    ):
        result = CliRunner().invoke(main, ["client", "rotate-secret", "--db", db, client_id])
        assert result.exit_code == 1 and fragment in result.stderr, result.output


def test_the_cli_creates_no_client_the_api_would_refuse(running: Running) -> None:
    db = f"sqlite:///{running[3]}"
    for name in ("x" * 201, "tab\there"):
        result = CliRunner().invoke(main, ["client", "create", "--db", db, "--name", name])
        assert result.exit_code == 1 and "name must be" in result.stderr, result.output
