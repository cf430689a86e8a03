"""The MCP end-to-end scenario (issue 26, "How it is checked"), run once for both MCP test
modules (the `mcp_scenario` fixture of tests/interop/conftest.py): one Baton, one MCP server, one
https document host, and every client at once, so the whole costs one set of waits for tokens
to expire.

- One `baton serve` (OpenID Connect on, access tokens live ACCESS_TTL seconds, dynamic
  registration open, metadata documents allowed from loopback) and examples/mcp_server.py
  protected by `baton.resource.mcp` (mcp_harness).
- The `mcp` Python SDK's client in three modes, each its own SDK client (`Journey`):
  `document` (a client ID metadata document: its https URL on loopback is the client id),
  `registration` (RFC 7591 at Baton's /register), `preregistered` (`baton client create
  --public`). Each: authorization through the real login and consent pages (the SDK's redirect
  handler drives them), tool calls, three refreshes (each rotating the refresh token, no new
  authorization), an RFC 7009 revocation at /revoke that reaches the MCP server through the
  revocation feed, a new authorization after it.
- The TypeScript SDK's client (`@modelcontextprotocol/sdk` 1.x from npm,
  mcp_typescript_client.mjs) in the same three modes (`TsRun`): authorization through the
  pages, tool calls, two refreshes on the MCP server's 401.
- Negative cases (`Negatives`): a token for another resource shown to the MCP server; a refresh
  asking for a resource outside its grant; metadata documents Baton should accept.
- Then Baton is stopped (killed) right after every Python client refreshed: each client calls a
  tool with its still-valid access token (the MCP server answers 503), the MCP server answers a
  bare request 503, each client calls again once its token expired (its refresh finds no
  Baton); the TypeScript clients call twice (503 both times). No client may start a new
  authorization.

The scenario records what happened (`Scenario`); the tests check one part each. A mode whose
Baton feature is missing (its branch not merged) is recorded as such (`missing`), for an xfail.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import subprocess
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx
import pytest

from tests.interop import conftest
from tests.interop.conftest import ClientSpec, OidcServer
from tests.interop.mcp_harness import (
    MCP_SCOPE,
    UNUSED,
    DocumentServer,
    McpServer,
    MemoryStorage,
    SdkClient,
    authorize_in_browser,
    digest,
    install_mcp_sdk,
    serve_mcp,
)

MODES = ("document", "registration", "preregistered")
TS_MODES = ("document", "registration", "preregistered")
ROTATIONS = 3
TS_ROTATIONS = 2
FEED_LATENCY = 2.0  # seconds a revocation may take to reach the MCP server
# Access tokens' lifetime. 2 s, not 1: Baton counts `expires_in` from the next whole second
# (never overstating), so a 1 s token answered just after a second began says `expires_in: 0`;
# the Python SDK then sends its next request with no token at all and answers the 401 with a new
# authorization (seen on a busy machine).
ACCESS_TTL = 2
TS_TIMEOUT = 60.0
REDIRECTS = {
    "document": "http://127.0.0.1:9311/mcp-document/callback",
    "registration": "http://127.0.0.1:9312/mcp-registration/callback",
    "preregistered": "http://127.0.0.1:9313/mcp-preregistered/callback",
}
TS_REDIRECTS = {
    "document": "http://127.0.0.1:9323/mcp-ts-document/callback",
    "registration": "http://127.0.0.1:9321/mcp-ts-registration/callback",
    "preregistered": "http://127.0.0.1:9322/mcp-ts-preregistered/callback",
}
RAW_REDIRECT = "http://127.0.0.1:9314/mcp-raw/callback"
OTHER_API = "http://127.0.0.1:9/other-api"  # a second resource server, never running
ATTACKER = "https://attacker.example/mcp"
DOCUMENT_PATH = "/clients/mcp-e2e.json"
TS_DOCUMENT_PATH = "/clients/mcp-e2e-typescript.json"
EXAMPLE_PATH = "/clients/example.json"
EXAMPLE_REDIRECT = "http://127.0.0.1:3000/callback"
STEPS = ("authorize", "rotate", "revoke", "reauthorize", "stop", "done")
MODULES = ("tests.interop.test_mcp_python_sdk", "tests.interop.test_mcp_typescript_sdk")


@dataclass
class World:
    baton: OidcServer
    mcp: McpServer
    documents: DocumentServer
    advertised: dict[str, Any]  # Baton's metadata, read while it ran

    def document_url(self) -> str:
        return self.documents.url(DOCUMENT_PATH)


def start_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    documents = DocumentServer(tmp_path_factory.mktemp("documents"))
    documents.documents[DOCUMENT_PATH] = {
        "client_id": documents.url(DOCUMENT_PATH),
        "client_name": "MCP e2e (metadata document)",
        "redirect_uris": [REDIRECTS["document"]],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "application_type": "native",
    }
    documents.documents[TS_DOCUMENT_PATH] = {  # as a TypeScript app would write it
        "client_id": documents.url(TS_DOCUMENT_PATH),
        "client_name": "MCP e2e (TypeScript SDK, metadata document)",
        "redirect_uris": [TS_REDIRECTS["document"]],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }
    # The shape of the MCP specification's example document: no application_type.
    documents.documents[EXAMPLE_PATH] = {
        "client_id": documents.url(EXAMPLE_PATH),
        "client_name": "Example MCP Client",
        "redirect_uris": [EXAMPLE_REDIRECT],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }
    documents.start()

    def clients(mcp_url: str) -> list[ClientSpec]:
        return [
            ClientSpec(
                "other-api",
                UNUSED,
                scope="",
                flags=("--resource-server", "--resource-uri", OTHER_API),
            ),
            ClientSpec(
                "mcp-preregistered",
                (REDIRECTS["preregistered"], RAW_REDIRECT),
                scope=f"{MCP_SCOPE} offline_access",
                public=True,
                flags=("--resource", mcp_url, "--resource", OTHER_API),
            ),
            ClientSpec(
                "mcp-ts-preregistered",
                (TS_REDIRECTS["preregistered"],),
                scope=f"{MCP_SCOPE} offline_access",
                public=True,
                flags=("--resource", mcp_url),
            ),
            ClientSpec(
                "service",  # confidential: client_credentials tokens for either API
                UNUSED,
                scope=MCP_SCOPE,
                flags=("--resource", mcp_url, "--resource", OTHER_API),
            ),
        ]

    try:
        # The document host's CA for the metadata document fetch; loopback allowed (development).
        baton, mcp = serve_mcp(
            tmp_path_factory.mktemp("baton-mcp"),
            clients,
            env={
                "SSL_CERT_FILE": str(documents.ca),
                "BATON_CLIENT_DOCUMENTS_ALLOW_PRIVATE": "true",
            },
            access_ttl=ACCESS_TTL,
            registration="open",
            # offline_access: the Python SDK asks for it (SEP-2207: the metadata lists it); see
            # test_a_document_client_may_ask_for_the_openid_connect_scopes for why it is named.
            dynamic_client_scopes=f"{MCP_SCOPE},offline_access",
        )
    except BaseException:
        documents.stop()
        raise
    for module in MODULES:  # its log attached to the report of a failing test (conftest)
        conftest._MODULE_SERVERS.setdefault(module, []).append(baton)
    return World(baton, mcp, documents, baton.discovery())


# -- the Python SDK's journeys ---------------------------------------------------------------------


@dataclass
class Journey:
    """What one mode's SDK client went through; `failure` names the step that raised."""

    mode: str
    client: SdkClient
    step: str = "start"
    failure: str | None = None
    first: dict[str, Any] | None = None
    audience: Any = None  # the first access token's `aud`, as introspection tells
    after_rotations: list[dict[str, Any]] = field(default_factory=list)
    revoke_status: int | None = None
    before_revoke: int | None = None
    feed_latency: float | None = None  # seconds until the MCP server's index held the grant
    after_revoke: int | None = None
    reauthorized: dict[str, Any] | None = None
    authorizations_at_stop: int | None = None
    stopped_bare: httpx.Response | None = None
    stopped_fresh: BaseException | None = None  # the call with a still-valid access token
    stopped_fresh_answers: list[int] = field(default_factory=list)  # the MCP server's, to it
    stopped_expired: BaseException | None = None  # the call once it had expired
    stopped_expired_answers: list[int] = field(default_factory=list)

    authorizations_before_revoke: int | None = None
    missing: str | None = None  # what Baton lacks for this mode, if the journey broke on it

    def at(self, step: str) -> None:
        self.step = step

    def passed(self, step: str) -> None:
        """Fails the calling test unless the journey went through `step` (one of STEPS); an
        expected failure while Baton lacks what the mode needs (`missing`)."""
        if self.failure is not None and STEPS.index(self.step) <= STEPS.index(step):
            if self.missing is not None:
                pytest.xfail(self.missing)
            pytest.fail(f"{self.mode}: the journey broke at {self.step!r}:\n{self.failure}")
        assert STEPS.index(self.step) > STEPS.index(step), f"{self.mode} stopped at {self.step}"


