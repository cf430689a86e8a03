"""RFC 8707 resources and the audience of an access token: pure rules, no I/O.

A resource server is registered with its identifier URI; a client may ask only for the
resources it was allowed; a grant holds the resources the user consented to (or, for
client_credentials, the client asked for); every token of the grant is for those, or for fewer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from urllib.parse import urlsplit

from baton.core.redirects import LOOPBACK

Resources = tuple[str, ...]


def resource_uri_problem(uri: str) -> str | None:
    """What is wrong with `uri` as a resource server's identifier, or None.

    RFC 8707 §2: "an absolute URI ... MUST NOT include a fragment component"; like a redirect
    URI, plain http only on loopback (an `aud` is compared as a string, and must name one host).
    """
    if not (uri.isascii() and uri.isprintable()) or " " in uri:
        return f"resource URI {uri!r} must be printable ASCII without spaces (RFC 3986)"
    try:
        parts = urlsplit(uri)
        hostname = parts.hostname
    except ValueError as exc:
        return f"resource URI {uri!r} is not a valid URI: {exc}"
    if not parts.scheme or not parts.netloc or parts.fragment or "#" in uri:
        return f"resource URI {uri!r} must be absolute and have no fragment"
    if parts.scheme not in ("https", "http"):
        return f"resource URI {uri!r} must use https"
    if parts.scheme == "http" and hostname not in LOOPBACK:
        return f"resource URI {uri!r} must use https (plain http is allowed for loopback only)"
    if not hostname:
        return f"resource URI {uri!r} has no host"
    return None


def own_audience_problem(uri: str, own: Sequence[str]) -> str | None:
    """Why `uri` cannot be a resource server's identifier when this server's own audiences are
    `own` (its issuer, issuer identifier, default access-token audience), or None.

    A token for such a resource server would carry this server's own audience: the server
    would take it as its own (the admin API, introspection of a no-resource token), so the
    resource server could replay what it was handed. Compared without a trailing slash."""
    if uri.rstrip("/") in {o.rstrip("/") for o in own}:
        return (
            f"resource URI {uri!r} is this server's own audience (its issuer or default "
            "access-token audience): a resource server needs an identifier of its own"
        )
    return None


def requested_resource_problem(uri: str) -> str | None:
    """RFC 8707 §2: a `resource` parameter "MUST be an absolute URI ... MUST NOT include a
    fragment component"; anything else is `invalid_target`."""
    try:
        scheme = urlsplit(uri).scheme
    except ValueError:
        scheme = ""
    if not scheme or "#" in uri:  # an absolute URI has a scheme (RFC 3986 §4.3): a URN has one
        return "resource must be an absolute URI without a fragment"
    return None


class TargetError(ValueError):
    """A requested resource the client may not have (RFC 8707 §2: `invalid_target`)."""


def requested(asked: Sequence[str], allowed: Sequence[str]) -> Resources:
    """The resources an authorization request is for, sorted; raises TargetError.

    Naming none means every resource the client is allowed, as an omitted scope means the
    client's registered scope (RFC 6749 §3.3); naming one outside `allowed` is refused."""
    for resource in asked:
        if (problem := requested_resource_problem(resource)) is not None:
            raise TargetError(problem)
    chosen = narrowed(allowed, asked)
    if chosen is None:
        outside = next(r for r in asked if r not in allowed)
        raise TargetError(f"resource {outside!r} is not one this client may ask for")
    return tuple(sorted(set(chosen)))


def narrowed(granted: Sequence[str], asked: Sequence[str]) -> Resources | None:
    """The resources a token is for: those `asked`, if every one is `granted`; none asked, all
    granted (RFC 8707 §2.2: the client "MAY" name a subset; a refresh never widens, RFC 9700
    §2.3). None: the request asks for a resource the grant does not hold (`invalid_target`)."""
    if not asked:
        return tuple(granted)
    if not set(asked) <= set(granted):
        return None
    return tuple(asked)


def audience_of(resources: Sequence[str], default: str | None) -> Resources:
    """The token's audience: its resources, else the server's default audience (a client with
    no allowed resources: `--access-token-audience`, the issuer unless configured)."""
    if resources:
        return tuple(resources)
    return (default,) if default is not None else ()


def aud_claim(audience: Sequence[str]) -> str | list[str]:
    """RFC 7519 §4.1.3 (and RFC 9068 §2.2, RFC 7662 §2.2): one audience is a string, several an
    array."""
    return audience[0] if len(audience) == 1 else list(audience)


def stored_audience(audience: Sequence[str]) -> str | None:
    """How `access_tokens.audience` holds it: one URI as is, several as a JSON array (a URI
    never starts with `[`), none as NULL."""
    if not audience:
        return None
    return audience[0] if len(audience) == 1 else json.dumps(list(audience))


def audience_from_stored(value: str | None) -> Resources:
    if value is None:
        return ()
    if value.startswith("["):
        return tuple(str(item) for item in json.loads(value))
    return (value,)


def stored_resources(resources: Sequence[str]) -> str | None:
    """How `grants.resources` (and codes, consents) hold them: a JSON array, NULL for none."""
    return json.dumps(list(resources)) if resources else None


def resources_from_stored(value: str | None) -> Resources:
    return tuple(str(item) for item in json.loads(value)) if value else ()
