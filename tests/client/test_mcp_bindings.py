"""`MCPAuth` against in-memory servers: the issuer binding, step-up scopes, outages, refusals.

One MCP server (`mcp.example`), Baton (`baton.example`) and an impostor (`evil.example`) are
mock transports (the MCP client's `httpx2`, the refresher's `httpx`) over one `World`; the clock
is fake, so that "later" and "Baton is down for ten minutes" cost no time.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import httpx2
import pytest
from mcp.client.auth import AuthorizationCodeResult
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata

from baton.client import (
    AuthorizationServerUnavailable,
    ClientError,
    FileStore,
    MemoryStore,
    OAuthClient,
    ReauthorizationRequired,
    Refresher,
    TokenPair,
    store_pair,
)
from baton.client.mcp import MCPAuth

pytestmark = pytest.mark.anyio

MCP = "https://mcp.example/mcp"
BATON, EVIL = "https://baton.example", "https://evil.example"
START = 1_800_000_000.0


@dataclass
class World:
    """The servers. `authorization_servers`: what the MCP server's RFC 9728 metadata lists;
    `need`: the scope its tool requires; `down`: Baton's token endpoint answers this (an
    exception: the connection is refused)."""

    authorization_servers: list[str] = field(default_factory=lambda: [BATON])
    resource_metadata: bool = True  # False: no RFC 9728 document (the 2025-03-26 path)
    baton_metadata: int = 200  # what Baton's RFC 8414 document answers
    grant_resources: list[str] | None = None  # a refresh naming another resource: invalid_target
    need: str = "read"
    refuse_every_token: bool = False
    down: int | None = None
    refused: bool = False
    now: float = START
    tokens: dict[str, str] = field(default_factory=dict)  # access token -> scope
    codes: dict[str, str] = field(default_factory=dict)
    seen: list[tuple[str, str, dict[str, list[str]]]] = field(default_factory=list)
    opened: list[str] = field(default_factory=list)
    last: AuthorizationCodeResult | None = None

    def answer(
        self, method: str, url: str, headers: Any, body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        parts = urlsplit(url)
        host, path = f"{parts.scheme}://{parts.netloc}", parts.path
        form = parse_qs(body.decode()) if method == "POST" and not body.startswith(b"{") else {}
        self.seen.append((host, path, form))
        if host == "https://mcp.example":
            if path.startswith("/.well-known/oauth-protected-resource"):
                if not self.resource_metadata:
                    return 404, {}, {}
                return (
                    200,
                    {"resource": MCP, "authorization_servers": self.authorization_servers},
                    {},
                )
            granted = self.tokens.get(headers.get("authorization", "")[7:])
            if granted is None or self.refuse_every_token:
                challenge = f'Bearer error="invalid_token", scope="{self.need}"'
                return 401, {}, {"www-authenticate": challenge}
            if self.need not in granted.split():
                challenge = f'Bearer error="insufficient_scope", scope="{self.need}"'
                return 403, {}, {"www-authenticate": challenge}
            return 200, {"ok": True}, {}
        if path.startswith("/.well-known/") and host == BATON and self.baton_metadata != 200:
            return self.baton_metadata, {}, {}
        if path.startswith("/.well-known/"):
            return (
                200,
                {
                    "issuer": host,
                    "authorization_endpoint": host + "/authorize",
                    "token_endpoint": host + "/token",
                    "registration_endpoint": host + "/register",
                    "response_types_supported": ["code"],
                    "code_challenge_methods_supported": ["S256"],
                    "refresh_token_rotation": {"retry_policy": "replay", "leeway_seconds": 600},
                },
                {},
            )
        if path == "/register":
            registered = {**json.loads(body), "client_id": f"dcr-{parts.netloc}"}
            return 201, {**registered, "token_endpoint_auth_method": "none"}, {}
        if path == "/token":
            if host == BATON and self.down is not None:
                problem = {"error": "temporarily_unavailable", "error_description": "database"}
                return self.down, problem, {"retry-after": "1"}
            if form["grant_type"] == ["refresh_token"]:
                if self.grant_resources is not None and not set(form.get("resource", [])) <= set(
                    self.grant_resources
                ):
                    return 400, {"error": "invalid_target", "error_description": "not granted"}, {}
                scope = "read"
            else:
                scope = self.codes.pop(form["code"][0])
            access = "at-" + secrets.token_hex(4)
            self.tokens[access] = scope
            return (
                200,
                {
                    "access_token": access,
                    "refresh_token": f"rt-{parts.netloc}-{secrets.token_hex(4)}",
                    "token_type": "Bearer",
                    "expires_in": 60,
                    "scope": scope,
                },
                {},
            )
        return 404, {}, {}

    def mcp_transport(self, request: httpx2.Request) -> httpx2.Response:
        status, body, headers = self.answer(
            request.method, str(request.url), request.headers, request.content
        )
        return httpx2.Response(status, json=body, headers=headers)

    def refresher_transport(self, request: httpx.Request) -> httpx.Response:
        self.now += 0.01
        if self.refused and request.url.path == "/token":
            self.seen.append((BATON, "/token refused", {}))
            raise httpx.ConnectError("connection refused", request=request)
        status, body, headers = self.answer(
            request.method, str(request.url), request.headers, request.content
        )
        return httpx.Response(status, json=body, headers=headers)

    async def redirect(self, url: str) -> None:
        """The person at the browser: allows whatever is asked."""
        self.opened.append(url)
        query = parse_qs(urlsplit(url).query)
        code = secrets.token_hex(4)
        self.codes[code] = query.get("scope", [""])[0]
        self.last = AuthorizationCodeResult(code=code, state=query["state"][0])

    async def callback(self) -> AuthorizationCodeResult:
        assert self.last is not None
        return self.last

    def requests_to(self, host: str) -> list[tuple[str, dict[str, list[str]]]]:
        return [(path, form) for seen, path, form in self.seen if seen == host]

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def metadata(scope: str = "read") -> OAuthClientMetadata:
    return OAuthClientMetadata(
        redirect_uris=["http://localhost:1/cb"],  # type: ignore[list-item]
        grant_types=["authorization_code", "refresh_token"],
        token_endpoint_auth_method="none",
        scope=scope,
    )


def preregistered() -> OAuthClientInformationFull:
    return OAuthClientInformationFull(
        client_id="pre",
        redirect_uris=["http://localhost:1/cb"],  # type: ignore[list-item]
        token_endpoint_auth_method="none",
    )


def auth_for(world: World, store: Any, **options: Any) -> MCPAuth:
    clock: Callable[[], float] = lambda: world.now  # noqa: E731
    return MCPAuth(
        MCP,
        metadata(),
        store,
        redirect_handler=world.redirect,
        callback_handler=world.callback,
        clock=clock,
        sleep=world.sleep,
        http=httpx.Client(transport=httpx.MockTransport(world.refresher_transport)),
        **options,
    )


async def call(world: World, auth: MCPAuth) -> int:
    transport = httpx2.MockTransport(world.mcp_transport)
    async with httpx2.AsyncClient(auth=auth, transport=transport) as http:
        return (await http.post(MCP, json={})).status_code


def a_pair(world: World, scope: str = "read", **recorded: Any) -> TokenPair:
    """A live pair (60 s) whose access token the MCP server accepts."""
    world.tokens["at-stored"] = scope
    return TokenPair(
        access_token="at-stored",
        refresh_token="rt-stored",
        expires_at=world.now + 60,
        scope=scope,
        obtained_at=world.now,
        **recorded,
    )


# -- the issuer binding (review H1, L7) -------------------------------------------------------


async def test_a_malicious_mcp_server_never_receives_the_refresh_token(tmp_path: Path) -> None:
    """Dynamic registration: the MCP server turns malicious, names its own authorization server
    and asks for more scope. The step up is refused before anything reaches that server, the
    registration on file stays Baton's, and the next refresh goes to Baton."""
    world = World()
    store = FileStore(tmp_path / "mcp" / "tokens.json")
    assert await call(world, auth_for(world, store)) == 200
    stored = store.load()
    assert stored is not None and stored.issuer == BATON
    assert stored.token_endpoint == BATON + "/token" and stored.resource == MCP
    registration = store.path.with_name("tokens.json.client")
    assert json.loads(registration.read_text())["client_id"] == "dcr-baton.example"

    world.authorization_servers, world.need = [EVIL], "admin"
    with pytest.raises(ClientError, match="evil\\.example"):
        await call(world, auth_for(world, store))
    assert world.requests_to(EVIL) == []  # not even its metadata
    assert json.loads(registration.read_text())["client_id"] == "dcr-baton.example"

    # Later, another process: the access token has expired, the refresh goes to Baton only.
    world.now += 120
    world.need = "read"
    assert await call(world, auth_for(world, FileStore(store.path))) == 200
    refreshes = [form for path, form in world.requests_to(BATON) if path == "/token"]
    assert refreshes[-1]["grant_type"] == ["refresh_token"]
    assert refreshes[-1]["refresh_token"] == [stored.refresh_token]
    assert world.requests_to(EVIL) == []


