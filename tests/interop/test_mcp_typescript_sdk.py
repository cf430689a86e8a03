"""The TypeScript MCP SDK's client (`@modelcontextprotocol/sdk` from npm, current 1.x,
unmodified) against an MCP server of the `mcp` Python SDK protected by Baton, on a real
`baton serve` (issue 26, "How it is checked").

Two node processes (mcp_typescript_client.mjs) run at once, one per mode: `registration` (the
SDK registers at Baton's /register, RFC 7591) and `preregistered` (`baton client create
--public`). Each authorizes through Baton's real login and consent pages (this test drives them
when the SDK's `redirectToAuthorization` prints the URL, and hands the redirect back), calls a
tool, then calls it again after each of three expiries of its 1 s access token: the MCP server
answers 401, the SDK refreshes (a new refresh token each time) and retries, without a new
authorization. Then Baton is stopped: the MCP server answers 503, the SDK's calls fail and it
starts no authorization. Without node and npm the tests are skipped, except in CI (CI=true).
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.interop.conftest import Browser, ClientSpec, OidcServer
from tests.interop.mcp_harness import MCP_SCOPE, McpServer, install_mcp_sdk, serve_mcp

pytestmark = pytest.mark.e2e

MODES = ("registration", "preregistered")
ROTATIONS = 3
REDIRECTS = {
    "registration": "http://127.0.0.1:9321/mcp-ts-registration/callback",
    "preregistered": "http://127.0.0.1:9322/mcp-ts-preregistered/callback",
}
TIMEOUT = 60.0


@dataclass
class Run:
    """What one node process printed, line by line, and how it ended."""

    mode: str
    lines: list[dict[str, Any]] = field(default_factory=list)
    stderr: str = ""
    code: int | None = None
    problem: str | None = None  # what went wrong on this side (the pages, a timeout)
    missing: str | None = None  # what Baton lacks for this mode, if the run broke on it

    def first(self, key: str) -> dict[str, Any] | None:
        return next((line for line in self.lines if key in line), None)

    def calls(self) -> list[dict[str, Any]]:
        return [line for line in self.lines if "called" in line]

    def done(self) -> dict[str, Any]:
        line = self.first("done")
        if line is None:
            self.fail()
        assert line is not None
        done: dict[str, Any] = line["done"]
        return done

    def fail(self) -> None:
        failed = self.first("failed")
        if self.missing is not None:
            pytest.xfail(self.missing)
        pytest.fail(
            f"{self.mode}: {self.problem or ''} exit {self.code}\n"
            f"{json.dumps(failed or self.lines[-3:], indent=1)}\n{self.stderr[-3000:]}"
        )


@dataclass
class Record:
    runs: dict[str, Run]
    baton: OidcServer
    mcp: McpServer
    advertised: dict[str, Any]


@pytest.fixture(scope="module")
def script() -> Path:
    return install_mcp_sdk()  # first: no server starts without node


@pytest.fixture(scope="module")
def servers(
    script: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[OidcServer, McpServer]]:
    def clients(mcp_url: str) -> list[ClientSpec]:
        return [
            ClientSpec(
                "mcp-ts-preregistered",
                (REDIRECTS["preregistered"],),
                scope=f"{MCP_SCOPE} offline_access",
                public=True,
                flags=("--resource", mcp_url),
            )
        ]

    baton, mcp = serve_mcp(
        tmp_path_factory.mktemp("baton-mcp-ts"),
        clients,
        access_ttl=1,
        registration="open",
        dynamic_client_scopes=MCP_SCOPE,
    )
    try:
        yield baton, mcp
    finally:
        mcp.stop()
        baton.stop()


def drive(
    process: subprocess.Popen[str],
    run: Run,
    baton: OidcServer,
    settled: threading.Event,
    stopped: threading.Event,
) -> None:
    """Reads the script's lines: takes Baton's pages for each authorization URL it prints and
    answers with the redirect; at {"ready": "stop"} says so (`settled`), waits until Baton is
    stopped (`stopped`) and tells the script to go on."""
    assert process.stdin is not None and process.stdout is not None
    try:
        for raw in process.stdout:
            line = json.loads(raw)
            run.lines.append(line)
            if "authorize" in line:
                with Browser(baton) as browser:
                    visit = browser.follow(line["authorize"], REDIRECTS[run.mode])
                process.stdin.write(json.dumps({"callback": visit.location}) + "\n")
                process.stdin.flush()
            elif "ready" in line:
                settled.set()
                stopped.wait(timeout=TIMEOUT)
                process.stdin.write('{"go": true}\n')
                process.stdin.flush()
    except Exception as exc:
        run.problem = f"{type(exc).__name__}: {exc}"
        process.kill()
    finally:
        settled.set()


@pytest.fixture(scope="module")
def record(script: Path, servers: tuple[OidcServer, McpServer]) -> Record:
    baton, mcp = servers
    advertised = baton.discovery()
    runs = {mode: Run(mode) for mode in MODES}
    preregistered = baton.client("mcp-ts-preregistered").client_id
    settled = {mode: threading.Event() for mode in MODES}
    stopped = threading.Event()
    processes: dict[str, subprocess.Popen[str]] = {}
    threads = []
    for mode in MODES:
        processes[mode] = subprocess.Popen(
            ["node", str(script), mcp.url, mode, REDIRECTS[mode], preregistered, str(ROTATIONS)],
            cwd=script.parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        thread = threading.Thread(
            target=drive,
            args=(processes[mode], runs[mode], baton, settled[mode], stopped),
            daemon=True,
        )
        thread.start()
        threads.append(thread)
    # Every run rotated (or broke): Baton stops, and the runs go on without it.
    for event in settled.values():
        event.wait(timeout=TIMEOUT)
    baton.process.kill()
    baton.process.wait(timeout=10)
    stopped.set()
    for mode, thread in zip(MODES, threads, strict=True):
        thread.join(timeout=TIMEOUT)
        process = processes[mode]
        if thread.is_alive():
            runs[mode].problem = f"no end within {TIMEOUT} s"
            process.kill()
        try:
            runs[mode].code = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        assert process.stderr is not None
        runs[mode].stderr = process.stderr.read()
    registration = runs["registration"]
    if registration.code != 0 and not advertised.get("registration_endpoint"):
        registration.missing = (
            "Baton advertises no registration_endpoint: dynamic registration is not built"
        )
    return Record(runs, baton, mcp, advertised)


@pytest.mark.parametrize("mode", MODES)
def test_authorization_and_tool_call(record: Record, mode: str) -> None:
    """Discovery through the MCP server's RFC 9728 metadata, (registration at Baton's
    /register,) the login and consent pages, a tool call with a token for the MCP server (the
    adapter accepts only a token whose `aud` names it, and the SDK checks it again:
    `validate_token_resource`)."""
    run = record.runs[mode]
    done = run.done()
    first = run.first("called")
    assert first is not None and first["step"] == "first"
    answer = first["called"]
    assert answer["subject"] == "alice"
    assert MCP_SCOPE in answer["scopes"]
    if mode == "registration":
        assert done["registered"] is not None
        assert answer["client_id"] == done["registered"]
    else:
        assert answer["client_id"] == record.baton.client("mcp-ts-preregistered").client_id


@pytest.mark.parametrize("mode", MODES)
def test_refresh_rotates_without_a_new_authorization(record: Record, mode: str) -> None:
    """After each expiry the MCP server's 401 makes the SDK refresh: a new access and refresh
    token each time (the old refresh token rotated out), the call answered, one authorization."""
    run = record.runs[mode]
    done = run.done()
    calls = run.calls()
    assert [c["step"] for c in calls] == ["first"] + [f"rotation {i + 1}" for i in range(ROTATIONS)]
    saved = done["saved"]
    assert len(saved) == ROTATIONS + 1, saved
    assert len({s["refresh"] for s in saved}) == ROTATIONS + 1, "every refresh rotated"
    assert len({s["access"] for s in saved}) == ROTATIONS + 1
    assert all(s["refresh"] for s in saved)
    assert done["authorizations"] == 1


@pytest.mark.parametrize("mode", MODES)
def test_baton_stopped_no_new_authorization(record: Record, mode: str) -> None:
    """Baton stopped: both calls fail with the MCP server's 503 (never a 401, which would send
    the SDK into an authorization against a server that is not there), and the SDK's
    redirectToAuthorization is not called again."""
    run = record.runs[mode]
    done = run.done()
    stopped = run.first("stopped")
    assert stopped is not None
    for call in stopped["stopped"]:
        assert call["raised"] is not None, call
        assert call["code"] == 503, call
    assert done["authorizations"] == 1
