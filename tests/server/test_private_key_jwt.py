"""`private_key_jwt` client authentication (RFC 7523 §2.2 and §3, OIDC Core §9) at /token,
/introspect and /revoke, end to end: the client's keys served by a real HTTP server on loopback
(`client_documents_allow_private`), assertions signed by joserfc and by Authlib's
`PrivateKeyJWT`, and each refusal seen."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import anyio
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jws
from joserfc.jwk import ECKey, OKPKey, RSAKey
from starlette.testclient import TestClient

from baton.core.client_assertion import AssertionProblem, Header
from baton.core.clock import FakeClock
from baton.core.jwa import registry
from baton.core.tokens import TokenKind, mint
from baton.server.endpoints.errors import NoStoreJSON
from baton.server.runtime.client_keys import (
    MAX_TTL,
    MIN_TTL,
    REFETCH_INTERVAL,
    ClientKeys,
    KeySetDocument,
    KeySetUnavailable,
)
from baton.store.admin import Actor
from baton.store.base import Client, RegisteredVia
from baton.store.sql import SQLStore
from tests.support import ISSUER, RegisteredClient, register_client, running_app

TOKEN_URL = ISSUER + "/token"
ADMIN = Actor("admin", None, 0)
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SigningKey = ECKey | RSAKey | OKPKey


@dataclass
class KeyServer:
    """A client's `jwks_uri`: a real HTTP server on loopback serving `keys`' public halves."""

    keys: list[SigningKey] = field(default_factory=list)
    fetches: int = 0
    url: str = ""

    def document(self) -> bytes:
        self.fetches += 1
        return json.dumps({"keys": [key.as_dict(private=False) for key in self.keys]}).encode()


@pytest.fixture(scope="module")
def key_server() -> Iterator[KeyServer]:
    served = KeyServer([ECKey.generate_key("P-256", parameters={"kid": "ec-1"})])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = served.document()
            self.send_response(200)
            self.send_header("Content-Type", "application/jwk-set+json")
            self.send_header("Cache-Control", "max-age=600")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    served.url = f"http://127.0.0.1:{server.server_port}/jwks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served
    server.shutdown()
    server.server_close()


@dataclass
class Running:
    http: TestClient
    store: SQLStore
    clock: FakeClock
    keys: KeyServer
    client_id: str


def create_jwt_client(store: SQLStore, jwks_uri: str) -> str:
    """A confidential client registered for private_key_jwt (as a client ID metadata document
    or a dynamic registration makes one): no secret, its keys at `jwks_uri`."""
    client = Client(
        id="https://app.example/client-" + secrets.token_hex(4),
        name="keyed client",
        secret_digest=None,
        is_public=False,
        is_resource_server=False,
        redirect_uris=(),
        scope="read write",
        created_at=0,
        token_endpoint_auth_method="private_key_jwt",
        jwks_uri=jwks_uri,
    )
    anyio.run(store.create_client, client)
    return client.id


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, key_server: KeyServer) -> Iterator[Running]:
    # The clock is the real time: Authlib signs with `time.time()`.
    clock = FakeClock(int(time.time()))
    folder = tmp_path_factory.mktemp("private-key-jwt")
    with running_app(folder, clock=clock, client_documents_allow_private=True) as (http, store, _):
        client_id = create_jwt_client(store, key_server.url)
        yield Running(http, store, clock, key_server, client_id)


def assertion(
    running: Running,
    *,
    key: SigningKey | None = None,
    alg: str = "ES256",
    header: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    """An assertion of the test client signed with `key` (the key server's first)."""
    key = key or running.keys.keys[0]
    now = running.clock.now()
    body: dict[str, Any] = {
        "iss": running.client_id,
        "sub": running.client_id,
        "aud": TOKEN_URL,
        "iat": now,
        "exp": now + 60,
        "jti": secrets.token_urlsafe(16),
    }
    body.update({name: value for name, value in claims.items() if value is not None})
    for name in [name for name, value in claims.items() if value is None]:
        body.pop(name, None)
    protected = {"alg": alg, "kid": key.kid, **(header or {})}
    return jws.serialize_compact(protected, json.dumps(body).encode(), key, registry=registry(alg))


def with_assertion(signed: str, /, **form: str) -> dict[str, str]:
    return {"client_assertion_type": JWT_BEARER, "client_assertion": signed, **form}


CLIENT_CREDENTIALS = {"grant_type": "client_credentials", "scope": "read"}


def refused(answer: Any, words: str, status: int = 401, error: str = "invalid_client") -> None:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["error"] == error
    assert words in body["error_description"]


def test_a_client_credentials_grant_introspection_and_revocation_authenticated_by_assertions(
    running: Running,
) -> None:
    http = running.http
    answer = http.post("/token", data=with_assertion(assertion(running), **CLIENT_CREDENTIALS))
    assert answer.status_code == 200, answer.text
    token = answer.json()["access_token"]
    assert answer.json()["scope"] == "read"
    # The same client at the other two endpoints, each time with a new assertion; the client_id
    # may be sent too, if it is the assertion's.
    found = http.post(
        "/introspect",
        data=with_assertion(assertion(running), token=token, client_id=running.client_id),
    )
    assert found.status_code == 200, found.text
    assert found.json()["active"] is True
    assert found.json()["client_id"] == running.client_id
    revoked = http.post("/revoke", data=with_assertion(assertion(running), token=token))
    assert revoked.status_code == 200, revoked.text
    found = http.post("/introspect", data=with_assertion(assertion(running), token=token))
    assert found.json() == {"active": False}


@pytest.mark.parametrize(
    ("key", "alg"),
    [
        (lambda: RSAKey.generate_key(2048, parameters={"kid": "rsa-1"}), "PS256"),
        (lambda: OKPKey.generate_key("Ed25519", parameters={"kid": "ed-1"}), "Ed25519"),
    ],
)
def test_rsa_and_edwards_keys_sign_assertions_too(
    running: Running, key: Any, alg: str, tmp_path: Path
) -> None:
    signing = key()
    client_id = create_jwt_client(running.store, running.keys.url)
    running.keys.keys.append(signing)
    try:
        running.clock.advance(REFETCH_INTERVAL)  # the set is read again for the new kid
        token = assertion(running, key=signing, alg=alg, iss=client_id, sub=client_id)
        answer = running.http.post("/token", data=with_assertion(token, **CLIENT_CREDENTIALS))
        assert answer.status_code == 200, answer.text
    finally:
        running.keys.keys.remove(signing)


def test_authlib_s_private_key_jwt_client_gets_a_token(running: Running) -> None:
    """Authlib's own client (its `PrivateKeyJWT`: RS256 by default, `aud` the token endpoint,
    an hour's `exp`), through the app's transport."""
    rsa = RSAKey.generate_key(2048, parameters={"kid": "authlib"})
    running.keys.keys.append(rsa)
    running.clock.advance(REFETCH_INTERVAL)
    try:
        with OAuth2Client(
            running.client_id,
            rsa,
            token_endpoint_auth_method=PrivateKeyJWT(TOKEN_URL, headers={"kid": "authlib"}),
            transport=running.http._transport,
            base_url=ISSUER,
        ) as client:
            token = client.fetch_token(TOKEN_URL, grant_type="client_credentials", scope="write")
    finally:
        running.keys.keys.remove(rsa)
    assert token["token_type"].lower() == "bearer"
    assert token["scope"] == "write"


def test_the_general_path_authenticates_assertions_as_the_fast_path_does(
    tmp_path: Path, key_server: KeyServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(int(time.time()))
    monkeypatch.setattr(NoStoreJSON, "short_cut", NoStoreJSON.short_cut)  # the app switches it
    with running_app(
        tmp_path, clock=clock, fast_paths=False, client_documents_allow_private=True
    ) as (http, store, _):
        client_id = create_jwt_client(store, key_server.url)
        general = Running(http, store, clock, key_server, client_id)
        token = assertion(general)
        answer = http.post("/token", data=with_assertion(token, **CLIENT_CREDENTIALS))
        assert answer.status_code == 200, answer.text
        refused(http.post("/token", data=with_assertion(token, **CLIENT_CREDENTIALS)), "jti")


def test_a_replayed_assertion_is_refused(running: Running) -> None:
    token = assertion(running)
    first = running.http.post("/token", data=with_assertion(token, **CLIENT_CREDENTIALS))
    assert first.status_code == 200, first.text
    again = running.http.post("/token", data=with_assertion(token, **CLIENT_CREDENTIALS))
    refused(again, "used before")
    # At another endpoint too: the jti is the client's, wherever it is presented.
    refused(running.http.post("/introspect", data=with_assertion(token, token="x")), "used before")


def hs256_with_public_key(running: Running) -> str:
    """The key-confusion attack: HS256 keyed with the client's public key (its PEM, as a naive
    verifier would take the key's bytes)."""
    public_pem = running.keys.keys[0].as_pem(private=False)
    now = running.clock.now()

    def segment(value: dict[str, Any]) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=")

    claims: dict[str, Any] = {"iss": running.client_id, "sub": running.client_id, "aud": TOKEN_URL}
    claims |= {"exp": now + 60, "jti": secrets.token_urlsafe(8)}
    signing_input = segment({"alg": "HS256", "kid": "ec-1"}) + b"." + segment(claims)
    mac = hmac.new(public_pem, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + base64.urlsafe_b64encode(mac).rstrip(b"=")).decode()


def relabelled(token: str, alg: str) -> str:
    """`token` with its header's `alg` changed (its signature no longer matches, whatever)."""
    header = json.dumps({"alg": alg, "kid": "ec-1"}).encode()
    return base64.urlsafe_b64encode(header).rstrip(b"=").decode() + token[token.index(".") :]


def unsigned(running: Running) -> str:
    """`alg: none`, with junk where the signature would be."""
    signed = assertion(running)
    header = base64.urlsafe_b64encode(b'{"alg":"none","kid":"ec-1"}').rstrip(b"=").decode()
    return header + "." + signed.split(".")[1] + ".AAAA"


def stranger(kid: str) -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": kid})


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda r: assertion(r, exp=r.clock.now() - 60), "expired"),
        (lambda r: assertion(r, exp=None), "no exp"),
        (lambda r: assertion(r, aud="https://other.example/token"), "aud"),
        (lambda r: assertion(r, aud=ISSUER), None),  # the issuer identifier is an audience
        (lambda r: assertion(r, iss="https://app.example/other"), "iss"),
        (lambda r: assertion(r, jti=None), "jti"),
        (lambda r: assertion(r, nbf=r.clock.now() + 600), "nbf"),
        (unsigned, "alg"),
        (hs256_with_public_key, "alg"),
        (lambda r: assertion(r, key=stranger("ec-1")), "signature"),  # a known kid, another key
        (lambda r: assertion(r, key=stranger("nope")), "kid"),
        (lambda r: relabelled(assertion(r), "RS256"), "signature"),  # an EC key does no RS256
    ],
)
def test_bad_assertions_are_refused(running: Running, make: Any, words: str | None) -> None:
    answer = running.http.post("/token", data=with_assertion(make(running), **CLIENT_CREDENTIALS))
    if words is None:
        assert answer.status_code == 200, answer.text
    else:
        refused(answer, words)


