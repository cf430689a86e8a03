"""The SDK side of issue 28: `Hooks.on_superseded` when an API answers
`Baton-Token-Superseded`, and `client_policy()` reading the server's scheduled policy. An API
and an authorization server faked with `httpx.MockTransport`, a fake clock."""

from __future__ import annotations

import asyncio
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import requests.adapters

from baton.client import (
    AuthorizationServerUnavailable,
    BearerAuth,
    ClientError,
    ClientPolicyInfo,
    FileStore,
    Hooks,
    MemoryStore,
    OAuthClient,
    Refresher,
    RequestsAuth,
    SupersededEvent,
    TokenPair,
    aclient_policy,
    client_policy,
    fingerprint,
    store_pair,
)
from baton.client.policy import PolicyKnobs
from baton.client.superseded import HEADER, dies_at_of
from baton.core.client_policy import PolicySettings
from baton.core.policy import RetryPolicy

ISSUER = "https://as.example"
API = "https://api.example/notes"
NOW = 1_000_000.0
DIES = int(NOW) + 30


def pair(access: str) -> TokenPair:
    return TokenPair(
        access_token=access, refresh_token="rt_" + access, expires_at=NOW + 3600, obtained_at=NOW
    )


def refresher(store: MemoryStore, hooks: Hooks | None = None) -> Refresher:
    return Refresher(
        OAuthClient(ISSUER + "/token", "app", "secret"),
        store,
        leeway=30,
        hooks=hooks or Hooks(),
        clock=lambda: NOW,
    )


class Api:
    """Answers 200; with `Baton-Token-Superseded` for the tokens in `superseded`. `rotate_to`:
    a pair another process stores while the request is in flight."""

    def __init__(self, store: MemoryStore, superseded: set[str]) -> None:
        self.store = store
        self.superseded = superseded
        self.rotate_to: TokenPair | None = None
        self.seen: list[str] = []

    def answer(self, authorization: str) -> tuple[int, dict[str, str]]:
        token = authorization.removeprefix("Bearer ")
        self.seen.append(token)
        if self.rotate_to is not None:
            with self.store.lock() as lease:
                self.store.save(self.rotate_to, lease)
            self.rotate_to = None
        headers = {HEADER: f"dies-at={DIES}"} if token in self.superseded else {}
        return 200, headers

    def handle(self, request: httpx.Request) -> httpx.Response:
        status, headers = self.answer(request.headers["authorization"])
        return httpx.Response(status, headers=headers, json={})


def test_the_header_is_an_rfc_8941_dictionary() -> None:
    assert dies_at_of(["dies-at=1700000000"]) == 1700000000
    assert dies_at_of(['reason="rotated, elsewhere", dies-at=5;src=feed']) == 5
    assert dies_at_of(["other=1", "dies-at=7"]) == 7  # two lines, one dictionary
    assert dies_at_of(["dies-at=7, dies-at=8"]) == 8  # the last value wins
    for malformed in (["dies-at"], ["dies-at=soon"], ["dies-at=1.5"], [""], ["Dies-At=3"]):
        assert dies_at_of(malformed) is None


def test_the_hook_hears_once_per_token_that_the_rotation_happened_elsewhere() -> None:
    store = MemoryStore(pair("at0"))
    api = Api(store, {"at0"})
    events: list[SupersededEvent] = []
    auth = BearerAuth(refresher(store))
    assert auth.on_superseded(events.append) == events.append
    with httpx.Client(auth=auth, transport=httpx.MockTransport(api.handle)) as http:
        for _ in range(3):
            assert http.get(API).status_code == 200
    assert events == [SupersededEvent(DIES, fingerprint("at0"), NOW + 3600, stored_newer=False)]
    assert "at0" not in repr(events)  # fingerprints, never a token


def test_a_newer_stored_pair_is_used_by_the_next_request() -> None:
    """Another process rotated while the request was in flight: the event says the store holds
    a newer pair, and the next request carries it (the store is read on every request)."""
    store = MemoryStore(pair("at0"))
    api = Api(store, {"at0"})
    api.rotate_to = pair("at1")
    events: list[SupersededEvent] = []
    auth = BearerAuth(refresher(store, Hooks(on_superseded=events.append)))
    with httpx.Client(auth=auth, transport=httpx.MockTransport(api.handle)) as http:
        http.get(API)
        http.get(API)
    assert api.seen == ["at0", "at1"]
    assert [event.stored_newer for event in events] == [True]


def test_async_clients_hear_it_too() -> None:
    store = MemoryStore(pair("at0"))
    api = Api(store, {"at0"})
    events: list[SupersededEvent] = []
    auth = BearerAuth(refresher(store))
    auth.on_superseded(events.append)

    async def main() -> None:
        async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(api.handle)) as h:
            await h.get(API)

    asyncio.run(main())
    assert [event.dies_at for event in events] == [DIES]