@dataclass
class Negatives:
    other_resource: httpx.Response | None = None
    own_resource: httpx.Response | None = None
    refresh_other: httpx.Response | None = None
    refresh_attacker: httpx.Response | None = None
    refresh_after: httpx.Response | None = None
    example_document: httpx.Response | None = None
    document_openid: httpx.Response | None = None
    failure: str | None = None


def token_expiry(client: SdkClient) -> float:
    expiry = client.provider.context.token_expiry_time
    return float(expiry) if expiry is not None else 0.0


async def until_expired(clients: list[SdkClient]) -> None:
    """Waits until every client's access token has expired in its own eyes (a call refreshes)."""
    latest = max(token_expiry(c) for c in clients)
    await anyio.sleep(max(0.0, latest - time.time() + 0.02))


async def introspect(world: World, token: str) -> dict[str, Any]:
    rs = world.baton.client("mcp-server")
    assert rs.client_secret is not None
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            world.baton.url + "/introspect", data={"token": token}, auth=rs.basic
        )
    body: dict[str, Any] = answer.json()
    return body


async def walk(world: World, journey: Journey) -> None:
    """Authorization, tool calls, rotations, revocation and a new authorization, for one mode."""
    client = journey.client
    journey.at("authorize")
    journey.first = await client.whoami()
    journey.audience = (await introspect(world, client.access_token)).get("aud")
    for _ in range(ROTATIONS):
        journey.at("rotate")
        await until_expired([client])
        journey.after_rotations.append(await client.whoami())

    journey.at("revoke")
    journey.authorizations_before_revoke = client.authorizations
    token = client.access_token
    grant = (await introspect(world, token)).get("grant_id")
    journey.before_revoke = (await anyio.to_thread.run_sync(world.mcp.post, token)).status_code
    async with httpx.AsyncClient() as http:
        revoked = await http.post(
            world.baton.url + "/revoke",
            data={
                "token": client.refresh_token,
                "token_type_hint": "refresh_token",
                "client_id": client.client_id,
            },
        )
    journey.revoke_status = revoked.status_code
    started = time.monotonic()
    assert world.mcp.verifier is not None
    index = world.mcp.verifier.index
    while time.monotonic() - started < FEED_LATENCY:
        if isinstance(grant, str) and index.is_dead(time.time(), grant_id=grant):
            journey.feed_latency = time.monotonic() - started
            break
        await anyio.sleep(0.01)
    journey.after_revoke = (await anyio.to_thread.run_sync(world.mcp.post, token)).status_code

    journey.at("reauthorize")
    journey.reauthorized = await client.whoami()


