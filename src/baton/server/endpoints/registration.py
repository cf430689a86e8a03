"""Dynamic client registration (RFC 7591) and its management (RFC 7592): POST /register, and
GET, PUT and DELETE /register/{client_id} with the registration access token.

The operator's policy (`--registration`): `off` answers 404 at every one of these paths (RFC
7591 has no error for "not offered": the route is absent, and the metadata does not advertise
it); `open` lets anyone register; `token` asks for the initial access token
`--registration-token` as a bearer token (RFC 7591 §3: "The authorization server MAY be
configured to accept ... an initial access token"), else 401 `invalid_token` (RFC 6750 §3.1).
Registrations are rate-limited per source address, an IPv6 one by its /64
(`REGISTRATIONS`, 429 with `Retry-After`; whatever `--rate-limit-address` says), the
metadata is checked by the one parser metadata documents share (`baton.core.registration`), the
scope narrowed to `--dynamic-client-scopes` (and the OpenID Connect scopes while it is on), the
resources to `--dynamic-client-resources` (empty: every registered resource server, at the time
of the registration). A registration never used (no code or grant issued, no consent asked,
no challenge in flight) is deleted after `--registration-expiry` (`expire_unused`, from the
purge loop). An operator's edit of the client ends its RFC 7592 management (the registration
access token stops working), and the RFC 7592 read answers what the client's row enforces.

The registration access token (RFC 7592 §1) is 256 random bits, stored as its SHA-256 digest
only and compared in constant time; a wrong one, a missing one and an unknown or deleted client
get the very same 401, so the answer tells nothing about which client ids exist.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any
from urllib.parse import quote, urlsplit

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from baton.core.client_metadata import MetadataError, checked_registration
from baton.core.registration import (
    NONE,
    PRIVATE_KEY_JWT,
    VOUCHED_MEMBER,
    ClientMetadata,
    RegistrationError,
    RegistrationPolicy,
    client_metadata,
    vouched,
)
from baton.core.tokens import TokenKind, digest, mint, random_id
from baton.core.vocabulary import ErrorCode
from baton.server.endpoints.errors import NoStoreJSON, OAuthError
from baton.server.endpoints.forms import NotJSON, read_json
from baton.server.endpoints.stores import Registrations
from baton.server.runtime.context import Baton, baton, source_address
from baton.server.runtime.documents import dynamic_policy
from baton.server.runtime.limits import Rate, too_many
from baton.store.admin import Actor
from baton.store.base import Client, RegisteredVia
from baton.store.sql.registrations import DynamicClient

PATH = "/register"
# Who the audit rows name: the registration endpoint acting for an anonymous caller (or for the
# holder of a registration access token), and the purge loop's expiry.
ACTOR = "dynamic-registration"
EXPIRY_ACTOR = "registration-expiry"
# Registrations per source network: bursts of 20, then 20 an hour (no RFC sets a number; a
# registration is a row kept for `--registration-expiry` at least). Its own limit, on whatever
# `--rate-limit-address` says: that option tunes the requests an address may make, not how many
# rows an anonymous caller may leave in the database.
REGISTRATIONS = Rate(per_second=20 / 3600, burst=20)
# An IPv6 address counts by its /64: one subscriber or host usually holds a whole /64 (RFC 6177,
# RFC 7934), so counting its addresses one by one would give it 2^64 buckets.
IPV6_PREFIX = 64
# The registration access token: 256 random bits (RFC 7592 §1 "MUST ... not be guessable").
_TOKEN_PREFIX = "bat_rg_"
_TOKEN_BYTES = 32
# The digest compared when no client matches, so that an unknown client takes the time of a
# wrong token (and its answer is the same).
_NO_DIGEST = digest("no such registration")
# RFC 7592 §2.2: the members a client may send back from a read but which the server sets.
_SERVER_MEMBERS = (
    "client_id",
    "client_secret",
    "registration_access_token",
    "registration_client_uri",
    "client_id_issued_at",
    "client_secret_expires_at",
)


async def client_policy(app: Baton, vouched: bool = False) -> RegistrationPolicy:
    """What a dynamically registered client may get: `--dynamic-client-scopes` and, while
    OpenID Connect is on, its scopes, less any `admin:*` scope; `--dynamic-client-resources`,
    else every registered resource server; `client_credentials` only when `vouched`
    (registered with the initial access token, `baton.core.registration.VOUCHED_MEMBER`), never
    by today's `--registration` mode alone (`baton.server.runtime.documents.dynamic_policy`, which
    a metadata document's policy comes from too)."""
    return await dynamic_policy(app.settings, app.oidc, app.store, document=False, vouched=vouched)


