"""The admin API's clients and keys, where a caller could reach beyond what it was given: a
client holding `admin:clients:write` manages only clients whose admin scopes its own token
holds (it never widens its own or anyone's admin scopes, never takes a more privileged client's
secret), a scope taken from a client stops its live tokens, and what the API refuses is a
problem, never a 500 or a silent surprise.

In-process on SQLite under a fake clock, one server for the module."""

from __future__ import annotations

import base64
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
from baton.store.schema import audit_log
from baton.store.sql import SQLStore
from tests.databases import empty_tables
from tests.server.test_admin_api_clients import audit_rows, problem_of, token_of
from tests.support import RegisteredClient, register_client, running_app

KEK = "k" * 40
API = "/admin/api/v1"
WRITER = "admin:clients:read admin:clients:write"
ISSUER = "https://baton.test"
AUDIENCE = "https://api.baton.test"
Running = tuple[TestClient, SQLStore, FakeClock]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    folder = tmp_path_factory.mktemp("admin-guards")
    with running_app(
        folder, key_encryption_key=KEK, issuer=ISSUER, access_token_audience=AUDIENCE
    ) as (http, store, clock):
        yield http, store, clock


@pytest.fixture
def http(running: Running) -> TestClient:
    running[0].cookies.clear()
    return running[0]


@pytest.fixture
def store(running: Running) -> SQLStore:
    return running[1]


def bearer_of(http: TestClient, client: RegisteredClient, scope: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_of(http, client, scope)}"}


@pytest.fixture
def writer(running: Running) -> RegisteredClient:
    """A client that manages clients, and nothing else."""
    return register_client(running[1], scope=WRITER, name="client manager")


@pytest.fixture
def writer_bearer(http: TestClient, writer: RegisteredClient) -> dict[str, str]:
    return bearer_of(http, writer, WRITER)


def refusal_rows(store: SQLStore, path: str) -> list[Any]:
    """The refusals of calls to `path`: audited by the route's template and its parameters."""

    def work(conn: Any) -> list[tuple[str, str]]:
        stmt = select(audit_log.c.target_id, audit_log.c.detail)
        return list(conn.execute(stmt.where(audit_log.c.action == "admin_api.refused")))

    refused = [
        (target, json.loads(detail)) for target, detail in anyio.run(store.runner.read, work)
    ]
    return [d for target, d in refused if target.format(**d.get("params", {})) == path]


# -- H1: admin:clients:write reaches no further than its holder's own admin scopes -----------


def test_a_client_writer_cannot_create_a_client_with_admin_scopes_it_lacks(
    http: TestClient, store: SQLStore, writer_bearer: dict[str, str]
) -> None:
    body = {"name": "escalated", "scope": "admin:keys:write admin:clients:read read"}
    answer = http.post(f"{API}/clients", json=body, headers=writer_bearer)
    detail = problem_of(answer, 403)
    assert answer.json()["type"] == "urn:baton:problem:insufficient-scope"
    assert "admin:keys:write" in detail and "admin:clients:read" not in detail
    assert "client_secret" not in answer.text
    assert any("admin:keys:write" in d["refused"] for d in refusal_rows(store, f"{API}/clients"))
    # Its own admin scopes (and any others) it may hand on.
    body["scope"] = "admin:clients:read read"
    assert http.post(f"{API}/clients", json=body, headers=writer_bearer).status_code == 201


def test_a_client_writer_cannot_widen_its_own_scope(
    http: TestClient, writer: RegisteredClient, writer_bearer: dict[str, str]
) -> None:
    widened = {"scope": f"{WRITER} admin:keys:write admin:users:write"}
    answer = http.patch(f"{API}/clients/{writer.id}", json=widened, headers=writer_bearer)
    assert "admin:keys:write admin:users:write" in problem_of(answer, 403)
    shown = http.get(f"{API}/clients/{writer.id}", headers=writer_bearer).json()
    assert shown["scope"] == WRITER
    # A change within its own scopes goes through.
    answer = http.patch(f"{API}/clients/{writer.id}", json={"name": "x"}, headers=writer_bearer)
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("POST", "/secret", None),
        ("POST", "/disable", None),
        ("POST", "/enable", None),
        ("DELETE", "", None),
        ("PATCH", "", {"name": "renamed"}),
        ("PATCH", "", {"scope": "read"}),  # narrowing one more privileged is still managing it
    ],
)
def test_a_client_writer_cannot_touch_a_more_privileged_client(
    http: TestClient,
    store: SQLStore,
    writer_bearer: dict[str, str],
    method: str,
    suffix: str,
    body: dict[str, Any] | None,
) -> None:
    boss = register_client(store, scope=f"{WRITER} admin:keys:write", name="key admin")
    path = f"{API}/clients/{boss.id}{suffix}"
    answer = http.request(method, path, json=body, headers=writer_bearer)
    assert "admin:keys:write" in problem_of(answer, 403)
    assert "client_secret" not in answer.text
    assert refusal_rows(store, path)
    shown = http.get(f"{API}/clients/{boss.id}", headers=writer_bearer).json()
    assert (shown["name"], shown["scope"], shown["disabled_at"]) == (
        "key admin",
        f"{WRITER} admin:keys:write",
        None,
    )
    # Its secret still works: nothing was rotated.
    assert token_of(http, boss, "admin:keys:write")


