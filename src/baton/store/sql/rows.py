"""Row mappers: a stored row as the value the rules and the server work with, and back.

Pure functions of a row (no connection): every query of the package that reads a client, a
grant, a token, a code or a feed event makes its value here, so a column added to a table is
read in one place.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import RowMapping

from baton.core.audience import audience_from_stored, resources_from_stored, stored_resources
from baton.core.client_policy import ClientPolicy
from baton.core.facts import (
    AccessFacts,
    CodeFacts,
    CompanionFacts,
    GrantFacts,
    RefreshFacts,
    SignIn,
)
from baton.store.base import Client, RevocationEvent, User
from baton.store.schema import revocation_events


def client_values(client: Client) -> dict[str, Any]:
    """The `clients` row that stores `client` (every way of registering one writes this)."""
    return {
        "id": client.id,
        "name": client.name,
        "secret_digest": client.secret_digest,
        "is_public": client.is_public,
        "is_resource_server": client.is_resource_server,
        "redirect_uris": json.dumps(list(client.redirect_uris)),
        "scope": client.scope,
        "created_at": client.created_at,
        "disabled_at": client.disabled_at,
        "resource_uri": client.resource_uri,
        "allowed_resources": stored_resources(client.allowed_resources),
        "remember_consent": client.remember_consent,
        "require_pkce": client.require_pkce,
        "id_token_signed_response_alg": client.id_token_signed_response_alg,
        "subject_type": client.subject_type,
        "sector_identifier_uri": client.sector_identifier_uri,
        "post_logout_redirect_uris": _json_list(client.post_logout_redirect_uris),
        "backchannel_logout_uri": client.backchannel_logout_uri,
        "backchannel_logout_session_required": client.backchannel_logout_session_required,
        "require_nonce": client.require_nonce,
        "allowed_origins": (
            None if client.allowed_origins is None else json.dumps(list(client.allowed_origins))
        ),
        "login_url": client.login_url,
        "consent_url": client.consent_url,
        "client_uri": client.client_uri,
        "deleted_at": client.deleted_at,
        "registered_via": client.registered_via,
        "registration": json.dumps(dict(client.registration)) if client.registration else None,
        "document_expires_at": client.document_expires_at,
        "grant_types": None if client.grant_types is None else json.dumps(list(client.grant_types)),
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "jwks_uri": client.jwks_uri,
    }


def _json_list(values: tuple[str, ...]) -> str | None:
    return json.dumps(list(values)) if values else None


def client_from_row(row: RowMapping | dict[str, Any]) -> Client:
    """A `clients` row as the `Client` it stores."""
    return Client(
        id=row["id"],
        name=row["name"],
        secret_digest=row["secret_digest"],
        is_public=bool(row["is_public"]),
        is_resource_server=bool(row["is_resource_server"]),
        redirect_uris=tuple(json.loads(row["redirect_uris"])),
        scope=row["scope"],
        created_at=row["created_at"],
        disabled_at=row["disabled_at"],
        resource_uri=row["resource_uri"],
        allowed_resources=resources_from_stored(row["allowed_resources"]),
        remember_consent=bool(row["remember_consent"]),
        require_pkce=bool(row["require_pkce"]),
        id_token_signed_response_alg=row["id_token_signed_response_alg"] or "RS256",
        subject_type=row["subject_type"] or "public",
        sector_identifier_uri=row["sector_identifier_uri"],
        post_logout_redirect_uris=tuple(json.loads(row["post_logout_redirect_uris"] or "[]")),
        backchannel_logout_uri=row["backchannel_logout_uri"],
        backchannel_logout_session_required=bool(row["backchannel_logout_session_required"]),
        require_nonce=bool(row["require_nonce"]),
        allowed_origins=(
            None if row["allowed_origins"] is None else tuple(json.loads(row["allowed_origins"]))
        ),
        login_url=row["login_url"],
        consent_url=row["consent_url"],
        client_uri=row["client_uri"],
        deleted_at=row["deleted_at"],
        registered_via=row["registered_via"],
        registration=json.loads(row["registration"]) if row["registration"] else {},
        document_expires_at=row["document_expires_at"],
        grant_types=(None if row["grant_types"] is None else tuple(json.loads(row["grant_types"]))),
        token_endpoint_auth_method=row["token_endpoint_auth_method"],
        jwks_uri=row["jwks_uri"],
        policy=ClientPolicy.from_stored(row["policy"]),
        contacts=tuple(json.loads(row["contacts"])) if row["contacts"] else (),
        notify_url=row["notify_url"],
    )


def user_from_row(row: RowMapping | dict[str, Any]) -> User:
    """A `users` row as the `User` it stores."""
    return User(
        id=row["id"],
        username=row["username"],
        password_hash=row["password_hash"],
        is_admin=bool(row["is_admin"]),
        email=row["email"],
        email_verified=bool(row["email_verified"]),
        profile=json.loads(row["profile"]) if row["profile"] else {},
        updated_at=row["updated_at"],
        disabled_at=row["disabled_at"],
        password_changed_at=row["password_changed_at"],
        totp_enabled=row["totp_secret"] is not None,
        mfa_required=bool(row["mfa_required"]),
        deleted_at=row["deleted_at"],
    )


def grant_from_labels(row: RowMapping | dict[str, Any]) -> GrantFacts:
    return GrantFacts(
        id=row["g_id"],
        client_id=row["g_client_id"],
        user_id=row["g_user_id"],
        subject=row["g_subject"],
        scope=row["g_scope"],
        created_at=row["g_created_at"],
        expires_at=row["g_expires_at"],
        revoked_at=row["g_revoked_at"],
        revoked_reason=row["g_revoked_reason"],
        resources=resources_from_stored(row["g_resources"]),
        sid=row["g_sid"],
        sign_in=SignIn.from_stored(row["g_sign_in"]),
    )


def refresh_from_row(row: dict[str, Any]) -> RefreshFacts:
    return RefreshFacts(
        id=row["id"],
        grant=grant_from_labels(row),
        generation=row["generation"],
        issued_at=row["issued_at"],
        expires_at=row["expires_at"],
        exchanged_at=row["exchanged_at"],
        retire_at=row["retire_at"],
        revoked_at=row["revoked_at"],
        sealed_response=row["sealed_response"],
        parent_id=row.get("parent_id"),
        continued_id=row.get("continued_id"),
        parent_continued_id=row.get("parent_continued_id"),
        parent_forked=row.get("parent_forked_at") is not None,
        sealed_id_token=row.get("sealed_id_token"),
        access_expires_at=row.get("access_expires_at"),
    )


def access_from_row(row: dict[str, Any]) -> AccessFacts:
    companion = None
    if row["refresh_token_id"] is not None:
        companion = CompanionFacts(
            retire_at=row["rt_retire_at"],
            revoked_at=row["rt_revoked_at"],
            exchanged_at=row.get("rt_exchanged_at"),
        )
    return AccessFacts(
        id=row["id"],
        grant=grant_from_labels(row),
        generation=row["generation"],
        scope=row["scope"],
        issued_at=row["issued_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        companion=companion,
        jti=row["jti"],
        audience=audience_from_stored(row["audience"]),
    )


def code_facts(row: RowMapping) -> CodeFacts:
    return CodeFacts(
        client_id=row["client_id"],
        user_id=row["user_id"],
        redirect_uri=row["redirect_uri"],
        scope=row["scope"],
        code_challenge=row["code_challenge"],
        expires_at=row["expires_at"],
        used_at=row["used_at"],
        grant_id=row["grant_id"],
        resources=resources_from_stored(row["resources"]),
        nonce=row["nonce"],
        sid=row["sid"],
        sign_in=SignIn.from_stored(row["sign_in"]),
    )


def feed_event(row: RowMapping) -> RevocationEvent:
    return RevocationEvent(**{column.name: row[column.name] for column in revocation_events.c})
