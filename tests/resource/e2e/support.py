"""Real processes for the baton.resource end-to-end tests and benchmarks: the example API under
uvicorn, grants through the real login and consent pages (one browser session, so a sign-in is
paid once), and a loopback TCP proxy whose connections can be cut."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import requests  # type: ignore[import-untyped,unused-ignore]

from tests.e2e.conftest import (
    CLIENT_SCOPE,
    REDIRECT_URI,
    Server,
    free_port,
    pkce_pair,
    run_cli,
    spawn_uvicorn,
    visit,
)

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class ExampleApi:
    """examples/api.py under uvicorn, in front of one Baton server."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_api(
    server: Server | None,
    directory: Path,
    *,
    factory: str = "examples.api:create_app",
    env: dict[str, str] | None = None,
) -> ExampleApi:
    """Starts the example API and waits until its feed is in sync (`/health` answers 200)."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = directory / f"api-{port}.log"
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
        ),
        **(env or {}),
    }
    if server is not None:
        environment |= {
            "BATON_ISSUER": server.url,
            "BATON_RS_ID": server.resource_server.client_id,
            "BATON_RS_SECRET": server.resource_server.client_secret,
            # The seeded client has no resources: its tokens are for the issuer.
            "BATON_AUDIENCE": server.url,
            **(env or {}),
        }
    process = spawn_uvicorn(["--factory", factory], port, environment, log)
    api = ExampleApi(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the example API exited:\n{api.output()}")
        try:
            if httpx.get(api.url + "/health").status_code == 200:
                return api
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    api.stop()
    raise RuntimeError(f"the example API did not get in sync:\n{api.output()}")


@dataclass
class Grants:
    """Grants through the real /authorize pages, signed in once."""

    server: Server
    browser: requests.Session = field(default_factory=requests.Session)
    http: httpx.Client = field(default_factory=httpx.Client)

    def pair(self, scope: str = CLIENT_SCOPE, **token_params: str) -> dict[str, Any]:
        verifier, challenge = pkce_pair()
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.server.client.client_id,
                "redirect_uri": REDIRECT_URI,
                "scope": scope,
                "state": "s",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        found = visit(self.browser, self.server, f"{self.server.authorize_url}?{query}")
        response = self.http.post(
            self.server.token_url,
            data={
                "grant_type": "authorization_code",
                "code": found.query["code"][0],
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
                **token_params,
            },
            auth=self.server.client.basic,
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def refresh(self, refresh_token: str) -> httpx.Response:
        return self.http.post(
            self.server.token_url,
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
            auth=self.server.client.basic,
        )

    def revoke(self, token: str) -> None:
        response = self.http.post(
            self.server.url + "/revoke", data={"token": token}, auth=self.server.client.basic
        )
        assert response.status_code == 200, response.text

    def close(self) -> None:
        self.browser.close()
        self.http.close()


def first_rejection(
    http: httpx.Client, url: str, token: str, timeout: float = 5.0
) -> tuple[float, httpx.Response]:
    """Calls `url` with the token back to back until it is refused; returns when (perf_counter
    seconds) the refusing answer arrived, and that answer."""
    headers = {"authorization": f"Bearer {token}"}
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        response = http.get(url, headers=headers)
        if response.status_code != 200:
            return time.perf_counter(), response
    raise AssertionError(f"the token was still accepted after {timeout}s")


def keys_rotate(server: Server) -> str:
    return run_cli("keys", "rotate", "--db", str(server.db), "--json").stdout