async def test_a_registration_is_persisted_only_with_the_pair_it_produced(tmp_path: Path) -> None:
    """A registration whose authorization never finished (the person closed the page) is not
    kept: the one on file always belongs to the stored pair."""
    world = World()

    async def closed(url: str) -> None:
        raise RuntimeError("the person closed the login page")

    store = FileStore(tmp_path / "mcp" / "tokens.json")
    auth = auth_for(world, store)
    auth.redirect_handler = closed
    with pytest.raises(RuntimeError, match="closed"):
        await call(world, auth)
    assert ("/register", {}) in world.requests_to(BATON)
    assert not store.path.with_name("tokens.json.client").exists()
    assert store.load() is None


def test_a_pair_is_never_refreshed_with_another_issuers_registration(tmp_path: Path) -> None:
    """A registration on file bound to another issuer (planted, or written by an older version)
    never receives the refresh token of a pair Baton issued."""
    world = World()
    store = FileStore(tmp_path / "mcp" / "tokens.json")
    store_pair(store, a_pair(world, issuer=BATON, token_endpoint=BATON + "/token"))
    auth = auth_for(world, store)
    evil = OAuthClientInformationFull(client_id="dcr-evil", issuer=EVIL)
    store.path.with_name("tokens.json.client").write_text(evil.model_dump_json())
    world.now += 120
    with pytest.raises(ClientError, match="issued by 'https://baton\\.example'"):
        auth.current()
    assert world.seen == []


