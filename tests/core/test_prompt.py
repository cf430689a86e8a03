"""`prompt` and `max_age` of an OpenID Connect authentication request (Core §3.1.2.1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton.core.prompt import (
    PROMPTS,
    PromptError,
    parse_max_age,
    parse_prompt,
    sign_in_too_old,
)


@given(st.sets(st.sampled_from(sorted(PROMPTS - {"none"}))))
def test_known_values_in_any_order_are_read(values: set[str]) -> None:
    ordered = sorted(values)
    text = " ".join(ordered)
    assert parse_prompt(text) == frozenset(values)
    assert parse_prompt(" ".join(reversed(ordered))) == frozenset(values)


@given(st.sets(st.sampled_from(sorted(PROMPTS - {"none"})), min_size=1))
def test_none_with_any_other_value_is_refused(others: set[str]) -> None:
    with pytest.raises(PromptError, match="none"):
        parse_prompt(" ".join(["none", *sorted(others)]))


@given(st.text(min_size=1).filter(lambda t: " " not in t and t not in PROMPTS))
def test_an_unknown_value_is_refused(word: str) -> None:
    with pytest.raises(PromptError):
        parse_prompt(f"login {word}")


def test_absent_or_empty_prompt_asks_nothing() -> None:
    assert parse_prompt(None) == frozenset()
    assert parse_prompt("") == frozenset()
    assert parse_prompt("none") == frozenset({"none"})
    with pytest.raises(PromptError):
        parse_prompt("Login")  # case-sensitive


@given(st.integers(min_value=0, max_value=9_999_999_999))
def test_a_non_negative_integer_is_a_max_age(seconds: int) -> None:
    assert parse_max_age(str(seconds)) == seconds


@given(st.text().filter(lambda t: not (t.isascii() and t.isdigit())))
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(PromptError, match="max_age"):
        parse_max_age(text)


def test_max_age_refuses_huge_numbers_signs_and_other_digits() -> None:
    for bad in ("-1", "+5", "1.5", "1e3", "٣", "99999999999", " 5"):
        with pytest.raises(PromptError):
            parse_max_age(bad)
    assert parse_max_age(None) is None


@given(st.integers(0, 10**9), st.integers(0, 10**6), st.integers(1, 10**6))
def test_a_sign_in_is_too_old_only_past_max_age(auth_time: int, age: int, max_age: int) -> None:
    assert sign_in_too_old(auth_time, auth_time + age, max_age) == (age > max_age)
    assert sign_in_too_old(auth_time, auth_time + age, None) is False
    assert sign_in_too_old(auth_time, auth_time + age, 0) is True  # max_age=0: like login
