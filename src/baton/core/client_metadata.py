"""A client's OpenID Connect settings, and what makes them acceptable: the one check that the CLI
(`baton client create` / `update`) and the admin console both call.

The fields are those of OpenID Connect Dynamic Client Registration §2, RP-Initiated Logout §3.1
and Back-Channel Logout §2.2, under the names `baton.store.base.Client` gives them, so that
`dataclasses.replace(client, **settings.fields())` stores a checked value. Redirect targets
(post-logout redirect URIs) follow the redirect-URI rule of `baton.core.redirects`, the rule
`/authorize` applies.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from baton.core.audience import resource_uri_problem
from baton.core.challenges import app_url_problem
from baton.core.keys import ALGORITHMS, LEGACY_ALGORITHMS
from baton.core.origins import origin_of, origin_problem
from baton.core.redirects import LOOPBACK, client_option_problem, redirect_uri_problem
from baton.core.scope import ScopeError
from baton.core.scope import parse as parse_scope
from baton.core.scope import render as render_scope
from baton.core.subject import PAIRWISE, SUBJECT_TYPES, SectorError, sector_of

DEFAULT_ID_TOKEN_ALG = "RS256"
# What `--id-token-alg` and the console accept: the current names, and EdDSA (= Ed25519).
ID_TOKEN_ALG_CHOICES = (*ALGORITHMS, *LEGACY_ALGORITHMS)
_URI_CHARS = re.compile(r"[!-~]+")  # printable ASCII, no space (RFC 3986 §2)


class MetadataError(ValueError):
    """Client settings Baton refuses; the message says why, in one line."""


@dataclass(frozen=True, slots=True)
class OidcSettings:
    """A client's OpenID Connect settings (the defaults are a client registered without any)."""

    id_token_signed_response_alg: str = DEFAULT_ID_TOKEN_ALG
    subject_type: str = "public"
    sector_identifier_uri: str | None = None
    post_logout_redirect_uris: tuple[str, ...] = ()
    backchannel_logout_uri: str | None = None
    backchannel_logout_session_required: bool = False
    require_nonce: bool = False
    # None: the origins of the redirect URIs (decided where CORS is answered); (): none at all.
    allowed_origins: tuple[str, ...] | None = None

    @classmethod
    def of(cls, client: Any) -> OidcSettings:
        """The settings a client (anything with these attributes) holds."""
        return cls(**{f.name: getattr(client, f.name) for f in fields(cls)})

    def fields(self) -> dict[str, Any]:
        """Keyword arguments for `dataclasses.replace` on a `Client`."""
        return asdict(self)

    def changed(self, **changes: Any) -> OidcSettings:
        return replace(self, **changes)

    def differences(self, other: OidcSettings) -> dict[str, Any]:
        """The fields whose value in `other` differs from this one's, with `other`'s values
        (JSON-ready: tuples as lists), for an audit record."""
        mine, theirs = asdict(self), asdict(other)
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in theirs.items() if mine[k] != v
        }


def registration(client: Any) -> dict[str, Any]:
    """A client's registration as `baton client show --json` prints it and the admin API's `GET
    /clients/{id}` answers it (JSON-ready; never its secret): `client` is anything with the
    attributes of `baton.store.base.Client`."""
    settings = {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in OidcSettings.of(client).fields().items()
    }
    return {
        "client_id": client.id,
        "name": client.name,
        "public": client.is_public,
        "resource_server": client.is_resource_server,
        "redirect_uris": list(client.redirect_uris),
        "scope": client.scope,
        "resource_uri": client.resource_uri,
        "resources": list(client.allowed_resources),
        "remember_consent": client.remember_consent,
        "require_pkce": client.require_pkce,
        "created_at": client.created_at,
        "disabled_at": client.disabled_at,
        "deleted": client.deleted_at is not None,
        **settings,
        "login_url": client.login_url,
        "consent_url": client.consent_url,
        "client_uri": client.client_uri,
    }


def version(client: Any) -> str:
    """The registration's version, as a quoted entity tag: a digest of what `registration`
    shows. The admin API's `ETag` / `If-Match` and the console's edit form carry it, so that an
    edit made from a stale read is refused rather than silently undoing another's."""
    shown = json.dumps(registration(client), sort_keys=True, separators=(",", ":"))
    return '"' + hashlib.sha256(shown.encode()).hexdigest()[:32] + '"'


