"""Who and what the server knows: clients, users, their remembered consent, the signing keys.

Short transactions of one or two statements each, as functions of a connection; the facade
(`baton.store.sql.facade.SQLStore`) turns a unique-constraint violation into the error its
callers expect where the answer needs no second transaction.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from typing import Any

from sqlalchemy import Connection, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from baton.core.audience import resources_from_stored, stored_resources
from baton.core.client_metadata import OidcSettings
from baton.core.keys import StoredKey
from baton.core.scope import parse as parse_scope
from baton.core.scope import render as render_scope
from baton.core.user_claims import ClaimChanges, Claims, apply, same
from baton.store.base import Client, Consent, User, UserExists, UsernameOfDeletedUser
from baton.store.schema import clients, consents, signing_keys, users
from baton.store.sql.rows import client_from_row, client_values, user_from_row
from baton.store.sql.statements import CLIENT


def counts(conn: Connection) -> tuple[int, int]:
    """(clients, users): an empty database makes `baton serve` print the first steps."""
    n_clients = conn.execute(select(func.count()).select_from(clients)).scalar_one()
    n_users = conn.execute(select(func.count()).select_from(users)).scalar_one()
    return n_clients, n_users


# -- clients --------------------------------------------------------------------------------------


def insert_client(conn: Connection, client: Client) -> None:
    """Raises `IntegrityError` when another client holds its `resource_uri` (or its id)."""
    conn.execute(insert(clients).values(**client_values(client)))


def get_client(conn: Connection, client_id: str) -> Client | None:
    row = CLIENT.one(conn, client_id=client_id)
    return None if row is None else client_from_row(row)


def update_client_oidc(conn: Connection, client: Client) -> bool:
    """Stores `client`'s scope, OpenID Connect settings (checked by the caller,
    `baton.core.client_metadata.checked`) and login/consent app URLs and homepage (checked by
    `baton.core.challenges.app_url_problem`), and nothing else of it; False when it has no
    row."""
    values = client_values(client)
    stored = {name: values[name] for name in OIDC_COLUMNS}
    return (
        conn.execute(update(clients).where(clients.c.id == client.id).values(**stored)).rowcount
        == 1
    )


# With the client's login and consent apps and homepage (`baton client update`): the console's
# update stores them unchanged.
OIDC_COLUMNS = ("scope", *OidcSettings().fields(), "login_url", "consent_url", "client_uri")


def list_clients(conn: Connection) -> list[Client]:
    rows = conn.execute(select(clients).order_by(clients.c.created_at, clients.c.id)).mappings()
    return [client_from_row(row) for row in rows]


def registered_resources(conn: Connection) -> frozenset[str]:
    found = conn.execute(
        select(clients.c.resource_uri).where(clients.c.resource_uri.is_not(None))
    ).scalars()
    return frozenset(found)


def resource_names(conn: Connection, uris: tuple[str, ...]) -> dict[str, str]:
    found = conn.execute(
        select(clients.c.resource_uri, clients.c.name).where(clients.c.resource_uri.in_(uris))
    )
    return {uri: name for uri, name in found}


# -- users and their consent ----------------------------------------------------------------------


def create_user(conn: Connection, username: str, password_hash: str, now: int, admin: bool) -> User:
    """Raises `UserExists` if the name is taken, `UsernameOfDeletedUser` if a deleted user's
    row keeps it (a name, and so a `sub`, is never given to another user: OIDC Core §2)."""
    held = conn.execute(select(users.c.deleted_at).where(users.c.username == username)).first()
    if held is not None:
        raise (UsernameOfDeletedUser if held.deleted_at is not None else UserExists)(username)
    try:
        user_id = conn.execute(
            insert(users)
            .values(
                username=username,
                password_hash=password_hash,
                is_admin=admin,
                created_at=now,
            )
            .returning(users.c.id)
        ).scalar_one()
    except IntegrityError as exc:
        raise UserExists(username) from exc
    return User(user_id, username, password_hash, admin)


def user_named(conn: Connection, username: str) -> User | None:
    return _user(conn, users.c.username == username)


def user_by_id(conn: Connection, user_id: int) -> User | None:
    return _user(conn, users.c.id == user_id)


def _user(conn: Connection, where: Any) -> User | None:
    row = conn.execute(select(users).where(where)).mappings().first()
    return None if row is None else user_from_row(row)


def set_user_claims(
    conn: Connection, username: str, changes: ClaimChanges, now: int
) -> tuple[User, User] | None:
    """Applies `changes` (checked by the caller, `baton.core.user_claims.check`) to the user's
    email and profile claims, read and written in this transaction; `updated_at` becomes `now`
    when a value changed (OIDC Core §5.1: "Time the End-User's information was last updated").
    (the user before, the user after), or None when there is no such user (or they were
    deleted)."""
    before = user_named(conn, username)
    if before is None or before.deleted_at is not None:  # a deleted user's data stays erased
        return None
    held = Claims(before.email, before.email_verified, before.profile)
    after = apply(held, changes)
    if same(held, after):
        return before, before
    conn.execute(
        update(users)
        .where(users.c.id == before.id)
        .values(
            email=after.email,
            email_verified=after.email_verified,
            profile=json.dumps(dict(after.profile), sort_keys=True) if after.profile else None,
            updated_at=now,
        )
    )
    return before, replace(
        before,
        email=after.email,
        email_verified=after.email_verified,
        profile=dict(after.profile),
        updated_at=now,
    )


def consent(conn: Connection, user_id: int, client_id: str) -> Consent | None:
    row = conn.execute(
        select(
            consents.c.scope, consents.c.resources, consents.c.expires_at, consents.c.claims
        ).where(consents.c.user_id == user_id, consents.c.client_id == client_id)
    ).one_or_none()
    if row is None:
        return None
    claims = json.loads(row.claims) if row.claims else {}
    return Consent(
        parse_scope(row.scope),
        frozenset(resources_from_stored(row.resources)),
        row.expires_at,
        claims if isinstance(claims, dict) else {},
    )


def consent_values(
    scope: frozenset[str],
    resources: tuple[str, ...],
    now: int,
    expires_at: int | None = None,
    claims: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `consents` row's values for a decision (computed once, outside the transaction);
    `expires_at`: a consent app's `remember_for` (None: until revoked); `claims`: the app's
    ID token and userinfo claims. A decision replaces the record whole, its expiry and claims
    included (the built-in page's Allow leaves none)."""
    return {
        "scope": render_scope(scope),
        "resources": stored_resources(sorted(set(resources))),
        "updated_at": now,
        "expires_at": expires_at,
        "claims": json.dumps(claims, separators=(",", ":"), sort_keys=True) if claims else None,
    }


