"""The OpenID Connect authentication request's `prompt` and `max_age` (Core §3.1.2.1), parsed.

`prompt` is a space-delimited, case-sensitive list of `none`, `login`, `consent` and
`select_account`; "If this parameter contains none with any other value, an error is returned."
Baton refuses a value it does not know rather than guess what the relying party meant.
`max_age` is "the allowable elapsed time in seconds since the last time the End-User was
actively authenticated": a non-negative integer.
"""

from __future__ import annotations

NONE = "none"
LOGIN = "login"
CONSENT = "consent"
SELECT_ACCOUNT = "select_account"
PROMPTS = frozenset({NONE, LOGIN, CONSENT, SELECT_ACCOUNT})
# A max_age beyond a century says "any sign-in will do"; longer digit strings are refused
# before they become integers (no huge-number parsing on a request's say-so).
_MAX_AGE_DIGITS = 10


class PromptError(ValueError):
    """A `prompt` or `max_age` the request may not have (`invalid_request`)."""


def parse_prompt(value: str | None) -> frozenset[str]:
    """The prompt values asked for (none: the parameter is absent or empty)."""
    if value is None:
        return frozenset()
    asked = frozenset(value.split(" ")) - {""}
    if unknown := asked - PROMPTS:
        raise PromptError(f"unsupported prompt value: {sorted(unknown)[0]}")
    # Core §3.1.2.1: "If this parameter contains none with any other value, an error is
    # returned."
    if NONE in asked and len(asked) > 1:
        raise PromptError("prompt=none may not be combined with another value")
    return asked


def parse_max_age(value: str | None) -> int | None:
    """The `max_age` in seconds, or None when absent."""
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > _MAX_AGE_DIGITS:
        raise PromptError("max_age must be a non-negative integer (seconds)")
    return int(value)


def sign_in_too_old(auth_time: int, now: int, max_age: int | None) -> bool:
    """Whether a sign-in at `auth_time` is older than `max_age` allows at `now`: the user must
    then sign in again (Core §3.1.2.1). `max_age=0` always asks, like `prompt=login`."""
    if max_age is None:
        return False
    return max_age == 0 or now - auth_time > max_age
