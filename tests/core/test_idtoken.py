"""ID tokens (OIDC Core §2, §3.1.3.6, §12.2): claims, at_hash, signing, the sealed pair, and
which OpenID Connect grants get a refresh token (§11)."""

from __future__ import annotations

import json
import warnings
from functools import cache
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from joserfc import jws
from joserfc.jwk import import_key

from baton.core.facts import GrantFacts, SignIn
from baton.core.idtoken import (
    PROTOCOL_CLAIMS,
    IdTokenError,
    IdTokenIssuer,
    id_token_claims,
    token_hash,
)
from baton.core.jwa import registry
from baton.core.keys import SigningKey, generate, key_encryption_key, unseal
from baton.core.pairs import IssuedPair, MintedPair, plan_pair
from baton.core.policy import Policy
from baton.core.rules import issues_refresh_token
from baton.core.subject import subject_for

KEK = key_encryption_key("correct horse battery staple, 32+ chars")
ISSUER = "https://op.example"
SALT = b"s" * 32
NOW = 1_800_000_000


@cache
def signing_key(alg: str) -> SigningKey:
    stored = generate(alg, NOW, NOW, KEK)
    return SigningKey(stored, unseal(stored, KEK))


def grant(scope: str = "openid offline_access", **changes: Any) -> GrantFacts:
    fields: dict[str, Any] = {
        "id": "grt_1",
        "client_id": "cl_rp",
        "user_id": 1,
        "subject": "alice",
        "scope": scope,
        "created_at": NOW,
        "expires_at": NOW + 86400,
        "revoked_at": None,
        "revoked_reason": None,
        "sid": "sid_browser",
        "sign_in": SignIn(auth_time=NOW - 30, amr=("pwd",), claims={"email": "a@example.com"}),
    }
    return GrantFacts(**(fields | changes))


def issuer(alg: str = "RS256", **changes: Any) -> IdTokenIssuer:
    fields: dict[str, Any] = {
        "issuer": ISSUER,
        "lifetime": 3600,
        "salt": SALT,
        "alg": alg,
        "subject_type": "public",
        "redirect_uris": ("https://rp.example/cb",),
        "sector_identifier_uri": None,
        "key_for": lambda wanted, _now: signing_key(wanted),
    }
    return IdTokenIssuer(**(fields | changes))