# -- M1: the scope must still be the client's ----------------------------------------------------


def test_a_scope_taken_from_a_client_stops_its_live_tokens(
    http: TestClient, store: SQLStore, writer_bearer: dict[str, str]
) -> None:
    reader = register_client(store, scope="admin:clients:read read", name="reader")
    reader_bearer = bearer_of(http, reader, "admin:clients:read")
    assert http.get(f"{API}/clients", headers=reader_bearer).status_code == 200
    answer = http.patch(f"{API}/clients/{reader.id}", json={"scope": "read"}, headers=writer_bearer)
    assert answer.status_code == 200, answer.text
    answer = http.get(f"{API}/clients", headers=reader_bearer)
    assert "no longer registered" in problem_of(answer, 403)
    assert "insufficient_scope" in answer.headers["www-authenticate"]


# -- M4: no number JSON cannot write back ----------------------------------------------------------


@pytest.mark.parametrize("number", ["1e999", "-1e999", "1E400"])
def test_a_number_too_large_for_a_float_is_a_400_not_an_infinity_in_an_id_token(
    tmp_path: Path, number: str
) -> None:
    from tests.server import test_delegation as td

    with running_app(
        tmp_path, key_encryption_key=KEK, login_url=td.LOGIN_APP, access_token_format="jwt"
    ) as (http, store, _):
        app_client = register_client(store, scope=td.ADMIN_SCOPE, name="login app")
        token = td.admin_token(http, app_client)
        consenting = td._client(store, consent_url=td.CONSENT_APP)
        page, _verifier = td.signed_in(http, token, consenting)
        consent = td.challenge_of(page, td.CONSENT_APP)
        raw = '{"grant_scope": ["openid"], "session": {"id_token": {"big": NUMBER}}}'
        raw = raw.replace("NUMBER", number)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        answer = http.put(
            f"{API}/consent-challenges/{consent}/accept", content=raw.encode(), headers=headers
        )
        assert "not valid JSON" in problem_of(answer, 400)


# -- M2: a resource server never takes this server's own audience --------------------------------


@pytest.mark.parametrize("uri", [ISSUER, f"{ISSUER}/", AUDIENCE, f"{AUDIENCE}/"])
def test_a_resource_server_cannot_be_named_by_this_servers_own_audience(
    http: TestClient, writer_bearer: dict[str, str], uri: str
) -> None:
    body = {"name": "an API", "resource_server": True, "resource_uri": uri}
    answer = http.post(f"{API}/clients", json=body, headers=writer_bearer)
    assert "own audience" in problem_of(answer, 400)
    body["resource_uri"] = f"{uri.rstrip('/')}/orders/{len(uri)}"  # a path of its own
    assert http.post(f"{API}/clients", json=body, headers=writer_bearer).status_code == 201


# -- L1: no rotation that strands live tokens -----------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"max_access_ttl": 3599}, "--access-ttl"),  # the server's access tokens last 3600 s
        ({"max_id_token_ttl": 60}, "--id-token-lifetime"),
        ({"publish_ahead": 0}, "--key-reload-interval"),  # the servers reload every 30 s
        ({"publish_ahead": 29}, "--key-reload-interval"),
    ],
)
def test_a_rotation_that_would_strand_live_tokens_is_refused(
    http: TestClient, store: SQLStore, body: dict[str, Any], fragment: str
) -> None:
    keys_admin = register_client(store, scope="admin:keys:read admin:keys:write", name="keys")
    bearer = bearer_of(http, keys_admin, "admin:keys:read admin:keys:write")
    before = http.get(f"{API}/keys", headers=bearer).json()
    answer = http.post(f"{API}/keys/rotate", json=body, headers=bearer)
    assert fragment in problem_of(answer, 400)
    assert http.get(f"{API}/keys", headers=bearer).json() == before
    floors = {"max_access_ttl": 3600, "max_id_token_ttl": 3600, "publish_ahead": 30}
    answer = http.post(f"{API}/keys/rotate", json=floors, headers=bearer)
    assert answer.status_code == 200, answer.text


