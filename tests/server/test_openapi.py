"""The OpenAPI document's body schemas are generated from the wire types (`baton.wire`), which
the SDK and the resource-server middleware import without the server; its version is the
installed package's."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

import baton
from baton import wire
from baton.config import Settings
from baton.resource.index import RevocationEvent as ResourceEvent
from baton.server.endpoints import openapi
from baton.server.endpoints.feed import event_body
from baton.server.routes import TABLE
from baton.store.base import RevocationEvent
from tests.audience import API_A, API_B, client_credentials, register
from tests.support import introspect, running_app

WIRE_SCHEMAS = {
    "TokenResponse": wire.TokenResponse,
    "OAuthError": wire.ErrorResponse,
    "ActiveToken": wire.ActiveToken,
    "InactiveToken": wire.InactiveToken,
    "RevocationEvent": wire.FeedEvent,
    "RevocationPage": wire.FeedPage,
}


@pytest.mark.parametrize("name", WIRE_SCHEMAS)
def test_a_body_schema_has_the_members_of_its_wire_type(name: str) -> None:
    shape: Any = WIRE_SCHEMAS[name]
    schema = openapi_document()["components"]["schemas"][name]
    assert set(schema["properties"]) == set(typing.get_type_hints(shape))
    assert set(schema["required"]) == shape.__required_keys__


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
    openapi.version.cache_clear()
    monkeypatch.setattr(
        importlib.metadata, "packages_distributions", lambda: {"baton": ["baton-x"]}
    )
    monkeypatch.setattr(importlib.metadata, "version", lambda name: f"{name} 9.8.7")
    try:
        assert openapi_document()["info"]["version"] == "baton-x 9.8.7"
        openapi.version.cache_clear()
        monkeypatch.setattr(importlib.metadata, "packages_distributions", dict)
        assert openapi_document()["info"]["version"] == baton.__version__
    finally:
        openapi.version.cache_clear()


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
