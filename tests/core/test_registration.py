"""RFC 7591 §2 client metadata: what dynamic registration and metadata documents accept, the
defaults they apply, and the RFC 7591 §3.2.2 code each refusal carries."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baton.core.registration import (
    ClientMetadata,
    RegistrationError,
    RegistrationPolicy,
    client_metadata,
)
from baton.core.vocabulary import ErrorCode

POLICY = RegistrationPolicy(scopes=frozenset({"read", "write", "openid"}), machine_grants=True)
DOCUMENT = RegistrationPolicy(scopes=frozenset({"read"}), document=True)
NATIVE = {"application_type": "native", "token_endpoint_auth_method": "none"}


def parsed(policy: RegistrationPolicy = POLICY, /, **members: Any) -> ClientMetadata:
    return client_metadata(members, policy)


def refused(members: Any, policy: RegistrationPolicy = POLICY) -> RegistrationError:
    with pytest.raises(RegistrationError) as caught:
        client_metadata(members, policy)
    return caught.value


def test_a_minimal_registration_gets_the_rfc_defaults() -> None:
    meta = parsed(redirect_uris=["https://app.example/cb"])
    # RFC 7591 §2: client_secret_basic, authorization_code and code by default; OpenID
    # Connect Registration §2: web; RFC 7591 §2 "MAY register ... a default set of scopes".
    assert meta.token_endpoint_auth_method == "client_secret_basic"
    assert meta.uses_secret and not meta.is_public
    assert meta.grant_types == ("authorization_code",)
    assert meta.response_types == ("code",)
    assert meta.application_type == "web"
    assert meta.scope == "openid read write"
    assert meta.members() == {
        "redirect_uris": ["https://app.example/cb"],
        "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "scope": "openid read write",
        "application_type": "web",
    }


def test_every_member_is_kept_and_unknown_ones_ignored() -> None:
    meta = parsed(
        redirect_uris=["https://app.example/cb", "https://app.example/cb"],
        client_name="Example App",
        contacts=["ops@app.example"],
        client_uri="https://app.example",
        logo_uri="https://app.example/logo.png",
        tos_uri="https://app.example/tos",
        policy_uri="http://127.0.0.1:8000/policy",
        software_id="4NRB1-0XZABZI9E6-5SM3R",
        software_version="2.1",
        grant_types=["authorization_code", "refresh_token"],
        scope="read delete",
        something_else={"nested": True},
        client_name_fr="Application",
        logo_uri_none=None,
    )
    assert meta.redirect_uris == ("https://app.example/cb",)
    assert meta.grant_types == ("authorization_code", "refresh_token")
    assert meta.scope == "read"  # narrowed: `delete` is not allowed
    assert meta.members()["contacts"] == ["ops@app.example"]
    assert meta.members()["policy_uri"] == "http://127.0.0.1:8000/policy"
    assert "something_else" not in meta.members()
    json.dumps(meta.members())


def test_null_members_count_as_absent() -> None:
    meta = parsed(redirect_uris=["https://app.example/cb"], scope=None, logo_uri=None)
    assert meta.scope == "openid read write" and meta.logo_uri is None


@pytest.mark.parametrize(
    "uri",
    [
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "https://app.example/cb#frag",
        "https://evil@app.example/cb",
        "file:///etc/passwd",
        "http://app.example/cb",
        "/relative/cb",
        "https://app.example/c b",
    ],
)
def test_unsafe_redirect_uris_are_refused_as_invalid_redirect_uri(uri: str) -> None:
    for kind in ({}, NATIVE):
        problem = refused({"redirect_uris": [uri], **kind})
        assert problem.code == ErrorCode.INVALID_REDIRECT_URI
        assert "redirect URI" in problem.description


@pytest.mark.parametrize(
    "uri",
    ["http://127.0.0.1:5555/cb", "http://[::1]/cb", "com.example.app:/cb", "https://localhost/cb"],
)
def test_a_web_application_has_https_redirects_off_localhost(uri: str) -> None:
    problem = refused({"redirect_uris": [uri], "application_type": "web"})
    assert problem.code == ErrorCode.INVALID_REDIRECT_URI
    assert "native" in problem.description  # it says what to register instead


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1:5555/cb",
        "http://[::1]/cb",
        "com.example.app:/cb",
        "http://localhost:3000/callback",  # what MCP clients register, naming no type
    ],
)
def test_metadata_naming_no_type_with_a_native_redirect_is_a_native_apps(uri: str) -> None:
    """RFC 7591 has no application_type: an OAuth native app registers without one."""
    meta = parsed(redirect_uris=[uri])
    assert meta.application_type == "native" and meta.redirect_uris == (uri,)


def test_metadata_naming_no_type_with_https_redirects_only_is_a_web_apps() -> None:
    assert parsed(redirect_uris=["https://a.b/c"]).application_type == "web"
    # ... and a web app stays off localhost, whatever it asks.
    problem = refused({"redirect_uris": ["https://a.b/c", "https://localhost/cb"]})
    assert problem.code == ErrorCode.INVALID_REDIRECT_URI


def test_localhost_is_a_native_apps_only() -> None:
    assert parsed(redirect_uris=["http://localhost/cb"], **NATIVE).redirect_uris
    problem = refused({"redirect_uris": ["http://localhost/cb"], "application_type": "web"})
    assert problem.code == ErrorCode.INVALID_REDIRECT_URI


@pytest.mark.parametrize(
    "uri", ["http://127.0.0.1:5555/cb", "http://[::1]/cb", "com.example.app:/cb", "https://a.b/c"]
)
def test_a_native_application_may_use_loopback_and_private_use_schemes(uri: str) -> None:
    meta = parsed(redirect_uris=[uri], **NATIVE)
    assert meta.redirect_uris == (uri,) and meta.is_public


def test_redirect_uris_are_required_for_the_code_grant_and_bounded() -> None:
    assert refused({}).code == ErrorCode.INVALID_REDIRECT_URI
    assert refused({"redirect_uris": []}).code == ErrorCode.INVALID_REDIRECT_URI
    assert refused({"redirect_uris": "https://a.example/cb"}).code == ErrorCode.INVALID_REDIRECT_URI
    many = [f"https://a.example/{i}" for i in range(21)]
    assert refused({"redirect_uris": many}).code == ErrorCode.INVALID_REDIRECT_URI
    long = "https://a.example/" + "a" * 2000
    assert refused({"redirect_uris": [long]}).code == ErrorCode.INVALID_REDIRECT_URI
    # A machine client needs none.
    machine = parsed(grant_types=["client_credentials"])
    assert machine.redirect_uris == () and machine.response_types == ()


@pytest.mark.parametrize(
    ("members", "says"),
    [
        ({"grant_types": ["implicit"]}, "one this server serves"),
        ({"grant_types": ["password", "implicit"]}, "one this server serves"),
        ({"grant_types": []}, "one this server serves"),
        ({"grant_types": "authorization_code"}, "grant_types"),
        ({"response_types": ["token"]}, "go together"),
        ({"grant_types": ["authorization_code"], "response_types": []}, "go together"),
        ({"grant_types": ["client_credentials"], "response_types": ["code"]}, "go together"),
        ({"grant_types": ["refresh_token"], "response_types": []}, "needs authorization_code"),
        (
            {"grant_types": ["client_credentials"], "token_endpoint_auth_method": "none"},
            "confidential",
        ),
        ({"token_endpoint_auth_method": "tls_client_auth"}, "token_endpoint_auth_method"),
        ({"token_endpoint_auth_method": "private_key_jwt"}, "jwks_uri"),
        (
            {"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "http://k.example/"},
            "https",
        ),
        (
            {"jwks_uri": "https://k.example/jwks", "jwks": {"keys": []}},
            "must not both",
        ),
        ({"application_type": "desktop"}, "application_type"),
        ({"scope": 'a"b'}, "scope"),
        ({"scope": ["read"]}, "scope"),
        ({"client_name": ""}, "client_name"),
        ({"client_name": "x" * 201}, "client_name"),
        ({"client_name": "line\nbreak"}, "client_name"),
        ({"contacts": "ops@a.example"}, "contacts"),
        ({"contacts": [f"{i}@a.example" for i in range(11)]}, "contacts"),
        ({"contacts": [3]}, "contacts"),
        ({"logo_uri": "javascript:alert(1)"}, "logo_uri"),
        ({"client_uri": "http://app.example/"}, "client_uri"),
        ({"tos_uri": "https://app.example/tos#x"}, "tos_uri"),
        ({"policy_uri": "https://u@app.example/"}, "policy_uri"),
        ({"logo_uri": "https://a.example/" + "l" * 2000}, "logo_uri"),
        ({"software_id": 7}, "software_id"),
    ],
)
def test_bad_metadata_is_invalid_client_metadata(members: dict[str, Any], says: str) -> None:
    problem = refused({"redirect_uris": ["https://app.example/cb"], **members})
    assert problem.code == ErrorCode.INVALID_CLIENT_METADATA
    assert says in problem.description


def test_grant_and_response_types_this_server_does_not_serve_are_dropped() -> None:
    # RFC 7591 §2 "MAY ... replace": what a client asks for just in case does not refuse it.
    meta = parsed(
        redirect_uris=["https://app.example/cb"],
        grant_types=["authorization_code", "urn:ietf:params:oauth:grant-type:device_code"],
        response_types=["code", "token"],
    )
    assert meta.grant_types == ("authorization_code",) and meta.response_types == ("code",)


def test_private_key_jwt_with_its_keys() -> None:
    meta = parsed(
        redirect_uris=["https://app.example/cb"],
        token_endpoint_auth_method="private_key_jwt",
        jwks_uri="https://app.example/jwks.json",
        grant_types=["authorization_code", "client_credentials"],
    )
    assert meta.jwks_uri == "https://app.example/jwks.json"
    assert not meta.is_public and not meta.uses_secret


def test_a_document_is_public_by_default_and_never_uses_a_secret() -> None:
    meta = parsed(DOCUMENT, redirect_uris=["http://127.0.0.1/cb"], application_type="native")
    assert meta.token_endpoint_auth_method == "none" and meta.scope == "read"
    for method in ("client_secret_basic", "client_secret_post"):
        problem = refused(
            {"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": method},
            DOCUMENT,
        )
        assert problem.code == ErrorCode.INVALID_CLIENT_METADATA


def test_scope_is_narrowed_never_refused() -> None:
    assert parsed(redirect_uris=["https://a.example/cb"], scope="admin").scope == ""
    assert parsed(redirect_uris=["https://a.example/cb"], scope="").scope == ""
    none_allowed = RegistrationPolicy()
    assert parsed(none_allowed, redirect_uris=["https://a.example/cb"]).scope == ""


def test_the_policys_resources_are_carried() -> None:
    policy = RegistrationPolicy(resources=("https://api.example", "https://api.example"))
    assert parsed(policy, redirect_uris=["https://a.example/cb"]).resources == (
        "https://api.example",
    )


def test_not_an_object_is_refused() -> None:
    values: list[object] = [None, [], "x", 3, [{"redirect_uris": []}]]
    for value in values:
        assert refused(value).code == ErrorCode.INVALID_CLIENT_METADATA


# -- any JSON: a RegistrationError or a value, never anything else --------------------------------

_URIS = st.sampled_from(
    [
        "https://a.example/cb",
        "http://127.0.0.1:1/cb",
        "com.example.app:/cb",
        "javascript:x",
        "http://[::1",
        "https://[::1]:99999/",
        "http://127.0.0.1:0/",
        "",
    ]
)
_WORDS = st.sampled_from(
    [
        "native",
        "web",
        "none",
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
        "authorization_code",
        "refresh_token",
        "client_credentials",
        "code",
        "token",
    ]
)
_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text() | _URIS | _WORDS
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)
_MEMBERS = st.sampled_from(
    [
        "redirect_uris",
        "token_endpoint_auth_method",
        "grant_types",
        "response_types",
        "scope",
        "application_type",
        "client_name",
        "contacts",
        "client_uri",
        "logo_uri",
        "tos_uri",
        "policy_uri",
        "jwks_uri",
        "jwks",
        "software_id",
        "software_version",
    ]
)
_VALUES = _JSON | st.lists(_URIS | _WORDS, max_size=4) | st.text()
_METADATA = st.dictionaries(_MEMBERS, _VALUES, max_size=10)


@settings(max_examples=150, deadline=None)
@given(raw=_METADATA | _JSON, document=st.booleans())
def test_any_json_is_a_value_or_a_registration_error(raw: object, document: bool) -> None:
    policy = RegistrationPolicy(scopes=frozenset({"read"}), document=document)
    try:
        meta = client_metadata(raw, policy)
    except RegistrationError as problem:
        assert problem.code in (ErrorCode.INVALID_REDIRECT_URI, ErrorCode.INVALID_CLIENT_METADATA)
        assert problem.description.isprintable()
        return
    # What was accepted is stored and answered as JSON, and is accepted again as it is (an
    # RFC 7592 read followed by an update of the same metadata changes nothing).
    assert client_metadata(json.loads(json.dumps(meta.members())), policy) == meta
    assert set(meta.scope.split()) <= {"read"}