# -- L2: a crafted cursor is a 400 ---------------------------------------------------------------


@pytest.mark.parametrize(
    "inside",
    [
        '[0,"\\ud800"]',  # a lone surrogate, in the API's own JSON spelling
        '[0,"a\\u0000b"]',  # a NUL, which PostgreSQL's text refuses
        '[0, "cl_x"]',  # another spelling of a position
        "[0,1]",
    ],
)
def test_a_crafted_list_cursor_is_a_400(
    http: TestClient, writer_bearer: dict[str, str], inside: str
) -> None:
    cursor = base64.urlsafe_b64encode(inside.encode()).decode().rstrip("=")
    answer = http.get(f"{API}/clients?cursor={cursor}", headers=writer_bearer)
    assert "cursor" in problem_of(answer, 400)


# -- L4: a deletion is one transaction, once ------------------------------------------------------


def _deleted_once(where: Path | str) -> None:
    with running_app(where, key_encryption_key=KEK) as (_http, store, _clock):
        victim = register_client(store, scope="read", name="victim")
        actors = [Actor(f"client:{n}", None, 1) for n in ("a", "b")]
        outcomes: list[Any] = []

        async def both() -> None:
            async def one(actor: Actor) -> None:
                outcomes.append(await store.admin().delete_client(victim.id, actor))

            async with anyio.create_task_group() as tasks:
                for actor in actors:
                    tasks.start_soon(one, actor)

        anyio.run(both)
        assert sorted(o is None for o in outcomes) == [False, True], outcomes
        actions = [action for _, action, _ in audit_rows(store, victim.id)]
        assert actions == ["client.disable", "client.delete"]


def test_two_deletions_at_once_delete_once_on_sqlite(tmp_path: Path) -> None:
    _deleted_once(tmp_path)


def test_two_deletions_at_once_delete_once_on_postgresql(postgres_database: str) -> None:
    empty_tables(postgres_database)
    _deleted_once(postgres_database)


def test_a_second_delete_is_a_409_and_audits_nothing(
    http: TestClient, store: SQLStore, writer_bearer: dict[str, str]
) -> None:
    victim = register_client(store, scope="read", name="victim")
    url = f"{API}/clients/{victim.id}"
    assert http.delete(url, headers=writer_bearer).status_code == 204
    rows = audit_rows(store, victim.id)
    assert [action for _, action, _ in rows] == ["client.disable", "client.delete"]
    assert (
        http.delete(url, headers=writer_bearer).json()["type"] == "urn:baton:problem:client-deleted"
    )
    assert audit_rows(store, victim.id) == rows
    # The store refuses it too, whoever calls (the CLI, a racing request).
    assert anyio.run(store.admin().delete_client, victim.id, Actor("cli", None, 1)) is None
    assert audit_rows(store, victim.id) == rows


# -- L5: the creation's audit row holds the whole registration -----------------------------------


def test_a_created_clients_audit_row_holds_its_whole_registration_never_its_secret(
    http: TestClient, store: SQLStore, writer_bearer: dict[str, str]
) -> None:
    body = {
        "name": "Photo app",
        "redirect_uris": ["https://photos.example/cb"],
        "scope": "openid read",
        "login_url": "https://login.photos.example/",
        "consent_url": "https://consent.photos.example/",
        "allowed_origins": ["https://photos.example"],
        "backchannel_logout_uri": "https://photos.example/logout",
        "post_logout_redirect_uris": ["https://photos.example/bye"],
        "client_uri": "https://photos.example/",
    }
    answer = http.post(f"{API}/clients", json=body, headers=writer_bearer)
    assert answer.status_code == 201, answer.text
    created = answer.json()
    rows = audit_rows(store, created["client_id"])
    assert [action for _, action, _ in rows] == ["client.create"]
    detail = rows[0][2]
    for name, value in body.items():
        assert detail[name] == value, name
    shown = {k: v for k, v in created.items() if k not in ("client_id", "client_secret")}
    assert {k: v for k, v in shown.items() if k in detail} == detail
    assert created["client_secret"] not in str(rows)


# -- L7: a changed origin is seen at once by the server that took the change ---------------------


