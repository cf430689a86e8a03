"""RFC 9728 Protected Resource Metadata for any resource server: the document served by
`BatonMiddleware`, and `resource_metadata` in its challenges and in the Flask helper's, on the
fake authorization server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from baton.resource import BatonMiddleware, ResourceMetadata, VerifierUnavailable
from tests.resource.conftest import VerifierFactory
from tests.resource.fakes import ISSUER, FakeAuthServer

RESOURCE = "https://notes.example/api"
METADATA_URL = "https://notes.example/.well-known/oauth-protected-resource/api"
METADATA = ResourceMetadata(
    RESOURCE, [ISSUER], scopes_supported=["read"], resource_name="Notes", extra={"x": 1}
)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def notes(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


def test_the_middleware_serves_the_metadata_and_names_it_in_its_challenges(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier(start=False, feed=False)
    app = Starlette(routes=[Route("/api", notes)])
    app.add_middleware(
        BatonMiddleware, verifier=verifier, scopes=["read"], resource_metadata=METADATA
    )
    with TestClient(app, base_url="https://notes.example") as http:
        for path in (
            "/.well-known/oauth-protected-resource/api",
            "/.well-known/oauth-protected-resource",
        ):
            document = http.get(path)  # no token needed
            assert document.status_code == 200, document.text
            assert document.json() == {
                "resource": RESOURCE,
                "authorization_servers": [ISSUER],
                "bearer_methods_supported": ["header"],
                "scopes_supported": ["read"],
                "resource_name": "Notes",
                "x": 1,
            }
            assert document.headers["access-control-allow-origin"] == "*"
        assert http.post("/.well-known/oauth-protected-resource/api").status_code == 405
        missing = http.get("/api")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == (
            f'Bearer realm="api", resource_metadata="{METADATA_URL}"'
        )
        invalid = http.get("/api", headers=bearer(fake.opaque_token(active=False)))
        assert invalid.headers["www-authenticate"].endswith(f'resource_metadata="{METADATA_URL}"')
        assert 'error="invalid_token"' in invalid.headers["www-authenticate"]
        lacking = http.get("/api", headers=bearer(fake.opaque_token(scope="write")))
        assert lacking.status_code == 403
        assert lacking.headers["www-authenticate"].endswith(
            f'scope="read", resource_metadata="{METADATA_URL}"'
        )
        assert http.get("/api", headers=bearer(fake.opaque_token(scope="read"))).status_code == 200


def test_unavailable_has_no_challenge_and_a_retry_after() -> None:
    status, headers, body = VerifierUnavailable("down").response_parts("api", METADATA_URL)
    assert (status, headers["retry-after"]) == (503, "1")
    assert "www-authenticate" not in headers and b"temporarily_unavailable" in body


def test_the_flask_helper_names_the_metadata(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    flask = pytest.importorskip("flask")
    from baton.resource import flask_protect

    verifier = make_verifier(start=False, feed=False)
    app = flask.Flask(__name__)

    @app.get("/api")  # type: ignore[untyped-decorator,unused-ignore]
    @flask_protect(verifier, "read", resource_metadata=METADATA)
    def api() -> dict[str, bool]:
        return {"ok": True}

    answer = app.test_client().get("/api")
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == (
        f'Bearer realm="api", resource_metadata="{METADATA_URL}"'
    )


def test_baton_resource_imports_without_the_mcp_sdk() -> None:
    # The `mcp` extra is optional: only baton.resource.mcp imports it.
    src = str(Path(__file__).resolve().parents[2] / "src")
    code = (
        f"import sys; sys.path.insert(0, {src!r}); sys.modules['mcp'] = None; "
        "import baton.resource; print('baton.resource.mcp' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert (result.returncode, result.stdout) == (0, "False\n"), result.stderr
