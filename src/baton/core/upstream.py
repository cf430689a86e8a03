"""Upstream OpenID Connect providers ("Sign in with ..."): the rules, with no I/O.

What an operator may configure (a provider id, an issuer that is https or http on loopback),
how the upstream's client secret is sealed under the key-encryption key, what a discovery
document must say (its `issuer` exactly the configured one, OIDC Discovery 1.0 §4.3), and which
ID token claims make a sign-in (OIDC Core §3.1.3.7): `iss` exact, `aud` holding our client id
(with `azp` when there are other audiences), `exp`/`iat` within a small skew, our `nonce`.
The signature itself is checked by the server (`baton.server.endpoints.upstream`) with the
algorithms of `SIGNING_ALGORITHMS` only: never `none`, never HMAC with the client secret.

Linking an upstream account to a local user is by the upstream's stable `sub`; by e-mail only
when the operator opted in, the upstream says `email_verified` (the JSON `true`) and the local
user's own address is verified, is no administrator and has no link of that provider yet
(`may_link_by_email`, `may_link_user_by_email`). A user made at the first sign-in is named
`<provider>-<hash of sub>` (`username_for`): never a name the upstream account chose.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from baton.core.messages import N_

# The asymmetric JWS algorithms (RFC 7518 §3.1, RFC 8037, RFC 9864) an upstream's ID token may
# be signed with. `none` and the HMAC ones are refused: an HMAC keyed with the client secret
# would let anyone holding that secret mint sign-ins.
SIGNING_ALGORITHMS = frozenset(
    {
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES384",
        "ES512",
        "EdDSA",
        "Ed25519",
    }
)
DEFAULT_SCOPE = "openid email profile"
SKEW = 60  # seconds of clock difference tolerated for `exp` and `iat`
MAX_SUBJECT = 255  # upstream_links.subject
_PROVIDER_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_SEAL_NONCE = 12
_SEAL_PREFIX = "v1."


class UpstreamError(ValueError):
    """A configuration, a discovery document or an ID token Baton refuses, and why."""


def check_provider_id(provider_id: str) -> str:
    """A provider id: lower-case letters, digits, `-` and `_` (it is a path segment)."""
    if not _PROVIDER_ID.fullmatch(provider_id):
        raise UpstreamError(
            f"the provider id {provider_id!r} must be 1 to 64 lower-case letters, digits, "
            "'-' or '_', starting with a letter or digit"
        )
    return provider_id


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, what: str) -> str:
    """`url` if it is https, or http on a loopback host, with no fragment; else `UpstreamError`."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        raise UpstreamError(f"the {what} {url!r} is not a URL") from exc
    secure = parts.scheme == "https" and bool(host)
    if not secure and not (parts.scheme == "http" and is_loopback_host(host)):
        raise UpstreamError(f"the {what} {url!r} must be https (http only on loopback)")
    if parts.fragment or "#" in url:
        raise UpstreamError(f"the {what} {url!r} must not have a fragment")
    return url


def _local(url: str) -> bool:
    """Whether `url` is plain http on a loopback host (a development setup)."""
    parts = urlsplit(url)
    return parts.scheme == "http" and is_loopback_host(parts.hostname)


def check_endpoint(url: str, what: str, issuer: str) -> str:
    """An endpoint a discovery document names: https, or http on loopback only when the issuer
    itself is http on loopback. A remote issuer must not point Baton's own requests at this
    host's loopback services (the token request carries the client secret)."""
    check_url(url, what)
    if urlsplit(url).scheme != "https" and not _local(issuer):
        raise UpstreamError(f"the {what} {url!r} must be https (the issuer is not on loopback)")
    return url


def check_issuer(issuer: str) -> str:
    """An issuer identifier (OIDC Discovery 1.0 §2): https (http on loopback), no query or
    fragment. It is kept as written: the discovery document's `issuer` must equal it exactly."""
    check_url(issuer, "issuer")
    if urlsplit(issuer).query:
        raise UpstreamError(f"the issuer {issuer!r} must not have a query")
    return issuer


def check_scope(scope: str) -> str:
    """The scope asked of the upstream: it must hold `openid`."""
    words = scope.split()
    if "openid" not in words:
        raise UpstreamError("the scope must include openid")
    if any(not w.isascii() or not w.isprintable() or '"' in w or "\\" in w for w in words):
        raise UpstreamError("the scope holds characters a scope may not (RFC 6749 §3.3)")
    return " ".join(words)


def discovery_url(issuer: str) -> str:
    """OIDC Discovery 1.0 §4.1: the issuer with `/.well-known/openid-configuration` appended."""
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


# -- the client secret, sealed under the key-encryption key -------------------------------------


def _aad(provider_id: str) -> bytes:
    return b"baton/upstream-secret/v1:" + provider_id.encode()


