"""`baton client create --resource-server --resource-uri URI` and `--resource URI` (RFC 8707):
resource servers are registered with their identifier, clients allowed only registered ones, and
the token endpoint then holds a client to them."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from baton.config import Settings
from baton.server.app import create_app
from baton.store.sql import SQLStore
from tests.test_cli import (  # noqa: F401 (fixtures)
    baton,
    create_client,
    db,
    failed,
    no_baton_environment,
)

API = "https://notes.api.test"


def test_resources_registered_and_allowed_from_the_command_line(db: str) -> None:  # noqa: F811
    api = create_client(db, "--resource-server", "--resource-uri", API, name="notes api")
    assert api["resource_uri"] == API and api["resource_server"] is True
    client = create_client(db, "--resource", API, "--resource", API)
    assert client["resources"] == [API] and client["resource_uri"] is None
    plain = create_client(db, name="plain")
    assert plain["resources"] == []
    app = create_app(Settings(issuer="http://baton.test"), SQLStore.open(db))
    with TestClient(app, base_url="http://baton.test") as http:

        def aud(credentials: dict[str, str], *resources: str) -> object:
            response = http.post(
                "/token",
                data={"grant_type": "client_credentials", "resource": list(resources)},
                auth=(credentials["client_id"], credentials["client_secret"]),
            )
            if response.status_code != 200:
                return response.json()["error"]
            seen = http.post(
                "/introspect",
                data={"token": response.json()["access_token"]},
                auth=(api["client_id"], api["client_secret"]),
            )
            return seen.json()["aud"]

        assert aud(client) == API
        assert aud(client, API) == API
        assert aud(plain, API) == "invalid_target"
        assert aud(plain) == "http://baton.test"


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("https://api.test/#x", "fragment"),
        ("http://api.test", "https"),
        ("/api", "absolute"),
        ("urn:example:api", "absolute"),
        ("ftp://api.test", "https"),
    ],
)
def test_a_bad_resource_uri_is_refused(db: str, uri: str, says: str) -> None:  # noqa: F811
    result = baton(
        "client", "create", "--db", db, "--name", "x", "--resource-server", "--resource-uri", uri
    )
    failed(result, says)


def test_resource_refusals(db: str) -> None:  # noqa: F811
    # Not a resource server: --resource-uri is its identifier, so it must be one.
    failed(
        baton("client", "create", "--db", db, "--name", "x", "--resource-uri", API),
        "--resource-server",
    )
    # Unregistered: a client may be allowed only a registered resource server's URI.
    failed(baton("client", "create", "--db", db, "--name", "x", "--resource", API), "registered")
    create_client(db, "--resource-server", "--resource-uri", API, name="api")
    # Unique: one identifier, one resource server.
    taken = baton(
        "client", "create", "--db", db, "--name", "y", "--resource-server", "--resource-uri", API
    )
    failed(taken, "already registered")
    failed(
        baton(
            "client",
            "create",
            "--db",
            db,
            "--name",
            "x",
            "--resource",
            API,
            "--resource",
            "https://other.test",
        ),
        "https://other.test",
    )
