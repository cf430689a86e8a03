"""Signing in with an upstream OpenID Connect provider ("Sign in with ...").

`GET /login/upstream/{id}` reads the upstream's discovery document (cached, its `issuer` exactly
the configured one), keeps a fresh `state`, `nonce` and PKCE S256 verifier in this browser's
session cookie, sealed (AES-GCM under a key derived by HKDF from the session key: the cookie is
only signed, and the nonce and verifier must not be readable from it), and sends the browser to
the upstream's authorization endpoint. The callback takes them out of the cookie and they live
`challenge_ttl` seconds; but a copy of the cookie from before the callback still holds them, so
that the answer is used once rests on the upstream refusing a second use of its code (RFC 6749
§4.1.2: "MUST NOT be used more than once"), as every conforming upstream does. Keeping the
sign-in server-side would need a table of its own (`auth_challenges` is for clients' requests).

`GET /login/upstream/{id}/callback` checks the `state` against this browser's, the RFC 9207
`iss` parameter, the upstream's `error`; exchanges the code (client_secret_basic, or `none` for a
public upstream client, with the PKCE verifier; a short timeout); validates the ID token
(signature by the upstream's JWKS, refetched once on an unknown `kid`; the claims of
`baton.core.upstream.check_id_token_claims` against the app's clock); finds the local user by
the link of (provider, `sub`) as `baton.store.sql.upstream` says; and begins a session whose
`amr` is the upstream's own (a user who must use a second factor here goes on to Baton's
second step first, as after a password, which adds "otp" and "mfa" to it:
`baton.server.endpoints.mfa`). Every refusal is a page that says why, with the way back to the
login page: never a 500, never a session, never a link.

Every call to an upstream has one deadline (`Upstreams.timeout`) for the whole exchange, the
body included, and its body is read as it comes and dropped past `_MAX_DOCUMENT` bytes: an
upstream that drips or floods holds no sign-in and no memory.

Nothing here logs or stores a token, a code, the verifier or the client secret.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import anyio
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jws
from joserfc.errors import JoseError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from baton.core.jwa import JoseKey, key_allows, registry
from baton.core.keys import KeyEncryptionError, key_encryption_key
from baton.core.pkce import s256
from baton.core.upstream import (
    Discovery,
    UpstreamError,
    UpstreamIdentity,
    UpstreamProvider,
    check_discovery,
    check_id_token_claims,
    check_iss_parameter,
    discovery_url,
    open_secret,
    same_secret,
)
from baton.logs import get_logger
from baton.server.endpoints import login
from baton.server.endpoints.mfa import second_step
from baton.server.endpoints.stores import UpstreamStore
from baton.server.runtime.context import baton, source_address
from baton.server.runtime.pages import N_, page
from baton.server.runtime.sessions import AccountDisabled, begin_session
from baton.store.admin import Actor

if TYPE_CHECKING:
    import httpx

log = get_logger("baton.upstream")

PENDING = "upstream"  # the session cookie's member holding the sign-in under way
_MAX_DOCUMENT = 512 * 1024  # bytes of a discovery document, JWKS or token response
NO_SUCH_PROVIDER = N_("There is no such sign-in provider.")


class _TooLarge(Exception):
    """An upstream's answer longer than `_MAX_DOCUMENT` bytes."""


class UpstreamUnavailable(Exception):
    """The upstream did not answer (in time), or answered what Baton cannot use: `said` (marked
    with `N_`, for the page to translate) with `values` for its `%(name)s` placeholders;
    `message`, the English sentence they make, for the log."""

    def __init__(
        self, said: str, status: int = 502, values: Mapping[str, Any] | None = None
    ) -> None:
        self.said = said
        self.values = dict(values) if values else {}
        self.message = said % self.values if values else said
        super().__init__(self.message)
        self.status = status