async def negatives(world: World, record: Negatives) -> None:
    """A token for another resource presented to the MCP server; a refresh asking for a
    resource outside its grant (invalid_target), which leaves the refresh token usable."""
    service = world.baton.client("service")
    token_url = world.baton.url + "/token"
    async with httpx.AsyncClient() as http:

        async def presented(resource: str) -> httpx.Response:
            """A client_credentials token for `resource`, shown to the MCP server at once. Its
            short lifetime must not be what decides: tried again if the answer came too late."""
            for _attempt in range(5):
                started = time.monotonic()
                answer = await http.post(
                    token_url,
                    data={"grant_type": "client_credentials", "resource": resource},
                    auth=service.basic,
                )
                assert answer.status_code == 200, answer.text
                token = answer.json()["access_token"]
                shown = await anyio.to_thread.run_sync(world.mcp.post, token)
                if time.monotonic() - started < ACCESS_TTL - 0.2:
                    break
            return shown

        record.other_resource = await presented(OTHER_API)
        record.own_resource = await presented(world.mcp.url)

        # A grant for the MCP server only (the client may ask for both APIs).
        client = world.baton.client("mcp-preregistered")
        verifier = secrets.token_urlsafe(48)
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        query = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": RAW_REDIRECT,
            "scope": f"{MCP_SCOPE} offline_access",
            "state": "s",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "resource": world.mcp.url,
            "prompt": "consent",
        }

        visit = await anyio.to_thread.run_sync(
            authorize_in_browser,
            world.baton,
            world.baton.url + "/authorize?" + urlencode(query),
            RAW_REDIRECT,
        )
        answer = await http.post(
            token_url,
            data={
                "grant_type": "authorization_code",
                "code": visit.query["code"],
                "redirect_uri": RAW_REDIRECT,
                "client_id": client.client_id,
                "code_verifier": verifier,
                "resource": world.mcp.url,
            },
        )
        assert answer.status_code == 200, answer.text
        refresh = answer.json()["refresh_token"]

        async def refreshed(resource: str | None) -> httpx.Response:
            data = {"grant_type": "refresh_token", "refresh_token": refresh}
            data["client_id"] = client.client_id
            if resource is not None:
                data["resource"] = resource
            return await http.post(token_url, data=data)

        record.refresh_other = await refreshed(OTHER_API)
        record.refresh_attacker = await refreshed(ATTACKER)
        record.refresh_after = await refreshed(world.mcp.url)

        example = {
            "response_type": "code",
            "client_id": world.documents.url(EXAMPLE_PATH),
            "redirect_uri": EXAMPLE_REDIRECT,
            "state": "s",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "resource": world.mcp.url,
        }
        record.example_document = await http.get(
            world.baton.url + "/authorize?" + urlencode(example)
        )
        openid = {
            **example,
            "client_id": world.document_url(),
            "redirect_uri": REDIRECTS["document"],
            "scope": f"openid {MCP_SCOPE}",
        }
        record.document_openid = await http.get(world.baton.url + "/authorize?" + urlencode(openid))


