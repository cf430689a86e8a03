"""OpenID Connect Discovery 1.0 (/.well-known/openid-configuration) through real HTTP: served only
while OpenID Connect is on, consistent with the RFC 8414 document member for member, its URLs
the route table's, and valid against the OpenAPI document's schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import jsonschema_rs
import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from baton.core.claims import STANDARD_CLAIMS
from baton.server.endpoints.metadata import OIDC_ENDPOINTS
from baton.server.routes import TABLE
from tests.support import ISSUER, register_client, running_app

KEK = "correct horse battery staple, 32+ chars"
DISCOVERY = "/.well-known/openid-configuration"
RFC8414 = "/.well-known/oauth-authorization-server"

OPENID_MEMBERS = {
    "subject_types_supported",
    "id_token_signing_alg_values_supported",
    "claims_supported",
    "claim_types_supported",
    "claims_parameter_supported",
    "request_parameter_supported",
    "request_uri_parameter_supported",
    "require_request_uri_registration",
    "prompt_values_supported",
    "frontchannel_logout_supported",
    "backchannel_logout_supported",
    "backchannel_logout_session_supported",
}


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    with running_app(tmp_path, key_encryption_key=KEK) as (client, _store, _clock):
        yield client


def test_the_discovery_document_describes_the_provider(http: TestClient) -> None:
    response = http.get(DISCOVERY)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    doc = response.json()
    # Discovery §3 REQUIRED members, and §4.3: the issuer is the one it was fetched from.
    assert doc["issuer"] == ISSUER
    assert doc["authorization_endpoint"] == f"{ISSUER}/authorize"
    assert doc["token_endpoint"] == f"{ISSUER}/token"
    assert doc["userinfo_endpoint"] == f"{ISSUER}/userinfo"
    assert doc["jwks_uri"] == f"{ISSUER}/jwks.json"
    assert doc["revocation_endpoint"] == f"{ISSUER}/revoke"
    assert doc["introspection_endpoint"] == f"{ISSUER}/introspect"
    assert doc["response_types_supported"] == ["code"]
    assert doc["response_modes_supported"] == ["query"]
    assert doc["subject_types_supported"] == ["public", "pairwise"]
    # RS256 first (Core §15.1: every provider supports it); never `EdDSA`, which no ID token of
    # Baton's carries.
    assert doc["id_token_signing_alg_values_supported"] == ["RS256", "ES256", "Ed25519"]
    assert "userinfo_signing_alg_values_supported" not in doc  # plain JSON UserInfo
    assert set(doc["scopes_supported"]) >= {"openid", "profile", "email", "offline_access"}
    id_token_claims = {"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash"}
    id_token_claims |= {"sid", "azp", "acr", "amr"}
    assert set(doc["claims_supported"]) == id_token_claims | STANDARD_CLAIMS
    assert doc["claim_types_supported"] == ["normal"]
    assert doc["claims_parameter_supported"] is True
    assert doc["request_parameter_supported"] is False
    assert doc["request_uri_parameter_supported"] is False
    assert doc["require_request_uri_registration"] is False
    assert doc["prompt_values_supported"] == ["none", "login", "consent", "select_account"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["authorization_response_iss_parameter_supported"] is True
    assert doc["frontchannel_logout_supported"] is False
    assert doc["backchannel_logout_supported"] is True
    assert doc["backchannel_logout_session_supported"] is True
    assert set(doc["grant_types_supported"]) == {
        "authorization_code",
        "refresh_token",
        "client_credentials",
    }
    assert doc["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
        "none",
    ]


def test_every_member_common_to_both_documents_has_the_same_value(http: TestClient) -> None:
    """RFC 8414 §2 lets the OAuth document carry the OpenID members: it does, with the same
    values, so a client reading either learns the same."""
    discovery = http.get(DISCOVERY).json()
    oauth = http.get(RFC8414).json()
    common = set(discovery) & set(oauth)
    assert common >= {"issuer", "userinfo_endpoint", "jwks_uri", *OPENID_MEMBERS}
    assert {name: discovery[name] for name in common} == {name: oauth[name] for name in common}
    assert discovery == oauth


def test_the_endpoint_urls_are_the_route_tables(http: TestClient) -> None:
    """Each URL is a route of the app; /session/end appears once its route is in the table."""
    app = cast(Starlette, http.app)
    paths = {route.path for route in app.routes if isinstance(route, Route)}
    doc = http.get(DISCOVERY).json()
    for member, path in TABLE.metadata_paths().items():
        if member == "registration_endpoint":  # advertised only while registration is on
            assert member not in doc
            continue
        assert doc[member] == ISSUER + path
        assert urlsplit(doc[member]).path in paths
    assert ("end_session_endpoint" in doc) == ("end_session_endpoint" in TABLE.metadata_paths())
    for member, value in doc.items():
        if member.endswith(("_endpoint", "_uri")):
            assert urlsplit(value).path in paths, member


def test_the_document_is_served_like_the_oauth_one(http: TestClient) -> None:
    """Cache headers and all: the two are answered alike."""
    discovery = http.get(DISCOVERY)
    oauth = http.get(RFC8414)
    assert discovery.headers.get("cache-control") == oauth.headers.get("cache-control")
    assert discovery.headers["content-type"] == oauth.headers["content-type"]


def test_not_served_while_openid_connect_is_off(tmp_path: Path) -> None:
    """Common decisions: without a key-encryption key there is no OpenID Provider to describe,
    and the OAuth document names no OpenID member, nor /userinfo (which answers 404 then)."""
    with running_app(tmp_path) as (http, _store, _clock):
        response = http.get(DISCOVERY)
        oauth = http.get(RFC8414).json()
    assert response.status_code == 404
    assert response.json()["error"] == "invalid_request"
    assert not set(oauth) & (OPENID_MEMBERS | OIDC_ENDPOINTS)
    assert "userinfo_endpoint" not in oauth
    assert oauth["token_endpoint"] == f"{ISSUER}/token"
    # RFC 8414 §2 `scopes_supported` is the OAuth document's own, without the OpenID scopes.
    assert oauth["scopes_supported"] == []


def test_the_document_matches_its_openapi_schema(http: TestClient) -> None:
    document: dict[str, Any] = http.get("/openapi.json").json()
    operation = document["paths"][DISCOVERY]["get"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    validator = jsonschema_rs.Draft202012Validator({**schema, "components": document["components"]})
    served = http.get(DISCOVERY).json()
    assert validator.is_valid(served)
    # The OpenID members are required there: a document without them is not the provider's.
    assert not validator.is_valid({k: v for k, v in served.items() if k != "claims_supported"})
    # And the OAuth document, while OpenID Connect is on, is the same document.
    assert validator.is_valid(http.get(RFC8414).json())


def test_a_browser_app_reads_the_discovery_document(tmp_path: Path) -> None:
    with running_app(tmp_path, key_encryption_key=KEK) as (http, store, _clock):
        register_client(store, redirect_uris=("https://spa.example/cb",))
        answer = http.get(DISCOVERY, headers={"Origin": "https://spa.example"})
        unregistered = http.get(DISCOVERY, headers={"Origin": "https://new.example"})
    assert answer.headers["access-control-allow-origin"] == "https://spa.example"
    # A public document: any origin reads it (a browser client not registered yet discovers the
    # server before it registers), never with credentials.
    assert unregistered.headers["access-control-allow-origin"] == "https://new.example"
    assert "access-control-allow-credentials" not in unregistered.headers