@dataclass
class Upstreams:
    """The upstreams' documents this process has read (discovery and JWKS, each for `ttl`
    seconds of the app's clock), and the HTTP client's timeout for every call to an upstream.

    One per app (`upstreams(request)`); a test may set `app.state.upstreams` to one with a
    shorter timeout."""

    timeout: float = 10.0
    ttl: int = 3600
    transport: httpx.AsyncBaseTransport | None = None
    _discovery: dict[str, tuple[int, Discovery]] = field(default_factory=dict)
    _jwks: dict[str, tuple[int, list[dict[str, Any]]]] = field(default_factory=dict)

    def client(self) -> httpx.AsyncClient:
        import httpx  # on the first upstream login, not in every worker at start-up

        return httpx.AsyncClient(
            timeout=self.timeout, transport=self.transport, follow_redirects=False
        )

    async def fetch(self, name: str, method: str, url: str, **kwargs: Any) -> tuple[int, bytes]:
        """The status and body of one call to an upstream, or `UpstreamUnavailable`: the whole
        call (connecting, the headers, the body) within `timeout` seconds, and the body read as
        it comes, given up past `_MAX_DOCUMENT` bytes (said or read)."""
        import httpx  # on the first upstream login, not in every worker at start-up

        try:
            with anyio.fail_after(self.timeout):
                async with (
                    self.client() as client,
                    client.stream(method, url, **kwargs) as response,
                ):
                    said = response.headers.get("content-length", "")
                    if said.isdigit() and int(said) > _MAX_DOCUMENT:
                        raise _TooLarge
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > _MAX_DOCUMENT:
                            raise _TooLarge
                    return response.status_code, bytes(body)
        except (TimeoutError, httpx.TimeoutException) as exc:
            said = N_("%(provider)s did not answer in time.")
            raise UpstreamUnavailable(said, 504, {"provider": name}) from exc
        except _TooLarge as exc:
            said = N_("%(provider)s answered with a document too large.")
            raise UpstreamUnavailable(said, values={"provider": name}) from exc
        except httpx.HTTPError as exc:
            said = N_("%(provider)s cannot be reached.")
            raise UpstreamUnavailable(said, values={"provider": name}) from exc

    async def _get_json(self, url: str, name: str) -> Any:
        status, body = await self.fetch(name, "GET", url, headers={"Accept": "application/json"})
        if status != 200:
            said = N_("%(provider)s answered with an error (%(status)d).")
            raise UpstreamUnavailable(said, values={"provider": name, "status": status})
        try:
            return json.loads(body)
        except ValueError as exc:
            said = N_("%(provider)s answered something that is not JSON.")
            raise UpstreamUnavailable(said, values={"provider": name}) from exc

    async def discovery(self, provider: UpstreamProvider, now: int) -> Discovery:
        cached = self._discovery.get(provider.issuer)
        if cached is not None and cached[0] > now:
            return cached[1]
        document = await self._get_json(discovery_url(provider.issuer), provider.name)
        try:
            found = check_discovery(document, provider.issuer)
        except UpstreamError as exc:
            log.warning("upstream discovery refused", provider=provider.id, reason=str(exc))
            # The reason is the rule's technical wording (the CLI's too), left as it is.
            said = N_("%(provider)s is misconfigured: %(reason)s.")
            values = {"provider": provider.name, "reason": str(exc)}
            raise UpstreamUnavailable(said, values=values) from exc
        self._discovery[provider.issuer] = (now + self.ttl, found)
        return found

    async def keys(
        self, provider: UpstreamProvider, jwks_uri: str, now: int, *, fresh: bool = False
    ) -> list[dict[str, Any]]:
        cached = self._jwks.get(jwks_uri)
        if not fresh and cached is not None and cached[0] > now:
            return cached[1]
        document = await self._get_json(jwks_uri, provider.name)
        members = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(members, list):
            said = N_("%(provider)s published no key set.")
            raise UpstreamUnavailable(said, values={"provider": provider.name})
        found = [m for m in members if isinstance(m, dict)]
        self._jwks[jwks_uri] = (now + self.ttl, found)
        return found


def upstreams(request: Request) -> Upstreams:
    state = request.app.state
    found = getattr(state, "upstreams", None)
    if not isinstance(found, Upstreams):
        found = state.upstreams = Upstreams(timeout=baton(request).settings.upstream_timeout)
    return found


def upstream_store(request: Request) -> UpstreamStore:
    return baton(request).store


_CHOICES = "baton.upstream_choices"  # the request scope's key of the login page's list


async def load_login_choices(request: Request) -> None:
    """Reads the enabled upstreams for the login page this request may render
    (`login_choices`): the page is rendered by a plain function, the list is a database read."""
    request.scope[_CHOICES] = await upstream_store(request).upstreams(enabled_only=True)


def login_choices(request: Request, next_url: str) -> list[dict[str, str]]:
    """The enabled upstreams as the login page lists them (`templates/upstreams.html`): a name
    and the link that starts a sign-in with it, keeping `next`. Empty unless
    `load_login_choices` read them for this request."""
    providers: list[UpstreamProvider] = request.scope.get(_CHOICES) or []
    query = "?" + urlencode({"next": next_url}) if next_url != "/" else ""
    return [{"name": p.name, "href": f"/login/upstream/{p.id}{query}"} for p in providers]