async def stop_phase(world: World, journeys: list[Journey], ts: TsRuns) -> None:
    """Baton stops once the TypeScript runs are ready for it and right after every Python client
    refreshed; each client calls a tool with its still-valid access token (the MCP server
    answers 503), then again once it has expired (the refresh finds no Baton)."""
    clients = [j.client for j in journeys]
    for journey in journeys:
        journey.at("stop")
    await anyio.to_thread.run_sync(ts.wait_settled)

    # Every client refreshes at the same moment (one request each), and Baton stops at once:
    # each holds an access token with about ACCESS_TTL seconds left.
    await until_expired(clients)
    async with anyio.create_task_group() as group:
        for client in clients:
            group.start_soon(client.refresh_now)
    for journey in journeys:
        journey.authorizations_at_stop = journey.client.authorizations
    stop_baton(world)
    ts.stopped.set()
    since = len(world.mcp.answers)  # the MCP server's answers once Baton is gone

    async def call(journey: Journey, expired: bool) -> None:
        token = digest(journey.client.access_token)
        try:
            await journey.client.whoami()
        except BaseException as exc:  # what the SDK raised is the observation
            caught: BaseException | None = exc
        else:
            caught = None
        # What the MCP server answered this client's access token after Baton stopped: nothing
        # if the SDK judged it expired (it tried to refresh instead).
        answers = [status for seen, status in world.mcp.answers[since:] if seen == token]
        if expired:
            journey.stopped_expired, journey.stopped_expired_answers = caught, answers
        else:
            journey.stopped_fresh, journey.stopped_fresh_answers = caught, answers

    async with anyio.create_task_group() as group:  # at once: within the tokens' second
        for journey in journeys:
            group.start_soon(call, journey, False)
    for journey in journeys:
        journey.stopped_bare = await anyio.to_thread.run_sync(
            world.mcp.post, journey.client.access_token
        )
    await until_expired(clients)
    async with anyio.create_task_group() as group:
        for journey in journeys:
            group.start_soon(call, journey, True)
    for journey in journeys:
        journey.at("done")