MAX_NAME = 200  # `clients.name`


def check_sector_kept(before: Any, after: Any) -> None:
    """`MetadataError` when an edit of a pairwise client (`before` into `after`, each a
    `baton.store.base.Client`) would move its sector, so every user's `sub` for it, as a side
    effect of new redirect URIs; changing `subject_type` or `sector_identifier_uri` says so, and
    passes. The admin API's `PATCH` and `baton client update` both apply it, after
    `checked_registration`."""
    if before.subject_type != PAIRWISE or after.subject_type != PAIRWISE:
        return
    if before.sector_identifier_uri != after.sector_identifier_uri:
        return
    try:
        old = sector_of(before.redirect_uris, before.sector_identifier_uri)
        new = sector_of(after.redirect_uris, after.sector_identifier_uri)
    except (SectorError, ValueError):
        return  # refused or allowed by the registration check itself
    if old != new:
        raise MetadataError(
            f"these redirect URIs move the pairwise sector from {old!r} to {new!r}, which "
            "would change every user's sub: register sector_identifier_uri with the old "
            "sector's host first"
        )


C = TypeVar("C")


def checked_registration(client: C) -> C:
    """`client` (a `baton.store.base.Client`) normalized (its scope, its OpenID Connect
    settings), or `MetadataError` with the first problem found: the rules `baton client create`
    and `update` and the console apply, each stated once (`baton.core.redirects`,
    `baton.core.audience`, `baton.core.challenges`, `checked` above)."""
    c: Any = client
    if not (0 < len(c.name) <= MAX_NAME and c.name.isprintable()):
        raise MetadataError(f"name must be 1 to {MAX_NAME} printable characters")
    try:
        scope = render_scope(parse_scope(c.scope.strip()))
    except ScopeError as exc:
        raise MetadataError(str(exc)) from None
    for uri in c.redirect_uris:
        if (problem := redirect_uri_problem(uri, localhost=c.loopback_by_name)) is not None:
            raise MetadataError(problem)
    if c.is_public and c.is_resource_server:
        raise MetadataError("a resource server must be a confidential client")
    if c.resource_uri is not None:
        if not c.is_resource_server:
            raise MetadataError("resource_uri identifies a resource server: it needs one")
        if (problem := resource_uri_problem(c.resource_uri)) is not None:
            raise MetadataError(problem)
    option = client_option_problem(
        c.is_public, tuple(c.redirect_uris), c.remember_consent, not c.require_pkce
    )
    if option is not None:
        raise MetadataError(option)
    for name in ("login_url", "consent_url", "client_uri"):
        value = getattr(c, name)
        if value is not None and (problem := app_url_problem(value, name)) is not None:
            raise MetadataError(problem)
    settings = checked(OidcSettings.of(c), c.redirect_uris)
    return cast(C, replace(c, scope=scope, **settings.fields()))


def id_token_alg(name: str) -> str:
    """The ID token algorithm `name` stands for (`EdDSA` is `Ed25519`, RFC 9864), or
    `MetadataError`. Registration §2: id_token_signed_response_alg, RS256 by default."""
    alg = LEGACY_ALGORITHMS.get(name, name)
    if alg not in ALGORITHMS:
        raise MetadataError(
            f"unsupported ID token algorithm {name!r}: choose one of "
            + ", ".join(ID_TOKEN_ALG_CHOICES)
        )
    return alg


def checked(settings: OidcSettings, redirect_uris: Sequence[str]) -> OidcSettings:
    """`settings` normalized (algorithm names, origins), or `MetadataError` with the first
    problem found, for a client with these redirect URIs."""
    found = problems(settings, redirect_uris)
    if found:
        raise MetadataError(found[0])
    origins = settings.allowed_origins
    return replace(
        settings,
        id_token_signed_response_alg=id_token_alg(settings.id_token_signed_response_alg),
        allowed_origins=None
        if origins is None
        else tuple(dict.fromkeys(_serialized(o) for o in origins)),
        post_logout_redirect_uris=tuple(dict.fromkeys(settings.post_logout_redirect_uris)),
    )