def test_an_origin_removed_over_the_api_is_refused_at_once_by_this_server(
    http: TestClient, store: SQLStore, writer_bearer: dict[str, str]
) -> None:
    origin = "https://cors-app.example"
    app = register_client(store, scope="read", name="browser app", redirect_uris=(f"{origin}/cb",))

    def preflight() -> str | None:
        headers = {"Origin": origin, "Access-Control-Request-Method": "POST"}
        return http.options("/token", headers=headers).headers.get("access-control-allow-origin")

    assert preflight() == origin
    answer = http.patch(
        f"{API}/clients/{app.id}", json={"allowed_origins": []}, headers=writer_bearer
    )
    assert answer.status_code == 200, answer.text
    assert preflight() is None  # no 30 s wait on the server that answered the PATCH
    answer = http.patch(
        f"{API}/clients/{app.id}", json={"allowed_origins": None}, headers=writer_bearer
    )
    assert answer.status_code == 200, answer.text
    assert preflight() == origin


# -- L3: `baton client update` keeps a pairwise sector as the API does -------------------------


def test_the_cli_update_keeps_a_pairwise_clients_sector_as_the_api_does(tmp_path: Path) -> None:
    with running_app(tmp_path, key_encryption_key=KEK) as (http, store, _clock):
        writer = register_client(store, scope=WRITER, name="client manager")
        bearer = bearer_of(http, writer, WRITER)
        body = {"name": "pw", "subject_type": "pairwise", "redirect_uris": ["https://a.example/cb"]}
        client_id = http.post(f"{API}/clients", json=body, headers=bearer).json()["client_id"]
        moved = {"redirect_uris": ["https://b.example/cb"]}
        answer = http.patch(f"{API}/clients/{client_id}", json=moved, headers=bearer)
        assert "pairwise sector" in problem_of(answer, 400)
        db = str(tmp_path / "baton.db")
        args = ["client", "update", "--db", db, client_id, "--redirect-uri", "https://b.example/cb"]
        result = CliRunner().invoke(main, args)
        assert result.exit_code != 0 and "pairwise sector" in result.output, result.output
        shown = http.get(f"{API}/clients/{client_id}", headers=bearer).json()
        assert shown["redirect_uris"] == ["https://a.example/cb"]
        # Saying where the sector now is lets both move it.
        args += ["--sector-identifier-uri", "https://a.example/sector.json"]
        assert "pairwise sector" not in CliRunner().invoke(main, args).output


# -- L8: HTTP and RFC conformance ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/clients", "GET, HEAD, POST"),
        ("PUT", "/clients/cl_x", "DELETE, GET, HEAD, PATCH"),
        ("GET", "/keys/rotate", "POST"),
        ("POST", "/keys", "GET, HEAD"),
    ],
)
def test_a_method_a_path_does_not_take_is_a_405_problem_with_allow(
    http: TestClient, writer_bearer: dict[str, str], method: str, path: str, allow: str
) -> None:
    answer = http.request(method, f"{API}{path}", headers=writer_bearer)
    assert answer.status_code == 405, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["allow"] == allow
    assert answer.json()["type"] == "urn:baton:problem:method-not-allowed"


def test_an_unknown_admin_api_path_is_a_404_problem(
    http: TestClient, writer_bearer: dict[str, str]
) -> None:
    answer = http.get(f"{API}/nothing-here", headers=writer_bearer)
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"


def test_a_patch_may_be_sent_as_a_merge_patch_and_the_document_says_so(
    http: TestClient, store: SQLStore, writer_bearer: dict[str, str]
) -> None:
    target = register_client(store, scope="read", name="target")
    headers = {**writer_bearer, "Content-Type": "application/merge-patch+json"}
    answer = http.patch(
        f"{API}/clients/{target.id}", content=b'{"name": "merged", "scope": null}', headers=headers
    )
    assert answer.status_code == 200, answer.text
    assert (answer.json()["name"], answer.json()["scope"]) == ("merged", "")
    # Only a PATCH takes it: a create is no merge.
    answer = http.post(f"{API}/clients", content=b'{"name": "x"}', headers=headers)
    assert problem_of(answer, 400)
    document = http.get("/openapi.json").json()
    body = document["paths"][f"{API}/clients/{{client_id}}"]["patch"]["requestBody"]["content"]
    assert set(body) == {"application/json", "application/merge-patch+json"}
    fields = body["application/merge-patch+json"]["schema"]["properties"]
    for name, schema in fields.items():
        takes_null = "null" in schema.get("type", []) or None in schema.get("enum", [])
        assert takes_null == (name != "name"), name  # every field but the name may be nulled


def test_a_request_without_credentials_gets_a_challenge_without_an_error_code(
    http: TestClient, writer: RegisteredClient
) -> None:
    answer = http.get(f"{API}/clients")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == 'Bearer realm="baton"'
    # RFC 6750 §3.1: another scheme is a malformed request, not a bad token.
    answer = http.get(f"{API}/clients", auth=writer.basic)
    assert problem_of(answer, 400)
    assert 'error="invalid_request"' in answer.headers["www-authenticate"]
