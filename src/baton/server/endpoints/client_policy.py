"""`GET /client-policy`: a client's policy in force and its scheduled change, for the client's
own app to read (issue 28; `baton.client` reads it), and the signed notice of a change POSTed to
the client's `notify_url` (through the outbox, `baton.server.observability.delivery`).

Both show a policy the same way (`resolved`): every knob of `PolicySettings` resolved over the
server's defaults, so an integrator never has to know the server's options: the lifetimes, the
leeway in force (0 under `strict`), the retry policy, whether refresh tokens rotate, the grant
types (the policy's, else the client's registered ones; null: every grant its kind allows) and
whether PKCE is required (the policy's say, else the client's registration).

The answer names no secret and no user; it is public like the metadata (the client's id is no
secret either), answered for enabled clients only (an unknown, disabled or deleted client: 404
`invalid_client`), never cached (`Cache-Control: no-store`: a change applies at its instant).
"""

from __future__ import annotations

import json
from typing import Any

from joserfc import jws
from starlette.requests import Request

from baton.config import Settings
from baton.core.client_policy import (
    PolicySettings,
    resolve,
    resolved,
)
from baton.core.jwa import registry
from baton.core.keys import SigningKey, algorithm
from baton.core.policy import Policy
from baton.core.vocabulary import POLICY_NOTICE_TYPE, ErrorCode
from baton.server.endpoints.clientauth import enabled_client
from baton.server.endpoints.errors import NoStoreJSON, OAuthError, invalid_request
from baton.server.observability.delivery import PolicyNotices
from baton.server.runtime.context import Baton, baton
from baton.store.base import Client

PATH = "/client-policy"
NOTICE_TTL = 300  # seconds a notice's signature is good for (`exp`): a receiver's replay window


def client_policy(server: Policy, client: Client, now: int) -> dict[str, Any]:
    """The `GET /client-policy` document of `client` at `now`."""
    own = client.policy
    in_force = own.at(server, now)
    registered = (client.grant_types, client.require_pkce, client.is_public)
    document: dict[str, Any] = {
        "client_id": client.id,
        "in_force": {
            **resolved(in_force, own.settings_at(now), *registered),
            "since": in_force.since,
        },
        "scheduled": None,
    }
    pending = own.pending(now)
    if pending is not None:
        policy = resolve(server, pending.settings, pending.effective_at)
        document["scheduled"] = {
            "settings": resolved(policy, pending.settings, *registered),
            "effective_at": pending.effective_at,
            "report_only": pending.report_only,
            "scheduled_at": pending.scheduled_at,
        }
    return document


async def client_policy_endpoint(request: Request) -> NoStoreJSON:
    app = baton(request)
    client_id = request.query_params.get("client_id")
    if not client_id:
        raise invalid_request("client_id is required")
    if len(client_id) > 2000 or not client_id.isprintable():
        # No client has such an id (and PostgreSQL refuses a NUL in a query's text).
        raise OAuthError(ErrorCode.INVALID_CLIENT, "no such client", 404)
    found = await enabled_client(app.store, client_id)
    if found is None or found.deleted_at is not None:
        raise OAuthError(ErrorCode.INVALID_CLIENT, "no such client", 404)
    return NoStoreJSON(client_policy(app.settings.policy, found, app.clock.now()))


# -- the signed notice of a change (issue 28) ------------------------------------------------------


def notice_claims(settings: Settings, stored: dict[str, Any], now: int) -> dict[str, Any]:
    """The claims of a policy notice, from its outbox row (`outbox.policy_notice`): `iss`,
    `aud` (the client), `iat`, `exp`, `jti`, `client_id`, `event` (`policy.scheduled` or
    `policy.cancelled`), the change's `settings` resolved as `GET /client-policy` shows them,
    `effective_at` (null: report-only with no date), `report_only`, `scheduled_at`."""
    client_id = str(stored["client_id"])
    own = PolicySettings.from_json(stored.get("settings") or {}, lenient=True)
    registered = stored.get("registered") or {}
    grant_types = registered.get("grant_types")
    effective_at = stored.get("effective_at")
    policy = resolve(settings.policy, own, effective_at)
    return {
        "iss": settings.issuer_identifier,
        "aud": client_id,
        "iat": now,
        "exp": now + NOTICE_TTL,
        "jti": stored["jti"],
        "client_id": client_id,
        "event": stored["event"],
        "settings": resolved(
            policy,
            own,
            None if grant_types is None else tuple(grant_types),
            bool(registered.get("require_pkce", True)),
        ),
        "effective_at": effective_at,
        "report_only": bool(stored.get("report_only")),
        "scheduled_at": stored.get("scheduled_at"),
    }


def sign_notice(key: SigningKey, claims: dict[str, Any]) -> str:
    """The notice as a JWS (RFC 7515) with the server's key: verifiable with its `jwks_uri`,
    typed `baton-policy-notice+jwt` (RFC 8725 §3.11) so no other verifier takes it."""
    header = {"alg": key.alg, "kid": key.kid, "typ": POLICY_NOTICE_TYPE}
    body = json.dumps(claims, separators=(",", ":")).encode()
    return jws.serialize_compact(header, body, key.jose_key, registry=registry(key.alg))


def policy_notices(app: Baton) -> PolicyNotices | None:
    """The delivery loop's signer of policy notices, when the server keeps signing keys (with
    a key-encryption key): with the key of `--signing-alg` that ID tokens of it use."""
    if not app.oidc:
        return None
    alg = algorithm(app.settings.signing_alg)

    async def sign(stored: dict[str, Any], now: int) -> str | None:
        key = app.keys.key_for(alg, now)
        if key is None:
            return None
        return sign_notice(key, notice_claims(app.settings, stored, now))

    return sign