def verified(token: str, alg: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a token whose signature the public half of its key checks."""
    key = signing_key(alg)
    public = import_key(json.loads(key.stored.public_jwk))
    found = jws.deserialize_compact(token, public, registry=registry(alg))
    return dict(found.headers()), json.loads(found.payload)


# -- at_hash -------------------------------------------------------------------------------------


def test_at_hash_matches_a_known_value() -> None:
    """The example of oidc-token-hash (node-oidc-provider's and openid-client's), for RS256."""
    access_token = (
        "YmJiZTAwYmYtMzgyOC00NzhkLTkyOTItNjJjNDM3MGYzOWIy9sFhvH8K_x8UIHj1osisS57f5DduL-ar_qw5jl3"
        "lthwpMjm283aVMQXDmoqqqydDSqJfbhptzw8rUVwkuQbolw"
    )
    assert token_hash(access_token, "RS256") == "x7vk7f6BvQj0jQHYFIk4ag"


@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1))
def test_at_hash_agrees_with_authlib(access_token: str) -> None:
    """Authlib's relying-party check (`create_half_hash`) computes the same value: SHA-256 for
    RS256 and ES256, SHA-512 for Ed25519 (Authlib knows it by its old name, EdDSA)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from authlib.oidc.core.util import create_half_hash
    for alg, authlib_alg, length in (
        ("RS256", "RS256", 22),
        ("ES256", "ES256", 22),
        ("Ed25519", "EdDSA", 43),
        ("EdDSA", "EdDSA", 43),
    ):
        value = token_hash(access_token, alg)
        assert len(value) == length  # the left half of 256 or 512 bits, base64url, unpadded
        assert value == create_half_hash(access_token, authlib_alg).decode()


def test_at_hash_refuses_an_unknown_alg() -> None:
    with pytest.raises(ValueError, match="HS256"):
        token_hash("token", "HS256")


# -- claims --------------------------------------------------------------------------------------


def test_claims_of_an_authentication() -> None:
    sign_in = SignIn(auth_time=NOW - 5, acr="urn:baton:pwd", amr=("pwd", "otp"))
    claims = id_token_claims(
        issuer=ISSUER,
        subject="alice",
        audience="cl_rp",
        issued_at=NOW,
        lifetime=600,
        sign_in=sign_in,
        sid="sid_1",
        nonce="n-0S6_WzA2Mj",
        at_hash="abc",
    )
    assert claims == {
        "iss": ISSUER,
        "sub": "alice",
        "aud": "cl_rp",
        "exp": NOW + 600,
        "iat": NOW,
        "auth_time": NOW - 5,
        "nonce": "n-0S6_WzA2Mj",
        "acr": "urn:baton:pwd",
        "amr": ["pwd", "otp"],
        "sid": "sid_1",
        "at_hash": "abc",
    }


def test_claims_without_nonce_acr_amr_or_sid_leave_them_out() -> None:
    claims = id_token_claims(
        issuer=ISSUER,
        subject="alice",
        audience="cl_rp",
        issued_at=NOW,
        lifetime=600,
        sign_in=SignIn(auth_time=NOW),
        sid=None,
        nonce=None,
        at_hash=None,
    )
    assert set(claims) == {"iss", "sub", "aud", "exp", "iat", "auth_time"}


_claim_values = st.one_of(st.text(max_size=8), st.integers(), st.booleans(), st.none())


@given(
    st.dictionaries(
        st.one_of(st.sampled_from(sorted(PROTOCOL_CLAIMS)), st.text(min_size=1, max_size=10)),
        _claim_values,
        max_size=8,
    )
)
def test_snapshotted_claims_never_replace_the_protocols(user_claims: dict[str, Any]) -> None:
    """A user claim named like a protocol claim (a profile field called `sub`, say) cannot
    change who the token is about, for whom, or until when."""
    claims = id_token_claims(
        issuer=ISSUER,
        subject="alice",
        audience="cl_rp",
        issued_at=NOW,
        lifetime=600,
        sign_in=SignIn(auth_time=NOW, claims=user_claims),
        sid=None,
        nonce=None,
        at_hash="h",
    )
    assert (claims["iss"], claims["sub"], claims["aud"], claims["exp"]) == (
        ISSUER,
        "alice",
        "cl_rp",
        NOW + 600,
    )
    assert "nonce" not in claims and "azp" not in claims
    for name, value in user_claims.items():
        if name not in PROTOCOL_CLAIMS:
            assert claims[name] == value


# -- signing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "ES256", "Ed25519"])
def test_issued_id_token_is_signed_with_the_clients_alg(alg: str) -> None:
    token = issuer(alg).issue(grant(), "bat_at_example", "nonce-1", NOW)
    header, claims = verified(token, alg)
    assert header == {"alg": alg, "kid": signing_key(alg).kid, "typ": "JWT"}
    assert claims["at_hash"] == token_hash("bat_at_example", alg)
    assert claims["nonce"] == "nonce-1"
    assert (claims["sub"], claims["aud"], claims["sid"]) == ("alice", "cl_rp", "sid_browser")
    assert claims["auth_time"] == NOW - 30
    assert claims["email"] == "a@example.com"
    assert claims["amr"] == ["pwd"]


def test_pairwise_client_gets_the_pairwise_subject() -> None:
    pairwise = issuer(subject_type="pairwise")
    _header, claims = verified(pairwise.issue(grant(), "at", None, NOW), "RS256")
    expected = subject_for("alice", "pairwise", ("https://rp.example/cb",), None, SALT)
    assert claims["sub"] == expected != "alice"


def test_no_key_for_the_alg_is_a_transient_refusal() -> None:
    keyless = issuer(key_for=lambda _alg, _now: None)
    with pytest.raises(IdTokenError) as refused:
        keyless.issue(grant(), "at", None, NOW)
    assert refused.value.transient and "RS256" in refused.value.description


def test_a_pairwise_client_without_a_sector_is_refused_as_the_clients_fault() -> None:
    bad = issuer(
        subject_type="pairwise",
        redirect_uris=("https://a.example/cb", "https://b.example/cb"),
    )
    with pytest.raises(IdTokenError) as refused:
        bad.issue(grant(), "at", None, NOW)
    assert not refused.value.transient


# -- the pair: which grants get an ID token and a refresh token ----------------------------------


class Refuses:
    """An ID token format that must not be asked."""

    def issue(self, grant: GrantFacts, access_token: str, nonce: str | None, issued_at: int) -> str:
        raise AssertionError("no ID token was due")


def test_issues_refresh_token() -> None:
    assert issues_refresh_token(frozenset({"read"}))  # plain OAuth, as before
    assert issues_refresh_token(frozenset({"offline_access"}))  # no openid: plain OAuth
    assert issues_refresh_token(frozenset({"openid", "offline_access"}))
    assert not issues_refresh_token(frozenset({"openid", "profile"}))  # OIDC Core §11


def test_openid_with_offline_access_gets_refresh_and_id_token() -> None:
    pair = MintedPair.new(id_tokens=issuer())
    planned = plan_pair(grant(), pair, 0, "openid offline_access", NOW, Policy(), nonce="n1")
    assert planned.refresh is pair.refresh and planned.issued.refresh_token is not None
    assert planned.issued.id_token is not None
    _header, claims = verified(planned.issued.id_token, "RS256")
    assert claims["nonce"] == "n1"
    assert claims["at_hash"] == token_hash(planned.issued.access_token, "RS256")
    response = planned.issued.token_response(NOW)
    assert response["id_token"] == planned.issued.id_token
    assert "refresh_token" in response


def test_openid_without_offline_access_gets_no_refresh_token() -> None:
    pair = MintedPair.new(id_tokens=issuer())
    planned = plan_pair(grant("openid profile"), pair, 0, "openid profile", NOW, Policy())
    assert planned.refresh is None and planned.issued.refresh_token is None
    assert planned.issued.refresh_expires_at is None
    assert planned.issued.access_expires_at == Policy().access_only_expiry(NOW, NOW + 86400)
    response = planned.issued.token_response(NOW)
    assert "refresh_token" not in response and "id_token" in response


@pytest.mark.parametrize("scope", ["read write", "openidish read", "offline_access"])
def test_plain_oauth_grants_are_untouched(scope: str) -> None:
    """No ID token is made (nor asked for) and a refresh token is issued, as before."""
    pair = MintedPair.new(id_tokens=Refuses())
    planned = plan_pair(grant(scope), pair, 0, scope, NOW, Policy())
    assert planned.issued.id_token is None and planned.issued.refresh_token is not None
    assert "id_token" not in planned.issued.token_response(NOW)


def test_a_grant_without_sign_in_gets_no_id_token() -> None:
    pair = MintedPair.new(id_tokens=Refuses())
    planned = plan_pair(grant(sign_in=None), pair, 0, "openid offline_access", NOW, Policy())
    assert planned.issued.id_token is None


def test_refresh_id_token_has_no_nonce() -> None:
    """§12.2: the refresh passes no nonce; iss, sub, aud and auth_time stay the same."""
    first = plan_pair(grant(), MintedPair.new(id_tokens=issuer()), 0, "openid", NOW, Policy(), "n")
    later = plan_pair(grant(), MintedPair.new(id_tokens=issuer()), 1, "openid", NOW + 60, Policy())
    assert first.issued.id_token is not None and later.issued.id_token is not None
    _h, before = verified(first.issued.id_token, "RS256")
    _h, after = verified(later.issued.id_token, "RS256")
    assert "nonce" not in after and before["nonce"] == "n"
    for name in ("iss", "sub", "aud", "auth_time", "sid"):
        assert before[name] == after[name]
    assert after["iat"] == NOW + 60


# -- the sealed pair: old seals still open --------------------------------------------------------


_pairs = st.builds(
    IssuedPair,
    access_token=st.text(min_size=1, max_size=20),
    refresh_token=st.one_of(st.none(), st.text(min_size=1, max_size=20)),
    scope=st.text(max_size=20),
    access_expires_at=st.integers(0, 2**40),
    refresh_expires_at=st.one_of(st.none(), st.integers(0, 2**40)),
    grant_id=st.text(min_size=1, max_size=10),
    generation=st.integers(0, 1000),
    id_token=st.one_of(st.none(), st.text(min_size=1, max_size=40)),
)


@given(_pairs)
def test_sealed_pair_round_trips(pair: IssuedPair) -> None:
    assert IssuedPair.from_seal_payload(pair.seal_payload(), pair.id_token) == pair


@given(_pairs)
def test_a_pair_seals_as_before(pair: IssuedPair) -> None:
    """The payload of 0.1.0 (seven fields), with or without an ID token (sealed apart): what a
    process of the previous version wrote opens here, and what this one writes opens there (a
    rolling upgrade; a 0.1.0 server failed a retry of an OpenID pair when it had eight)."""
    previous = json.dumps(
        [
            pair.access_token,
            pair.refresh_token,
            pair.scope,
            pair.access_expires_at,
            pair.refresh_expires_at,
            pair.grant_id,
            pair.generation,
        ],
        separators=(",", ":"),
    ).encode()
    assert pair.seal_payload() == previous
    assert IssuedPair.from_seal_payload(previous, pair.id_token) == pair


def test_a_pair_sealed_with_its_id_token_as_eighth_field_still_opens() -> None:
    """As a build before migration 0009 sealed an OpenID pair."""
    pair = IssuedPair("at", "rt", "openid", 1, 2, "grt", 3, id_token="eyJ.x.y")
    eight = json.dumps([*json.loads(pair.seal_payload()), "eyJ.x.y"]).encode()
    assert IssuedPair.from_seal_payload(eight) == pair
