"""The rules of a `private_key_jwt` client assertion's header and claims (RFC 7523 §3, OIDC Core
§9), without keys or I/O: `baton.core.client_assertion`."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton.core.client_assertion import (
    LEEWAY,
    MAX_LIFETIME,
    AssertionProblem,
    asserted_client,
    audience_problem,
    check,
    replay_digest,
    unverified,
)

CLIENT = "https://app.example/client.json"
ISSUER = "https://as.example"
TOKEN = ISSUER + "/token"
AUDIENCES = (TOKEN, ISSUER)
NOW = 1_800_000_000


def claims(**changes: Any) -> dict[str, Any]:
    found: dict[str, Any] = {
        "iss": CLIENT,
        "sub": CLIENT,
        "aud": TOKEN,
        "exp": NOW + 60,
        "iat": NOW,
        "jti": "j-1",
    }
    for name, value in changes.items():
        if value is None:
            found.pop(name, None)
        else:
            found[name] = value
    return found


def accepted(found: dict[str, Any], now: int = NOW) -> bool:
    try:
        check(found, client_id=CLIENT, audiences=AUDIENCES, now=now)
    except AssertionProblem:
        return False
    return True


def test_a_good_assertion_is_accepted_until_its_exp_plus_the_leeway() -> None:
    outcome = check(claims(), client_id=CLIENT, audiences=AUDIENCES, now=NOW)
    assert (outcome.client_id, outcome.jti) == (CLIENT, "j-1")
    assert outcome.remember_until == NOW + 60 + LEEWAY


@pytest.mark.parametrize("aud", [TOKEN, ISSUER, [TOKEN], ["https://other.example", ISSUER]])
def test_the_audience_may_be_the_token_endpoint_or_the_issuer(aud: Any) -> None:
    assert accepted(claims(aud=aud))


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"iss": "someone"}, "iss"),
        ({"iss": None}, "iss"),
        ({"sub": "someone"}, "sub"),
        ({"aud": "https://other.example/token"}, "aud"),
        ({"aud": ISSUER + "/"}, "aud"),
        ({"aud": []}, "aud"),
        ({"aud": [TOKEN, 1]}, "aud"),
        ({"aud": None}, "aud"),
        ({"exp": None}, "no exp"),
        ({"exp": "soon"}, "NumericDate"),
        ({"exp": True}, "NumericDate"),
        ({"exp": NOW - LEEWAY}, "expired"),
        ({"exp": NOW + MAX_LIFETIME + LEEWAY + 1}, "too far"),
        ({"nbf": NOW + LEEWAY + 1}, "nbf"),
        ({"iat": NOW + LEEWAY + 1}, "iat"),
        ({"jti": None}, "jti"),
        ({"jti": ""}, "jti"),
        ({"jti": 7}, "jti"),
        ({"jti": "x" * 513}, "too long"),
    ],
)
def test_each_claim_rule_refuses(changes: dict[str, Any], why: str) -> None:
    with pytest.raises(AssertionProblem, match=why):
        check(claims(**changes), client_id=CLIENT, audiences=AUDIENCES, now=NOW)


@given(exp=st.integers(NOW - 10_000, NOW + 10_000))
def test_exp_is_accepted_exactly_inside_the_window(exp: int) -> None:
    """Not past (with the leeway), and not more than the lifetime cap ahead (with the leeway)."""
    inside = NOW - LEEWAY < exp <= NOW + MAX_LIFETIME + LEEWAY
    assert accepted(claims(exp=exp)) is inside


@given(
    exp=st.integers(NOW - 10_000, NOW + 10_000),
    nbf=st.none() | st.integers(NOW - 10_000, NOW + 10_000),
    iat=st.none() | st.integers(NOW - 10_000, NOW + 10_000),
)
def test_an_accepted_jti_is_remembered_past_every_instant_it_could_be_accepted(
    exp: int, nbf: int | None, iat: int | None
) -> None:
    """RFC 7523 §3 item 7: the `jti` is kept "for the length of time for which the JWT would be
    considered valid": no later `now` accepts the assertion once its record may be purged, and
    the record is never kept past the lifetime cap (the jti store stays bounded)."""
    found = claims(exp=exp, nbf=nbf, iat=iat)
    try:
        outcome = check(found, client_id=CLIENT, audiences=AUDIENCES, now=NOW)
    except AssertionProblem:
        return
    assert outcome.remember_until <= NOW + MAX_LIFETIME + 2 * LEEWAY
    assert not accepted(found, now=outcome.remember_until)


@given(other=st.text(min_size=1).filter(lambda text: text != CLIENT))
def test_an_assertion_is_only_ever_its_own_client_s(other: str) -> None:
    assert not accepted(claims(iss=other))
    assert not accepted(claims(sub=other))
    assert not accepted(claims(iss=other, sub=other))


@given(aud=st.one_of(st.text(), st.lists(st.text(), max_size=4)))
def test_an_audience_naming_neither_endpoint_nor_issuer_is_refused(aud: Any) -> None:
    named = [aud] if isinstance(aud, str) else aud
    assert (audience_problem(aud, AUDIENCES) is None) is any(item in AUDIENCES for item in named)


@given(
    a=st.tuples(st.text(max_size=8), st.text(max_size=8)),
    b=st.tuples(st.text(max_size=8), st.text(max_size=8)),
)
def test_replay_digests_differ_for_different_client_and_jti_pairs(
    a: tuple[str, str], b: tuple[str, str]
) -> None:
    """The client id is length-prefixed: ("ab", "c") and ("a", "bc") are different assertions."""
    assert (replay_digest(*a) == replay_digest(*b)) is (a == b)


def _segment(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwt(header: dict[str, Any], body: dict[str, Any] | None = None) -> str:
    return f"{_segment(header)}.{_segment(body or claims())}.c2ln"


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "EdDSA", "Ed25519"])
def test_asymmetric_algorithms_pass_the_header_check(alg: str) -> None:
    header, found = unverified(jwt({"alg": alg, "kid": "k1"}))
    assert (header.alg, header.kid) == (alg, "k1")
    assert asserted_client(found) == CLIENT


@pytest.mark.parametrize(
    ("token", "why"),
    [
        (jwt({"alg": "none"}), "alg"),
        (jwt({"alg": "HS256"}), "alg"),
        (jwt({"alg": "RS512x"}), "alg"),
        (jwt({}), "alg"),
        (jwt({"alg": "RS256", "kid": 3}), "kid"),
        (jwt({"alg": "RS256", "crit": ["exp"]}), "critical"),
        (jwt({"alg": "RS256"}).rsplit(".", 1)[0] + ".", "compact"),
        ("a.b", "compact"),
        ("!!.!!.!!", "well-formed"),
        (f"{_segment([1])}.{_segment({})}.c2ln", "well-formed"),
        ("x" * 20_000, "too long"),
        (f"{_segment({'alg': 'ES256'})}.{_b64(b'[' * 5000)}.c2ln", "well-formed"),
    ],
)
def test_malformed_or_unsigned_assertions_are_refused_before_any_key_is_looked_up(
    token: str, why: str
) -> None:
    with pytest.raises(AssertionProblem, match=why):
        unverified(token)


@pytest.mark.parametrize("sub", [None, "", 5])
def test_the_client_is_named_by_sub(sub: Any) -> None:
    with pytest.raises(AssertionProblem, match="sub"):
        asserted_client(claims(sub=sub))


@given(st.text(max_size=200))
def test_no_text_makes_the_header_check_raise_anything_but_a_refusal(token: str) -> None:
    with contextlib.suppress(AssertionProblem):
        unverified(token)
