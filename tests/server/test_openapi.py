"""The OpenAPI document's body and form schemas are generated from the wire types (`baton.wire`),
which the SDK and the resource-server middleware import without the server, and the handlers
read the forms by the names declared there; the document's version is the installed package's."""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

import baton
from baton import wire
from baton.config import Settings
from baton.core.keys import ALGORITHMS, LEGACY_ALGORITHMS
from baton.core.policy import RetryPolicy
from baton.resource.index import RevocationEvent as ResourceEvent
from baton.server.endpoints import (
    authorize,
    clientauth,
    openapi,
    revocation,
    token,
    userinfo,
)
from baton.server.endpoints.feed import event_body
from baton.server.endpoints.metadata import metadata_document
from baton.server.routes import TABLE
from baton.store.base import RevocationEvent
from tests.audience import API_A, API_B, client_credentials, register
from tests.support import introspect, running_app

KEK = "correct horse battery staple, 32+ chars"

WIRE_SCHEMAS = {
    "TokenResponse": wire.TokenResponse,
    "OAuthError": wire.ErrorResponse,
    "ActiveToken": wire.ActiveToken,
    "InactiveToken": wire.InactiveToken,
    "RevocationEvent": wire.FeedEvent,
    "RevocationPage": wire.FeedPage,
    "AuthorizationCodeGrant": wire.AuthorizationCodeGrant,
    "RefreshTokenGrant": wire.RefreshTokenGrant,
    "ClientCredentialsGrant": wire.ClientCredentialsGrant,
    "TokenParameter": wire.TokenParameter,
    "UserInfoForm": wire.UserInfoForm,
    "Metadata": wire.Metadata,
    "JWKS": wire.KeySet,
}


@pytest.mark.parametrize("name", WIRE_SCHEMAS)
def test_a_body_schema_has_the_members_of_its_wire_type(name: str) -> None:
    shape: Any = WIRE_SCHEMAS[name]
    schema = openapi_document()["components"]["schemas"][name]
    assert set(schema["properties"]) == set(typing.get_type_hints(shape))
    assert set(schema["required"]) == shape.__required_keys__


# The pages' forms, written in their operations: (path, method) -> wire type.
PAGE_FORMS = {
    ("/authorize", "post"): wire.ConsentForm,
    ("/login", "post"): wire.LoginForm,
    ("/logout", "post"): wire.LogoutForm,
}


@pytest.mark.parametrize("where", PAGE_FORMS)
def test_a_page_form_schema_has_the_members_of_its_wire_type(where: tuple[str, str]) -> None:
    shape: Any = PAGE_FORMS[where]
    operation = openapi_document()["paths"][where[0]][where[1]]
    schema = operation["requestBody"]["content"][openapi.FORM]["schema"]
    assert set(schema["properties"]) == set(typing.get_type_hints(shape))
    assert set(schema["required"]) == shape.__required_keys__


def test_the_authorization_request_is_the_query_of_get_authorize() -> None:
    parameters = openapi_document()["paths"]["/authorize"]["get"]["parameters"]
    assert [p["name"] for p in parameters] == list(authorize.REQUEST_PARAMS)
    assert tuple(typing.get_type_hints(wire.AuthorizationRequest)) == authorize.REQUEST_PARAMS


def test_the_token_request_is_one_form_per_advertised_grant_type() -> None:
    document = openapi_document()
    token_request = document["components"]["schemas"]["TokenRequest"]
    mapping = token_request["discriminator"]["mapping"]
    advertised = metadata_document(Settings(), TABLE.metadata_paths())["grant_types_supported"]
    assert set(mapping) == set(advertised)
    assert [m["$ref"] for m in token_request["oneOf"]] == list(mapping.values())
    for grant_type, ref in mapping.items():
        grant = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
        assert grant["properties"]["grant_type"] == {"const": grant_type}


# The forms each handler module reads: every name it reads is declared there.
READERS = {
    token: wire.AuthorizationCodeGrant.__annotations__.keys()
    | wire.RefreshTokenGrant.__annotations__.keys()
    | wire.ClientCredentialsGrant.__annotations__.keys(),
    revocation: wire.TokenParameter.__annotations__.keys(),
    clientauth: wire.ClientAuthForm.__annotations__.keys(),
    userinfo: wire.UserInfoForm.__annotations__.keys(),
    authorize: wire.ConsentForm.__annotations__.keys()
    | wire.LoginForm.__annotations__.keys()
    | wire.LogoutForm.__annotations__.keys(),
}