def _network(address: str) -> str:
    """The registration bucket's key for a source address: an IPv4 address itself, an IPv6
    address its /64 (`IPV6_PREFIX`); anything else (not an IP address) as it is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


async def expire_unused(store: Registrations, now: int, expiry: int) -> int:
    """Deletes the dynamic registrations older than `expiry` seconds never used, and
    the rows of metadata-document clients nobody used whose document expired that long ago
    (the purge loop calls this); how many."""
    total = 0
    while (batch := await store.expire_dynamic_clients(now, expiry, EXPIRY_ACTOR)) > 0:
        total += batch
    while (batch := await store.forget_unused_document_clients(now, expiry)) > 0:
        total += batch
    return total


# -- the endpoints -------------------------------------------------------------------------------


async def register(request: Request) -> Response:
    """RFC 7591 §3.1: a client registration request; 201 with the client information response
    (§3.2.1), or 400 with `invalid_redirect_uri` / `invalid_client_metadata` (§3.2.2)."""
    app = _offered(request)
    address = source_address(request)
    await app.limits.check_address(address)
    with_token = False
    if app.settings.registration == "token":
        _initial_access_token(request, app)
        with_token = True  # recorded in the registration (`VOUCHED_MEMBER`)
    if address is not None:
        wait = await app.limits.buckets.take("register:" + _network(address), REGISTRATIONS)
        if wait > 0:
            raise too_many(wait, "address")
    meta = _metadata(await _json_object(request, app), await client_policy(app, vouched=with_token))
    now = app.clock.now()
    secret = mint(TokenKind.CLIENT_SECRET) if meta.uses_secret else None
    token = random_id(_TOKEN_PREFIX, _TOKEN_BYTES)
    client = _checked(
        meta.applied_to(
            Client(
                id=random_id("cl_"),
                name="",
                secret_digest=secret.digest if secret else None,
                is_public=meta.is_public,
                is_resource_server=False,
                redirect_uris=(),
                scope="",
                created_at=now,
                registered_via=RegisteredVia.DYNAMIC,
            ),
            _name(meta),
        )
    )
    registrations: Registrations = app.store
    await registrations.register_dynamic_client(client, digest(token), Actor(ACTOR, address, now))
    app.clients.forget(client.id)  # its origins: this process's CORS at once
    extra = {"client_secret": secret.plaintext} if secret else {}
    return NoStoreJSON(_information(app, client, token, **extra), status_code=201)


async def read(request: Request) -> Response:
    """RFC 7592 §2.1: the client's current registration."""
    app = _offered(request)
    await app.limits.check_address(source_address(request))
    found, token = await _managed(request, app)
    return NoStoreJSON(_information(app, found.client, token))