def callback_uri(request: Request, provider_id: str) -> str:
    return f"{baton(request).settings.issuer_identifier}/login/upstream/{provider_id}/callback"


def _refused(
    request: Request,
    message: str,
    status: int,
    next_url: str = "/",
    values: Mapping[str, Any] | None = None,
) -> Response:
    """The page of a sign-in that cannot go on, with the way back to the login page: `message`
    (marked with `N_`) in the reader's language, with `values` for its placeholders."""
    back = "/login" + (f"?{urlencode({'next': next_url})}" if next_url != "/" else "")
    context = {"message": message, "values": dict(values) if values else None, "back": back}
    return page(request, "upstream_error.html", context, status)


def _unavailable(request: Request, exc: UpstreamUnavailable, next_url: str) -> Response:
    return _refused(request, exc.said, exc.status, next_url, exc.values)


async def _enabled(request: Request) -> UpstreamProvider | None:
    provider_id = request.path_params["provider_id"]
    provider = await upstream_store(request).upstream(provider_id)
    if provider is None or provider.disabled_at is not None:
        return None
    return provider


async def start(request: Request) -> Response:
    """`GET /login/upstream/{id}`: on to the upstream's authorization endpoint."""
    app = baton(request)
    next_url = login._safe_next(request.query_params.get("next"))
    provider = await _enabled(request)
    if provider is None:
        return _refused(request, NO_SUCH_PROVIDER, 404, next_url)
    now = app.clock.now()
    try:
        discovery = await upstreams(request).discovery(provider, now)
    except UpstreamUnavailable as exc:
        return _unavailable(request, exc, next_url)
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(48)
    request.session[PENDING] = _seal(
        request,
        {
            "provider": provider.id,
            "state": state,
            "nonce": nonce,
            "verifier": verifier,
            "next": next_url,
            "at": now,
        },
    )
    params = {
        "response_type": "code",
        "client_id": provider.client_id,
        "redirect_uri": callback_uri(request, provider.id),
        "scope": provider.scope,
        "state": state,
        "nonce": nonce,
        "code_challenge": s256(verifier),
        "code_challenge_method": "S256",
    }
    parts = urlsplit(discovery.authorization_endpoint)
    query = (parts.query + "&" if parts.query else "") + urlencode(params)
    location = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
    return RedirectResponse(location, status_code=303)


_SEAL_INFO = b"baton/upstream-pending/v1"
_SEAL_NONCE = 12


def _sealer(request: Request) -> AESGCM:
    """AES-GCM under a key derived (HKDF-SHA256) from the session key: one key of its own, so
    the sealed sign-in and the cookie's signature never share a key."""
    session_key: bytes = request.app.state.session_signer.secret_key
    kdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SEAL_INFO)
    return AESGCM(kdf.derive(session_key))


def _seal(request: Request, pending: dict[str, Any]) -> str:
    nonce = os.urandom(_SEAL_NONCE)
    sealed = _sealer(request).encrypt(nonce, json.dumps(pending).encode(), _SEAL_INFO)
    return base64.urlsafe_b64encode(nonce + sealed).decode()


def _unseal(request: Request, sealed: Any) -> Any:
    """What `_seal` sealed, or None (not sealed by this server's session key, damaged)."""
    if not isinstance(sealed, str):
        return None
    try:
        raw = base64.urlsafe_b64decode(sealed)
        opened = _sealer(request).decrypt(raw[:_SEAL_NONCE], raw[_SEAL_NONCE:], _SEAL_INFO)
        return json.loads(opened)
    except (ValueError, InvalidTag):
        return None


def _pending(request: Request, provider_id: str) -> dict[str, Any] | None:
    """This browser's sign-in under way with `provider_id`, taken out of the cookie; None when
    there is none, it is another provider's, or it is too old."""
    pending = _unseal(request, request.session.pop(PENDING, None))
    if not isinstance(pending, dict) or pending.get("provider") != provider_id:
        return None
    if not all(isinstance(pending.get(k), str) for k in ("state", "nonce", "verifier", "next")):
        return None
    app = baton(request)
    started = pending.get("at")
    if not isinstance(started, int) or app.clock.now() - started > app.settings.challenge_ttl:
        return None
    return pending


