"""examples/fastapi_app.py, docs/middleware.md's ten-line FastAPI app, on the fake server.

(No `from __future__ import annotations` here or there: FastAPI reads the annotations.)"""

import importlib
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest
from starlette.testclient import TestClient

from tests.resource.fakes import ISSUER, RS_ID, RS_SECRET, FakeAuthServer

pytest.importorskip("fastapi")


@pytest.fixture
def example(fake: FakeAuthServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.setenv("BATON_ISSUER", ISSUER)
    monkeypatch.setenv("BATON_RS_ID", RS_ID)
    monkeypatch.setenv("BATON_RS_SECRET", RS_SECRET)
    monkeypatch.setenv("BATON_AUDIENCE", ISSUER)  # the fake issues tokens for no resource
    sys.modules.pop("examples.fastapi_app", None)
    module = importlib.import_module("examples.fastapi_app")
    verifier = module.verifier
    transport = fake.transport()
    verifier._transport = verifier._async_transport = transport
    verifier.feed._transport = transport
    verifier._clock = lambda: fake.now
    yield module
    verifier.stop()


def test_the_ten_line_fastapi_app(fake: FakeAuthServer, example: ModuleType) -> None:
    with TestClient(example.app) as http:
        assert example.verifier.feed.wait_synced(5)
        token = fake.opaque_token(scope="read")
        ok = http.get("/notes", headers={"authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and ok.json() == {"owner": "alice"}
        assert http.get("/notes").headers["www-authenticate"] == 'Bearer realm="api"'
        writer_only = fake.opaque_token(scope="write")
        denied = http.get("/notes", headers={"authorization": f"Bearer {writer_only}"})
        assert denied.status_code == 403
        assert denied.headers["www-authenticate"].endswith('scope="read"')
        jwt = fake.jwt(scope="read")
        assert http.get("/notes", headers={"authorization": f"Bearer {jwt}"}).status_code == 200
