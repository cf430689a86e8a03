"""Signing out at the provider: RP-Initiated Logout 1.0 (`/session/end`), `end_op_session`, and
the logout tokens of Back-Channel Logout 1.0.

A relying party sends the browser to `/session/end` (GET, or POST: sent on to the GET, see
`end_session_post`) with `id_token_hint`, `client_id`, `post_logout_redirect_uri`, `state`,
`logout_hint`, `ui_locales`. The browser is redirected to `post_logout_redirect_uri` only when
it is exactly one of the client's registered `post_logout_redirect_uris`, the client told by the
hint (`azp` or its one `aud`) or by `client_id`, which must agree when both are sent; anything
else is a page, never a redirect (an open redirector otherwise).

Confirmation (§2: "the OP SHOULD ask the End-User whether to log out of the OP as well"): the
user is asked, on a CSRF-protected page, unless the `id_token_hint` carries the `sid` of the
browser's current session. Such a hint can only come from a relying party the user signed in to
in this very session, so the request is that relying party's, not a third-party page's logout
CSRF, and the user, who just pressed "sign out" there, is not asked twice (Keycloak does the
same). A hint of another session, or of none, or no hint at all: the page asks. Nobody signed
in: nothing to end, and the redirect (or the signed-out page) comes at once.

`end_op_session` is the one way a browser session ends at the provider's request (this endpoint,
`/logout`): the session, its grants without `offline_access` (OIDC Core §11), and a back-channel
logout token for each client with a grant from it, in one transaction (`baton.store.sql.logout`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from joserfc import jws
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from baton.core.jwa import registry
from baton.core.keys import SigningKey
from baton.core.redirects import redirect_uri_problem
from baton.core.subject import SectorError, subject_for
from baton.core.vocabulary import BACKCHANNEL_LOGOUT_EVENT, FeedEntryKind, RevocationCause
from baton.logs import get_logger
from baton.server.endpoints.clientauth import enabled_client
from baton.server.endpoints.errors import OAuthError
from baton.server.endpoints.forms import Form, parse_pairs, read_form, unreadable
from baton.server.endpoints.hints import IdTokenHint, read_id_token_hint
from baton.server.observability import metrics
from baton.server.observability.delivery import LogoutTokens
from baton.server.observability.metrics import Metrics
from baton.server.runtime.context import Baton, baton, source_address
from baton.server.runtime.pages import N_, templates
from baton.server.runtime.sessions import SID, csrf_ok, csrf_token, session_digest
from baton.store.base import Client, SignedOut

log = get_logger("baton.logout")

# RP-Initiated Logout 1.0 §2: the request's parameters, carried through the confirmation page.
PARAMS = (
    "id_token_hint",
    "logout_hint",
    "client_id",
    "post_logout_redirect_uri",
    "state",
    "ui_locales",
)
_NO_STORE = {"Cache-Control": "no-store"}
LOGOUT_TOKEN_TTL = 120  # seconds: Back-Channel Logout §2.4 recommends a short lifetime


_PRINTABLE = {"type": "string", "pattern": "^[^\\u0000-\\u001f\\u007f]*$"}
_PAGE = {"content": {"text/html": {"schema": {"type": "string"}}}}
_LOCATION = {"Location": {"$ref": "#/components/headers/Location"}}
_RESPONSES: dict[str, Any] = {
    "200": {"description": "The confirmation page, or the signed-out page.", **_PAGE},
    "303": {"description": "To post_logout_redirect_uri, with `state`.", "headers": _LOCATION},
    "400": {"description": "The request cannot be acted on: why (never a redirect).", **_PAGE},
    "429": {"description": "The address's rate limit is spent: the error page.", **_PAGE},
}
# The OpenAPI operations of `baton.server.routes` (their summaries are the routes').
END_SESSION: dict[str, Any] = {
    "operationId": "endSession",
    "parameters": [
        {"name": name, "in": "query", "required": False, "schema": _PRINTABLE} for name in PARAMS
    ],
    "responses": _RESPONSES,
}
END_SESSION_FORM: dict[str, Any] = {
    "operationId": "endSessionForm",
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {name: _PRINTABLE for name in (*PARAMS, "csrf", "decision")},
                    "additionalProperties": _PRINTABLE,
                }
            }
        },
    },
    "responses": {
        **_RESPONSES,
        "303": {
            "description": "A relying party's POST: to the GET of its parameters (the session "
            "cookie is SameSite=Lax). The confirmation's: to post_logout_redirect_uri.",
            "headers": _LOCATION,
        },
        "403": {"description": "The confirmation's CSRF token does not match.", **_PAGE},
        "413": {"description": "The form exceeds the body size limit.", **_PAGE},
        "415": {"description": "The form is not `application/x-www-form-urlencoded`.", **_PAGE},
    },
}


class Refusal(Exception):
    """The request cannot be acted on as asked: a page says why (never a redirect). `message`
    is marked with `N_` (the page translates it), `values` fill its `%(name)s` placeholders."""

    def __init__(
        self, message: str, status: int = 400, values: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message % values if values else message)
        self.message = message
        self.status = status
        self.values = dict(values) if values else None


@dataclass(frozen=True)
class EndSessionRequest:
    client: Client | None
    redirect_uri: str | None  # checked against the client's registration
    state: str | None
    hint: IdTokenHint | None
    params: tuple[tuple[str, str], ...]


async def validate(app: Baton, form: Form) -> EndSessionRequest:
    hint: IdTokenHint | None = None
    client_id = form.get("client_id")
    if (token := form.get("id_token_hint")) is not None:
        hint = read_id_token_hint(app, token)
        if hint is None:
            raise Refusal(N_("The id_token_hint is not an ID token this server issued."))
        # §2: "When both client_id and id_token_hint are present, the OP MUST verify that the
        # Client Identifier matches the one used when issuing the ID Token."
        if client_id is not None and client_id != hint.client_id:
            raise Refusal(N_("The client_id is not the client the id_token_hint was issued to."))
        client_id = hint.client_id
    client = await enabled_client(app.store, client_id) if client_id is not None else None
    uri = form.get("post_logout_redirect_uri")
    if uri is not None:
        if client is None:
            # §3: without a client to check it against, the OP MUST NOT redirect there.
            raise Refusal(
                N_(
                    "The sign-out names no known client to return to "
                    "(send id_token_hint or client_id with post_logout_redirect_uri)."
                )
            )
        # §3.1: the value MUST have been previously registered (exact string comparison).
        if uri not in client.post_logout_redirect_uris:
            raise Refusal(N_("The post_logout_redirect_uri is not registered for this client."))
        # The rule registration applies, applied again: never a `javascript:` or plain http off
        # loopback, even if it was stored before the rule.
        if (problem := redirect_uri_problem(uri)) is not None:
            message = N_("The client's post-logout redirect URI is not allowed: %(problem)s.")
            raise Refusal(message, values={"problem": problem})
    params = tuple((name, value) for name in PARAMS if (value := form.get(name)) is not None)
    return EndSessionRequest(client, uri, form.get("state"), hint, params)


async def end_op_session(
    app: Baton,
    session: MutableMapping[str, Any],
    now: int,
    source_address: str | None,
    metrics: Metrics | None = None,
) -> SignedOut:
    """Ends the browser session `session` (the request's, as the session middleware holds it):
    its row (every copy of the cookie), its grants without `offline_access`, and a back-channel
    logout for each client with a grant from it; the cookie is cleared. `metrics`: the app's
    (`baton.server.observability.metrics.of(request)`), to count the revoked grants."""
    secret = session.get(SID)
    done = SignedOut()
    if isinstance(secret, str):
        done = await app.store.end_op_session(session_digest(secret), now)
    session.clear()
    if metrics is not None:
        for _grant in done.revoked:
            metrics.revoked(FeedEntryKind.GRANT, RevocationCause.LOGOUT)
    if done.sessions:
        log.info(
            "signed out",
            revoked_grants=len(done.revoked),
            kept_offline=len(done.kept),
            backchannel_clients=len(done.told),
            source_address=source_address,
        )
    return done


async def end_session_get(request: Request) -> Response:
    try:
        form = Form(parse_pairs(request.url.query))
    except OAuthError as exc:
        return unreadable(request, exc)
    return await _end_session(request, form, None)


async def end_session_post(request: Request) -> Response:
    """A relying party's POST (§2: GET and POST are both supported), or our confirmation
    form's, which carries `decision` and the session's CSRF token.

    A relying party's POST is answered with a 303 to the GET of the same parameters: the
    session cookie is SameSite=Lax, which a browser does not send on the cross-site form POST a
    relying party auto-submits, so the POST itself would see nobody signed in and report a
    sign-out that signed nobody out. The GET it leads to is a top-level navigation, which
    carries the cookie, and is handled as any GET (the confirmation page, or the sign-out at
    once for a hint of this session)."""
    try:
        form = await read_form(request, baton(request).settings.max_body_bytes)
    except OAuthError as exc:
        return unreadable(request, exc)
    decision = form.get("decision")
    if decision is None:
        params = [(name, value) for name in PARAMS if (value := form.get(name)) is not None]
        query = urlencode(params)
        target = "/session/end" + ("?" + query if query else "")
        return RedirectResponse(target, status_code=303, headers=_NO_STORE)
    if not csrf_ok(request.session, form.get("csrf")):
        return _page(request, N_("The form expired. Go back and try again."), 403)
    if decision not in ("yes", "no"):
        return _page(request, N_("Choose to sign out or to stay signed in."), 400)
    return await _end_session(request, form, decision == "yes")


async def _end_session(request: Request, form: Form, confirmed: bool | None) -> Response:
    app = baton(request)
    try:
        # Each request reads the client and may write: charged to the address, as /authorize.
        await app.limits.check_address(source_address(request))
    except OAuthError as exc:
        message = N_("Too many requests from your address. Wait a moment and try again.")
        return _page(request, message, exc.status, exc.headers)
    try:
        ask = await validate(app, form)
    except Refusal as exc:
        return _page(request, exc.message, exc.status, values=exc.values)
    now = app.clock.now()
    if not isinstance(request.session.get("uid"), int):
        return _finish(request, ask, signed_out=True)  # nobody to sign out
    if confirmed is None and not await _hint_of_this_session(app, request, ask.hint, now):
        context = {
            "confirm": True,
            "client": ask.client,
            "params": ask.params,
            "csrf": csrf_token(request.session),
        }
        return templates.TemplateResponse(request, "end_session.html", context, headers=_NO_STORE)
    if confirmed is False:
        return _finish(request, ask, signed_out=False)
    await end_op_session(app, request.session, now, source_address(request), metrics.of(request))
    return _finish(request, ask, signed_out=True)


async def _hint_of_this_session(
    app: Baton, request: Request, hint: IdTokenHint | None, now: int
) -> bool:
    """Whether the hint's `sid` is the browser's current session's (see the module's text)."""
    secret = request.session.get(SID)
    if hint is None or hint.sid is None or not isinstance(secret, str):
        return False
    return await app.store.session_sid(session_digest(secret), now) == hint.sid


def _finish(request: Request, ask: EndSessionRequest, *, signed_out: bool) -> Response:
    """§3: to the registered post_logout_redirect_uri with `state`, or a page."""
    if ask.redirect_uri is not None:
        query = urlencode({"state": ask.state} if ask.state is not None else {})
        sep = "&" if "?" in ask.redirect_uri else "?"
        target = ask.redirect_uri + (sep + query if query else "")
        return RedirectResponse(target, status_code=303, headers=_NO_STORE)
    context = {"confirm": False, "signed_out": signed_out, "client": ask.client}
    return templates.TemplateResponse(request, "end_session.html", context, headers=_NO_STORE)


def _page(
    request: Request,
    message: str,
    status: int,
    headers: dict[str, str] | None = None,
    values: Mapping[str, Any] | None = None,
) -> Response:
    """The error page: `message` (marked with `N_`) in the reader's language, with `values`."""
    return templates.TemplateResponse(
        request,
        "error.html",
        {"message": message, "values": dict(values) if values else None},
        status_code=status,
        headers={**_NO_STORE, **(headers or {})},
    )