async def update(request: Request) -> Response:
    """RFC 7592 §2.2: the client's metadata replaced by the request's (a member left out is
    reset to its default); `client_id` must be the client's, a `client_secret` its secret."""
    app = _offered(request)
    address = source_address(request)
    await app.limits.check_address(address)
    found, token = await _managed(request, app)
    before = found.client
    raw = await _json_object(request, app)
    if raw.get("client_id") != before.id:
        # RFC 7592 §2.2: "The client MUST include its client_id field in the request, and it
        # MUST be the same as its currently issued client identifier."
        raise _invalid_metadata("client_id must be present and be this client's identifier")
    if "client_secret" in raw:
        # RFC 7592 §2.2: "If the client includes the client_secret field in the request, the
        # value of this field MUST match the currently issued client secret for that client."
        _same_secret(before, raw["client_secret"])
    members = {k: v for k, v in raw.items() if k not in _SERVER_MEMBERS}
    # What the registration was vouched for, not today's `--registration` mode: a client
    # registered openly never gives itself `client_credentials` after the operator switched to
    # `token` (and one registered with the initial access token keeps what it had).
    meta = _metadata(members, await client_policy(app, vouched=vouched(before.registration)))
    was = before.token_endpoint_auth_method or (NONE if before.is_public else "")
    if _credential_kind(meta.token_endpoint_auth_method) != _credential_kind(was):
        # RFC 7592 §2.2: the server "MAY ... reject" a value: a public client cannot become
        # confidential here (no secret to hand it), nor a secret's holder give it up.
        raise _invalid_metadata(
            f"token_endpoint_auth_method cannot change from {was} to "
            f"{meta.token_endpoint_auth_method}: register a new client"
        )
    after = _checked(meta.applied_to(before, _name(meta)))
    registrations: Registrations = app.store
    if not await registrations.update_dynamic_client(
        before, after, Actor(ACTOR, address, app.clock.now())
    ):
        raise _invalid_token()  # deleted meanwhile: as for any other unknown client
    app.clients.forget(before.id)
    return NoStoreJSON(_information(app, after, token))


async def delete(request: Request) -> Response:
    """RFC 7592 §2.3: the client deleted (as `baton client delete` does: every grant revoked,
    the id never reused); 204."""
    app = _offered(request)
    address = source_address(request)
    await app.limits.check_address(address)
    found, _token = await _managed(request, app)
    registrations: Registrations = app.store
    await registrations.delete_dynamic_client(
        found.client.id, Actor(ACTOR, address, app.clock.now())
    )
    app.clients.forget(found.client.id)
    # RFC 7592 §2.3: "the authorization server responds with an HTTP 204 No Content message".
    return Response(status_code=204, headers={"Cache-Control": "no-store"})


# -- the parts -----------------------------------------------------------------------------------


def _offered(request: Request) -> Baton:
    app = baton(request)
    if app.settings.registration not in ("open", "token"):
        raise HTTPException(404)  # registration off: as if the route did not exist
    return app


def _bearer(request: Request) -> str | None:
    """The bearer token of the `Authorization` header (RFC 6750 §2.1), if it holds one."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or not token.isascii():
        return None
    return token


def _invalid_token(description: str = "the registration access token is not valid") -> OAuthError:
    # RFC 7592 §2: "If the registration access token ... is not valid, the server MUST respond
    # with an error as described in OAuth 2.0 Bearer Token Usage" (RFC 6750 §3.1: 401).
    challenge = f'Bearer realm="baton", error="invalid_token", error_description="{description}"'
    return OAuthError(ErrorCode.INVALID_TOKEN, description, 401, {"WWW-Authenticate": challenge})


def _initial_access_token(request: Request, app: Baton) -> None:
    """RFC 7591 §3: the initial access token the operator set, compared in constant time (as
    SHA-256 digests: the same length whatever was sent)."""
    expected = app.settings.registration_token
    presented = _bearer(request)
    if (
        expected is None
        or presented is None
        or not hmac.compare_digest(
            digest(presented),
            digest(expected),
        )
    ):
        raise _invalid_token("an initial access token is required to register")


async def _managed(request: Request, app: Baton) -> tuple[DynamicClient, str]:
    """The dynamic client the path names and the registration access token that proved it, or
    the one 401 for a missing or wrong token and for an unknown or deleted client alike."""
    presented = _bearer(request)
    client_id = request.path_params["client_id"]
    registrations: Registrations = app.store
    found = await registrations.dynamic_client(client_id)
    expected = found.token_digest if found is not None else None
    given = digest(presented or "")
    matches = hmac.compare_digest(given, expected or _NO_DIGEST)
    if found is None or expected is None or presented is None or not matches:
        raise _invalid_token()
    return found, presented


async def _json_object(request: Request, app: Baton) -> dict[str, Any]:
    """The request's JSON object (RFC 7591 §3.1: "the client sends an HTTP POST ... with the
    content type application/json"): 415 for another type, 413 over the body limit."""
    try:
        body = await read_json(request, app.settings.max_body_bytes)
    except NotJSON:
        raise _invalid_metadata("the body is not a valid JSON object") from None
    if not isinstance(body, dict):
        raise _invalid_metadata("the client metadata must be a JSON object (RFC 7591 §2)")
    return body


