"""OpenID Connect claims: which a scope asks for, a user's values, and the `claims` request.

OIDC Core §5.4 maps the `profile`, `email`, `address` and `phone` scopes to standard claims
(§5.1); Baton holds those of `profile` and `email`. §5.5 lets a relying party ask for individual
claims, for the ID token or the UserInfo response, each `null` or with `essential`, `value` or
`values`: Baton answers the claims it holds; an essential claim it does not hold is left out, as
§5.5.1 allows ("not an error condition").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OPENID = "openid"
OFFLINE_ACCESS = "offline_access"
# The scopes OpenID Connect defines that Baton serves (Core §3.1.2.1, §5.4, §11), in the order
# the metadata lists them.
OIDC_SCOPES = (OPENID, "profile", "email", OFFLINE_ACCESS)

# OIDC Core §5.4: the claims each scope asks for (those Baton holds).
PROFILE_CLAIMS = (
    "name",
    "family_name",
    "given_name",
    "middle_name",
    "nickname",
    "preferred_username",
    "profile",
    "picture",
    "website",
    "gender",
    "birthdate",
    "zoneinfo",
    "locale",
    "updated_at",
)
EMAIL_CLAIMS = ("email", "email_verified")
SCOPE_CLAIMS: Mapping[str, tuple[str, ...]] = {"profile": PROFILE_CLAIMS, "email": EMAIL_CLAIMS}
# The profile members a user's `profile` column may hold: strings, set by the CLI or console.
PROFILE_MEMBERS = tuple(c for c in PROFILE_CLAIMS if c not in ("preferred_username", "updated_at"))
STANDARD_CLAIMS = frozenset((*PROFILE_CLAIMS, *EMAIL_CLAIMS))


def for_scope(scope: frozenset[str]) -> frozenset[str]:
    """The claims a granted scope releases (§5.4)."""
    return frozenset(c for s in scope for c in SCOPE_CLAIMS.get(s, ()))


def user_claims(
    username: str,
    email: str | None,
    email_verified: bool,
    profile: Mapping[str, Any],
    updated_at: int | None,
) -> dict[str, Any]:
    """Every standard claim Baton holds for a user (unset ones left out, §5.3.2)."""
    values: dict[str, Any] = {k: v for k, v in profile.items() if k in PROFILE_MEMBERS and v}
    values["preferred_username"] = username
    if updated_at is not None:
        values["updated_at"] = updated_at
    if email:
        values["email"] = email
        values["email_verified"] = email_verified
    return values


class ClaimsRequestError(ValueError):
    """The `claims` parameter is not the JSON object §5.5 describes."""


@dataclass(frozen=True, slots=True)
class ClaimsRequest:
    """The `claims` request parameter (§5.5): the names asked for each place, and which of
    them are essential."""

    id_token: frozenset[str] = frozenset()
    userinfo: frozenset[str] = frozenset()
    essential: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str | None) -> ClaimsRequest:
        if text is None or text == "":
            return cls()
        try:
            value = json.loads(text)
        except ValueError:
            raise ClaimsRequestError("claims must be a JSON object") from None
        if not isinstance(value, dict):
            raise ClaimsRequestError("claims must be a JSON object")
        places: dict[str, frozenset[str]] = {}
        essential: set[str] = set()
        for place in ("id_token", "userinfo"):
            members = value.get(place, {})
            if members is None:
                members = {}
            if not isinstance(members, dict):
                raise ClaimsRequestError(f"claims.{place} must be a JSON object")
            for name, ask in members.items():
                if ask is not None and not isinstance(ask, dict):
                    raise ClaimsRequestError(f"claims.{place}.{name} must be null or an object")
                if isinstance(ask, dict) and ask.get("essential") is True:
                    essential.add(name)
            places[place] = frozenset(members)
        return cls(places["id_token"], places["userinfo"], frozenset(essential))


def released(
    values: Mapping[str, Any], scope: frozenset[str], asked: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The claims of `values` a response carries: those the scope releases, and those asked for
    individually (a standard claim the scope does not cover still needs its scope's consent:
    only claims the user consented to by scope, or asked by name, are released)."""
    wanted = for_scope(scope) | (asked & STANDARD_CLAIMS)
    return {k: v for k, v in values.items() if k in wanted}