def remember_consent(
    conn: Connection, user_id: int, client_id: str, values: dict[str, Any]
) -> None:
    """Updates the user's record for the client, or inserts it; raises `IntegrityError` when
    another transaction inserted it between the two (the caller runs this again)."""
    key = (consents.c.user_id == user_id) & (consents.c.client_id == client_id)
    if conn.execute(update(consents).where(key).values(**values)).rowcount == 0:
        conn.execute(insert(consents).values(user_id=user_id, client_id=client_id, **values))


# -- signing keys ---------------------------------------------------------------------------------


def add_signing_key(conn: Connection, key: StoredKey, retire_others_at: int | None) -> None:
    """Stores `key`; with `retire_others_at`, retires the lasting keys it replaces: a key that
    signs access tokens replaces every other such key, and the ID-token-only keys of its
    algorithm; an ID-token-only key replaces those of its algorithm alone (the keys of the other
    ID token algorithms stay: clients registered for them keep their keys)."""
    if retire_others_at is not None:
        # Never a key newer than this one: a rotation that committed first, from a later
        # clock, replaces this one, not the reverse.
        older = signing_keys.c.created_at <= key.created_at
        same_alg = signing_keys.c.alg == key.alg
        id_token_only = signing_keys.c.purpose.is_not(None)
        replaced = same_alg & id_token_only
        if key.purpose is None:
            replaced = replaced | signing_keys.c.purpose.is_(None)
        conn.execute(
            update(signing_keys)
            .where(signing_keys.c.retires_at.is_(None), older, replaced)
            .values(retires_at=retire_others_at)
        )
    conn.execute(insert(signing_keys).values(**asdict(key)))


def lock_signing_keys(conn: Connection) -> None:
    """Serializes this transaction with every other one that locks the keys (a rotation reads
    them, then inserts): on PostgreSQL a table lock that conflicts with itself, held to the
    commit; SQLite's writers are serialized already (`BEGIN IMMEDIATE`)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE"))


def list_signing_keys(conn: Connection) -> list[StoredKey]:
    rows = conn.execute(select(signing_keys).order_by(signing_keys.c.created_at)).mappings()
    return [StoredKey(**row) for row in rows]