def seal_secret(kek: bytes, provider_id: str, secret: str) -> str:
    """The upstream's client secret sealed (AES-GCM) under the key-encryption key, bound to the
    provider id: a sealed secret moved to another provider's row does not open."""
    nonce = os.urandom(_SEAL_NONCE)
    sealed = nonce + AESGCM(kek).encrypt(nonce, secret.encode(), _aad(provider_id))
    return _SEAL_PREFIX + base64.urlsafe_b64encode(sealed).decode()


def open_secret(kek: bytes, provider_id: str, sealed: str) -> str:
    """The client secret `seal_secret` sealed, or `UpstreamError` (another key, damaged)."""
    try:
        if not sealed.startswith(_SEAL_PREFIX):
            raise ValueError
        raw = base64.urlsafe_b64decode(sealed[len(_SEAL_PREFIX) :])
        nonce, ciphertext = raw[:_SEAL_NONCE], raw[_SEAL_NONCE:]
        return AESGCM(kek).decrypt(nonce, ciphertext, _aad(provider_id)).decode()
    except (ValueError, InvalidTag, UnicodeDecodeError) as exc:
        raise UpstreamError(
            "the upstream's client secret does not open with this key-encryption key"
        ) from exc


# -- discovery ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Discovery:
    """What Baton uses of an upstream's discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    algorithms: frozenset[str]  # ID token signing algorithms Baton accepts of it
    iss_parameter: bool = False  # `authorization_response_iss_parameter_supported` (RFC 9207)


def check_discovery(document: Any, issuer: str) -> Discovery:
    """The discovery document of `issuer`, or `UpstreamError`: its `issuer` must equal the
    configured one exactly (OIDC Discovery 1.0 §4.3), its endpoints be https (http on loopback),
    and it must offer an asymmetric ID token algorithm."""
    if not isinstance(document, Mapping):
        raise UpstreamError("the discovery document is not a JSON object")
    if document.get("issuer") != issuer:
        raise UpstreamError(
            f"the discovery document's issuer {document.get('issuer')!r} is not {issuer!r}"
        )
    urls: dict[str, str] = {}
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        value = document.get(name)
        if not isinstance(value, str):
            raise UpstreamError(f"the discovery document has no {name}")
        urls[name] = check_endpoint(value, name, issuer)
    offered = document.get("id_token_signing_alg_values_supported", ["RS256"])
    if not isinstance(offered, list):
        raise UpstreamError("id_token_signing_alg_values_supported is not a list")
    algorithms = frozenset(a for a in offered if isinstance(a, str)) & SIGNING_ALGORITHMS
    if not algorithms:
        raise UpstreamError("the upstream signs ID tokens with no algorithm Baton accepts")
    methods = document.get("code_challenge_methods_supported")
    if isinstance(methods, list) and "S256" not in methods:
        raise UpstreamError("the upstream does not support PKCE with S256")
    return Discovery(
        issuer,
        urls["authorization_endpoint"],
        urls["token_endpoint"],
        urls["jwks_uri"],
        algorithms,
        document.get("authorization_response_iss_parameter_supported") is True,
    )


# -- the authorization response and the ID token ---------------------------------------------------


def check_iss_parameter(iss: str | None, discovery: Discovery) -> None:
    """RFC 9207 §2.4: an `iss` in the authorization response must equal the issuer; an upstream
    that says it sends one must send it."""
    if iss is None:
        if discovery.iss_parameter:
            raise UpstreamError("the upstream's response has no iss parameter")
        return
    if iss != discovery.issuer:
        raise UpstreamError("the upstream's response names another issuer (iss)")


def same_secret(expected: str, presented: str | None) -> bool:
    if presented is None:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


@dataclass(frozen=True, slots=True)
class UpstreamIdentity:
    """Who the upstream says signed in: its stable `sub`, and the claims Baton may copy."""

    subject: str
    email: str | None = None
    email_verified: bool = False
    amr: tuple[str, ...] = ()
    profile: Mapping[str, str] = field(default_factory=dict)


# Profile claims copied to a user made at the first sign-in (`--create-users`).
_COPIED = ("name", "given_name", "family_name", "nickname", "locale", "zoneinfo")


def check_id_token_claims(
    claims: Mapping[str, Any],
    *,
    issuer: str,
    client_id: str,
    nonce: str,
    now: int,
    skew: int = SKEW,
) -> UpstreamIdentity:
    """The identity an ID token's claims (its signature already checked) say, or
    `UpstreamError`: the checks of OIDC Core §3.1.3.7 (2, 3, 4, 5, 9, 10, 11)."""
    if claims.get("iss") != issuer:
        raise UpstreamError("the ID token's issuer (iss) is not the upstream's")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise UpstreamError("the ID token has no audience (aud)")
    if client_id not in audiences:
        raise UpstreamError("the ID token is not for this client (aud)")
    azp = claims.get("azp")
    if len(audiences) > 1 and azp is None:
        raise UpstreamError("the ID token has several audiences and no azp")
    if azp is not None and azp != client_id:
        raise UpstreamError("the ID token was issued to another party (azp)")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or not isinstance(iat, int | float) or _bools(exp, iat):
        raise UpstreamError("the ID token has no exp or iat")
    if exp <= now - skew:
        raise UpstreamError("the ID token has expired")
    if iat > now + skew:
        raise UpstreamError("the ID token was issued in the future (iat)")
    presented = claims.get("nonce")
    if not isinstance(presented, str) or not same_secret(nonce, presented):
        raise UpstreamError("the ID token's nonce is not the one Baton sent")
    sub = claims.get("sub")
    # OIDC Core §2: `sub` is at most 255 ASCII characters; printable ones only here, so that a
    # link can be shown, searched and removed (a control character would be refused by forms).
    if not isinstance(sub, str) or not sub or len(sub) > MAX_SUBJECT or not sub.isprintable():
        raise UpstreamError("the ID token has no usable subject (sub)")
    return identity_of(sub, claims)


def _bools(*values: Any) -> bool:
    return any(isinstance(v, bool) for v in values)


def identity_of(sub: str, claims: Mapping[str, Any]) -> UpstreamIdentity:
    email = claims.get("email")
    email = email if isinstance(email, str) and 0 < len(email) <= 320 else None
    amr = claims.get("amr")
    methods = (
        tuple(m for m in amr if isinstance(m, str) and 0 < len(m) <= 32)
        if isinstance(amr, list)
        else ()
    )
    profile = {n: v for n in _COPIED if isinstance(v := claims.get(n), str) and v}
    return UpstreamIdentity(
        sub,
        email,
        claims.get("email_verified") is True,
        methods[:10],
        profile,
    )


# -- linking --------------------------------------------------------------------------------------


def may_link_by_email(link_by_email: bool, identity: UpstreamIdentity) -> bool:
    """Never by e-mail alone: only when the operator opted in and the upstream verified it."""
    return link_by_email and identity.email is not None and identity.email_verified


def same_email(a: str | None, b: str | None) -> bool:
    """Whether two addresses are the same mailbox for linking: compared case-folded (domains
    are case-insensitive, and providers treat the local part so in practice)."""
    return a is not None and b is not None and a.casefold() == b.casefold()


def may_link_user_by_email(
    *, email_verified: bool, is_admin: bool, linked_to_provider: bool
) -> bool:
    """Whether a local user whose address matches may be linked by it: only if Baton holds that
    address as verified (an unverified one may have been planted, e.g. by a user made at a
    sign-in whose upstream did not verify it), never an administrator (an upstream account
    must not gain the console by an address), and never a user who already has a link of this
    provider (a second upstream account of the same provider is not the same person)."""
    return email_verified and not is_admin and not linked_to_provider


def username_for(provider_id: str, subject: str) -> str:
    """The username of a user made at the first sign-in: `<provider>-<12 hex digits of
    SHA-256(provider id, sub)>`. Never the upstream's `preferred_username`: an upstream account
    must not choose a local name (and so the `sub` relying parties see, or the name a login app
    later resolves)."""
    hashed = hashlib.sha256(f"{provider_id}\0{subject}".encode()).hexdigest()[:12]
    return f"{provider_id}-{hashed}"


# -- what the store keeps -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UpstreamProvider:
    """A row of `upstream_providers`: `client_secret` stays sealed (`seal_secret`); None is a
    public client (token endpoint authentication `none`)."""

    id: str
    name: str
    issuer: str
    client_id: str
    client_secret: str | None = field(repr=False)
    scope: str
    link_by_email: bool
    create_users: bool
    created_at: int
    disabled_at: int | None = None


@dataclass(frozen=True, slots=True)
class UpstreamLink:
    """A row of `upstream_links`, with its provider's name: this upstream account is this user."""

    provider_id: str
    provider_name: str
    subject: str
    user_id: int
    created_at: int
    last_used_at: int | None
    email: str | None


