"""baton.resource against real `baton serve` processes and the example API under uvicorn:
revocations reach the API through the feed, for both token formats; the feed resumes after a
cut; keys rotate without a failed request. The timed version is bench/resource_latency.py."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from baton.resource import InvalidToken, Verifier
from tests.e2e.conftest import Server, ServerFactory, run_cli
from tests.proxy import CuttableProxy
from tests.resource.e2e.conftest import ApiFactory, GrantsFactory, server_supports_jwt
from tests.resource.e2e.support import first_rejection

pytestmark = pytest.mark.e2e

# Not a latency target (bench/resource_latency.py measures that), a bound that proves the
# rejection came from the feed and not from the token's one-hour expiry.
PROPAGATION_BOUND = 2.0


def server_options(token_format: str, **options: object) -> dict[str, object]:
    if token_format == "jwt":
        options["access_token_format"] = "jwt"
    return options


def assert_invalid_token(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="api", error="invalid_token"'), challenge


def test_a_revoked_grant_is_rejected(
    baton_server: ServerFactory,
    default_server: Server,
    api: ApiFactory,
    grants: GrantsFactory,
    token_format: str,
) -> None:
    server = default_server if token_format == "opaque" else baton_server(access_token_format="jwt")
    example = api(server)
    flows = grants(server)
    pair = flows.pair()
    assert pair["access_token"].startswith("bat_at_") == (token_format == "opaque")
    with httpx.Client(base_url=example.url) as http:
        hello = http.get("/hello", headers={"authorization": f"Bearer {pair['access_token']}"})
        assert hello.status_code == 200, hello.text
        assert hello.json()["format"] == token_format
        assert http.get("/hello").headers["www-authenticate"] == 'Bearer realm="api"'
        revoked = time.perf_counter()
        flows.revoke(pair["refresh_token"])  # a refresh token revokes its whole grant
        rejected, response = first_rejection(http, example.url + "/hello", pair["access_token"])
    assert_invalid_token(response)
    assert rejected - revoked < PROPAGATION_BOUND


def test_rotation_leeway_then_reuse(
    baton_server: ServerFactory, api: ApiFactory, grants: GrantsFactory, token_format: str
) -> None:
    """Rotate: the old access token lives until the end of the leeway, then the API refuses it
    (an event announced at exchange time). Reuse the old refresh token: the grant dies, and the
    API refuses the new access token too."""
    server = baton_server(**server_options(token_format, leeway=1))
    example = api(server)
    flows = grants(server)
    pair0 = flows.pair()
    refreshed = flows.refresh(pair0["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    pair1 = refreshed.json()
    exchanged = time.perf_counter()
    with httpx.Client(base_url=example.url) as http:
        old = {"authorization": f"Bearer {pair0['access_token']}"}
        assert http.get("/hello", headers=old).status_code == 200  # inside the leeway
        rejected, response = first_rejection(http, example.url + "/hello", pair0["access_token"])
        assert_invalid_token(response)
        assert rejected - exchanged < 1 + PROPAGATION_BOUND  # leeway 1 s (whole seconds)
        new = {"authorization": f"Bearer {pair1['access_token']}"}
        assert http.get("/hello", headers=new).status_code == 200
        reused = flows.refresh(pair0["refresh_token"])
        assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
        detected = time.perf_counter()
        rejected, response = first_rejection(http, example.url + "/hello", pair1["access_token"])
    assert_invalid_token(response)
    assert rejected - detected < PROPAGATION_BOUND


def test_scope_and_health(default_server: Server, api: ApiFactory, grants: GrantsFactory) -> None:
    server = default_server
    example = api(server)
    pair = grants(server).pair(scope="read")
    with httpx.Client(base_url=example.url) as http:
        headers = {"authorization": f"Bearer {pair['access_token']}"}
        assert http.get("/hello", headers=headers).status_code == 200
        refused = http.post("/notes", headers=headers)
        assert refused.status_code == 403
        assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
        assert 'scope="write"' in refused.headers["www-authenticate"]
        health = http.get("/health").json()
    assert health["mode"] == "cached" and health["feed"]["connected"] is True
    assert health["introspections"] == 1  # two requests, one introspection


def test_feed_cut_revoke_reconnect_misses_nothing(
    default_server: Server, grants: GrantsFactory
) -> None:
    server = default_server
    proxy = CuttableProxy(("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
    verifier = Verifier(
        server.url,
        *server.resource_server.basic,
        audience=server.url,  # the seeded client has no resources: its tokens are for the issuer
        feed_url=f"http://127.0.0.1:{proxy.port}/revocations",
        max_disconnect=0.5,
    )
    try:
        verifier.start(wait=10)
        assert verifier.feed is not None and verifier.feed_healthy()
        flows = grants(server)
        pairs = [flows.pair() for _ in range(3)]
        grant_ids = [verifier.verify(pair["access_token"]).grant_id for pair in pairs]
        watermark = verifier.feed.watermark
        proxy.cut()
        for pair in pairs[:2]:
            flows.revoke(pair["refresh_token"])
        wait_for(lambda: not verifier.feed_healthy())
        assert verifier.health()["fail_closed"] is True
        # Failing closed: introspection answers, so the revocation applies during the cut too.
        with pytest.raises(InvalidToken):
            verifier.verify(pairs[0]["access_token"])
        proxy.restore()
        wait_for(lambda: verifier.feed is not None and verifier.feed.watermark >= watermark + 2)
        for grant_id in grant_ids[:2]:  # revoked during the cut, learned from the resumed stream
            assert grant_id is not None and verifier.index.death(grant_id=grant_id) is not None
        assert verifier.index.death(grant_id=grant_ids[2]) is None
        wait_for(verifier.feed_healthy)
        assert verifier.health()["mode"] == "cached" and verifier.feed.connections >= 2
        before = verifier.introspections
        with pytest.raises(InvalidToken):
            verifier.verify(pairs[1]["access_token"])  # cached as active before the cut
        assert verifier.verify(pairs[2]["access_token"]).grant_id == grant_ids[2]
        assert verifier.introspections == before  # both answered from the cache and the index
    finally:
        verifier.stop()
        proxy.close()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_key_rotation_without_a_single_failed_request(
    baton_server: ServerFactory, api: ApiFactory
) -> None:
    """Fresh tokens (client_credentials) go through the API back to back while `baton keys
    rotate` publishes a key that signs 2 s later; the server picks it up at its next key reload
    (30 s at most), and from then on tokens carry the new kid. Not one request may fail."""
    if not server_supports_jwt():
        pytest.skip("this baton serve has no --access-token-format")
    server = baton_server(access_token_format="jwt", key_reload_interval=1)
    example = api(server)
    failures: list[str] = []
    kids: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client() as http:
            while not stop.is_set():
                issued = http.post(
                    server.token_url,
                    data={"grant_type": "client_credentials", "scope": "read"},
                    auth=server.client.basic,
                )
                if issued.status_code != 200:
                    failures.append(f"token: {issued.status_code} {issued.text}")
                    continue
                token = issued.json()["access_token"]
                response = http.get(
                    example.url + "/hello", headers={"authorization": f"Bearer {token}"}
                )
                if response.status_code != 200:
                    failures.append(f"api: {response.status_code} {response.text}")
                if not kids or kids[-1] != _kid(token):
                    kids.append(_kid(token))

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        wait_for(lambda: len(kids) >= 1)
        run_cli("keys", "rotate", "--db", str(server.db), "--publish-ahead", "2", "--json")
        wait_for(lambda: len(kids) >= 2, timeout=15)
        time.sleep(0.5)  # a few more requests with the new key
    finally:
        stop.set()
        worker.join(timeout=10)
    assert failures == []
    assert len(kids) == 2, kids  # tokens signed by the old key, then only by the new one


def _kid(token: str) -> str:
    head = token.split(".")[0]
    kid: str = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"]
    return kid
