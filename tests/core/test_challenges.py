"""The pure rules of login and consent challenges (`baton.core.challenges`)."""

from __future__ import annotations

import pytest

from baton.core.challenges import (
    REGISTERED_CLAIMS,
    REJECT_ERRORS,
    BodyError,
    State,
    app_url_problem,
    delegated_subject_problem,
    registered_claims,
    reject_problem,
    remember_for_problem,
    state_at,
    string_list,
    subject_problem,
)
from baton.core.vocabulary import ErrorCode


def test_a_challenges_state_at_a_time() -> None:
    assert state_at(100, None, None, 99) is State.PENDING
    assert state_at(100, None, None, 100) is State.EXPIRED  # the last second is not included
    assert state_at(100, 50, None, 99) is State.DECIDED
    assert state_at(100, 50, None, 100) is State.EXPIRED  # its verifier dies with it
    assert state_at(100, 50, 60, 1000) is State.USED  # a used one stays used


def test_a_reject_carries_only_oauth_and_oidc_interaction_errors() -> None:
    assert reject_problem(ErrorCode.ACCESS_DENIED, None) is None
    assert reject_problem("interaction_required", "the user walked away") is None
    for error in ("server_error", "invalid_request", "invalid_client", "", None, 7):
        assert reject_problem(error, None) is not None
    assert reject_problem("access_denied", 'a "quote"') is not None  # RFC 6749 §4.1.2.1
    assert reject_problem("access_denied", "x" * 1001) is not None
    assert {e.value for e in ErrorCode} >= REJECT_ERRORS


def test_registered_claims_are_refused_by_name() -> None:
    assert registered_claims({"tenant": 1, "sub": "x", "nonce": "n"}) == ["nonce", "sub"]
    assert registered_claims({"department": "R&D"}) == []
    assert {"iss", "aud", "sid", "at_hash", "c_hash", "azp"} <= REGISTERED_CLAIMS


@pytest.mark.parametrize(
    ("subject", "ok"),
    [
        ("carol", True),
        ("carol@example.com", True),
        ("x" * 200, True),
        ("", False),
        ("x" * 201, False),
        ("a\nb", False),
        ("a\u200bb", False),  # a format character
        (" carol", False),
        (42, False),
    ],
)
def test_a_subject_is_a_plain_name(subject: object, ok: bool) -> None:
    assert (subject_problem(subject) is None) is ok


def test_reserved_claims_are_refused_too() -> None:
    reserved = {"events": 1, "_claim_names": 1, "_claim_sources": 1, "cnf": 1, "typ": 1}
    assert registered_claims({**reserved, "tenant": 1}) == sorted(reserved)


@pytest.mark.parametrize(
    ("subject", "ok"),
    [
        ("carol", True),
        ("first.last", True),
        ("...", True),
        ("org/carol", False),
        ("/", False),
        (".", False),
        ("..", False),
        (" carol", False),  # and whatever a subject may not be
    ],
)
def test_a_delegated_subject_can_be_named_in_a_path(subject: str, ok: bool) -> None:
    assert (delegated_subject_problem(subject) is None) is ok


def test_remember_for_is_a_whole_number_of_seconds() -> None:
    assert remember_for_problem(None) is None
    assert remember_for_problem(0) is None
    assert remember_for_problem(3600) is None
    for bad in (-1, True, 1.5, "60", 10**12):
        assert remember_for_problem(bad) is not None


def test_a_string_list() -> None:
    assert string_list(["a", "b"], "amr") == ("a", "b")
    with pytest.raises(BodyError):
        string_list("pwd", "amr")
    with pytest.raises(BodyError):
        string_list([1], "amr")
    with pytest.raises(BodyError):
        string_list(["a"] * 3, "amr", limit=2)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://login.example/login", True),
        ("https://login.example:8443/a?b=c", True),
        ("http://127.0.0.1:5000/login", True),
        ("http://[::1]:5000/login", True),
        ("http://login.example/login", False),
        ("http://localhost:5000/login", False),
        ("javascript:alert(1)", False),
        ("/login", False),
        ("https://user@login.example/", False),
        ("https://login.example/#x", False),
        ("https://login.example/a b", False),
        ("https://login.example:99999/", False),
    ],
)
def test_an_app_url_is_https_or_loopback_http(url: str, ok: bool) -> None:
    assert (app_url_problem(url, "--login-url") is None) is ok