# -- Back-Channel Logout 1.0: the logout token ----------------------------------------------------


def logout_tokens(app: Baton) -> LogoutTokens | None:
    """The delivery loop's signer of logout tokens, when OpenID Connect is on."""
    if not app.oidc:
        return None

    async def sign(stored: dict[str, Any], now: int) -> str | None:
        return await logout_token(app, stored, now)

    return sign


async def logout_token(app: Baton, stored: dict[str, Any], now: int) -> str | None:
    """The signed logout token (§2.4) of an outbox row's stored claims, signed now with the
    client's ID token algorithm (`Baton.keys.key_for`); None if it cannot be signed now."""
    client = await app.store.get_client(str(stored.get("aud")))
    if client is None or app.pairwise_salt is None:
        return None
    key = app.keys.key_for(client.id_token_signed_response_alg, now)
    if key is None:
        return None
    try:
        sub = subject_for(
            str(stored["subject"]),
            client.subject_type,
            client.redirect_uris,
            client.sector_identifier_uri,
            app.pairwise_salt,
        )
    except (SectorError, KeyError):
        return None
    return sign_logout_token(app.settings.issuer_identifier, key, client.id, sub, stored, now)


def sign_logout_token(
    issuer: str, key: SigningKey, client_id: str, sub: str, stored: dict[str, Any], now: int
) -> str:
    """§2.4: `iss`, `aud`, `iat`, `exp`, `jti`, `events`, `sub`, `sid` when known; never a
    `nonce` (§2.4: "A nonce Claim MUST NOT be present"); header `typ` `logout+jwt` (§2.4)."""
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": sub,
        "aud": client_id,
        "iat": now,
        "exp": now + LOGOUT_TOKEN_TTL,
        "jti": stored["jti"],
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
    }
    if isinstance(stored.get("sid"), str):
        claims["sid"] = stored["sid"]
    header = {"alg": key.alg, "kid": key.kid, "typ": "logout+jwt"}
    body = json.dumps(claims, separators=(",", ":")).encode()
    return jws.serialize_compact(header, body, key.jose_key, registry=registry(key.alg))
