"""A fake authorization server for the unit tests: introspection, JWKS, the revocation page and
the SSE stream, all behind one `httpx.MockTransport` (sync and async clients alike)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
from joserfc import jws
from joserfc.jwk import ECKey, OKPKey, RSAKey

from baton.core.tokens import TokenKind, mint

ISSUER = "https://as.test"
RS_ID = "rs_client"
RS_SECRET = "rs_secret"

PrivateKey = ECKey | RSAKey | OKPKey


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def digest_hex(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class FakeAuthServer:
    now: float = field(default_factory=lambda: float(int(time.time())))
    keys: dict[str, tuple[str, PrivateKey]] = field(default_factory=dict)  # kid -> (alg, key)
    jwk_algs: dict[str, str] = field(default_factory=dict)  # kid -> the `alg` its JWK names
    published: list[str] = field(default_factory=list)  # kids in the JWKS
    opaque: dict[str, dict[str, Any]] = field(default_factory=dict)  # token -> introspection
    events: list[dict[str, Any]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # "METHOD /path" of every request
    stream_up: bool = True  # False: the stream endpoint answers 503
    introspection_up: bool = True
    jwks_up: bool = True
    _cuts: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- keys and tokens ---------------------------------------------------------------------

    def add_key(
        self, kid: str, alg: str = "ES256", publish: bool = True, jwk_alg: str | None = None
    ) -> PrivateKey:
        """A key that signs `alg`; published in the JWKS without `alg`, or with `jwk_alg`."""
        key: PrivateKey
        if alg.startswith("ES"):
            key = ECKey.generate_key("P-256", parameters={"kid": kid})
        elif alg.startswith("RS"):
            key = RSAKey.generate_key(2048, parameters={"kid": kid})
        else:
            key = OKPKey.generate_key("Ed25519", parameters={"kid": kid})
        self.keys[kid] = (alg, key)
        if jwk_alg is not None:
            self.jwk_algs[kid] = jwk_alg
        if publish:
            self.published.append(kid)
        return key

    def jwks(self) -> dict[str, Any]:
        return {
            "keys": [
                {**self.keys[kid][1].as_dict(private=False), "kid": kid, "use": "sig"}
                | ({"alg": self.jwk_algs[kid]} if kid in self.jwk_algs else {})
                for kid in self.published
            ]
        }

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(self.now)
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": "alice",
            "aud": ISSUER,
            "exp": now + 3600,
            "iat": now,
            "jti": "jti_" + secrets.token_hex(8),
            "client_id": "app",
            "scope": "read write",
            "grant_id": "grt_" + secrets.token_hex(8),
        }
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def jwt(self, kid: str = "k1", header: dict[str, Any] | None = None, **claims: Any) -> str:
        alg, key = self.keys[kid]
        protected = {"alg": alg, "kid": kid, "typ": "at+jwt", **(header or {})}
        protected = {name: value for name, value in protected.items() if value is not None}
        payload = json.dumps(self.claims(**claims)).encode()
        if alg == "EdDSA":
            # As an issuer from before RFC 9864 signs: joserfc would warn about the old name.
            assert isinstance(key, OKPKey)
            signing_input = f"{b64(json.dumps(protected).encode())}.{b64(payload)}"
            signature = key.private_key.sign(signing_input.encode())  # type: ignore[union-attr]
            return f"{signing_input}.{b64(signature)}"
        return jws.serialize_compact(protected, payload, key, algorithms=[alg])

    def opaque_token(self, **overrides: Any) -> str:
        token = mint(TokenKind.ACCESS).plaintext
        now = int(self.now)
        body: dict[str, Any] = {
            "active": True,
            "scope": "read write",
            "client_id": "app",
            "token_type": "Bearer",
            "exp": now + 3600,
            "iat": now,
            "iss": ISSUER,
            "grant_id": "grt_" + secrets.token_hex(8),
            "generation": 0,
            "sub": "alice",
            "jti": "jti_" + secrets.token_hex(8),
        }
        body.update(overrides)
        self.opaque[token] = {name: value for name, value in body.items() if value is not None}
        return token

    # -- revocations -------------------------------------------------------------------------

    def revoke_grant(self, grant_id: str, effective_at: float | None = None) -> dict[str, Any]:
        for body in self.opaque.values():
            if body.get("grant_id") == grant_id:
                body["active"] = False
        return self._event(
            {
                "kind": "grant",
                "grant_id": grant_id,
                "effective_at": int(self.now if effective_at is None else effective_at),
                "expires_at": int(self.now) + 3600,
            }
        )

    def revoke_token(
        self, token: str, jti: str, grant_id: str, effective_at: float | None = None
    ) -> dict[str, Any]:
        if token in self.opaque and effective_at is None:
            self.opaque[token]["active"] = False
        return self._event(
            {
                "kind": "access_token",
                "grant_id": grant_id,
                "jti": jti,
                "token_digest": digest_hex(token),
                "effective_at": int(self.now if effective_at is None else effective_at),
                "expires_at": int(self.now) + 3600,
            }
        )

    def _event(self, event: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            event["id"] = len(self.events) + 1
            self.events.append(event)
        return event

    def cut_streams(self) -> None:
        """Breaks every open stream (a network cut): readers get a ReadError."""
        with self._lock:
            self._cuts += 1

    # -- HTTP --------------------------------------------------------------------------------

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.requests.append(f"{request.method} {path}")
        if path == "/jwks.json":
            return httpx.Response(200, json=self.jwks()) if self.jwks_up else httpx.Response(500)
        if not self._authorized(request):
            return httpx.Response(401, json={"error": "invalid_client"})
        if path == "/introspect":
            if not self.introspection_up:
                return httpx.Response(503)
            token = parse_qs(request.content.decode())["token"][0]
            return httpx.Response(200, json=self._introspect(token))
        query = parse_qs(request.url.query.decode())
        since = int(query.get("since", ["0"])[0])
        if path == "/revocations":
            limit = int(query.get("limit", ["100"])[0])
            page = [e for e in self.events if e["id"] > since][:limit]
            watermark = page[-1]["id"] if page else max(since, len(self.events))
            return httpx.Response(200, json={"events": page, "watermark": watermark})
        if path == "/revocations/stream":
            if not self.stream_up:
                return httpx.Response(503)
            resume = request.headers.get("last-event-id")
            start = int(resume) if resume is not None else since
            return httpx.Response(
                200,
                headers={"content-type": "text/event-stream"},
                content=self._stream(start),
            )
        return httpx.Response(404)

    def _authorized(self, request: httpx.Request) -> bool:
        expected = "Basic " + base64.b64encode(f"{RS_ID}:{RS_SECRET}".encode()).decode()
        return bool(request.headers.get("authorization") == expected)

    def _introspect(self, token: str) -> dict[str, Any]:
        if token in self.opaque:
            body = self.opaque[token]
            return body if body.get("active") else {"active": False}
        return {"active": False}

    async def _stream(self, since: int) -> AsyncIterator[bytes]:
        cuts = self._cuts
        sent = since
        idle = 0.0
        while True:
            if self._cuts != cuts:
                raise httpx.ReadError("connection reset (test cut)")
            pending = [e for e in list(self.events) if e["id"] > sent]
            for event in pending:
                sent = event["id"]
                yield f"id: {sent}\nevent: revocation\ndata: {json.dumps(event)}\n\n".encode()
            if pending:
                idle = 0.0
            await asyncio.sleep(0.002)
            idle += 0.002
            if idle >= 0.5:
                idle = 0.0
                yield b": keep-alive\n\n"