def test_the_assertion_is_only_ever_its_own_client_s(running: Running) -> None:
    """`sub` names the client (RFC 7523 §3 item 2), whose id `iss` must be too (Core §9), and a
    `client_id` sent beside it must be the same (RFC 7521 §4.2)."""
    other = create_jwt_client(running.store, running.keys.url)
    as_other = with_assertion(assertion(running, sub=other), **CLIENT_CREDENTIALS)
    refused(running.http.post("/token", data=as_other), "iss")
    as_other = with_assertion(assertion(running, iss=other), **CLIENT_CREDENTIALS)
    refused(running.http.post("/token", data=as_other), "iss")
    mismatch = with_assertion(assertion(running), client_id=other, **CLIENT_CREDENTIALS)
    refused(running.http.post("/token", data=mismatch), "client_id")
    unknown = with_assertion(assertion(running, iss="nobody", sub="nobody"), **CLIENT_CREDENTIALS)
    refused(running.http.post("/token", data=unknown), "unknown client")


def test_an_unknown_kid_reads_the_key_set_again_once_then_refuses(running: Running) -> None:
    running.clock.advance(REFETCH_INTERVAL)
    before = running.keys.fetches
    stranger = ECKey.generate_key("P-256", parameters={"kid": "unknown"})
    token = assertion(running, key=stranger)
    refused(running.http.post("/token", data=with_assertion(token, **CLIENT_CREDENTIALS)), "kid")
    assert running.keys.fetches == before + 1
    # Within the interval another unknown kid costs the key server nothing.
    token = assertion(running, key=stranger)
    refused(running.http.post("/token", data=with_assertion(token, **CLIENT_CREDENTIALS)), "kid")
    assert running.keys.fetches == before + 1
    # Published (the client rotated), it is found by the next read.
    running.keys.keys.append(stranger)
    try:
        running.clock.advance(REFETCH_INTERVAL)
        token = assertion(running, key=stranger)
        answer = running.http.post("/token", data=with_assertion(token, **CLIENT_CREDENTIALS))
        assert answer.status_code == 200, answer.text
    finally:
        running.keys.keys.remove(stranger)


