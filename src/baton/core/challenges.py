"""The rules of login and consent challenges (a decision handed to the product's own app).

A challenge is made by /authorize when a login or consent app applies; the app reads it and
accepts or rejects it over the admin API (`baton.server.admin.api`), which hands out a one-time
verifier; the browser brings the verifier back to /authorize/continue. What the store holds are
facts (created, expires, decided, used); the state a rule needs is derived here at the moment of
the question. No I/O.
"""

from __future__ import annotations

import enum
import unicodedata
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import urlsplit

from baton.core.redirects import LOOPBACK
from baton.core.vocabulary import ErrorCode

LOGIN = "login"
CONSENT = "consent"
KINDS = (LOGIN, CONSENT)

# The OAuth / OpenID Connect errors a rejection may send the client (RFC 6749 §4.1.2.1, OIDC
# Core §3.1.2.6): what a login or consent app may honestly say about a person's answer.
REJECT_ERRORS = frozenset(
    {
        ErrorCode.ACCESS_DENIED,
        ErrorCode.LOGIN_REQUIRED,
        ErrorCode.INTERACTION_REQUIRED,
        ErrorCode.ACCOUNT_SELECTION_REQUIRED,
        ErrorCode.CONSENT_REQUIRED,
        ErrorCode.TEMPORARILY_UNAVAILABLE,
    }
)

# The registered JWT and ID token claims (RFC 7519 §4.1, OIDC Core §2, §3.1.3.6, Back-Channel
# Logout `sid`): the server sets these itself, so an app's claims may not name them.
REGISTERED_CLAIMS = frozenset(
    {
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "nbf",
        "jti",
        "auth_time",
        "nonce",
        "acr",
        "amr",
        "azp",
        "at_hash",
        "c_hash",
        "sid",
    }
)

# Claims an app may not set either, though not registered for ID tokens: a logout token's
# `events` (Back-Channel Logout §2.4, so an ID token cannot pass for one), aggregated and
# distributed claims' `_claim_names` / `_claim_sources` (Core §5.6.2: the relying party would
# fetch what they point at), proof of possession's `cnf` (RFC 7800) and the JWT's `typ`.
RESERVED_CLAIMS = REGISTERED_CLAIMS | frozenset(
    {"events", "_claim_names", "_claim_sources", "cnf", "typ"}
)

MAX_SUBJECT = 200
MAX_DESCRIPTION = 1000
MAX_ACR = 200
MAX_AMR = 16


class State(enum.Enum):
    PENDING = "pending"  # waiting for the app's decision
    DECIDED = "decided"  # accepted or rejected, the verifier not back yet
    USED = "used"  # the verifier came back: done
    EXPIRED = "expired"  # past its time, whatever else


def state_at(expires_at: int, decided_at: int | None, used_at: int | None, now: int) -> State:
    """A challenge's state at `now`. A used challenge stays used (its story is over); any other
    one past `expires_at` is expired, decided or not: the verifier lives no longer than the
    challenge it answers."""
    if used_at is not None:
        return State.USED
    if now >= expires_at:
        return State.EXPIRED
    if decided_at is not None:
        return State.DECIDED
    return State.PENDING


class BodyError(ValueError):
    """An accept or reject body the API refuses (400), with the reason."""


def subject_problem(subject: object) -> str | None:
    """Why `subject` may not be a local subject (a username), or None."""
    if not isinstance(subject, str):
        return "subject must be a string"
    if not 1 <= len(subject) <= MAX_SUBJECT:
        return f"subject must have 1 to {MAX_SUBJECT} characters"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in subject):
        return "subject must not hold control characters"
    if subject != subject.strip():
        return "subject must not begin or end with white space"
    return None


def delegated_subject_problem(subject: object) -> str | None:
    """Why a login app may not name `subject`, or None: a username, and one the admin API's
    `/subjects/{subject}/...` paths can address (no `/`, not `.` or `..`, which a URL path
    cannot carry as one segment)."""
    if (problem := subject_problem(subject)) is not None:
        return problem
    if "/" in cast(str, subject) or subject in (".", ".."):
        return 'subject must not hold "/" nor be "." or ".."'
    return None


def registered_claims(claims: Mapping[str, Any]) -> list[str]:
    """The registered (and reserved) claim names among `claims`, sorted (an app may not set
    them)."""
    return sorted(RESERVED_CLAIMS & set(claims))


def reject_problem(error: object, description: object) -> str | None:
    """Why a rejection's `error` / `error_description` may not be sent, or None."""
    if error not in REJECT_ERRORS:
        return "error must be one of " + ", ".join(sorted(REJECT_ERRORS))
    if description is not None:
        if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
            return f"error_description must be a string of at most {MAX_DESCRIPTION} characters"
        # RFC 6749 §4.1.2.1: %x20-21 / %x23-5B / %x5D-7E only.
        if any(not (0x20 <= ord(c) <= 0x7E) or c in '"\\' for c in description):
            return "error_description must be printable ASCII without quote or backslash"
    return None


def remember_for_problem(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return "remember_for must be a whole number of seconds, 0 or more"
    if value > 10 * 365 * 86400:
        return "remember_for is too long (at most ten years)"
    return None


def string_list(value: object, name: str, limit: int = 100) -> tuple[str, ...]:
    """A JSON array of strings, as a tuple; `BodyError` otherwise."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BodyError(f"{name} must be an array of strings")
    if len(value) > limit:
        raise BodyError(f"{name} has too many members (at most {limit})")
    return tuple(value)


def app_url_problem(url: str, option: str) -> str | None:
    """Why `url` may not be a login app's, a consent app's or a client's homepage URL (`option`
    names it in the answer), or None: https, or plain http on a loopback IP literal (as for
    redirect URIs, RFC 8252 §7.3), absolute, with a host, no user information, no fragment."""
    if not url.isascii() or not url.isprintable() or " " in url:
        return f"{option} must be printable ASCII without spaces"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError as exc:
        return f"{option} is not a valid URL: {exc}"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return f"{option} must be an absolute https URL"
    if parts.scheme == "http" and parts.hostname not in LOOPBACK:
        return f"{option} must use https (plain http only on 127.0.0.1 or [::1])"
    if "@" in parts.netloc:
        return f"{option} must not carry user information"
    if parts.fragment or "#" in url:
        return f"{option} must have no fragment"
    return None
