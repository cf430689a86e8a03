"""The `mcp` Python SDK's client (unmodified) and an MCP server of the same SDK protected by
Baton, against a real `baton serve` (issue 26, "How it is checked").

One Baton (access tokens live 1 s; dynamic registration open; metadata documents allowed from
loopback), one MCP server and one https document host serve the whole module. The three ways an
MCP client gets a client id run side by side, each its own SDK client:

- `document`: a client ID metadata document (its https URL on loopback is the client id);
- `registration`: RFC 7591 dynamic registration at Baton's /register;
- `preregistered`: a public client made by `baton client create --public`.

Each goes the same way (`journey`): authorization through Baton's real login and consent pages
(the SDK's redirect handler drives them), tool calls, three refreshes (each rotates the refresh
token; no new authorization), an RFC 7009 revocation at /revoke that reaches the MCP server
through the revocation feed, and a new authorization after it. Then Baton is stopped: the MCP
server answers 503 with Retry-After, and the SDK client, whether its access token is still good
(it reaches the MCP server, which answers 503) or expired (its refresh finds no Baton), starts no
new authorization: its redirect handler is never called again.

The modes run at once so the module costs one set of 1 s waits, not three: `journey` runs them
all (module scope) and records what happened; each test checks one part of the record.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx
import pytest

from tests.interop.conftest import Browser, ClientSpec, OidcServer
from tests.interop.mcp_harness import (
    MCP_SCOPE,
    RETRY_AFTER,
    UNUSED,
    DocumentServer,
    McpServer,
    MemoryStorage,
    SdkClient,
    digest,
    serve_mcp,
)

pytestmark = pytest.mark.e2e

MODES = ("document", "registration", "preregistered")
ROTATIONS = 3
FEED_LATENCY = 2.0  # seconds a revocation may take to reach the MCP server
REDIRECTS = {
    "document": "http://127.0.0.1:9311/mcp-document/callback",
    "registration": "http://127.0.0.1:9312/mcp-registration/callback",
    "preregistered": "http://127.0.0.1:9313/mcp-preregistered/callback",
}
RAW_REDIRECT = "http://127.0.0.1:9314/mcp-raw/callback"
OTHER_API = "http://127.0.0.1:9/other-api"  # a second resource server, never running
ATTACKER = "https://attacker.example/mcp"
DOCUMENT_PATH = "/clients/mcp-e2e.json"
EXAMPLE_PATH = "/clients/example.json"
EXAMPLE_REDIRECT = "http://127.0.0.1:3000/callback"
STEPS = ("authorize", "rotate", "revoke", "reauthorize", "stop", "done")


@dataclass
class World:
    baton: OidcServer
    mcp: McpServer
    documents: DocumentServer

    def document_url(self) -> str:
        return self.documents.url(DOCUMENT_PATH)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    documents = DocumentServer(tmp_path_factory.mktemp("documents"))
    documents.documents[DOCUMENT_PATH] = {
        "client_id": documents.url(DOCUMENT_PATH),
        "client_name": "MCP e2e (metadata document)",
        "redirect_uris": [REDIRECTS["document"]],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "application_type": "native",  # loopback redirects (OpenID Connect Registration §2)
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
            access_ttl=1,
            registration="open",
            # offline_access: the SDK asks for it (SEP-2207: the AS lists it); see
            # test_a_document_client_may_ask_for_the_openid_connect_scopes for why it is named.
            dynamic_client_scopes=f"{MCP_SCOPE},offline_access",
        )
    except BaseException:
        documents.stop()
        raise
    try:
        yield World(baton, mcp, documents)
    finally:
        mcp.stop()
        documents.stop()
        baton.stop()


# -- the journey of each mode ---------------------------------------------------------------------


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
    stopped_fresh_left: float = 0.0  # seconds its access token had left when the call began
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


@dataclass
class Record:
    journeys: dict[str, Journey]
    negatives: Negatives
    world: World
    advertised: dict[str, Any]  # Baton's metadata


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
            1 s lifetime must not be what decides: tried again if the answer came too late."""
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
                if time.monotonic() - started < 0.9:
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

        def authorize() -> Any:
            with Browser(world.baton) as browser:
                return browser.follow(
                    world.baton.url + "/authorize?" + urlencode(query), RAW_REDIRECT
                )

        visit = await anyio.to_thread.run_sync(authorize)
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