def test_the_refresher_refuses_a_pair_recorded_for_another_server() -> None:
    """The plain SDK's guard: a `Refresher` for one issuer never sends a pair another issued."""
    world = World()
    store = MemoryStore(a_pair(world, issuer=EVIL, token_endpoint=EVIL + "/token"))
    refresher = Refresher(
        OAuthClient(BATON + "/token", "pre"),
        store,
        leeway=600,
        issuer=BATON,
        http=httpx.Client(transport=httpx.MockTransport(world.refresher_transport)),
    )
    with pytest.raises(ClientError, match="never sent"):
        refresher.refresh()
    assert world.seen == []


# -- the authorization server of the interactive flow (review M4) ------------------------------


async def test_a_configured_issuer_holds_the_interactive_flow_to_it() -> None:
    world = World(authorization_servers=[EVIL])
    auth = auth_for(world, MemoryStore(), client_info=preregistered(), issuer=BATON)
    with pytest.raises(ClientError, match="evil\\.example"):
        await call(world, auth)
    assert world.opened == [] and world.requests_to(EVIL) == []


async def test_the_configured_issuer_is_chosen_among_those_the_resource_lists() -> None:
    """Also a tripwire on the SDK: `MCPAuth` overrides its `_select_authorization_server` hook.
    If the SDK stops calling it, the first listed server's metadata is fetched (and the flow
    refused only at the redirect): this test then fails."""
    world = World(authorization_servers=[EVIL, BATON])
    auth = auth_for(world, MemoryStore(), client_info=preregistered(), issuer=BATON)
    assert await call(world, auth) == 200
    assert len(world.opened) == 1 and world.opened[0].startswith(BATON + "/authorize?")
    assert world.requests_to(EVIL) == []


# -- step up (review M2) ----------------------------------------------------------------------


async def test_a_step_up_keeps_the_scope_an_earlier_step_up_obtained() -> None:
    world = World(need="admin")
    store = MemoryStore(a_pair(world, scope="read write"))
    auth = auth_for(world, store, client_info=preregistered(), issuer=BATON)
    assert await call(world, auth) == 200
    (opened,) = world.opened
    assert set(parse_qs(urlsplit(opened).query)["scope"][0].split()) == {"read", "write", "admin"}
    world.need = "write"
    assert await call(world, auth) == 200
    assert len(world.opened) == 1  # no second authorization for a scope granted before


# -- outages (review M3) ----------------------------------------------------------------------


