"""Setting a user's standard claims: which values are refused, and how changes apply."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton.core.claims import PROFILE_MEMBERS, user_claims
from baton.core.user_claims import (
    SETTABLE,
    ClaimChanges,
    ClaimError,
    Claims,
    apply,
    check,
    claim_problem,
)

NOBODY = Claims(None, False, {})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("email", "alice@example.com"),
        ("email", "a.b+c@mail.example.org"),
        ("birthdate", "1990-05-31"),
        ("birthdate", "0000-05-31"),  # §5.1: the year omitted
        ("birthdate", "1990"),
        ("zoneinfo", "Europe/Paris"),
        ("zoneinfo", "America/Argentina/Buenos_Aires"),
        ("locale", "en-US"),
        ("locale", "fr"),
        ("picture", "https://cdn.example/a.png"),
        ("website", "http://alice.example"),
        ("name", "Alice Liddell"),
        ("gender", "female"),
        ("nickname", "Ally ✨"),
    ],
)
def test_accepted_values(name: str, value: str) -> None:
    assert claim_problem(name, value) is None


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("email", "alice", "not an email address"),
        ("email", "a@b@c.example", "not an email address"),
        ("email", "alice @example.com", "not an email address"),
        ("email", "a" * 320 + "@example.com", "not an email address"),
        ("birthdate", "31/05/1990", "YYYY-MM-DD"),
        ("birthdate", "1990-13-01", "YYYY-MM-DD"),
        ("zoneinfo", "Paris time", "IANA"),
        ("locale", "en US", "BCP 47"),
        ("picture", "javascript:alert(1)", "http or https URL"),
        ("profile", "data:text/html,hi", "http or https URL"),
        ("website", "alice.example", "http or https URL"),
        ("name", "x" * 501, "at most 500"),
        ("name", "Alice\nBob", "control characters"),
        ("name", " Alice", "spaces"),
        ("preferred_username", "alice", "not a claim Baton holds"),
        ("updated_at", "1", "not a claim Baton holds"),
    ],
)
def test_refused_values(name: str, value: str, says: str) -> None:
    problem = claim_problem(name, value)
    assert problem is not None and says in problem
    with pytest.raises(ClaimError, match=says):
        check(ClaimChanges({name: value}))


def test_empty_clears_and_unknown_names_are_refused_even_empty() -> None:
    assert check(ClaimChanges({"name": ""})).values == {"name": None}
    with pytest.raises(ClaimError):
        check(ClaimChanges({"sub": ""}))


def test_apply_sets_clears_and_keeps() -> None:
    held = Claims("alice@example.com", True, {"name": "Alice", "locale": "en-GB"})
    after = apply(held, check(ClaimChanges({"locale": "", "given_name": "Alice"})))
    assert after == Claims("alice@example.com", True, {"name": "Alice", "given_name": "Alice"})


def test_a_new_email_address_is_unverified_unless_said() -> None:
    held = Claims("alice@example.com", True, {})
    assert not apply(held, ClaimChanges({"email": "alice@new.example"})).email_verified
    assert apply(held, ClaimChanges({"email": "alice@example.com"})).email_verified  # same
    said = apply(held, ClaimChanges({"email": "alice@new.example"}, email_verified=True))
    assert said.email_verified
    cleared = apply(held, ClaimChanges({"email": None}, email_verified=True))
    assert cleared.email is None and not cleared.email_verified  # no address, nothing verified


def test_every_profile_member_is_settable_and_released() -> None:
    values = {
        m: "https://x.example/p" if m in ("profile", "picture", "website") else "x"
        for m in PROFILE_MEMBERS
    }
    values["birthdate"], values["zoneinfo"], values["locale"] = "1990", "UTC", "en"
    after = apply(NOBODY, check(ClaimChanges(values)))
    released = user_claims("alice", after.email, after.email_verified, after.profile, 1)
    assert set(PROFILE_MEMBERS) <= set(released)
    assert set(SETTABLE) == {"email", *PROFILE_MEMBERS}


@given(
    st.dictionaries(
        st.sampled_from(SETTABLE), st.none() | st.text(max_size=40), max_size=len(SETTABLE)
    ),
    st.none() | st.booleans(),
)
def test_check_refuses_or_apply_keeps_only_what_was_set(
    values: dict[str, str | None], verified: bool | None
) -> None:
    try:
        changes = check(ClaimChanges(values, verified))
    except ClaimError:
        return
    after = apply(NOBODY, changes)
    for name, value in changes.values.items():
        held = after.email if name == "email" else after.profile.get(name)
        assert held == value
    assert set(after.profile) <= set(PROFILE_MEMBERS)
    assert after.email_verified == bool(after.email and verified)
