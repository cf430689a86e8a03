"""The consent page and the account chooser: what an authorization request would give the
client, said plainly to the person asked, and the answers they can give.

`consent_page` renders the request `/authorize` validated (`AuthorizationRequest`); its form
posts back to /authorize with the user's decision.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import Response

from baton.core.claims import OFFLINE_ACCESS, OPENID, for_scope
from baton.server.runtime.context import Baton
from baton.server.runtime.pages import page
from baton.server.runtime.sessions import csrf_token
from baton.store.base import Client

if TYPE_CHECKING:
    from baton.server.endpoints.authorize import AuthorizationRequest


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

# The OpenID Connect scopes, said plainly on the consent page (Core §5.4, §11).
_SCOPE_WORDS = {
    OPENID: "know who you are: an identifier for your account",
    "profile": "your profile: your username, and your name, picture and other details if set",
    "email": "your email address, and whether it was verified",
    OFFLINE_ACCESS: "keep access while you are signed out",
}


async def consent_page(
    request: Request, app: Baton, auth: AuthorizationRequest, username: str
) -> Response:
    """What the client gets, said plainly: its scopes (or none in particular), the resource
    servers the tokens are for, and that it keeps access while the user is away."""
    names = await app.store.resource_names(auth.resources)
    lifetimes = app.settings.policy.lifetimes
    oidc = auth.oidc
    words = _SCOPE_WORDS if oidc is not None else {}
    context = {
        "client": auth.client,
        "scopes": sorted(auth.scope),
        "described": [(s, words.get(s)) for s in sorted(auth.scope)],
        # Claims asked for by name that the scopes do not already release (§5.5).
        "claims": sorted(oidc.named_claims - for_scope(auth.scope)) if oidc is not None else [],
        # A plain OAuth grant always gets a refresh token; an OpenID Connect one only with
        # offline_access (§11, `core.rules.issues_refresh_token`).
        "offline": oidc is None or OFFLINE_ACCESS in auth.scope,
        # An OpenID request's offline access is a choice of its own on the page (§11).
        "offline_choice": oidc is not None and OFFLINE_ACCESS in auth.scope,
        "allow_online": ALLOW_ONLINE,
        "resources": [(uri, names.get(uri)) for uri in auth.resources],
        "idle": duration(lifetimes.refresh_idle_ttl),
        "absolute": duration(lifetimes.refresh_absolute_ttl),
        "params": auth.params,
        "csrf": csrf_token(request.session),
        "username": username,
    }
    return page(request, "consent.html", context)


def duration(seconds: int) -> str:
    """`seconds` in the largest whole unit a person reads at a glance: 90 days, 12 hours."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"