async def callback(request: Request) -> Response:
    """`GET /login/upstream/{id}/callback`: the upstream's answer, on to a session."""
    app = baton(request)
    params = request.query_params
    provider_id = request.path_params["provider_id"]
    pending = _pending(request, provider_id)
    if pending is None or not same_secret(pending["state"], params.get("state")):
        log.warning("upstream callback without its sign-in", provider=provider_id)
        return _refused(
            request,
            N_("This sign-in expired or was started in another browser. Please sign in again."),
            400,
        )
    next_url = login._safe_next(pending["next"])
    provider = await _enabled(request)
    if provider is None:
        return _refused(request, NO_SUCH_PROVIDER, 404, next_url)
    named = {"provider": provider.name}
    now = app.clock.now()
    try:
        discovery = await upstreams(request).discovery(provider, now)
        check_iss_parameter(params.get("iss"), discovery)
        if "error" in params:
            log.info("upstream refused", provider=provider.id, error=params["error"][:64])
            said = N_("%(provider)s did not sign you in (%(error)s).")
            return _refused(request, said, 403, next_url, {**named, "error": params["error"][:64]})
        code = params.get("code")
        if not code:
            said = N_("%(provider)s sent no authorization code.")
            return _refused(request, said, 400, next_url, named)
        id_token = await _exchange(request, provider, discovery, code, pending["verifier"])
        identity = await _identity(request, provider, discovery, id_token, pending["nonce"], now)
    except UpstreamUnavailable as exc:
        log.warning("upstream sign-in failed", provider=provider.id, reason=exc.message)
        return _unavailable(request, exc, next_url)
    except UpstreamError as exc:
        log.warning("upstream sign-in refused", provider=provider.id, reason=str(exc))
        # The reason is the rule's technical wording (`baton.core.upstream`), left as it is.
        said = N_("The sign-in with %(provider)s cannot be trusted: %(reason)s.")
        return _refused(request, said, 400, next_url, {**named, "reason": str(exc)})
    address = source_address(request)
    outcome = await upstream_store(request).upstream_sign_in(
        provider, identity, Actor(f"upstream:{provider.id}", address, now)
    )
    if outcome.user_id is None:
        log.info("upstream sign-in without a user", provider=provider.id, reason=outcome.refusal)
        refusal = outcome.refusal or N_("This sign-in is refused.")
        return _refused(request, refusal, 403, next_url, named)
    # A second factor required here is never skipped: the upstream's sign-in stands for the
    # password, and the user goes on to Baton's second step (or enrolment) as after one, with
    # the upstream's `amr` as the first factor's.
    user = await upstream_store(request).get_user_by_id(outcome.user_id)
    step = None if user is None else second_step(request, user, next_url, identity.amr)
    if step is not None:
        log.info("upstream sign-in needs a second factor", provider=provider.id)
        return step
    try:
        await begin_session(request, outcome.user_id, now, address, identity.amr)
    except AccountDisabled:  # disabled since the upstream sign-in read them: no session began
        return _refused(request, N_("This account is disabled."), 403, next_url)
    log.info(
        "signed in by upstream",
        provider=provider.id,
        username=outcome.username,
        linked=outcome.how,
        source_address=address,
    )
    return RedirectResponse(next_url, status_code=303)