@pytest.mark.parametrize("outage", ["503", "refused"])
async def test_while_baton_is_down_the_pair_is_kept_and_no_authorization_starts(
    outage: str,
) -> None:
    world = World()
    if outage == "503":
        world.down = 503
    else:
        world.refused = True
    pair = a_pair(world)
    store = MemoryStore(pair)
    auth = auth_for(world, store, client_info=preregistered(), issuer=BATON, timeout=10.0)
    world.now += 120
    began = world.now
    with pytest.raises(AuthorizationServerUnavailable, match="unavailable"):
        await call(world, auth)
    assert world.now - began < 15  # about `timeout`, not the 600 s leeway
    kept = store.load()
    assert kept is not None and kept.reauthorize is None  # no tombstone
    if outage == "refused":
        assert kept == pair  # nothing was sent: no mark left behind
    else:
        # Baton's 503 may hide a commit (a lost COMMIT acknowledgement): the mark stays, so
        # the next call finishes the exchange inside the leeway rather than presenting a
        # rotated token after it (test_refresher_unavailable.py).
        assert kept.exchanging_since is not None
    assert world.opened == []
    # Baton is back: the same refresh token is still good.
    world.down, world.refused = None, False
    assert await call(world, auth) == 200
    refreshed = store.load()
    assert refreshed is not None and refreshed.rotations == 1 and world.opened == []


def test_a_503_without_temporarily_unavailable_may_have_been_processed() -> None:
    """Only the answer that says so counts as unprocessed: another 503 (a proxy's, after the
    request reached the server) may hide a rotation, so its token is retried in the leeway
    and, once that is over, never presented again."""
    world = World(down=503)
    store = MemoryStore(a_pair(world))

    def proxy(request: httpx.Request) -> httpx.Response:
        world.now += 0.01
        if request.url.path == "/token":
            return httpx.Response(503, text="upstream reset")
        return world.refresher_transport(request)

    refresher = Refresher.discover(
        BATON,
        "pre",
        None,
        store,
        http=httpx.Client(transport=httpx.MockTransport(proxy)),
        clock=lambda: world.now,
        sleep=world.sleep,
    )
    with pytest.raises(ReauthorizationRequired):
        refresher.refresh()
    assert world.now - START > 590  # retried through the leeway


# -- a refused fresh token (review L5) and the resource of a refresh (L6) -----------------------


async def test_a_freshly_refreshed_token_refused_hands_over_to_an_authorization_once() -> None:
    world = World(refuse_every_token=True)
    store = MemoryStore(a_pair(world))
    auth = auth_for(world, store, client_info=preregistered(), issuer=BATON)

    async def then_accepted(url: str) -> None:
        world.refuse_every_token = False
        await world.redirect(url)

    auth.redirect_handler = then_accepted
    assert await call(world, auth) == 200
    assert len(world.opened) == 1
    refreshes = [f for p, f in world.requests_to(BATON) if p == "/token"]
    assert [f["grant_type"] for f in refreshes] == [["refresh_token"], ["authorization_code"]]


def test_a_refresh_names_the_resource_the_pair_recorded() -> None:
    """RFC 8707 §2 (the MCP specification requires it in token requests): the resource the pair
    was obtained for; none for a pair that recorded none (obtained without one, or stored by an
    earlier version), whose grant may be for a parent resource (re-review L1)."""
    world = World()
    store = MemoryStore(a_pair(world))
    auth = auth_for(world, store, client_info=preregistered(), issuer=BATON)
    world.now += 120
    auth.current()
    store_pair(store, a_pair(world, resource="https://mcp.example/", issuer=BATON))
    world.now += 120
    auth.current()
    resources = [f.get("resource") for p, f in world.requests_to(BATON) if p == "/token"]
    assert resources == [None, ["https://mcp.example/"]]


# -- re-review 2 ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["502", "404", "dcr"])
async def test_without_the_allowed_servers_metadata_nothing_goes_to_the_mcp_servers_origin(
    mode: str,
) -> None:
    """M2: the resource metadata names Baton, but Baton's RFC 8414 document answers an error;
    the SDK would then register, send the person, and exchange the code at the MCP server's
    own origin, and the pair would be stored as Baton's. Refused before any of it."""
    world = World(baton_metadata=404 if mode == "404" else 502)
    options: dict[str, Any] = {} if mode == "dcr" else {"client_info": preregistered()}
    store = MemoryStore()
    auth = auth_for(world, store, issuer=BATON, **options)
    with pytest.raises(ClientError, match="could not be read"):
        await call(world, auth)
    assert world.opened == []
    to_mcp = {path for path, _ in world.requests_to("https://mcp.example")}
    assert to_mcp <= {"/mcp", "/.well-known/oauth-protected-resource/mcp"}
    assert store.load() is None


