"""Back-Channel Logout 1.0 end to end: reuse detection revokes a family, and the relying party
hears of it at once.

A relying party's receiver listens on loopback and is registered as the client's
`backchannel_logout_uri`. The RP signs in through the real pages (openid offline_access), refreshes,
then presents the old refresh token again after the leeway (1 s here): reuse, the grant is
revoked, and within one second a logout token arrives. The RP validates it with Authlib's JWT
(signature against the server's JWKS) and checks the claims Back-Channel Logout §2.4 and §2.6
ask for: iss, aud, iat, jti, the events member, sid and/or sub, no nonce, typ logout+jwt. An
admin's revocation with `baton grants revoke` (another process) reaches the RP the same way.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
import pytest

from tests.interop.conftest import Browser, ClientSpec, OidcServer, cli_batch

with warnings.catch_warnings():  # authlib.jose still ships, deprecated in favour of joserfc
    warnings.simplefilter("ignore")
    from authlib.jose import JsonWebKey, JWTClaims, jwt

pytestmark = pytest.mark.e2e

REDIRECT_URI = "http://127.0.0.1:9107/bcl/callback"
LEEWAY = 1
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"


@dataclass
class Received:
    at: float
    content_type: str
    body: bytes


@dataclass
class Receiver:
    """The RP's back-channel logout endpoint: records each POST and answers 200 (§2.8)."""

    url: str
    posts: list[Received] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    def reset(self) -> None:
        self.posts.clear()
        self.arrived.clear()

    def wait(self, timeout: float) -> Received | None:
        return self.posts[0] if self.arrived.wait(timeout) else None


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    box: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            got = box[0]
            got.posts.append(Received(time.monotonic(), self.headers.get("content-type", ""), body))
            got.arrived.set()
            self.send_response(200)
            self.send_header("cache-control", "no-store")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.append(Receiver(f"http://127.0.0.1:{http.server_address[1]}/backchannel-logout"))
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield box[0]
    finally:
        http.shutdown()
        http.server_close()


@pytest.fixture(scope="module")
def server(servers: Any, receiver: Receiver) -> OidcServer:
    server: OidcServer = servers(
        [ClientSpec("rp", (REDIRECT_URI,), flags=("--backchannel-logout-uri", receiver.url))],
        leeway=LEEWAY,
    )
    return server


def sign_in(server: OidcServer) -> dict[str, Any]:
    registered = server.client("rp")
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    query = urlencode(
        {
            "response_type": "code",
            "client_id": registered.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": "openid offline_access",
            "state": "s",
            "nonce": secrets.token_urlsafe(12),
            "prompt": "consent",
            "code_challenge": challenge.decode(),
            "code_challenge_method": "S256",
        }
    )
    with Browser(server) as browser:
        visit = browser.follow(f"{server.url}/authorize?{query}", REDIRECT_URI)
    response = httpx.post(
        server.url + "/token",
        data={
            "grant_type": "authorization_code",
            "code": visit.query["code"],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
        auth=registered.basic,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def refresh(server: OidcServer, refresh_token: str) -> httpx.Response:
    return httpx.post(
        server.url + "/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=server.client("rp").basic,
    )


def test_reuse_detection_sends_a_valid_logout_token_within_one_second(
    server: OidcServer, receiver: Receiver
) -> None:
    receiver.reset()
    first = sign_in(server)
    assert first.get("refresh_token"), "offline_access consented: a refresh token is due"
    keys = JsonWebKey.import_key_set(server.jwks())
    id_token = jwt.decode(first["id_token"], keys)

    renewed = refresh(server, first["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    time.sleep(LEEWAY + 1.1)  # past the leeway (whole seconds on the server's clock)

    assert receiver.posts == [], "no logout before the reuse"
    reused = refresh(server, first["refresh_token"])
    detected = time.monotonic()  # the answer may come after the delivery: that is fine
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant", reused.text

    delivery = receiver.wait(timeout=5)
    assert delivery is not None, "no logout token within 5 s of the reuse detection"
    assert delivery.at - detected <= 1.0, (
        f"the logout token came {delivery.at - detected:.2f}s late"
    )

    check_logout_token(server, delivery, id_token, keys)

    # The family is gone: the refreshed pair too (reuse revokes the grant).
    assert refresh(server, renewed.json()["refresh_token"]).status_code == 400
    time.sleep(0.3)
    assert len(receiver.posts) == 1, "one logout token per revoked grant"


def check_logout_token(
    server: OidcServer, delivery: Received, id_token: Any, keys: Any
) -> JWTClaims:
    """The delivery is a valid logout token for the RP's session (Back-Channel Logout §2.4-2.6),
    as the RP validates it with Authlib and the OP's published keys."""
    registered = server.client("rp")
    # §2.5: a form POST with one `logout_token` parameter.
    assert delivery.content_type.startswith("application/x-www-form-urlencoded")
    form = parse_qs(delivery.body.decode())
    assert list(form) == ["logout_token"] and len(form["logout_token"]) == 1
    token = form["logout_token"][0]

    # §2.6: validated as a JWT by the RP library with the OP's published keys.
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["typ"] == "logout+jwt"  # §2.4 (recommended explicit typing)
    claims: JWTClaims = jwt.decode(
        token,
        keys,
        claims_options={
            "iss": {"essential": True, "value": server.issuer},
            "aud": {"essential": True, "value": registered.client_id},
            "iat": {"essential": True},
            "jti": {"essential": True},
        },
    )
    claims.validate(leeway=5)
    assert claims["events"] == {BACKCHANNEL_EVENT: {}}
    assert "nonce" not in claims  # §2.4: a logout token MUST NOT contain a nonce
    assert "sub" in claims or "sid" in claims
    if "sub" in claims:
        assert claims["sub"] == id_token["sub"]
    if "sid" in claims:
        assert claims["sid"] == id_token["sid"]
    assert abs(claims["iat"] - time.time()) < 10

    return claims


def test_an_admin_revocation_from_the_cli_sends_a_logout_token(
    server: OidcServer, receiver: Receiver
) -> None:
    receiver.reset()
    first = sign_in(server)
    keys = JsonWebKey.import_key_set(server.jwks())
    id_token = jwt.decode(first["id_token"], keys)
    client_id = server.client("rp").client_id
    (listed,) = cli_batch(
        (["grants", "list", "--db", str(server.db), "--client", client_id, "--json"], None)
    )
    assert listed.code == 0, listed.stderr
    live = [g for g in json.loads(listed.stdout)["grants"] if g["status"] == "active"]
    assert len(live) == 1, listed.stdout

    (revoked,) = cli_batch(
        (["grants", "revoke", "--db", str(server.db), live[0]["grant_id"]], None)
    )
    assert revoked.code == 0, revoked.stderr
    done = time.monotonic()
    # Another process revoked it: the server's outbox sees the row at its next look (1 s idle).
    delivery = receiver.wait(timeout=5)
    assert delivery is not None, "no logout token within 5 s of the admin's revocation"
    assert delivery.at - done <= 2.0, f"the logout token came {delivery.at - done:.2f}s late"
    check_logout_token(server, delivery, id_token, keys)