async def guarded(journey: Journey, step: Callable[[], Awaitable[None]]) -> None:
    if journey.failure is not None:
        return
    try:
        await step()
    except Exception:
        journey.failure = traceback.format_exc()


def stop_baton(world: World) -> None:
    if world.baton.process.poll() is None:
        world.baton.process.kill()
        world.baton.process.wait(timeout=10)


def missing(world: World, mode: str) -> str | None:
    """Why Baton cannot serve `mode` yet (its branch not merged), or None."""
    if mode == "registration" and not world.advertised.get("registration_endpoint"):
        return "Baton advertises no registration_endpoint: dynamic registration is not built"
    if mode == "document" and not world.documents.fetches:
        return "Baton never fetched the client ID metadata document: documents are not built"
    return None


# -- the TypeScript SDK's runs ---------------------------------------------------------------------


@dataclass
class TsRun:
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
        """The script's last line; fails (or xfails) the calling test if it never came."""
        line = self.first("done")
        if line is None:
            if self.missing is not None:
                pytest.xfail(self.missing)
            pytest.fail(
                f"{self.mode}: {self.problem or ''} exit {self.code}\n"
                f"{json.dumps(self.first('failed') or self.lines[-3:], indent=1)}\n"
                f"{self.stderr[-3000:]}"
            )
        done: dict[str, Any] = line["done"]
        return done