async def test_a_resource_without_metadata_gets_nothing_while_another_server_is_allowed(
    tmp_path: Path,
) -> None:
    """L3, and a tripwire on the SDK: `MCPAuth` overrides its `_expected_issuer` hook, asked
    before any metadata is fetched on the path without resource metadata (the MCP server's
    own origin). If the SDK stops calling it, the MCP server's metadata is fetched: this test
    then fails."""
    world = World(resource_metadata=False, need="admin")
    store = FileStore(tmp_path / "tokens.json")
    store_pair(store, a_pair(world, issuer=BATON, token_endpoint=BATON + "/token", resource=MCP))
    auth = auth_for(world, store)
    auth.client_record.save(preregistered().model_copy(update={"issuer": BATON}))
    with pytest.raises(ClientError, match="mcp\\.example"):
        await call(world, auth)
    assert world.opened == []
    to_mcp = {path for path, _ in world.requests_to("https://mcp.example")}
    assert to_mcp <= {
        "/mcp",
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    }


def test_a_pair_stored_by_the_previous_version_refreshes_and_learns_its_issuer() -> None:
    """L1: a pair without issuer, token endpoint or resource, whose grant is for the resource
    metadata's parent resource: its refresh names no resource (Baton would refuse the MCP
    server's URL, `invalid_target`), and the rotated pair records where it was issued."""
    world = World(grant_resources=["https://mcp.example/"])
    store = MemoryStore(a_pair(world))
    auth = auth_for(world, store, client_info=preregistered(), issuer=BATON)
    world.now += 120
    refreshed = auth.current()
    assert refreshed.rotations == 1
    stored = store.load()
    assert stored is not None and stored.issuer == BATON
    assert stored.token_endpoint == BATON + "/token"


def test_a_refresh_refused_other_than_invalid_grant_leaves_the_pair_unmarked() -> None:
    """L1: a definite error answer that is not `invalid_grant` (here `invalid_target`) means the
    refresh token was not used: no mark is left (which, after the leeway, would end the session
    as a lost response)."""
    world = World(grant_resources=["https://mcp.example/"])
    pair = a_pair(world, resource=MCP)
    store = MemoryStore(pair)
    auth = auth_for(world, store, client_info=preregistered(), issuer=BATON)
    world.now += 120
    with pytest.raises(ClientError, match="invalid_target"):
        auth.current()
    assert store.load() == pair
    world.now += 1200  # past the leeway: still the same, usable pair, no tombstone
    world.grant_resources = None
    assert auth.current().rotations == 1


async def test_a_still_valid_access_token_is_sent_while_baton_is_down() -> None:
    """L2: inside `margin` the refresh is early; with Baton unreachable the stored access token,
    valid for 20 s more, is still sent."""
    world = World()
    world.refused = True
    store = MemoryStore(a_pair(world))
    auth = auth_for(world, store, client_info=preregistered(), issuer=BATON, timeout=5.0)
    world.now += 40  # 20 s left, inside the 30 s margin
    assert await call(world, auth) == 200
    assert world.requests_to(BATON).count(("/token refused", {})) > 0
    tries = world.requests_to(BATON).count(("/token refused", {}))
    assert await call(world, auth) == 200  # at once: not another wait for the server
    assert world.requests_to(BATON).count(("/token refused", {})) == tries
    world.now += 30  # expired: no longer sent, the outage is reported
    with pytest.raises(AuthorizationServerUnavailable):
        await call(world, auth)


async def test_a_server_refusing_every_token_costs_one_rotation_not_one_per_request() -> None:
    """L4: once a freshly rotated token was refused too, that pair is not rotated again."""
    world = World(refuse_every_token=True)
    store = MemoryStore(a_pair(world))
    auth = auth_for(world, store, client_info=preregistered(), issuer=BATON)
    auth.redirect_handler = auth.callback_handler = None
    for _ in range(3):
        with pytest.raises(ReauthorizationRequired):
            await call(world, auth)
    refreshes = [f for p, f in world.requests_to(BATON) if p == "/token"]
    assert len(refreshes) == 1