def read_parameters(module: types.ModuleType) -> set[str]:
    """The names a module reads with `form.get`, `form.require` or `form.every`."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "form"
            and node.func.attr in ("get", "require", "every")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return names


@pytest.mark.parametrize("module", READERS, ids=lambda m: m.__name__)
def test_the_handlers_read_the_declared_parameters(module: types.ModuleType) -> None:
    read = read_parameters(module)
    assert read, "the scan found no parameter: has the handlers' style changed?"
    assert read <= READERS[module], f"read but not declared in baton.wire: {read - READERS[module]}"


def openapi_document() -> dict[str, Any]:
    return openapi.openapi_document(Settings(), TABLE)


def validator(name: str) -> Any:
    document = openapi_document()
    root = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema_rs.Draft202012Validator(root)


def test_an_introspected_token_for_several_resources_matches_the_schema(tmp_path: Path) -> None:
    """RFC 7662 §2.2: several audiences are an array; the document once said a string."""
    with running_app(tmp_path) as (http, store, _clock):
        resource_server = register(store, resource_uri=API_A, name="api a")
        register(store, resource_uri=API_B, name="api b")
        client = register(store, allowed=[API_A, API_B])
        issued = client_credentials(http, client)
        assert issued.status_code == 200, issued.text
        assert validator("TokenResponse").is_valid(issued.json())
        answer = introspect(http, resource_server, issued.json()["access_token"])
    assert answer["aud"] == [API_A, API_B]
    assert validator("Introspection").is_valid(answer)
    assert validator("ActiveToken").is_valid(answer | {"aud": API_A})
    assert not validator("ActiveToken").is_valid(answer | {"aud": 7})


def test_the_version_is_the_installed_distributions(monkeypatch: pytest.MonkeyPatch) -> None:
    """`baton-oauth`'s version, even where another project's `baton` distribution is installed
    too (and claims the `baton` import name); the source tree's when it is not installed."""
    installed = {"baton": "0.0.1", "baton-oauth": "9.8.7"}

    def version(name: str) -> str:
        if name not in installed:
            raise importlib.metadata.PackageNotFoundError(name)
        return installed[name]

    openapi.version.cache_clear()
    monkeypatch.setattr(
        importlib.metadata, "packages_distributions", lambda: {"baton": ["baton", "baton-oauth"]}
    )
    monkeypatch.setattr(importlib.metadata, "version", version)
    try:
        assert openapi_document()["info"]["version"] == "9.8.7"
        openapi.version.cache_clear()
        del installed["baton-oauth"]
        assert openapi_document()["info"]["version"] == baton.__version__
    finally:
        openapi.version.cache_clear()


def test_the_metadata_and_the_key_set_served_are_their_wire_types(tmp_path: Path) -> None:
    with running_app(tmp_path, access_token_format="jwt", key_encryption_key=KEK) as running:
        http = running[0]
        metadata = http.get("/.well-known/oauth-authorization-server").json()
        key_set = http.get("/jwks.json").json()
    # With OpenID Connect on (a key-encryption key), every member; the endpoints of routes not
    # in the table yet (RP-Initiated Logout's) aside, and /register's while registration is off.
    unrouted = {"userinfo_endpoint", "end_session_endpoint"} - set(TABLE.metadata_paths())
    unrouted.add("registration_endpoint")
    assert set(metadata) == set(typing.get_type_hints(wire.Metadata)) - unrouted
    assert validator("Metadata").is_valid(metadata)
    assert key_set["keys"] and validator("JWKS").is_valid(key_set)
    for key in key_set["keys"]:
        assert not set(typing.get_type_hints(wire.PublicKey)) - set(key)
    # The values the wire types spell out are the server's own.
    hints = typing.get_type_hints(wire.RotationPolicy)
    assert typing.get_args(hints["retry_policy"]) == tuple(RetryPolicy)
    # A key is published under its stored name: a current one, or an old one (EdDSA) it had
    # before the rename.
    published = (*ALGORITHMS, *LEGACY_ALGORITHMS)
    assert typing.get_args(typing.get_type_hints(wire.PublicKey)["alg"]) == published


def test_the_wire_types_import_nothing_but_the_standard_library() -> None:
    code = (
        "import sys; before = set(sys.modules); import baton.wire; "
        "print(sorted(m for m in set(sys.modules) - before "
        "if m.split('.')[0] not in sys.stdlib_module_names))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "['baton', 'baton.wire']"


@pytest.mark.parametrize("kind", ["access_token", "grant"])
def test_the_resource_server_reads_the_feed_events_the_server_writes(kind: str) -> None:
    stored = RevocationEvent(7, kind, "g1", "j1", bytes(32), 100, 200, 100)
    body = event_body(stored)
    assert validator("RevocationEvent").is_valid(body)
    read = ResourceEvent.from_json(body)
    assert (read.id, read.kind, read.grant_id, read.effective_at) == (7, kind, "g1", 100.0)
    if kind == "access_token":
        assert (read.jti, read.token_digest) == ("j1", "00" * 32)