class Linked:
    """How a sign-in found its user (`SignInOutcome.how`)."""

    LINK = "link"  # an existing link by (provider, sub)
    EMAIL = "email"  # linked now, by the upstream's verified e-mail (operator opted in)
    CREATED = "created"  # a user made now (operator opted in)


# Why an upstream sign-in finds no local user (`SignInOutcome.refusal`), said on the page: each
# marked for the catalogs, and formatted there with the provider's name as `%(provider)s`.
NOT_LINKED = N_("No account is linked to this %(provider)s account.")
SEVERAL_BY_EMAIL = N_(
    "Several accounts here have the e-mail address of this %(provider)s account: ask an "
    "administrator to link it."
)
DELETED = N_(
    "The account here of this %(provider)s account was deleted: it cannot sign in again. Ask an "
    "administrator."
)
NOT_SET_UP = N_(
    "This %(provider)s account cannot be set up here now. Please sign in again, or ask an "
    "administrator."
)
DISABLED = N_("This account is disabled.")


@dataclass(frozen=True, slots=True)
class SignInOutcome:
    """The local user an upstream sign-in is for (`user_id`, `username`), or why it is refused
    (`refusal`: one of the messages above, with `%(provider)s` for the provider's name, as the
    page translates and formats it)."""

    user_id: int | None = None
    username: str | None = None
    how: str | None = None
    refusal: str | None = None