def test_a_hook_that_raises_never_fails_the_request() -> None:
    store = MemoryStore(pair("at0"))
    api = Api(store, {"at0"})

    def broken(event: SupersededEvent) -> None:
        raise RuntimeError("the app's bug")

    auth = BearerAuth(refresher(store, Hooks(on_superseded=broken)))
    with httpx.Client(auth=auth, transport=httpx.MockTransport(api.handle)) as http:
        assert http.get(API).status_code == 200


class _Adapter(requests.adapters.BaseAdapter):
    def __init__(self, api: Api) -> None:
        super().__init__()
        self.api = api

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        status, headers = self.api.answer(str(request.headers["Authorization"]))
        response = requests.Response()
        response.status_code, response.request, response._content = status, request, b"{}"
        response.headers.update(headers)
        return response

    def close(self) -> None:
        pass


def test_requests_users_hear_it_too() -> None:
    store = MemoryStore(pair("at0"))
    api = Api(store, {"at0"})
    events: list[SupersededEvent] = []
    auth = RequestsAuth(refresher(store))
    auth.on_superseded(events.append)
    with requests.Session() as session:
        session.mount("https://", _Adapter(api))
        session.auth = auth
        assert session.get(API).status_code == 200
        session.get(API)
    assert [(event.dies_at, event.access_token) for event in events] == [(DIES, fingerprint("at0"))]


# -- client_policy() ----------------------------------------------------------------------------

KNOBS = {
    "access_ttl": 600,
    "refresh_idle_ttl": 1_209_600,
    "refresh_absolute_ttl": 7_776_000,
    "leeway": 300,
    "retry": "replay",
    "rotate": True,
    "grant_types": None,
    "require_pkce": True,
}
ANSWER = {
    "client_id": "app",
    "in_force": {**KNOBS, "since": None},
    "scheduled": {
        "settings": {**KNOBS, "leeway": 60, "retry": "strict", "future_knob": 1},
        "effective_at": 1_800_000_000,
        "report_only": True,
        "scheduled_at": 1_700_000_000,
    },
}


class PolicyServer:
    def __init__(self) -> None:
        self.metadata: dict[str, Any] = {
            "issuer": ISSUER,
            "token_endpoint": ISSUER + "/token",
            "client_policy_endpoint": ISSUER + "/client-policy",
        }
        self.answer: httpx.Response = httpx.Response(200, json=ANSWER)
        self.asked: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/.well-known/oauth-authorization-server":
            return httpx.Response(200, json=self.metadata)
        assert request.url.path == "/client-policy"
        self.asked.append(request.url.params["client_id"])
        answer = self.answer  # a copy: one Response object cannot serve two clients
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


def test_client_policy_reads_the_policy_in_force_and_the_scheduled_change() -> None:
    server = PolicyServer()
    with httpx.Client(transport=httpx.MockTransport(server.handle)) as http:
        policy = client_policy(ISSUER, "app", http=http)
    assert server.asked == ["app"]
    assert isinstance(policy, ClientPolicyInfo) and policy.client_id == "app"
    assert policy.in_force.leeway == 300 and policy.in_force.retry == "replay"
    assert policy.since is None
    scheduled = policy.scheduled
    assert scheduled is not None
    assert (scheduled.effective_at, scheduled.report_only, scheduled.scheduled_at) == (
        1_800_000_000,
        True,
        1_700_000_000,
    )
    assert policy.changes() == {"leeway": (300, 60), "retry": ("replay", "strict")}


def test_aclient_policy_and_the_refreshers_own() -> None:
    server = PolicyServer()
    server.answer = httpx.Response(
        200, json={**ANSWER, "in_force": {**KNOBS, "since": 1_600_000_000}, "scheduled": None}
    )

    async def main() -> ClientPolicyInfo:
        transport = httpx.MockTransport(server.handle)
        async with httpx.AsyncClient(transport=transport) as http:
            return await aclient_policy(ISSUER, "app", http=http)

    policy = asyncio.run(main())
    assert (policy.since, policy.scheduled, policy.changes()) == (1_600_000_000, None, {})
    http = httpx.Client(transport=httpx.MockTransport(server.handle))
    own = Refresher.discover(ISSUER, "app", "secret", MemoryStore(), http=http)
    assert own.client_policy() == policy
    assert asyncio.run(own.aclient_policy()) == policy
    http.close()


