"""The password policy: a minimum and a maximum length, and none of the most common passwords
(the bundled list, compared whatever the case), each refusal saying why."""

from __future__ import annotations

import pytest

from baton.core.passwords_policy import MAX_LENGTH, password_problem
from baton.data import common_passwords

COMMON = common_passwords()


def problem(password: str, min_length: int = 12, username: str | None = None) -> str | None:
    return password_problem(password, min_length, COMMON, username=username)


def test_the_bundled_list_holds_the_most_common_passwords() -> None:
    assert len(COMMON) >= 10_000
    assert {"123456", "password", "qwerty", "password123", "iloveyou"} <= COMMON
    assert not any(p.startswith("#") for p in COMMON)  # the attribution header is no password


@pytest.mark.parametrize("password", ["password123", "PassWord123", "PASSWORD123", "qwerty123456"])
def test_a_common_password_is_refused_whatever_its_case(password: str) -> None:
    # A minimum of 8 lets the length pass: the list is what refuses it.
    said = problem(password, min_length=8)
    assert said is not None and "most common passwords" in said


def test_too_short_says_how_long_it_must_be() -> None:
    assert problem("short pass", 12) == (
        "the password must be at least 12 characters long (it has 10)"
    )
    assert problem("", 12) == "the password must not be empty"
    assert problem("short pass", 8) is None
    # NFC: a decomposed accent (e and a combining acute) counts as the one character it shows.
    decomposed = "e\u0301" * 11
    assert problem(decomposed, 12) == "the password must be at least 12 characters long (it has 11)"


def test_length_counts_characters_not_bytes() -> None:
    assert problem("ééééééééééé", 12) is not None  # 11 characters, 22 bytes
    assert problem("éééééééééééz", 12) is None


@pytest.mark.parametrize("password", ["\ufdfa", "\u3392\u3392\u3392", "\ufb03\ufb03\ufb03"])
def test_a_compatibility_character_counts_as_one(password: str) -> None:
    # NFKC would expand U+FDFA to 18 characters, U+3392 (MHz) and U+FB03 (ffi) to 3 each: a
    # password of one to three characters must not pass a minimum of 8.
    said = problem(password, min_length=8)
    assert said is not None and "at least 8 characters long" in said


def test_a_ligature_of_a_common_password_is_still_common() -> None:
    # The common list is compared in NFKC: "\ufb00" is "ff", so "ti\ufb00any1" is "tiffany1".
    # (7 characters: the minimum is 7 here, so the list is what refuses it.)
    said = problem("ti\ufb00any1", min_length=7)
    assert said is not None and "most common" in said


def test_too_long_is_refused() -> None:
    said = problem("x" + "q7" * (MAX_LENGTH // 2))
    assert said == f"the password must be at most {MAX_LENGTH} characters long"
    assert problem("q7" * (MAX_LENGTH // 2)) is None  # exactly the maximum


def test_the_username_and_a_repeated_character_are_refused() -> None:
    assert problem("alice.liddell", username="Alice.Liddell") == (
        "the password must not be the username"
    )
    assert problem("zzzzzzzzzzzzzz") == "the password must not be one character repeated"


def test_control_characters_are_refused() -> None:
    said = problem("two\nlines here")
    assert said is not None and "control characters" in said


def test_a_passphrase_is_accepted() -> None:
    assert problem("correct horse battery staple") is None
    assert problem("a fine passphrase", username="alice") is None
