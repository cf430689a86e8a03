"""What a client no operator registered can never get: a token with no person behind it.

Review H1 (issue 26): a client ID metadata document naming `private_key_jwt`, its own
`jwks_uri` and `grant_types: ["client_credentials"]` was stored by one unauthenticated
/authorize and then minted `client_credentials` tokens for every registered resource server,
with every dynamic scope, no user and no consent."""

from __future__ import annotations

import json
import secrets
import ssl
import time
from dataclasses import replace
from pathlib import Path

import anyio
from joserfc import jws
from joserfc.jwk import ECKey
from sqlalchemy import Connection
from sqlalchemy import update as sa_update

from baton.core.clock import FakeClock
from baton.core.jwa import registry
from baton.core.registration import (
    VOUCHED_MEMBER,
    RegistrationError,
    RegistrationPolicy,
    client_metadata,
)
from baton.server.runtime import fetching
from baton.server.runtime.client_keys import ClientKeys, KeySetDocument, KeySetUnavailable
from baton.store.base import RegisteredVia
from baton.store.schema import clients
from baton.store.sql import SQLStore
from tests.server.document_host import document_host
from tests.support import ISSUER, register_client, running_app

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MACHINE = {
    "redirect_uris": ["https://app.example/cb"],
    "token_endpoint_auth_method": "private_key_jwt",
    "jwks_uri": "https://app.example/jwks.json",
    "grant_types": ["authorization_code", "client_credentials"],
}


def test_only_a_registration_the_operator_vouched_for_may_use_client_credentials() -> None:
    for policy in (RegistrationPolicy(document=True), RegistrationPolicy()):
        try:
            client_metadata(MACHINE, policy)
        except RegistrationError as exc:
            assert "client_credentials" in exc.description
        else:
            raise AssertionError(f"client_credentials granted under {policy}")
    vouched = client_metadata(MACHINE, RegistrationPolicy(machine_grants=True))
    assert "client_credentials" in vouched.grant_types


class _Keys:
    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context

    async def fetch_json(self, url: str) -> KeySetDocument:
        try:
            got = await fetching.fetch(url, allow_private=True, ssl_context=self.context)
        except fetching.FetchError as exc:
            raise KeySetUnavailable(exc.reason) from None
        return KeySetDocument(json.loads(got.body), 300)


def test_a_document_client_never_gets_client_credentials_tokens(tmp_path: Path) -> None:
    """Even a row that says it may (stored before the rule, or edited): /token refuses."""
    key = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    clock = FakeClock(int(time.time()))
    with (
        document_host() as host,
        running_app(tmp_path, clock=clock, client_documents_allow_private=True) as (http, store, _),
    ):
        http.app.state.baton.documents.ssl_context = host.ssl_context()  # type: ignore[attr-defined]
        http.app.state.client_keys = ClientKeys(_Keys(host.ssl_context()))  # type: ignore[attr-defined]
        register_client(
            store, resource_server=True, name="mcp", resource_uri="https://mcp.example/mcp"
        )
        url = host.url("/machine.json")
        host.serve_json("/jwks.json", {"keys": [key.as_dict(private=False)]})
        host.serve_json(
            "/machine.json", {**MACHINE, "client_id": url, "jwks_uri": host.url("/jwks.json")}
        )
        # The document asking for client_credentials is refused: no row is made.
        page = http.get("/authorize", params={"client_id": url})
        assert page.status_code == 400 and "client_credentials" in page.text
        assert anyio.run(store.get_client, url) is None
        # A row that says otherwise (as one stored before the rule did) still gets nothing.
        host.serve_json(
            "/machine.json",
            {
                **MACHINE,
                "client_id": url,
                "jwks_uri": host.url("/jwks.json"),
                "grant_types": ["authorization_code"],
            },
        )
        http.get("/authorize", params={"client_id": url})
        stored = anyio.run(store.get_client, url)
        assert stored is not None and stored.registered_via == RegisteredVia.DOCUMENT
        anyio.run(store.save_document_client, replace(stored, grant_types=("client_credentials",)))
        claims = {
            "iss": url,
            "sub": url,
            "aud": ISSUER + "/token",
            "exp": clock.now() + 60,
            "jti": secrets.token_hex(8),
        }
        assertion = jws.serialize_compact(
            {"alg": "ES256", "kid": "k1"},
            json.dumps(claims).encode(),
            key,
            registry=registry("ES256"),
        )
        answer = http.post(
            "/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": JWT_BEARER,
                "client_assertion": assertion,
            },
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "unauthorized_client"


WEB_APP = {
    "redirect_uris": ["https://app.example/cb"],
    "client_name": "anonymous",
    "grant_types": ["authorization_code"],
}
INITIAL_TOKEN = "T" * 32


def _grants_machine_tokens(store: SQLStore, client_id: str) -> None:
    """The client's row edited to list client_credentials (as no endpoint lets it be)."""

    def work(conn: Connection) -> None:
        row = clients.c.id == client_id
        grants = '["authorization_code", "client_credentials"]'
        conn.execute(sa_update(clients).where(row).values(grant_types=grants))

    anyio.run(store.runner.write, work)


def test_an_open_registration_never_gains_client_credentials(tmp_path: Path) -> None:
    """Re-review #4: registered while `--registration open`, a client asks for
    client_credentials in an RFC 7592 update after the operator switched to `token`; and a row
    that lists it anyway still mints nothing at /token."""
    clock = FakeClock()
    with running_app(tmp_path, clock=clock, registration="open") as (http, _store, _):
        registered = http.post("/register", json=WEB_APP).json()
    client_id, token = registered["client_id"], registered["registration_access_token"]
    auth = (client_id, registered["client_secret"])
    with running_app(
        tmp_path, clock=clock, registration="token", registration_token=INITIAL_TOKEN
    ) as (http, store, _):
        machine = {**WEB_APP, "client_id": client_id, "grant_types": MACHINE["grant_types"]}
        put = http.put(
            f"/register/{client_id}", json=machine, headers={"Authorization": f"Bearer {token}"}
        )
        assert put.status_code == 400, put.text
        assert put.json()["error"] == "invalid_client_metadata"
        _grants_machine_tokens(store, client_id)
        answer = http.post("/token", data={"grant_type": "client_credentials"}, auth=auth)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "unauthorized_client"


def test_a_registration_with_the_initial_access_token_keeps_client_credentials(
    tmp_path: Path,
) -> None:
    """The record that the initial access token was presented survives an RFC 7592 update
    (the client need not, and cannot, send it) and is never shown to the client."""
    with running_app(tmp_path, registration="token", registration_token=INITIAL_TOKEN) as (
        http,
        _store,
        _,
    ):
        bearer = {"Authorization": f"Bearer {INITIAL_TOKEN}"}
        machine = {**WEB_APP, "grant_types": MACHINE["grant_types"]}
        registered = http.post("/register", json=machine, headers=bearer).json()
        assert VOUCHED_MEMBER not in registered
        client_id, token = registered["client_id"], registered["registration_access_token"]
        managed = {"Authorization": f"Bearer {token}"}
        renamed = {**machine, "client_id": client_id, "client_name": "renamed"}
        put = http.put(f"/register/{client_id}", json=renamed, headers=managed)
        assert put.status_code == 200, put.text
        assert VOUCHED_MEMBER not in put.json()
        assert VOUCHED_MEMBER not in http.get(f"/register/{client_id}", headers=managed).json()
        auth = (client_id, registered["client_secret"])
        answer = http.post("/token", data={"grant_type": "client_credentials"}, auth=auth)
        assert answer.status_code == 200, answer.text
