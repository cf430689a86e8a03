"""Who and what the server knows: clients, users, their remembered consent, the signing keys.

Short transactions of one or two statements each, as functions of a connection; the facade
(`baton.store.sql.facade.SQLStore`) turns a unique-constraint violation into the error its
callers expect where the answer needs no second transaction.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from baton.core.audience import resources_from_stored, stored_resources
from baton.core.keys import StoredKey
from baton.core.scope import parse as parse_scope
from baton.core.scope import render as render_scope
from baton.store.base import Client, Consent, User, UserExists
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


def consent(conn: Connection, user_id: int, client_id: str) -> Consent | None:
    row = conn.execute(
        select(consents.c.scope, consents.c.resources).where(
            consents.c.user_id == user_id, consents.c.client_id == client_id
        )
    ).one_or_none()
    if row is None:
        return None
    return Consent(parse_scope(row.scope), frozenset(resources_from_stored(row.resources)))


def consent_values(scope: frozenset[str], resources: tuple[str, ...], now: int) -> dict[str, Any]:
    """The `consents` row's values for a decision (computed once, outside the transaction)."""
    return {
        "scope": render_scope(scope),
        "resources": stored_resources(sorted(set(resources))),
        "updated_at": now,
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
        same_alg = signing_keys.c.alg == key.alg
        id_token_only = signing_keys.c.purpose.is_not(None)
        replaced = same_alg & id_token_only
        if key.purpose is None:
            replaced = replaced | signing_keys.c.purpose.is_(None)
        conn.execute(
            update(signing_keys)
            .where(signing_keys.c.retires_at.is_(None), replaced)
            .values(retires_at=retire_others_at)
        )
    conn.execute(insert(signing_keys).values(**asdict(key)))


def list_signing_keys(conn: Connection) -> list[StoredKey]:
    rows = conn.execute(select(signing_keys).order_by(signing_keys.c.created_at)).mappings()
    return [StoredKey(**row) for row in rows]
