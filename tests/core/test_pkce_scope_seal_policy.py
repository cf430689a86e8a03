"""PKCE S256, scope strings, the sealed replay and the lifetime policy."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given
from hypothesis import strategies as st

from baton.core import pkce, scope, seal
from baton.core.pairs import IssuedPair
from baton.core.policy import Lifetimes, Policy, RetryPolicy
from baton.core.tokens import TokenKind, digest, mint

UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
verifiers = st.text(alphabet=UNRESERVED, min_size=43, max_size=128)

# -- PKCE ------------------------------------------------------------------------------------------

RFC7636_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
RFC7636_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_rfc7636_appendix_b_vector() -> None:
    assert pkce.s256(RFC7636_VERIFIER) == RFC7636_CHALLENGE
    assert pkce.verify_s256(RFC7636_VERIFIER, RFC7636_CHALLENGE)
    assert pkce.is_valid_verifier(RFC7636_VERIFIER)
    assert pkce.is_valid_challenge(RFC7636_CHALLENGE)


def test_rfc7636_vector_rejects_near_misses() -> None:
    assert not pkce.verify_s256(RFC7636_VERIFIER[:-1] + "l", RFC7636_CHALLENGE)
    assert not pkce.verify_s256(RFC7636_VERIFIER, RFC7636_CHALLENGE[:-1] + "N")
    assert not pkce.verify_s256(RFC7636_VERIFIER, RFC7636_CHALLENGE + "=")
    # `plain` is not supported: the verifier itself is not a valid challenge answer.
    assert not pkce.verify_s256(RFC7636_VERIFIER, RFC7636_VERIFIER)


@pytest.mark.parametrize(
    ("length", "valid"), [(0, False), (42, False), (43, True), (128, True), (129, False)]
)
def test_verifier_length_bounds(length: int, valid: bool) -> None:
    verifier = ("abc-._~XYZ" * 13)[:length]
    assert len(verifier) == length
    assert pkce.is_valid_verifier(verifier) is valid
    # A verifier out of bounds never verifies, even against its own hash.
    assert pkce.verify_s256(verifier, pkce.s256(verifier)) is valid


@pytest.mark.parametrize(
    "bad", ["a" * 42 + " ", "a" * 42 + "+", "a" * 42 + "/", "a" * 42 + "=", "é" * 43]
)
def test_verifier_alphabet(bad: str) -> None:
    assert not pkce.is_valid_verifier(bad)
    assert not pkce.verify_s256(bad, RFC7636_CHALLENGE)


@given(verifiers)
def test_every_valid_verifier_verifies_against_its_challenge(verifier: str) -> None:
    challenge = pkce.s256(verifier)
    assert pkce.is_valid_verifier(verifier)
    assert pkce.is_valid_challenge(challenge)
    assert pkce.verify_s256(verifier, challenge)


@given(verifiers, verifiers)
def test_another_verifier_does_not_verify(verifier: str, other: str) -> None:
    if other != verifier:
        assert not pkce.verify_s256(other, pkce.s256(verifier))


def test_challenge_shape() -> None:
    assert not pkce.is_valid_challenge(RFC7636_CHALLENGE[:-1])
    assert not pkce.is_valid_challenge(RFC7636_CHALLENGE + "A")
    assert not pkce.is_valid_challenge(RFC7636_CHALLENGE[:-1] + "+")
    assert not pkce.is_valid_challenge(RFC7636_CHALLENGE[:-1] + "~")


# -- scope -----------------------------------------------------------------------------------------

scope_tokens = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='"\\'),
    min_size=1,
    max_size=12,
)


def test_scope_parse_and_render() -> None:
    assert scope.parse("") == frozenset()
    assert scope.parse("read") == {"read"}
    assert scope.parse("write read") == {"read", "write"}
    assert scope.parse("read read") == {"read"}
    assert scope.parse("Read read") == {"Read", "read"}  # case-sensitive
    assert scope.parse("api:read https://x.example/y!#$%&'()*+,-./;<=>?@[]^_`{|}~") == {
        "api:read",
        "https://x.example/y!#$%&'()*+,-./;<=>?@[]^_`{|}~",
    }
    assert scope.render({"write", "read"}) == "read write"
    assert scope.render(frozenset()) == ""


@pytest.mark.parametrize(
    "bad",
    [
        " ",
        "read ",
        " read",
        "read  write",
        "read\twrite",
        "read\nwrite",
        'a"b',
        "a\\b",
        "é",
        "\x7f",
        "\x00",
    ],
)
def test_malformed_scope(bad: str) -> None:
    with pytest.raises(scope.ScopeError):
        scope.parse(bad)


def test_scope_error_is_a_value_error() -> None:
    assert issubclass(scope.ScopeError, ValueError)


@given(st.frozensets(scope_tokens, max_size=6))
def test_scope_roundtrip(scopes: frozenset[str]) -> None:
    text = scope.render(scopes)
    assert scope.parse(text) == scopes
    assert scope.render(scope.parse(text)) == text  # canonical: sorted, single spaces


@given(st.lists(scope_tokens, min_size=1, max_size=6))
def test_scope_order_does_not_matter(tokens: list[str]) -> None:
    assert scope.parse(" ".join(tokens)) == scope.parse(" ".join(reversed(tokens)))


# -- the sealed replay -----------------------------------------------------------------------------


def sample_pair() -> IssuedPair:
    return IssuedPair(
        access_token=mint(TokenKind.ACCESS).plaintext,
        refresh_token=mint(TokenKind.REFRESH).plaintext,
        scope="read write",
        access_expires_at=1_700_003_600,
        refresh_expires_at=1_707_776_000,
        grant_id="grt_abc",
        generation=3,
    )


def test_hkdf_matches_rfc5869_test_case_1() -> None:
    """RFC 5869 Appendix A.1; the first 32 bytes of its 42-byte OKM are T(1)."""
    okm = seal.hkdf_sha256_32(
        bytes([0x0B] * 22), bytes(range(0x00, 0x0D)), bytes(range(0xF0, 0xFA))
    )
    assert okm.hex() == "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"


@given(st.binary(max_size=200), st.binary(max_size=64), st.binary(max_size=64))
def test_hkdf_derives_what_cryptography_derives(ikm: bytes, salt: bytes, info: bytes) -> None:
    """Seals written before the key derivation moved to `hmac` still open."""
    expected = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)
    assert seal.hkdf_sha256_32(ikm, salt, info) == expected


def test_seal_roundtrip_of_a_child_pair() -> None:
    parent = mint(TokenKind.REFRESH)
    pair = sample_pair()
    sealed = seal.seal(parent.plaintext, parent.digest, pair.seal_payload())
    opened = seal.open_seal(parent.plaintext, parent.digest, sealed)
    assert opened is not None
    assert IssuedPair.from_seal_payload(opened) == pair


def test_sealed_bytes_hide_the_child_tokens() -> None:
    parent = mint(TokenKind.REFRESH)
    pair = sample_pair()
    sealed = seal.seal(parent.plaintext, parent.digest, pair.seal_payload())
    assert pair.access_token.encode() not in sealed
    assert pair.refresh_token is not None and pair.refresh_token.encode() not in sealed
    assert b"bat_" not in sealed
    assert len(sealed) == 12 + len(pair.seal_payload()) + 16  # nonce, ciphertext, GCM tag


@given(st.binary(max_size=300))
def test_seal_roundtrip_any_payload(payload: bytes) -> None:
    parent = mint(TokenKind.REFRESH)
    assert (
        seal.open_seal(
            parent.plaintext, parent.digest, seal.seal(parent.plaintext, parent.digest, payload)
        )
        == payload
    )


def test_another_token_cannot_open_the_seal() -> None:
    parent, other = mint(TokenKind.REFRESH), mint(TokenKind.REFRESH)
    sealed = seal.seal(parent.plaintext, parent.digest, b"child pair")
    assert seal.open_seal(other.plaintext, other.digest, sealed) is None
    # Neither with the right digest (a database thief has digests, not tokens) ...
    assert seal.open_seal(other.plaintext, parent.digest, sealed) is None
    # ... nor moved to another row (the digest is the associated data).
    assert seal.open_seal(parent.plaintext, other.digest, sealed) is None
    assert seal.open_seal(parent.plaintext, digest(parent.plaintext), sealed) == b"child pair"


def test_every_flipped_byte_fails() -> None:
    parent = mint(TokenKind.REFRESH)
    sealed = seal.seal(parent.plaintext, parent.digest, b"child pair")
    for index in range(len(sealed)):
        for bit in (0x01, 0x80):
            flipped = bytearray(sealed)
            flipped[index] ^= bit
            assert seal.open_seal(parent.plaintext, parent.digest, bytes(flipped)) is None


def test_truncated_seal_fails() -> None:
    parent = mint(TokenKind.REFRESH)
    sealed = seal.seal(parent.plaintext, parent.digest, b"child pair")
    for cut in range(8, len(sealed)):
        assert seal.open_seal(parent.plaintext, parent.digest, sealed[:cut]) is None


@pytest.mark.parametrize("cut", [0, 1, 7])
def test_seal_shorter_than_a_nonce_fails(cut: int) -> None:
    parent = mint(TokenKind.REFRESH)
    sealed = seal.seal(parent.plaintext, parent.digest, b"child pair")
    assert seal.open_seal(parent.plaintext, parent.digest, sealed[:cut]) is None


def test_seal_differs_each_time() -> None:
    parent = mint(TokenKind.REFRESH)
    seals = [seal.seal(parent.plaintext, parent.digest, b"same payload") for _ in range(20)]
    assert len(set(seals)) == 20
    assert len({s[:12] for s in seals}) == 20  # a fresh 12-byte nonce each time
    assert all(seal.open_seal(parent.plaintext, parent.digest, s) == b"same payload" for s in seals)


def test_seal_payload_roundtrip_and_token_response() -> None:
    pair = sample_pair()
    assert IssuedPair.from_seal_payload(pair.seal_payload()) == pair
    assert json.loads(pair.seal_payload())[0] == pair.access_token
    now = 1_700_000_600
    body = pair.token_response(now)
    assert body == {
        "access_token": pair.access_token,
        "token_type": "Bearer",
        "expires_in": 3000,
        "refresh_token": pair.refresh_token,
        "refresh_token_expires_in": 1_707_776_000 - now,
        "scope": "read write",
    }
    assert pair.token_response(1_700_003_600)["expires_in"] == 0
    assert pair.token_response(1_800_000_000)["expires_in"] == 0  # never negative
    assert pair.access_token not in repr(pair)


# -- policy ----------------------------------------------------------------------------------------


def test_default_lifetimes_and_policy() -> None:
    lifetimes = Lifetimes()
    assert lifetimes.access_ttl == 3600
    assert lifetimes.refresh_idle_ttl == 90 * 86_400
    assert lifetimes.refresh_absolute_ttl == 365 * 86_400
    assert lifetimes.leeway == 600
    assert lifetimes.code_ttl == 60
    assert Policy().retry is RetryPolicy.REPLAY
    assert Policy().leeway == 600


@pytest.mark.parametrize(
    ("retry", "leeway"), [(RetryPolicy.REPLAY, 77), (RetryPolicy.FORK, 77), (RetryPolicy.STRICT, 0)]
)
def test_leeway_in_force(retry: RetryPolicy, leeway: int) -> None:
    assert Policy(Lifetimes(leeway=77), retry).leeway == leeway


def test_retry_policy_values() -> None:
    assert [p.value for p in RetryPolicy] == ["replay", "fork", "strict"]
    assert RetryPolicy("strict") is RetryPolicy.STRICT


def test_pair_expiries_uncapped() -> None:
    policy = Policy(Lifetimes(access_ttl=300, refresh_idle_ttl=2000, refresh_absolute_ttl=5000))
    now = 1_700_000_000
    assert policy.grant_expiry(now) == now + 5000
    assert policy.pair_expiries(now, now + 5000) == (now + 300, now + 2000)


def test_refresh_never_outlives_the_grant() -> None:
    policy = Policy(Lifetimes(access_ttl=300, refresh_idle_ttl=2000, refresh_absolute_ttl=5000))
    now = 1_700_000_000
    assert policy.pair_expiries(now, now + 1500) == (now + 300, now + 1500)


def test_access_never_outlives_the_refresh_token() -> None:
    policy = Policy(Lifetimes(access_ttl=3000, refresh_idle_ttl=2000, refresh_absolute_ttl=5000))
    now = 1_700_000_000
    assert policy.pair_expiries(now, now + 5000) == (now + 2000, now + 2000)
    assert policy.pair_expiries(now, now + 100) == (now + 100, now + 100)


def test_access_only_expiry_is_capped_by_the_grant() -> None:
    policy = Policy(Lifetimes(access_ttl=300))
    now = 1_700_000_000
    assert policy.access_only_expiry(now, now + 10_000) == now + 300
    assert policy.access_only_expiry(now, now + 10) == now + 10


@given(
    st.integers(1, 10**6),
    st.integers(1, 10**6),
    st.integers(1, 10**7),
    st.integers(0, 10**7),
    st.integers(1, 10**7),
)
def test_pair_expiries_caps_hold(
    access_ttl: int, idle_ttl: int, absolute_ttl: int, age: int, to_grant_end: int
) -> None:
    policy = Policy(Lifetimes(access_ttl, idle_ttl, absolute_ttl))
    now = 1_700_000_000 + age
    grant_expires_at = now + to_grant_end
    access_exp, refresh_exp = policy.pair_expiries(now, grant_expires_at)
    assert now < access_exp <= refresh_exp <= grant_expires_at
    assert access_exp <= now + access_ttl
    assert refresh_exp <= now + idle_ttl
    assert access_exp == min(now + access_ttl, now + idle_ttl, grant_expires_at)
    assert refresh_exp == min(now + idle_ttl, grant_expires_at)


@pytest.mark.parametrize(
    "name", ["access_ttl", "refresh_idle_ttl", "refresh_absolute_ttl", "code_ttl"]
)
@pytest.mark.parametrize("value", [0, -1])
def test_lifetimes_reject_non_positive_ttls(name: str, value: int) -> None:
    with pytest.raises(ValueError, match=name):
        Lifetimes(**{name: value})


def test_lifetimes_reject_negative_leeway_but_accept_zero() -> None:
    with pytest.raises(ValueError, match="leeway"):
        Lifetimes(leeway=-1)
    assert Lifetimes(leeway=0).leeway == 0
    assert Policy(Lifetimes(leeway=0), RetryPolicy.REPLAY).leeway == 0