async def stop_phase(world: World, journeys: list[Journey]) -> None:
    """Baton stops; each client calls a tool with a still-valid access token (the MCP server
    answers 503), then again once it has expired (the refresh finds no Baton)."""
    clients = [j.client for j in journeys]
    for journey in journeys:
        journey.at("stop")

    async def fresh(journey: Journey) -> None:
        await until_expired([journey.client])
        await journey.client.whoami()  # a refresh: about a second of validity from here

    async with anyio.create_task_group() as group:
        for journey in journeys:
            group.start_soon(fresh, journey)
    for journey in journeys:
        journey.authorizations_at_stop = journey.client.authorizations
    world.baton.process.kill()
    world.baton.process.wait(timeout=10)

    async def call(journey: Journey, expired: bool) -> None:
        token = digest(journey.client.access_token)
        left = token_expiry(journey.client) - time.time()
        try:
            await journey.client.whoami()
        except BaseException as exc:  # what the SDK raised is the observation
            caught: BaseException | None = exc
        else:
            caught = None
        answers = [status for seen, status in world.mcp.answers if seen == token]
        if expired:
            journey.stopped_expired, journey.stopped_expired_answers = caught, answers
        else:
            journey.stopped_fresh, journey.stopped_fresh_answers = caught, answers
            journey.stopped_fresh_left = left

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


@pytest.fixture(scope="module")
def record(world: World) -> Record:
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

    async def run() -> None:
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
                await stop_phase(world, alive)
            except Exception:
                for journey in alive:
                    journey.failure = traceback.format_exc()

    advertised = world.baton.discovery()  # before Baton stops
    anyio.run(run)
    for journey in journeys.values():
        if journey.failure is not None:
            journey.missing = missing(world, advertised, journey.mode)
    return Record(journeys, found, world, advertised)


def missing(world: World, advertised: dict[str, Any], mode: str) -> str | None:
    """Why Baton cannot serve `mode` yet (its branch not merged), or None."""
    if mode == "registration" and not advertised.get("registration_endpoint"):
        return "Baton advertises no registration_endpoint: dynamic registration is not built"
    if mode == "document" and DOCUMENT_PATH not in world.documents.fetches:
        return "Baton never fetched the client ID metadata document: documents are not built"
    return None


# -- the checks -----------------------------------------------------------------------------------


def expected_client_id(record: Record, journey: Journey) -> str:
    if journey.mode == "document":
        return record.world.document_url()
    if journey.mode == "preregistered":
        return record.world.baton.client("mcp-preregistered").client_id
    return journey.client.client_id  # what /register assigned


@pytest.mark.parametrize("mode", MODES)
def test_authorization_through_the_pages(record: Record, mode: str) -> None:
    """The SDK discovers Baton through the MCP server's RFC 9728 metadata, authorizes through
    the login and consent pages (PKCE, iss), and calls a tool with a token for the MCP server."""
    journey = record.journeys[mode]
    journey.passed("authorize")
    first = journey.first
    assert first is not None
    assert first["client_id"] == expected_client_id(record, journey)
    assert first["subject"] == "alice"
    assert MCP_SCOPE in first["scopes"]
    assert journey.audience == record.world.mcp.url  # RFC 8707: the token is for this server
    visit = journey.client.visits[0]
    assert visit.signed_in and visit.consent is not None, "login and consent pages were shown"
    assert visit.query.get("iss") == record.world.baton.issuer  # RFC 9207
    if mode == "document":
        # The consent page names the document's host and says no one vetted it.
        assert "localhost" in visit.consent
        assert "not verified" in visit.consent.lower()
        assert DOCUMENT_PATH in record.world.documents.fetches
    if mode == "registration":  # registered at Baton's own endpoint, as it advertises
        assert journey.client.storage.client_info.client_id == first["client_id"]
        assert record.advertised.get("registration_endpoint")


@pytest.mark.parametrize("mode", MODES)
def test_refresh_rotates_without_a_new_authorization(record: Record, mode: str) -> None:
    """Three tool calls after the 1 s access token expired: each refreshes (a new refresh token
    each time, the old one rotated out), the tool answers, the redirect handler is not called."""
    journey = record.journeys[mode]
    journey.passed("rotate")
    assert len(journey.after_rotations) == ROTATIONS
    assert all(a["client_id"] == journey.first["client_id"] for a in journey.after_rotations)  # type: ignore[index]
    history = journey.client.storage.history
    first_grant = history[: ROTATIONS + 1]
    refresh_tokens = [t.refresh_token for t in first_grant]
    access_tokens = [t.access_token for t in first_grant]
    assert len(set(refresh_tokens)) == ROTATIONS + 1, "every refresh rotated the refresh token"
    assert len(set(access_tokens)) == ROTATIONS + 1
    assert journey.authorizations_before_revoke == 1, (
        journey.client.storage.log,
        record.world.mcp.log,
    )