def problems(settings: OidcSettings, redirect_uris: Sequence[str]) -> list[str]:
    """Every reason `settings` may not be registered for a client with these redirect URIs."""
    found: list[str] = []
    try:
        id_token_alg(settings.id_token_signed_response_alg)
    except MetadataError as exc:
        found.append(str(exc))
    found.extend(_subject_problems(settings, redirect_uris))
    for uri in settings.post_logout_redirect_uris:
        # RP-Initiated Logout §3.1: post_logout_redirect_uris are redirect targets like the
        # redirect URIs, held to the same rule (RFC 8252, RFC 9700 §4.1), fragments included.
        problem = redirect_uri_problem(uri)
        if problem is not None:
            found.append(f"post-logout {problem}")
    if settings.backchannel_logout_uri is not None:
        problem = backchannel_logout_uri_problem(settings.backchannel_logout_uri)
        if problem is not None:
            found.append(problem)
    elif settings.backchannel_logout_session_required:
        found.append(
            "backchannel_logout_session_required needs a backchannel logout URI "
            "(OpenID Connect Back-Channel Logout §2.2)"
        )
    for value in settings.allowed_origins or ():
        problem = origin_problem(value)
        if problem is not None:
            found.append(problem)
    return found


def _subject_problems(settings: OidcSettings, redirect_uris: Sequence[str]) -> list[str]:
    if settings.subject_type not in SUBJECT_TYPES:
        return [
            f"unknown subject type {settings.subject_type!r}: choose one of "
            + ", ".join(SUBJECT_TYPES)
        ]
    found: list[str] = []
    sector_uri = settings.sector_identifier_uri
    if sector_uri is not None:
        problem = sector_identifier_uri_problem(sector_uri)
        if problem is not None:
            return [problem]
    if settings.subject_type == PAIRWISE:
        if not redirect_uris and not sector_uri:
            # Core §8.1: the sector is the redirect URI's host, or the sector_identifier_uri's.
            return ["a pairwise client without redirect URIs needs a sector_identifier_uri"]
        try:
            sector_of(redirect_uris, sector_uri)
        except SectorError as exc:
            found.append(f"{exc} (OpenID Connect Core §8.1)")
        except ValueError:  # a redirect URI that is no URI (refused where it is registered)
            found.append("a pairwise client's sector cannot be told from its redirect URIs")
    return found


def sector_identifier_uri_problem(uri: str) -> str | None:
    """Core §8.1 / Registration §2: "The value of the sector_identifier_uri MUST be a URL using
    the https scheme"; its host is the pairwise sector. (Baton does not fetch it: the operator
    who registers the client vouches for the redirect URIs it would list.)"""
    parts = _split(uri)
    if parts is None or parts.scheme != "https" or not parts.hostname:
        return f"sector_identifier_uri {uri!r} must be an https URL with a host (Core §8.1)"
    if "@" in parts.netloc or parts.fragment or "#" in uri:
        return f"sector_identifier_uri {uri!r} must have no user information and no fragment"
    return None


def backchannel_logout_uri_problem(uri: str) -> str | None:
    """Back-Channel Logout §2.2: "The backchannel_logout_uri MUST be an absolute URI as defined
    by Section 4.3 of [RFC3986]. The backchannel_logout_uri MUST NOT include a fragment
    component." It SHOULD use https; Baton allows http only to a loopback address, where the
    logout token never crosses a network."""
    parts = _split(uri)
    if parts is None or not parts.hostname or parts.scheme not in ("https", "http"):
        return f"backchannel logout URI {uri!r} must be an absolute https URL with a host"
    if "#" in uri:
        return f"backchannel logout URI {uri!r} must have no fragment (Back-Channel Logout §2.2)"
    if "@" in parts.netloc:
        return f"backchannel logout URI {uri!r} must not carry user information"
    if parts.scheme == "http" and parts.hostname not in LOOPBACK:
        return (
            f"backchannel logout URI {uri!r} must use https: plain http is allowed only for "
            "the loopback addresses 127.0.0.1 and [::1]"
        )
    return None


def _serialized(value: str) -> str:
    """An accepted origin as browsers serialize it (RFC 6454 §6.2)."""
    found = origin_of(value)
    assert found is not None, "checked by origin_problem first"
    return found


def _split(uri: str) -> Any:
    """`urlsplit(uri)` with its port checked, or None for what is no URI at all."""
    if not _URI_CHARS.fullmatch(uri):
        return None
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in range
    except ValueError:
        return None
    return parts
