"""The ASGI middleware (Starlette, FastAPI), verify_request, and the Flask and Django helpers:
RFC 6750 answers on each."""

from __future__ import annotations

from typing import Any

import pytest
from examples.api import build
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from baton.resource import (
    BatonMiddleware,
    InvalidRequest,
    InvalidToken,
    MissingToken,
    bearer_token,
    principal_of,
    verify_request,
)
from tests.resource.conftest import VerifierFactory
from tests.resource.fakes import FakeAuthServer


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_bearer_token_parsing() -> None:
    assert bearer_token("Bearer abc.DEF-_~+/=") == "abc.DEF-_~+/="
    assert bearer_token("bearer  tok ") == "tok"
    for value in (None, "", "Basic dXNlcjpwYXNz", "Bearerx tok"):
        with pytest.raises(MissingToken):
            bearer_token(value)
    for value in ("Bearer", "Bearer a b", 'Bearer a"b'):
        with pytest.raises(InvalidRequest):
            bearer_token(value)


def test_example_api_answers_per_rfc_6750(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier(start=False)
    app = build(verifier)
    reader = fake.opaque_token(scope="read")
    with TestClient(app) as http:  # the lifespan starts the feed
        assert verifier.feed is not None and verifier.feed.wait_synced(5)
        ok = http.get("/hello", headers=bearer(reader))
        assert ok.status_code == 200 and ok.json()["hello"] == "alice"
        missing = http.get("/hello")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == 'Bearer realm="api"'
        bad = http.get("/hello", headers=bearer(fake.opaque_token(active=False)))
        assert bad.status_code == 401
        assert bad.headers["www-authenticate"] == (
            'Bearer realm="api", error="invalid_token", '
            'error_description="the access token is not active"'
        )
        assert bad.json()["error"] == "invalid_token"
        malformed = http.get("/hello", headers={"authorization": "Bearer a b"})
        assert malformed.status_code == 400
        assert 'error="invalid_request"' in malformed.headers["www-authenticate"]
        scope = http.post("/notes", headers=bearer(reader))
        assert scope.status_code == 403
        assert scope.headers["www-authenticate"].endswith('scope="write"')
        assert http.get("/health").json()["mode"] == "cached"  # a public path
    assert verifier.feed._thread is None  # the shutdown stopped it


def test_middleware_wide_scopes_and_websocket_refusal(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier()

    async def who(request: Request) -> JSONResponse:
        return JSONResponse({"sub": principal_of(request).subject})

    app = Starlette(routes=[Route("/", who)])
    app.add_middleware(BatonMiddleware, verifier=verifier, scopes=["admin"], realm="ops")
    with TestClient(app) as http:
        refused = http.get("/", headers=bearer(fake.opaque_token()))
        assert refused.status_code == 403
        assert refused.headers["www-authenticate"].startswith('Bearer realm="ops"')
        assert http.get("/", headers=bearer(fake.opaque_token(scope="admin"))).json() == {
            "sub": "alice"
        }
        from starlette.websockets import WebSocketDisconnect

        with pytest.raises(WebSocketDisconnect), http.websocket_connect("/") as ws:
            ws.receive_text()


def test_verify_request_with_plain_headers(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier()
    token = fake.opaque_token()
    assert verify_request(verifier, {"Authorization": f"Bearer {token}"}, "read").subject == "alice"
    assert verify_request(verifier, {"authorization": f"Bearer {token}"}).subject == "alice"
    with pytest.raises(MissingToken):
        verify_request(verifier, {})
    with pytest.raises(InvalidToken):
        verify_request(verifier, {"Authorization": "Bearer bat_at_nope"})


def test_flask_helper(fake: FakeAuthServer, make_verifier: VerifierFactory) -> None:
    flask = pytest.importorskip("flask")
    from baton.resource import flask_protect

    verifier = make_verifier()
    app = flask.Flask(__name__)

    @app.get("/notes")  # type: ignore[untyped-decorator,unused-ignore]
    @flask_protect(verifier, "read")
    def notes() -> dict[str, Any]:
        return {"owner": flask.g.principal.subject}

    @app.post("/notes")  # type: ignore[untyped-decorator,unused-ignore]
    @flask_protect(verifier, "admin", realm="notes")
    def write() -> dict[str, Any]:
        return {}

    http = app.test_client()
    token = fake.opaque_token()
    assert http.get("/notes", headers=bearer(token)).json == {"owner": "alice"}
    missing = http.get("/notes")
    assert (
        missing.status_code == 401 and missing.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    )
    bad = http.get("/notes", headers=bearer(fake.opaque_token(active=False)))
    assert bad.status_code == 401 and 'error="invalid_token"' in bad.headers["WWW-Authenticate"]
    denied = http.post("/notes", headers=bearer(token))
    assert denied.status_code == 403
    assert denied.headers["WWW-Authenticate"].startswith('Bearer realm="notes"')


def test_django_helper(fake: FakeAuthServer, make_verifier: VerifierFactory) -> None:
    pytest.importorskip("django")
    from django.conf import settings  # type: ignore[import-untyped,import-not-found,unused-ignore]

    if not settings.configured:
        settings.configure(DEBUG=False, ALLOWED_HOSTS=["*"], DEFAULT_CHARSET="utf-8")
    from django.http import JsonResponse  # type: ignore[import-untyped,import-not-found,unused-ignore]
    from django.test import RequestFactory  # type: ignore[import-untyped,import-not-found,unused-ignore]

    from baton.resource import django_protect

    verifier = make_verifier()

    @django_protect(verifier, "read")
    def notes(request: Any) -> Any:
        return JsonResponse({"owner": request.principal.subject})

    factory = RequestFactory()
    token = fake.opaque_token(scope="read")
    ok = notes(factory.get("/notes", HTTP_AUTHORIZATION=f"Bearer {token}"))
    assert ok.status_code == 200 and b"alice" in ok.content
    missing = notes(factory.get("/notes"))
    assert missing.status_code == 401 and missing["WWW-Authenticate"] == 'Bearer realm="api"'
    bad = notes(factory.get("/notes", HTTP_AUTHORIZATION="Bearer bat_at_x"))
    assert bad.status_code == 401 and 'error="invalid_token"' in bad["WWW-Authenticate"]

    @django_protect(verifier, "write")
    def write(request: Any) -> Any:
        return JsonResponse({})

    denied = write(factory.post("/notes", HTTP_AUTHORIZATION=f"Bearer {token}"))
    assert denied.status_code == 403 and 'scope="write"' in denied["WWW-Authenticate"]