@pytest.mark.parametrize("mode", MODES)
def test_revocation_reaches_the_mcp_server(record: Record, mode: str) -> None:
    """RFC 7009 at /revoke (the refresh token: the whole grant): the MCP server's verifier holds
    the grant as revoked within the feed's latency and refuses the access token (401); the
    SDK client then authorizes again through the pages."""
    journey = record.journeys[mode]
    journey.passed("reauthorize")
    assert journey.before_revoke == 200
    assert journey.revoke_status == 200
    assert journey.feed_latency is not None, f"no revocation event within {FEED_LATENCY} s"
    assert journey.after_revoke == 401
    assert journey.reauthorized is not None
    assert journey.reauthorized["client_id"] == expected_client_id(record, journey)
    assert journey.client.authorizations == 2


@pytest.mark.parametrize("mode", MODES)
def test_baton_stopped_is_503_and_no_new_authorization(record: Record, mode: str) -> None:
    """Baton stopped: the MCP server answers 503 with Retry-After (not 401, which would send the
    client into an authorization against a server that is not there); the SDK client's call
    fails once its access token expired (its refresh finds no Baton), and it never calls its
    redirect handler again."""
    journey = record.journeys[mode]
    journey.passed("stop")
    bare = journey.stopped_bare
    assert bare is not None
    assert bare.status_code == 503, bare.text
    assert bare.headers.get("retry-after") == RETRY_AFTER
    assert "www-authenticate" not in bare.headers  # no challenge: the token may be good
    assert journey.stopped_expired is not None, "a call succeeded with Baton stopped"
    assert 401 not in journey.stopped_expired_answers
    assert journey.client.authorizations == journey.authorizations_at_stop


@pytest.mark.parametrize("mode", MODES)
def test_baton_stopped_a_valid_token_gets_503_through_the_sdk(record: Record, mode: str) -> None:
    """Baton stopped while the SDK client's access token is still good: the client sends it,
    the MCP server answers 503, the SDK's call fails, and no authorization starts."""
    journey = record.journeys[mode]
    journey.passed("stop")
    if journey.stopped_fresh_left <= 0:
        pytest.skip(
            "the machine took longer than the access token's second between the refresh and "
            "the call: the SDK refreshed instead of presenting its token"
        )
    assert journey.stopped_fresh is not None, "the call succeeded with Baton stopped"
    assert 503 in journey.stopped_fresh_answers, journey.stopped_fresh_answers
    assert 401 not in journey.stopped_fresh_answers
    assert journey.client.authorizations == journey.authorizations_at_stop


def test_token_for_another_resource_is_refused(record: Record) -> None:
    """A token Baton issued for another API (its `aud`) is refused by the MCP server (401); the
    same client's token for the MCP server is accepted."""
    found = record.negatives
    assert found.failure is None, found.failure
    assert found.other_resource is not None and found.own_resource is not None
    assert found.other_resource.status_code == 401, found.other_resource.text
    assert "resource_metadata=" in found.other_resource.headers.get("www-authenticate", "")
    assert found.own_resource.status_code == 200, found.own_resource.text


def test_refresh_outside_the_grant_is_invalid_target(record: Record) -> None:
    """A refresh asking for a resource the grant does not hold (another registered API the
    client may ask for, or a stranger's) is invalid_target, and leaves the refresh token
    usable."""
    found = record.negatives
    assert found.failure is None, found.failure
    for answer in (found.refresh_other, found.refresh_attacker):
        assert answer is not None
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "invalid_target"
    assert found.refresh_after is not None
    assert found.refresh_after.status_code == 200, found.refresh_after.text


def test_a_document_shaped_like_the_specifications_example(record: Record) -> None:
    """The MCP specification's example metadata document (a loopback redirect URI, no
    `application_type`) starts an authorization: the login page, not a page refusing the
    client. OpenID Connect Registration §2 forbids localhost only to web clients "using the
    OAuth Implicit Grant Type"; RFC 7591 and the metadata document draft have no
    application_type at all."""
    found = record.negatives
    assert found.failure is None, found.failure
    answer = found.example_document
    assert answer is not None
    assert answer.status_code in (200, 302, 303), answer.text[-1500:]
    assert "unknown client" not in answer.text


def test_a_document_client_may_ask_for_the_openid_connect_scopes(record: Record) -> None:
    """`--dynamic-client-scopes`: "OpenID Connect scopes are always allowed while it is on"
    (config/options.py), and the metadata lists them in scopes_supported, which the SDKs ask
    for (the Python SDK adds offline_access when it is listed, SEP-2207): a metadata document's
    client asking for `openid` with the operator's scope is sent to the login page, not back
    with invalid_scope."""
    found = record.negatives
    assert found.failure is None, found.failure
    answer = found.document_openid
    assert answer is not None
    location = answer.headers.get("location", "")
    assert "error=" not in location, location
    assert answer.status_code in (200, 302, 303), answer.text[-1500:]
