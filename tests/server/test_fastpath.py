"""The fast-path switch (`Settings.fast_paths`, baton.server.fastpath): off, no short cut is
installed or taken; on or off, the machine endpoints answer the same, byte for byte."""

from __future__ import annotations

import random
import types
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from starlette.applications import Starlette

from baton.core import tokens
from baton.server import fastpath
from baton.server.endpoints.errors import NoStoreJSON
from baton.server.fastpath import onewrite
from baton.server.fastpath.machine import MachineEndpoints
from tests.support import (
    REDIRECT_URI,
    authorize,
    register_client,
    register_user,
    running_app,
)


def middleware_of(app: Starlette) -> list[type]:
    return [m.cls for m in app.user_middleware]  # type: ignore[misc]


@pytest.fixture(autouse=True)
def _switch_restored() -> Iterator[None]:
    before = NoStoreJSON.short_cut
    yield
    NoStoreJSON.short_cut = before


@pytest.mark.parametrize("enabled", [True, False])
def test_the_switch_decides_every_short_cut(tmp_path: Path, enabled: bool) -> None:
    with running_app(tmp_path, fast_paths=enabled) as (http, _store, _clock):
        app = http.app
        assert isinstance(app, Starlette)
        assert (MachineEndpoints in middleware_of(app)) is enabled
        assert NoStoreJSON.short_cut is enabled
    assert fastpath.http_protocol(enabled) == (onewrite.Protocol if enabled else "httptools")


# What a bad client, a resource server and a client send: code exchange, refresh, replay,
# introspection, revocation, and the errors on the way.
def exchange(tmp_path: Path, enabled: bool, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    # The same random bytes in both runs: the same tokens, so the same bodies.
    draws = random.Random(23)
    monkeypatch.setattr(tokens, "secrets", types.SimpleNamespace(token_bytes=draws.randbytes))
    answers: list[object] = []

    def keep(response: httpx2.Response) -> dict[str, object]:
        headers = [(k, v) for k, v in response.headers.multi_items() if k != "date"]
        answers.append((response.status_code, headers, response.content))
        body: dict[str, object] = response.json() if response.content else {}
        return body

    with running_app(tmp_path, fast_paths=enabled) as (http, store, _clock):
        register_user(store)
        client = register_client(store)
        api = register_client(store, resource_server=True, name="api")
        http.headers["X-Request-ID"] = "same-in-both-runs"
        query, verifier = authorize(http, client)
        code = {
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier or "",
        }
        pair = keep(http.post("/token", data=code, auth=client.basic))
        keep(http.post("/token", data=code, auth=(client.id, "wrong")))  # 401, WWW-Authenticate
        keep(http.post("/token", data={"grant_type": "password"}, auth=client.basic))
        keep(http.post("/token", content=b"\xff", auth=client.basic))
        keep(http.get("/token"))  # 405, Allow
        keep(http.post("/token/", data=code))  # 307 to /token
        grant = {"grant_type": "refresh_token", "refresh_token": str(pair["refresh_token"])}
        second = keep(http.post("/token", data=grant, auth=client.basic))
        for token in (second["access_token"], pair["access_token"], "bat_at_nothing"):
            keep(http.post("/introspect", data={"token": token}, auth=api.basic))
        keep(http.post("/introspect", data={"token": "x"}, auth=(api.id, "wrong")))
        keep(http.post("/revoke", data={"token": second["refresh_token"]}, auth=client.basic))
        keep(http.post("/revoke", data={}, auth=client.basic))
        keep(http.post("/introspect", data={"token": second["access_token"]}, auth=api.basic))
        keep(http.post("/token", data=code, auth=client.basic))  # the code's replay
    return answers


def test_the_machine_endpoints_answer_the_same_with_the_switch_on_and_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "on").mkdir()
    (tmp_path / "off").mkdir()
    on = exchange(tmp_path / "on", True, monkeypatch)
    off = exchange(tmp_path / "off", False, monkeypatch)
    assert len(on) == len(off) == 15
    for step, (fast, general) in enumerate(zip(on, off, strict=True)):
        assert fast == general, f"step {step}"