@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        (
            {"answer": httpx.Response(404, json={"error": "invalid_client"})},
            ClientError,
            "knows no",
        ),
        ({"metadata": {"issuer": ISSUER}}, ClientError, "publishes no client_policy_endpoint"),
        ({"metadata": {"issuer": "https://evil.example"}}, ClientError, "RFC 8414"),
        ({"answer": httpx.Response(503)}, AuthorizationServerUnavailable, "503"),
        ({"answer": httpx.Response(200, json={"client_id": "app"})}, ClientError, "malformed"),
        (
            {"answer": httpx.Response(200, json={**ANSWER, "in_force": {"leeway": "soon"}})},
            ClientError,
            "malformed",
        ),
    ],
    ids=["unknown client", "no endpoint", "another issuer", "down", "no in_force", "bad knob"],
)
def test_client_policy_failures_say_what_is_wrong(
    change: dict[str, Any], error: type[Exception], words: str
) -> None:
    server = PolicyServer()
    for name, value in change.items():
        setattr(server, name, value)
    with (
        httpx.Client(transport=httpx.MockTransport(server.handle)) as http,
        pytest.raises(error, match=words),
    ):
        client_policy(ISSUER, "app", http=http)


def test_an_unreachable_server_is_unavailable_not_a_crash() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with (
        httpx.Client(transport=httpx.MockTransport(down)) as http,
        pytest.raises(AuthorizationServerUnavailable),
    ):
        client_policy(ISSUER, "app", http=http)


# -- the SDK page's example ---------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def test_the_sdk_pages_example_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/sdk.md's example, run as it is printed against a Baton (metadata, client policy)
    and an API that says the stored token is superseded, both faked at the HTTP layer."""
    page = (ROOT / "docs" / "sdk.md").read_text()
    section = page.split("## Superseded tokens and scheduled policy changes", 1)[1]
    shown = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(shown.strip().splitlines()) <= 12

    issuer = "http://127.0.0.1:8000"
    server = PolicyServer()
    server.metadata = {**server.metadata, "issuer": issuer}
    api_store = MemoryStore()
    api = Api(api_store, {"at0"})

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.port == 8001:
            return api.handle(request)
        return server.handle(request)

    real = httpx.Client

    class Faked(real):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["transport"] = httpx.MockTransport(handle)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(httpx, "Client", Faked)
    monkeypatch.setattr(httpx._api, "Client", Faked)
    monkeypatch.setenv("HOME", str(tmp_path))
    home = tmp_path / ".config" / "my-app"
    home.mkdir(parents=True, mode=0o700)
    live = TokenPair(
        access_token="at0", refresh_token="rt0", expires_at=time.time() + 3600, obtained_at=NOW
    )
    store_pair(FileStore(home / "tokens.json"), live)

    exec(compile(shown, "docs/sdk.md", "exec"), {})  # the page's own code
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "from 1800000000 {'leeway': (300, 60), 'retry': ('replay', 'strict')}"
    assert printed[1].startswith(f"superseded: dies at {DIES} SupersededEvent(")
    assert printed[2] == "200"
    assert api.seen == ["at0"]


def test_mcp_clients_hear_it_too() -> None:
    """`MCPAuth` (the `mcp` extra): the same hook, through `refresher_options["hooks"]`."""
    httpx2 = pytest.importorskip("httpx2")
    from mcp.shared.auth import OAuthClientMetadata

    from baton.client.mcp import MCPAuth

    store = MemoryStore(pair("at0"))
    api = Api(store, {"at0"})
    events: list[SupersededEvent] = []
    auth = MCPAuth(
        "https://mcp.example/mcp",
        OAuthClientMetadata(redirect_uris=["http://localhost:1/cb"]),  # type: ignore[list-item]
        store,
        clock=lambda: NOW,
    )
    auth.on_superseded(events.append)

    def handle(request: Any) -> Any:
        status, headers = api.answer(request.headers["authorization"])
        return httpx2.Response(status, headers=headers, json={})

    async def main() -> None:
        async with httpx2.AsyncClient(auth=auth, transport=httpx2.MockTransport(handle)) as http:
            for _ in range(2):
                assert (await http.post("https://mcp.example/mcp", json={})).status_code == 200

    asyncio.run(main())
    assert events == [SupersededEvent(DIES, fingerprint("at0"), NOW + 3600, stored_newer=False)]


def test_the_sdks_knobs_are_the_servers() -> None:
    """`PolicyKnobs` mirrors `PolicySettings` (the one declaration of the knobs), read leniently:
    a grant type or a member this SDK does not know, or a lifetime over what a client may set
    (a server's own default may be), is no malformed answer."""
    assert [f.name for f in fields(PolicyKnobs)] == [f.name for f in fields(PolicySettings)]
    assert {p.value for p in RetryPolicy} == {"replay", "fork", "strict"}
    newer = {**KNOBS, "grant_types": ["urn:future"], "refresh_absolute_ttl": 10**10, "new": 1}
    assert PolicyKnobs.from_json(newer).grant_types == ("urn:future",)
