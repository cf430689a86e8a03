"""Audience restriction end to end (RFC 8707, RFC 9068 §4): a real `baton serve`, resource
servers and a client registered with the real command line, and two example APIs under uvicorn,
each with its own credentials and audience. A token for API A is refused by API B, opaque or
JWT; a token for no resource is refused by both, unless an API accepts the issuer."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Credentials, ServerFactory, cli_in_process
from tests.resource.e2e.support import ExampleApi, start_api

pytestmark = pytest.mark.e2e

API_A = "http://127.0.0.1/a"
API_B = "http://127.0.0.1/b"


def create_client(db: str, name: str, *extra: str) -> Credentials:
    """`baton client create --json`, in this process (a `baton` process costs a second of
    imports), on the database the server is serving."""
    out = cli_in_process("client", "create", "--db", db, "--name", name, "--json", *extra)
    payload = json.loads(out)
    return Credentials(payload["client_id"], payload["client_secret"])


def test_a_token_is_accepted_only_by_the_api_it_is_for(
    baton_server: ServerFactory, token_format: str, tmp_path: Path
) -> None:
    options = {"access_token_format": "jwt"} if token_format == "jwt" else {}
    server = baton_server(**options)
    db = str(server.db)
    rs_a = create_client(db, "api a", "--resource-server", "--resource-uri", API_A)
    rs_b = create_client(db, "api b", "--resource-server", "--resource-uri", API_B)
    for_a = create_client(db, "app for a", "--resource", API_A, "--scope", "read")
    for_nothing = create_client(db, "app for nothing", "--scope", "read")

    def api(rs: Credentials, audience: str, name: str) -> ExampleApi:
        env = {
            "BATON_RS_ID": rs.client_id,
            "BATON_RS_SECRET": rs.client_secret,
            "BATON_AUDIENCE": audience,
        }
        return start_api(server, tmp_path / name, env=env)

    def token(client: Credentials, **params: str) -> str:
        response = httpx.post(
            server.token_url,
            data={"grant_type": "client_credentials", **params},
            auth=client.basic,
        )
        assert response.status_code == 200, response.text
        issued: str = response.json()["access_token"]
        return issued

    apis = [
        api(rs_a, API_A, "a"),
        api(rs_b, API_B, "b"),
        api(rs_b, f"{API_B} {server.url}", "b-and-issuer"),
    ]
    try:
        a, b, b_and_issuer = (example.url + "/hello" for example in apis)

        def status(url: str, access_token: str) -> int:
            headers = {"authorization": f"Bearer {access_token}"}
            return httpx.get(url, headers=headers).status_code

        refused = httpx.post(
            server.token_url,
            data={"grant_type": "client_credentials", "resource": API_B},
            auth=for_a.basic,
        )
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_target"
        for_api_a = token(for_a, resource=API_A)
        assert status(a, for_api_a) == 200
        assert status(b, for_api_a) == 401
        assert status(b_and_issuer, for_api_a) == 401
        for_no_resource = token(for_nothing)
        assert status(a, for_no_resource) == 401
        assert status(b_and_issuer, for_no_resource) == 200
    finally:
        for example in apis:
            example.stop()