@dataclass
class TsRuns:
    """The node processes, and the two moments they share with the rest of the scenario."""

    runs: dict[str, TsRun]
    unavailable: BaseException | None = None  # node or npm missing: pytest's skip (or fail)
    settled: dict[str, threading.Event] = field(default_factory=dict)  # ready for Baton to stop
    stopped: threading.Event = field(default_factory=threading.Event)  # Baton was stopped
    threads: list[threading.Thread] = field(default_factory=list)
    processes: dict[str, subprocess.Popen[str]] = field(default_factory=dict)

    def wait_settled(self) -> None:
        for event in self.settled.values():
            event.wait(timeout=TS_TIMEOUT)

    def start(self, script: Path, world: World) -> None:
        client_ids = {
            "document": world.documents.url(TS_DOCUMENT_PATH),
            "registration": "",  # the SDK registers
            "preregistered": world.baton.client("mcp-ts-preregistered").client_id,
        }
        for mode, run in self.runs.items():
            self.settled[mode] = threading.Event()
            process = subprocess.Popen(
                [
                    "node",
                    str(script),
                    world.mcp.url,
                    mode,
                    TS_REDIRECTS[mode],
                    client_ids[mode],
                    str(TS_ROTATIONS),
                ],
                cwd=script.parent,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            self.processes[mode] = process
            thread = threading.Thread(
                target=self._drive, args=(process, run, world.baton), daemon=True
            )
            thread.start()
            self.threads.append(thread)

    def _drive(self, process: subprocess.Popen[str], run: TsRun, baton: OidcServer) -> None:
        """Reads the script's lines: takes Baton's pages for each authorization URL it prints
        and answers with the redirect; at {"ready": "stop"} says so (`settled`), waits until
        Baton is stopped (`stopped`) and tells the script to go on."""
        assert process.stdin is not None and process.stdout is not None
        try:
            for raw in process.stdout:
                line = json.loads(raw)
                run.lines.append(line)
                if "authorize" in line:
                    visit = authorize_in_browser(baton, line["authorize"], TS_REDIRECTS[run.mode])
                    process.stdin.write(json.dumps({"callback": visit.location}) + "\n")
                    process.stdin.flush()
                elif "ready" in line:
                    self.settled[run.mode].set()
                    self.stopped.wait(timeout=TS_TIMEOUT)
                    process.stdin.write('{"go": true}\n')
                    process.stdin.flush()
        except Exception as exc:
            run.problem = f"{type(exc).__name__}: {exc}"
            process.kill()
        finally:
            self.settled[run.mode].set()

    def finish(self, world: World) -> None:
        for (mode, process), thread in zip(self.processes.items(), self.threads, strict=True):
            run = self.runs[mode]
            thread.join(timeout=TS_TIMEOUT)
            if thread.is_alive():
                run.problem = f"no end within {TS_TIMEOUT} s"
                process.kill()
            try:
                run.code = process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
            assert process.stderr is not None
            run.stderr = process.stderr.read()
            if run.code != 0:
                run.missing = missing(world, mode)


# -- the whole -------------------------------------------------------------------------------------


@dataclass
class Scenario:
    world: World
    journeys: dict[str, Journey]
    negatives: Negatives
    ts: TsRuns


def run(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    """Everything above, at once; Baton stopped at the end."""
    ts = TsRuns({mode: TsRun(mode) for mode in TS_MODES})
    try:
        script: Path | None = install_mcp_sdk()  # before any server: it may skip (no node)
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:
        ts.unavailable, script = exc, None
    world = start_world(tmp_path_factory)
    try:
        if script is not None:
            ts.start(script, world)
        journeys, found = python_journeys(world, ts)
        ts.wait_settled()  # (done already unless every Python journey broke)
        stop_baton(world)
        ts.stopped.set()
        if script is not None:
            ts.finish(world)
    finally:
        ts.stopped.set()
        world.mcp.stop()
        world.documents.stop()
        world.baton.stop()
    return Scenario(world, journeys, found, ts)


def python_journeys(world: World, ts: TsRuns) -> tuple[dict[str, Journey], Negatives]:
    from mcp.shared.auth import OAuthClientInformationFull

    pre = world.baton.client("mcp-preregistered")
    info = OAuthClientInformationFull(
        client_id=pre.client_id,
        redirect_uris=[REDIRECTS["preregistered"]],  # type: ignore[list-item]
        grant_types=["authorization_code", "refresh_token"],
        token_endpoint_auth_method="none",
    )
    clients = {
        "document": SdkClient(
            world.baton,
            world.mcp.url,
            REDIRECTS["document"],
            MemoryStorage(),
            client_metadata_url=world.document_url(),
        ),
        "registration": SdkClient(
            world.baton, world.mcp.url, REDIRECTS["registration"], MemoryStorage()
        ),
        "preregistered": SdkClient(
            world.baton, world.mcp.url, REDIRECTS["preregistered"], MemoryStorage(info)
        ),
    }
    journeys = {mode: Journey(mode, clients[mode]) for mode in MODES}
    found = Negatives()

    async def everything() -> None:
        async def negatives_step() -> None:
            try:
                await negatives(world, found)
            except Exception:
                found.failure = traceback.format_exc()

        async with anyio.create_task_group() as group:
            for journey in journeys.values():
                group.start_soon(guarded, journey, lambda j=journey: walk(world, j))
            group.start_soon(negatives_step)
        alive = [j for j in journeys.values() if j.failure is None]
        if alive:
            try:
                await stop_phase(world, alive, ts)
            except Exception:
                for journey in alive:
                    journey.failure = traceback.format_exc()

    anyio.run(everything)
    for journey in journeys.values():
        if journey.failure is not None:
            journey.missing = missing(world, journey.mode)
    return journeys, found
