"""JWT access tokens (RFC 9068): local signature and claim checks, the JWKS cache, the feed."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from baton.resource import InvalidToken, Verifier
from tests.resource.conftest import VerifierFactory, eventually
from tests.resource.fakes import ISSUER, RS_ID, RS_SECRET, FakeAuthServer, b64


def jwks_fetches(fake: FakeAuthServer) -> int:
    return fake.requests.count("GET /jwks.json")


def refused(verifier: Verifier, token: str, reason: str) -> None:
    with pytest.raises(InvalidToken) as error:
        verifier.verify(token)
    assert reason in error.value.description, error.value.description


@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA", "Ed25519"])
def test_valid_token_is_verified_locally(
    fake: FakeAuthServer, make_verifier: VerifierFactory, alg: str
) -> None:
    fake.add_key("k2", alg)
    verifier = make_verifier()
    token = fake.jwt("k2", scope="read", grant_id="grt_1", jti="j1")
    principal = verifier.verify(token, "read")
    assert (principal.subject, principal.client_id, principal.grant_id, principal.jti) == (
        "alice",
        "app",
        "grt_1",
        "j1",
    )
    assert principal.token_format == "jwt" and principal.scopes == {"read"}
    verifier.verify(token)
    assert fake.requests.count("POST /introspect") == 0 and jwks_fetches(fake) == 1


def test_tampered_signature_and_payload(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier()
    head, payload, signature = fake.jwt().split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    refused(verifier, f"{head}.{payload}.{flipped}", "bad signature")
    claims = json.loads(__import__("base64").urlsafe_b64decode(payload + "=="))
    claims["scope"] = "admin"
    forged = b64(json.dumps(claims).encode())
    refused(verifier, f"{head}.{forged}.{signature}", "bad signature")


def test_signed_by_a_key_not_in_the_jwks(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier()
    fake.add_key("rogue", publish=False)
    refused(verifier, fake.jwt("rogue"), "unknown signing key")
    # Another key claiming a published kid: the published key's signature check fails.
    rogue_alg, rogue_key = fake.keys["rogue"]
    fake.keys["k1-impostor"] = (rogue_alg, rogue_key)
    token = fake.jwt("k1-impostor", header={"kid": "k1"})
    refused(verifier, token, "bad signature")


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"aud": "https://other.api"}, "audience"),
        ({"aud": ["https://a", "https://b"]}, "audience"),
        ({"iss": "https://evil.test"}, "issuer"),
        ({"exp": -10}, "expired"),
        ({"iat": 3600}, "future"),
        ({"nbf": 3600}, "not valid yet"),
        ({"jti": None}, "jti"),
        ({"client_id": None}, "client_id"),
        ({"exp": None}, "exp"),
    ],
)
def test_claims_are_checked(
    fake: FakeAuthServer, make_verifier: VerifierFactory, claims: dict[str, Any], reason: str
) -> None:
    verifier = make_verifier()
    now = int(fake.now)
    for name in ("exp", "iat", "nbf"):
        if isinstance(claims.get(name), int):
            claims[name] = now + claims[name]
    refused(verifier, fake.jwt(**claims), reason)


def test_expiry_has_a_small_leeway(fake: FakeAuthServer, make_verifier: VerifierFactory) -> None:
    verifier = make_verifier(leeway=5)
    token = fake.jwt(exp=int(fake.now))
    fake.now += 4.9
    verifier.verify(token)
    fake.now += 0.1
    refused(verifier, token, "expired")


def test_audience_from_a_resource_indicator(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier(audience="https://notes.api")
    verifier.verify(fake.jwt(aud=["https://notes.api", "https://x"]))
    refused(verifier, fake.jwt(), "audience")  # aud = the issuer, not this API


def test_alg_none_hs256_and_wrong_typ_are_refused(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier()
    claims = b64(json.dumps(fake.claims()).encode())
    none = b64(json.dumps({"alg": "none", "kid": "k1", "typ": "at+jwt"}).encode())
    refused(verifier, f"{none}.{claims}.", "malformed")  # empty signature: not even the shape
    refused(verifier, f"{none}.{claims}.AAAA", "algorithm not allowed: none")
    # HS256 signed with the public key's JSON as the secret: the classic confusion attack.
    import hashlib
    import hmac

    public = json.dumps(fake.jwks()["keys"][0]).encode()
    head = b64(json.dumps({"alg": "HS256", "kid": "k1", "typ": "at+jwt"}).encode())
    mac = hmac.new(public, f"{head}.{claims}".encode(), hashlib.sha256).digest()
    refused(verifier, f"{head}.{claims}.{b64(mac)}", "algorithm not allowed: HS256")
    refused(verifier, fake.jwt(header={"typ": "JWT"}), "typ must be at+jwt")
    refused(verifier, fake.jwt(header={"kid": None}), "kid")
    with pytest.raises(ValueError):
        Verifier(
            ISSUER, RS_ID, RS_SECRET, audience=ISSUER, algorithms=["ES256", "HS256"], feed=False
        )


def test_application_at_jwt_typ_is_accepted(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    make_verifier().verify(fake.jwt(header={"typ": "application/AT+JWT"}))


def test_unknown_kid_after_rotation_refetches_the_jwks_once(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier(jwks_min_refresh_interval=0.0)
    verifier.verify(fake.jwt("k1"))
    assert jwks_fetches(fake) == 1
    fake.add_key("k2")  # rotation: the next key is published, then signs
    verifier.verify(fake.jwt("k2"))
    verifier.verify(fake.jwt("k2"))
    verifier.verify(fake.jwt("k1"))  # tokens of the previous key still verify
    assert jwks_fetches(fake) == 2


def test_unknown_kids_are_rate_limited(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier(jwks_min_refresh_interval=60.0)
    verifier.verify(fake.jwt("k1"))
    fake.add_key("ghost", publish=False)
    for _ in range(2):
        # The first refetch would wait for the interval: refuse at once instead of sleeping.
        verifier.jwks._fetched_at = verifier.jwks._monotonic() - 60.0
        refused(verifier, fake.jwt("ghost"), "unknown signing key")
    assert jwks_fetches(fake) == 3


def test_concurrent_unknown_kids_share_one_refetch(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier(jwks_min_refresh_interval=0.2)
    verifier.verify(fake.jwt("k1"))
    fake.add_key("k2")
    tokens = [fake.jwt("k2") for _ in range(20)]

    async def main() -> None:
        await asyncio.gather(*(verifier.averify(token) for token in tokens))

    asyncio.run(main())
    assert jwks_fetches(fake) == 2


def test_symmetric_keys_in_the_jwks_are_ignored(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier()
    verifier.jwks.load({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "k1"}]})
    assert verifier.jwks.kids == []


def test_jwks_unreachable_is_503(fake: FakeAuthServer, make_verifier: VerifierFactory) -> None:
    from baton.resource import VerifierUnavailable

    verifier = make_verifier()
    fake.jwks_up = False
    with pytest.raises(VerifierUnavailable):
        verifier.verify(fake.jwt())


def test_revocation_by_jti_and_by_grant(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier()
    by_jti = fake.jwt(jti="j1", grant_id="g1")
    by_grant = fake.jwt(jti="j2", grant_id="g2")
    sibling = fake.jwt(jti="j3", grant_id="g1")
    for token in (by_jti, by_grant, sibling):
        verifier.verify(token)
    fake.revoke_token(by_jti, "j1", "g1")
    last = fake.revoke_grant("g2")
    eventually(lambda: verifier.index.applied == last["id"])
    refused(verifier, by_jti, "revoked")
    refused(verifier, by_grant, "revoked")
    verifier.verify(sibling)  # an access-token event kills that token only


def test_fail_closed_jwt_is_also_introspected(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier(start=False)
    token = fake.jwt()
    fake.opaque[token] = {"active": True}  # what a JWT-aware introspection would answer
    verifier.verify(token)
    fake.opaque[token] = {"active": False}
    refused(verifier, token, "not active")
    assert fake.requests.count("POST /introspect") == 2


def test_a_deeply_nested_header_is_invalid_token_not_a_crash(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    """A JWT-shaped token whose header decodes to thousands of `[`: json.loads raises
    RecursionError, which must be a 401 like any malformed token (before the fix: a 500 and a
    traceback per unauthenticated request)."""
    verifier = make_verifier()
    claims = b64(json.dumps(fake.claims()).encode())
    for depth in (1_000, 5_000):
        nested = b64(b"[" * depth)
        refused(verifier, f"{nested}.{claims}.AAAA", "malformed")
        with pytest.raises(InvalidToken):
            asyncio.run(verifier.averify(f"{nested}.{claims}.AAAA"))


def test_no_plaintext_jwt_is_kept_by_the_caches(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    """The caches are keyed by the token's SHA-256 digest, never by the token itself, and a
    revocation still reaches the cached answer."""
    verifier = make_verifier()
    token = fake.jwt(jti="j1", grant_id="g1")
    verifier.verify(token)
    verifier.verify(token)  # from the cache
    assert fake.requests.count("POST /introspect") == 0
    last = fake.revoke_token(token, "j1", "g1")
    eventually(lambda: verifier.index.applied == last["id"])
    refused(verifier, token, "revoked")
    kept = [*verifier._cache, *verifier._negative]
    kept += [key for keys in verifier._grant_tokens.values() for key in keys]
    assert kept and all(token not in key for key in kept)