async def _exchange(
    request: Request,
    provider: UpstreamProvider,
    discovery: Discovery,
    code: str,
    verifier: str,
) -> str:
    """The ID token of the code (RFC 6749 §4.1.3 with RFC 7636's verifier)."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": callback_uri(request, provider.id),
        "code_verifier": verifier,
    }
    headers = {"Accept": "application/json"}
    if provider.client_secret is None:
        form["client_id"] = provider.client_id  # a public client: `none` (RFC 6749 §3.2.1)
    else:
        secret = _client_secret(request, provider)
        headers["Authorization"] = _basic(provider.client_id, secret)
    status, raw = await upstreams(request).fetch(
        provider.name, "POST", discovery.token_endpoint, data=form, headers=headers
    )
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if status != 200 or not isinstance(body, dict):
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, str):
            said = N_("%(provider)s refused the sign-in (%(error)s).")
            raise UpstreamUnavailable(said, values={"provider": provider.name, "error": error[:64]})
        said = N_("%(provider)s refused the sign-in.")
        raise UpstreamUnavailable(said, values={"provider": provider.name})
    id_token = body.get("id_token")
    if not isinstance(id_token, str):
        said = N_("%(provider)s sent no ID token.")
        raise UpstreamUnavailable(said, values={"provider": provider.name})
    return id_token


def _client_secret(request: Request, provider: UpstreamProvider) -> str:
    sealed = provider.client_secret
    assert sealed is not None
    secret = baton(request).settings.key_encryption_key
    try:
        if not secret:
            raise KeyEncryptionError("no key-encryption key")
        return open_secret(key_encryption_key(secret), provider.id, sealed)
    except (KeyEncryptionError, UpstreamError) as exc:
        log.error("upstream client secret unavailable", provider=provider.id, reason=str(exc))
        said = N_("Signing in with %(provider)s is not set up here correctly.")
        raise UpstreamUnavailable(said, 503, {"provider": provider.name}) from exc


def _basic(client_id: str, secret: str) -> str:
    """RFC 6749 §2.3.1: both form-urlencoded, then Basic."""
    pair = f"{urlencode({'a': client_id})[2:]}:{urlencode({'a': secret})[2:]}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


async def _identity(
    request: Request,
    provider: UpstreamProvider,
    discovery: Discovery,
    id_token: str,
    nonce: str,
    now: int,
) -> UpstreamIdentity:
    header = _header(id_token)
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in discovery.algorithms:
        raise UpstreamError(f"the ID token's algorithm {str(alg)[:16]!r} is not accepted")
    kid = header.get("kid")
    cache = upstreams(request)
    payload = None
    for fresh in (False, True):  # an unknown `kid`: the upstream rotated; read its keys once more
        members = await cache.keys(provider, discovery.jwks_uri, now, fresh=fresh)
        candidates = [k for k in _keys(members, alg) if kid is None or k.kid == kid]
        if candidates or fresh:
            for key in candidates:
                try:
                    payload = jws.deserialize_compact(id_token, key, registry=registry(alg)).payload
                    break
                except (JoseError, ValueError, TypeError):
                    continue
            break
    if payload is None:
        raise UpstreamError("the ID token's signature is not the upstream's")
    try:
        claims = json.loads(payload)
    except ValueError as exc:
        raise UpstreamError("the ID token's claims are not JSON") from exc
    if not isinstance(claims, dict):
        raise UpstreamError("the ID token's claims are not a JSON object")
    return check_id_token_claims(
        claims, issuer=discovery.issuer, client_id=provider.client_id, nonce=nonce, now=now
    )


def _header(token: str) -> dict[str, Any]:
    try:
        encoded = token.split(".")[0]
        header = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (ValueError, IndexError) as exc:
        raise UpstreamError("the ID token is not a JWS") from exc
    if not isinstance(header, dict) or token.count(".") != 2:
        raise UpstreamError("the ID token is not a JWS")
    return header


def _keys(members: list[dict[str, Any]], alg: str) -> list[JoseKey]:
    """The key set's public signing keys that may check `alg`."""
    # Not at start-up: importing `baton.resource` loads its HTTP client (httpx) too.
    from baton.resource.jose import public_key

    found = []
    for member in members:
        if member.get("use") not in (None, "sig"):
            continue
        key = public_key(member)
        if key is not None and key_allows(key, alg):
            found.append(key)
    return found


# -- the OpenAPI operations of the two routes (`baton.server.routes`) ------------------------------

_PAGE = {"content": {"text/html": {"schema": {"type": "string"}}}}
_PROVIDER = {
    "name": "provider_id",
    "in": "path",
    "required": True,
    "description": "The upstream provider's id (`baton upstream add ID`).",
    "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"},
}
_REDIRECT = {"Location": {"$ref": "#/components/headers/Location"}}
START: dict[str, Any] = {
    "operationId": "upstreamSignIn",
    "parameters": [
        _PROVIDER,
        {
            "name": "next",
            "in": "query",
            "required": False,
            "description": "Where to continue once signed in (/authorize or the console only).",
            "schema": {"type": "string"},
        },
    ],
    "responses": {
        "303": {"description": "To the upstream's authorization endpoint.", "headers": _REDIRECT},
        "404": {"description": "No such enabled provider.", **_PAGE},
        "502": {"description": "The upstream's discovery cannot be used.", **_PAGE},
        "504": {"description": "The upstream did not answer in time.", **_PAGE},
    },
}
CALLBACK: dict[str, Any] = {
    "operationId": "upstreamCallback",
    "parameters": [
        _PROVIDER,
        *(
            {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
            for name in ("code", "state", "iss", "error", "error_description")
        ),
    ],
    "responses": {
        "303": {"description": "Signed in: on to `next`.", "headers": _REDIRECT},
        "400": {"description": "No sign-in of this browser, or an untrustworthy one.", **_PAGE},
        "403": {"description": "The upstream or Baton refused the sign-in.", **_PAGE},
        "404": {"description": "No such enabled provider.", **_PAGE},
        "502": {"description": "The upstream refused the code or cannot be used.", **_PAGE},
        "504": {"description": "The upstream did not answer in time.", **_PAGE},
    },
}