def test_a_request_authenticated_again_after_its_client_changed_is_no_replay(
    running: Running,
) -> None:
    """A client's row changed after this process cached it: the request's work is refused
    (`ClientChanged`) and the request authenticated again on a fresh read, with the assertion
    it carries, which this request itself remembered: that is not a replay."""
    client = replace(running, client_id=create_jwt_client(running.store, running.keys.url))
    answer = running.http.post(
        "/token", data=with_assertion(assertion(client), **CLIENT_CREDENTIALS)
    )
    token = answer.json()["access_token"]
    found = running.http.post("/introspect", data=with_assertion(assertion(client), token=token))
    assert found.status_code == 200, found.text  # the client is cached now (/token caches none)
    changed = mint(TokenKind.CLIENT_SECRET).digest  # any change of what the row authenticates
    assert anyio.run(running.store.admin().rotate_secret, client.client_id, changed, ADMIN)
    found = running.http.post("/introspect", data=with_assertion(assertion(client), token=token))
    assert found.status_code == 200, found.text
    assert found.json()["active"] is True


def test_one_authentication_method_per_request(running: Running) -> None:
    token = assertion(running)
    both = with_assertion(token, **CLIENT_CREDENTIALS)
    refused(
        running.http.post("/token", data=both, auth=(running.client_id, "x")),
        "one client authentication method",
        400,
        "invalid_request",
    )
    with_secret = with_assertion(token, client_secret="x", **CLIENT_CREDENTIALS)
    refused(running.http.post("/token", data=with_secret), "one client", 400, "invalid_request")
    alone = {"client_assertion": token, **CLIENT_CREDENTIALS}
    refused(running.http.post("/token", data=alone), "go together", 400, "invalid_request")
    other_type = with_assertion(token, **CLIENT_CREDENTIALS)
    other_type["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"
    refused(running.http.post("/token", data=other_type), "unsupported client_assertion_type")
    refused(running.http.post("/token", data=with_assertion("junk", **CLIENT_CREDENTIALS)), "JWT")


def test_a_private_key_jwt_client_authenticates_no_other_way(running: Running) -> None:
    # RFC 6749 §2.3.1: the id form-encoded before Base64 (a URL's ":" would end it otherwise).
    encoded_id = quote_plus(running.client_id)
    basic = running.http.post("/token", data=CLIENT_CREDENTIALS, auth=(encoded_id, "s"))
    refused(basic, "private_key_jwt only")
    post = {"client_id": running.client_id, "client_secret": "s", **CLIENT_CREDENTIALS}
    refused(running.http.post("/token", data=post), "private_key_jwt only")
    bare = {"client_id": running.client_id, **CLIENT_CREDENTIALS}
    refused(running.http.post("/token", data=bare), "private_key_jwt only")


def test_a_client_registered_for_a_secret_may_not_use_an_assertion(running: Running) -> None:
    """Even one that publishes keys (a `jwks_uri` registered for other uses): its registration
    says it authenticates with its secret (RFC 7591 §2 `token_endpoint_auth_method`)."""
    secret = mint(TokenKind.CLIENT_SECRET)
    client = Client(
        id="https://app.example/secret-" + secrets.token_hex(4),
        name="secret client with keys",
        secret_digest=secret.digest,
        is_public=False,
        is_resource_server=False,
        redirect_uris=(),
        scope="read",
        created_at=0,
        token_endpoint_auth_method="client_secret_basic",
        jwks_uri=running.keys.url,
    )
    anyio.run(running.store.create_client, client)
    token = assertion(running, iss=client.id, sub=client.id)
    answer = running.http.post("/token", data=with_assertion(token, **CLIENT_CREDENTIALS))
    refused(answer, "not registered for private_key_jwt")
    # Nor one registered by an operator, with a secret and no method said.
    operators: RegisteredClient = register_client(running.store)
    token = assertion(running, iss=operators.id, sub=operators.id)
    answer = running.http.post("/token", data=with_assertion(token, **CLIENT_CREDENTIALS))
    refused(answer, "not registered for private_key_jwt")
    # Its secret still works.
    ok = running.http.post("/token", data=CLIENT_CREDENTIALS, auth=operators.basic)
    assert ok.status_code == 200, ok.text


def test_the_metadata_advertises_private_key_jwt_and_its_algorithms(running: Running) -> None:
    document = running.http.get("/.well-known/oauth-authorization-server").json()
    for endpoint in ("token", "revocation", "introspection"):
        assert "private_key_jwt" in document[f"{endpoint}_endpoint_auth_methods_supported"]
        algs = document[f"{endpoint}_endpoint_auth_signing_alg_values_supported"]
        assert "RS256" in algs
        assert not {"none", "HS256"} & set(algs)


def test_the_key_set_is_kept_as_long_as_its_cache_headers_say(running: Running) -> None:
    """The key server says `max-age=600`: read once, then again only once that has passed."""
    client = replace(running, client_id=create_jwt_client(running.store, running.keys.url + "?c"))

    def authenticated() -> None:
        answer = running.http.post(
            "/token", data=with_assertion(assertion(client), **CLIENT_CREDENTIALS)
        )
        assert answer.status_code == 200, answer.text

    before = running.keys.fetches
    authenticated()
    assert running.keys.fetches == before + 1
    running.clock.advance(599)
    authenticated()
    assert running.keys.fetches == before + 1
    running.clock.advance(1)
    authenticated()
    assert running.keys.fetches == before + 2


def test_a_key_set_that_cannot_be_read_refuses_the_client_not_the_server(
    running: Running,
) -> None:
    closed = "http://127.0.0.1:9/jwks"  # the discard port: nothing listens
    client = replace(running, client_id=create_jwt_client(running.store, closed))
    answer = running.http.post(
        "/token", data=with_assertion(assertion(client), **CLIENT_CREDENTIALS)
    )
    refused(answer, "jwks_uri could not be read")
    # Why is logged, not told to whoever chose the URL (it would map the server's network).
    assert "connection" not in answer.json()["error_description"]
    # Not asked again for a while: a flood naming the client costs one fetch per interval.
    before = running.keys.fetches
    fetches = client_keys_of(running).fetches
    answer = running.http.post(
        "/token", data=with_assertion(assertion(client), **CLIENT_CREDENTIALS)
    )
    refused(answer, "jwks_uri could not be read")
    assert client_keys_of(running).fetches == fetches
    running.clock.advance(REFETCH_INTERVAL)
    answer = running.http.post(
        "/token", data=with_assertion(assertion(client), **CLIENT_CREDENTIALS)
    )
    refused(answer, "jwks_uri could not be read")
    assert client_keys_of(running).fetches == fetches + 1
    assert running.keys.fetches == before


def client_keys_of(running: Running) -> ClientKeys:
    found = running.http.app.state.client_keys  # type: ignore[attr-defined]
    assert isinstance(found, ClientKeys)
    return found


class ScriptedKeySets:
    """A `KeySetSource` that serves `document` until `down`, then fails; counts its reads and
    lets them take `delay` seconds."""

    def __init__(self, document: Any, delay: float = 0.0) -> None:
        self.document = document
        self.delay = delay
        self.down = False
        self.reads = 0

    async def fetch_json(self, url: str) -> KeySetDocument:
        self.reads += 1
        if self.delay:
            await anyio.sleep(self.delay)
        if self.down:
            raise KeySetUnavailable("the client's jwks_uri could not be read")
        return KeySetDocument(self.document, 0)


def test_concurrent_assertions_share_one_read_of_the_key_set() -> None:
    """Two hundred junk assertions at once naming a client's jwks_uri cost its key server one
    GET, not two hundred."""
    source = ScriptedKeySets({"keys": []}, delay=0.05)
    keys = ClientKeys(source)

    async def one() -> None:
        with pytest.raises(AssertionProblem):
            await keys.verified_payload("a.b.c", Header("ES256", "k"), "https://victim/jwks", 1000)

    async def many() -> None:
        async with anyio.create_task_group() as group:
            for _ in range(200):
                group.start_soon(one)

    anyio.run(many)
    assert source.reads == 1


def test_a_key_set_that_cannot_be_read_again_is_not_used_past_max_ttl() -> None:
    """A key server that now fails (the client withdrew a compromised key by taking the set
    down) lets the set read before serve `MIN_TTL` at a time, but never more than `MAX_TTL`
    after that last good read."""
    key = ECKey.generate_key("P-256", parameters={"kid": "gone"})
    source = ScriptedKeySets({"keys": [key.as_dict(private=False)]})
    keys = ClientKeys(source)

    def signed() -> str:
        return jws.serialize_compact(
            {"alg": "ES256", "kid": "gone"}, b"{}", key, registry=registry("ES256")
        )

    def verifies(now: int) -> bool:
        try:
            anyio.run(keys.verified_payload, signed(), Header("ES256", "gone"), "https://c/j", now)
        except AssertionProblem:
            return False
        return True

    start = 1_000_000
    assert verifies(start)
    source.down = True
    accepted = [now for now in range(start, start + 3 * MAX_TTL, MIN_TTL + 1) if verifies(now)]
    assert accepted and max(accepted) < start + MAX_TTL
    assert not verifies(start + 3 * MAX_TTL)


def test_a_document_client_s_keys_are_not_trusted_past_its_document_s_expiry(
    tmp_path: Path, key_server: KeyServer
) -> None:
    """A private_key_jwt client of a metadata document authenticates on its stored row only
    while that row is fresh: once its document expired, the document is fetched again before
    the client is authenticated, and a document that cannot be fetched any more (here: its host
    refuses connections) means its keys cannot be confirmed: `invalid_client`, even for a row
    this process cached. (An app of its own: its clock moves.)"""
    url = f"https://127.0.0.1:9/{secrets.token_hex(4)}.json"  # the discard port: nothing listens
    clock = FakeClock(int(time.time()))
    with running_app(tmp_path, clock=clock, client_documents_allow_private=True) as (
        http,
        store,
        _,
    ):
        now = clock.now()
        row = Client(
            id=url,
            name="document client",
            secret_digest=None,
            is_public=False,
            is_resource_server=False,
            redirect_uris=("https://app.example/cb",),
            scope="",  # this app lets document clients have no scope (`dynamic_client_scopes`)
            created_at=now,
            registered_via=RegisteredVia.DOCUMENT,
            registration={},
            document_expires_at=now + 300,
            token_endpoint_auth_method="private_key_jwt",
            jwks_uri=key_server.url,
        )
        assert anyio.run(store.save_document_client, row) == row
        client = Running(http, store, clock, key_server, url)
        form = {"token": "not-a-token"}
        fresh = http.post("/introspect", data=with_assertion(assertion(client), **form))
        assert fresh.status_code == 200, fresh.text  # fresh: no fetch; the cache holds it now
        clock.advance(301)
        stale = http.post("/introspect", data=with_assertion(assertion(client), **form))
        refused(stale, "cannot be confirmed")
        assert "127.0.0.1" not in stale.json()["error_description"]
