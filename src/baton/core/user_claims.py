"""Setting a user's standard claims (OIDC Core §5.1): what each value must look like, and how a
set of changes applies to what a user holds. The CLI (`baton user set`) and the admin console
both call it; `baton.store.sql.registry.set_user_claims` applies the changes in the transaction
that writes them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from baton.core.claims import PROFILE_MEMBERS

EMAIL = "email"
SETTABLE = (EMAIL, *PROFILE_MEMBERS)  # every claim an operator sets as a string
MAX_LENGTH = 500  # a profile value; an email is at most 320 (the column, RFC 5321's limits)
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_URL_CLAIMS = ("profile", "picture", "website")
# §5.1: birthdate "ISO 8601-1 [ISO8601-1] YYYY-MM-DD format. The year MAY be 0000, indicating
# that it is omitted. To represent only the year, YYYY format is allowed."
_BIRTHDATE = re.compile(r"\d{4}(-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01]))?")
# §5.1: zoneinfo "String from IANA Time Zone Database", e.g. Europe/Paris, America/Los_Angeles.
_ZONEINFO = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*")
# §5.1: locale "BCP47 [RFC5646] language tag", e.g. en-US or fr-CA.
_LOCALE = re.compile(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*")


class ClaimError(ValueError):
    """A claim value Baton refuses; the message says why, in one line."""


@dataclass(frozen=True, slots=True)
class ClaimChanges:
    """What to change: each named claim set to a value, or cleared (None); `email_verified`
    set, or None to leave it (a changed email is then unverified again)."""

    values: Mapping[str, str | None] = field(default_factory=dict)
    email_verified: bool | None = None

    def __bool__(self) -> bool:
        return bool(self.values) or self.email_verified is not None


@dataclass(frozen=True, slots=True)
class Claims:
    """The claims a user holds (`baton.store.base.User`'s `email`, `email_verified`, `profile`)."""

    email: str | None
    email_verified: bool
    profile: Mapping[str, Any]


def claim_problem(name: str, value: str) -> str | None:
    """Why `value` may not be the user's claim `name`, or None when it may."""
    if name not in SETTABLE:
        return f"{name!r} is not a claim Baton holds: choose one of " + ", ".join(SETTABLE)
    if _CONTROL.search(value):
        return f"{name} must not hold control characters"
    if value != value.strip():
        return f"{name} must not start or end with spaces"
    if name == EMAIL:
        if len(value) > 320 or not _EMAIL.fullmatch(value):
            return f"email {value!r} is not an email address (name@domain)"
        return None
    if len(value) > MAX_LENGTH:
        return f"{name} must be at most {MAX_LENGTH} characters"
    if name in _URL_CLAIMS:
        # §5.1: profile, picture and website are URLs; Baton takes http(s) only, never a
        # `javascript:` or `data:` URL a relying party might put in a link or an image.
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.netloc or " " in value:
            return f"{name} must be an http or https URL"
    if name == "birthdate" and not _BIRTHDATE.fullmatch(value):
        return "birthdate must be YYYY-MM-DD or YYYY (OpenID Connect Core §5.1)"
    if name == "zoneinfo" and not _ZONEINFO.fullmatch(value):
        return "zoneinfo must be an IANA time zone name such as Europe/Paris"
    if name == "locale" and not _LOCALE.fullmatch(value):
        return "locale must be a BCP 47 language tag such as en-US"
    return None


def check(changes: ClaimChanges) -> ClaimChanges:
    """`changes` with empty values read as "clear", or `ClaimError` with the first problem."""
    values: dict[str, str | None] = {}
    for name, value in changes.values.items():
        if value is None or value == "":
            if name not in SETTABLE:
                raise ClaimError(claim_problem(name, "") or name)
            values[name] = None
            continue
        problem = claim_problem(name, value)
        if problem is not None:
            raise ClaimError(problem)
        values[name] = value
    return ClaimChanges(values, changes.email_verified)


def apply(held: Claims, changes: ClaimChanges) -> Claims:
    """The claims a user holds once `changes` (checked) apply. A new email address is not
    verified unless the changes say it is: verification was of the old one."""
    email = held.email
    verified = held.email_verified
    profile = {k: v for k, v in held.profile.items() if k in PROFILE_MEMBERS}
    for name, value in changes.values.items():
        if name == EMAIL:
            if value != email:
                verified = False
            email = value
        elif value is None:
            profile.pop(name, None)
        else:
            profile[name] = value
    if changes.email_verified is not None:
        verified = changes.email_verified
    if email is None:
        verified = False  # no address, nothing verified
    return Claims(email, verified, profile)


def same(a: Claims, b: Claims) -> bool:
    return (
        a.email == b.email
        and a.email_verified == b.email_verified
        and dict(a.profile) == dict(b.profile)
    )