def _invalid_metadata(description: str) -> OAuthError:
    return OAuthError(ErrorCode.INVALID_CLIENT_METADATA, description)


def _checked(client: Client) -> Client:
    """The rules every client's registration obeys (`checked_registration`: the name, scope,
    redirect URIs, homepage), after those of the metadata."""
    try:
        return checked_registration(client)
    except MetadataError as exc:
        raise _invalid_metadata(str(exc)) from None


def _same_secret(client: Client, presented: object) -> None:
    expected = client.secret_digest
    given = digest(presented) if isinstance(presented, str) else b""
    if expected is None or not hmac.compare_digest(given, expected):
        raise _invalid_metadata("client_secret does not match this client's secret")


def _credential_kind(method: str) -> str:
    """What a client proves itself with: nothing, a key of its own, or a secret of ours."""
    return method if method in (NONE, PRIVATE_KEY_JWT) else "secret"


def _name(meta: ClientMetadata) -> str:
    """The name the consent page shows: the client's `client_name`, else the host (or the
    private-use scheme) of its first redirect URI, else of its homepage."""
    if meta.client_name is not None:
        return meta.client_name
    for uri in (*meta.redirect_uris, meta.client_uri):
        if uri is not None:
            parts = urlsplit(uri)
            return parts.hostname or parts.scheme
    return "unnamed client"


def registration_client_uri(app: Baton, client_id: str) -> str:
    """RFC 7591 §3.2.1 / RFC 7592 §1: where the client manages its registration."""
    return f"{app.settings.issuer_identifier}{PATH}/{quote(client_id, safe='')}"


def _information(app: Baton, client: Client, token: str, **extra: str) -> dict[str, Any]:
    """RFC 7591 §3.2.1 / RFC 7592 §3: the client information response: the metadata as
    registered, its identifier, when it was issued, and how to manage it. What the server
    enforces is read from the client's columns, not from the stored registration: the answer
    says what the client is (RFC 7592 §3: "all registered metadata about the client, including
    any fields provisioned by the authorization server itself")."""
    registered = {k: v for k, v in client.registration.items() if k != VOUCHED_MEMBER}
    answer: dict[str, Any] = {
        **registered,
        **_enforced(client),
        "client_id": client.id,
        # "Time at which the client identifier was issued ... seconds from 1970-01-01T00:00:00Z"
        "client_id_issued_at": client.created_at,
        "registration_access_token": token,
        "registration_client_uri": registration_client_uri(app, client.id),
        **extra,
    }
    if client.secret_digest is not None:
        # "REQUIRED if client_secret is issued ... 0 if it will not expire."
        answer["client_secret_expires_at"] = 0
    return answer


def _enforced(client: Client) -> dict[str, Any]:
    """The metadata the server enforces, as the client's row holds it."""
    enforced: dict[str, Any] = {
        "client_name": client.name,
        "redirect_uris": list(client.redirect_uris),
        "scope": client.scope,
        "client_uri": client.client_uri,
        "grant_types": None if client.grant_types is None else list(client.grant_types),
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "jwks_uri": client.jwks_uri,
    }
    return {name: value for name, value in enforced.items() if value is not None}


def _metadata(raw: dict[str, Any], policy: RegistrationPolicy) -> ClientMetadata:
    """The metadata checked (`baton.core.registration`), or RFC 7591 §3.2.2's 400 with the
    code of its refusal (`invalid_redirect_uri`, `invalid_client_metadata`)."""
    try:
        return client_metadata(raw, policy)
    except RegistrationError as exc:
        raise OAuthError(exc.code, exc.description) from None
