"""The consent page and the account chooser: what an authorization request would give the
client, said plainly to the person asked, and the answers they can give.

`consent_page` renders the request `/authorize` validated (`AuthorizationRequest`); its form
posts back to /authorize with the user's decision.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import Response

from baton.core.claims import OFFLINE_ACCESS, OPENID, for_scope
from baton.server.runtime.documents import host_of
from baton.server.runtime.pages import N_, page
from baton.server.runtime.sessions import csrf_token
from baton.store.base import Client, RegisteredVia

if TYPE_CHECKING:
    from baton.server.endpoints.authorize import AuthorizationRequest
    from baton.server.runtime.context import Baton


def account_page(
    request: Request, client: Client, username: str, params: tuple[tuple[str, str], ...]
) -> Response:
    """Continue as the signed-in user, or sign in with another account (`select_account`);
    `params` is the authorization request as it goes on once the user chose."""
    context = {
        "client": client,
        "username": username,
        "params": params,
        "other": "/login?next=" + quote("/authorize?" + urlencode(params), safe=""),
    }
    return page(request, "account.html", context)


# The consent page's third answer to an OpenID request with offline_access: allow, but no access
# while the user is signed out.
ALLOW_ONLINE = "allow_online"

# The OpenID Connect scopes, said plainly on the consent page (Core §5.4, §11); translated.
_SCOPE_WORDS = {
    OPENID: N_("know who you are: an identifier for your account"),
    "profile": N_("your profile: your username, and your name, picture and other details if set"),
    "email": N_("your email address, and whether it was verified"),
    OFFLINE_ACCESS: N_("keep access while you are signed out"),
}
OIDC_SCOPES = frozenset(_SCOPE_WORDS)


class ScopeDescriptions(Protocol):
    """The words registered for scopes (`baton scope describe`), shown on the consent page."""

    async def scope_descriptions(self, names: Collection[str]) -> dict[str, str]:
        """name -> description of those of `names` that are registered."""
        ...


def described_scopes(
    scope: Collection[str], registered: Mapping[str, str], oidc: bool
) -> list[tuple[str, str | None, bool]]:
    """(scope, its words or None, whether they are Baton's own words, to translate) for each
    scope, sorted. An OpenID request's OpenID scopes keep Baton's words, whatever is
    registered: what they release is Baton's to say (Core §5.4). Others: the operator's words,
    as registered (in the operator's language), or the bare name."""
    out: list[tuple[str, str | None, bool]] = []
    for name in sorted(scope):
        if oidc and name in _SCOPE_WORDS:
            out.append((name, _SCOPE_WORDS[name], True))
        else:
            out.append((name, registered.get(name), False))
    return out


def return_host(redirect_uri: str) -> str | None:
    """The host the browser goes back to, as the page names it; None for an application on
    this device: a loopback redirect (RFC 8252 §7.3) or a private-use URI scheme (§7.1),
    whose "host" says nothing a person could check."""
    parts = urlsplit(redirect_uri)
    if parts.scheme.lower() not in ("http", "https"):
        return None
    host = (parts.hostname or "").rstrip(".")
    if not host or host == "localhost" or host.endswith(".localhost"):
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    return host


def homepage(client_uri: str | None) -> str | None:
    """The client's homepage as a link, only if it is an http(s) URL (never `javascript:`)."""
    if not client_uri:
        return None
    parts = urlsplit(client_uri)
    return client_uri if parts.scheme.lower() in ("http", "https") and parts.netloc else None


def provenance(app: Baton, client: Client) -> dict[str, object] | None:
    """What the page says of a client no operator registered: a metadata document's is named
    by its host (draft-ietf-oauth-client-id-metadata-document §8.5: "SHOULD display the
    hostname of the client_id"), "not verified by this server" unless the operator trusts
    that host (`client_documents_trusted_hosts`); a dynamically registered one (RFC 7591) is
    never verified (its metadata is its own claim: RFC 7591 §5), and names the host of the
    homepage it claims. None for an operator's client."""
    if client.registered_via == RegisteredVia.DOCUMENT:
        return {
            "kind": "document",
            "host": host_of(client.id),
            "verified": app.documents.trusted(client),
        }
    if client.registered_via == RegisteredVia.DYNAMIC:
        uri = homepage(client.client_uri)
        return {"kind": "dynamic", "host": host_of(uri) if uri else None, "verified": False}
    return None


async def consent_page(
    request: Request, app: Baton, auth: AuthorizationRequest, username: str
) -> Response:
    """What the client gets, said plainly: who it is (its name and homepage), where the answer
    goes (the redirect URI's host), its scopes (each with its registered words, or none in
    particular), the resource servers the tokens are for, and that it keeps access while the
    user is away."""
    names = await app.store.resource_names(auth.resources)
    registered = await app.store.scope_descriptions(auth.scope) if auth.scope else {}
    lifetimes = app.settings.policy.lifetimes
    oidc = auth.oidc
    context = {
        "client": auth.client,
        "client_uri": homepage(auth.client.client_uri),
        "provenance": provenance(app, auth.client),
        "return_host": return_host(auth.redirect_uri),
        "scopes": sorted(auth.scope),
        "described": described_scopes(auth.scope, registered, oidc is not None),
        # Claims asked for by name that the scopes do not already release (§5.5).
        "claims": sorted(oidc.named_claims - for_scope(auth.scope)) if oidc is not None else [],
        # A plain OAuth grant always gets a refresh token; an OpenID Connect one only with
        # offline_access (§11, `core.rules.issues_refresh_token`).
        "offline": oidc is None or OFFLINE_ACCESS in auth.scope,
        # An OpenID request's offline access is a choice of its own on the page (§11).
        "offline_choice": oidc is not None and OFFLINE_ACCESS in auth.scope,
        "allow_online": ALLOW_ONLINE,
        "resources": [(uri, names.get(uri)) for uri in auth.resources],
        # Seconds: the page says them in its language (the `lifetime` filter).
        "idle": lifetimes.refresh_idle_ttl,
        "absolute": lifetimes.refresh_absolute_ttl,
        "params": auth.params,
        "csrf": csrf_token(request.session),
        "username": username,
    }
    return page(request, "consent.html", context)
