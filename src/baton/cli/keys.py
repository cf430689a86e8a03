"""`baton keys rotate` and `baton keys list`: the signing keys of JWT access tokens and of ID
tokens, published ahead of use and retired after the longest lifetime of a token they signed.

A key signs access tokens and the ID tokens of its algorithm; a key made `--id-token-only` (as
the server makes the keys of the other ID token algorithms, see `baton.server.runtime.keyring`)
signs only ID tokens. Rotating one replaces the keys of its kind (`registry.add_signing_key`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

import click

from baton.cli.common import (
    check_kek,
    current_time,
    db_option,
    emit,
    fail,
    kek_option,
    run_with_store,
)
from baton.cli.users import cli_actor
from baton.core.keys import (
    ALGORITHM_CHOICES,
    KeyEncryptionError,
    StoredKey,
    algorithm,
    generate,
    unseal,
)
from baton.server.runtime.keyring import ID_TOKEN, key_states, rotation_window
from baton.store.sql import SQLStore


@click.group()
def keys() -> None:
    """Signing keys for JWT access tokens and ID tokens."""


@keys.command("rotate")
@db_option
@kek_option
@click.option(
    "--alg",
    default="ES256",
    show_default=True,
    type=click.Choice(list(ALGORITHM_CHOICES)),
    help="EdDSA: the old name of Ed25519 (RFC 9864), which the key signs as.",
)
@click.option(
    "--publish-ahead",
    default=600,
    show_default=True,
    type=click.IntRange(min=0),
    help="Seconds the new key is published before it signs (longer than resource servers "
    "cache the JWKS, and than the servers' 30 s key reload).",
)
@click.option(
    "--max-access-ttl",
    default=3600,
    show_default=True,
    type=click.IntRange(min=1),
    help="The longest access-token lifetime: the old keys stay published this long after "
    "the new one starts signing.",
)
@click.option(
    "--max-id-token-ttl",
    default=3600,
    show_default=True,
    envvar="BATON_ID_TOKEN_LIFETIME",
    type=click.IntRange(min=1),
    help="The ID-token lifetime (the server's --id-token-lifetime, read from "
    "BATON_ID_TOKEN_LIFETIME when set): the old keys stay published at least this long after "
    "the new one starts signing, so every ID token they signed still verifies until it expires.",
)
@click.option(
    "--id-token-only",
    is_flag=True,
    help="The new key signs ID tokens of its algorithm only, never access tokens; it replaces "
    "only the ID-token-only keys of its algorithm.",
)
@click.option("--json", "as_json", is_flag=True)
def keys_rotate(
    db: str,
    key_encryption_key: str | None,
    alg: str,
    publish_ahead: int,
    max_access_ttl: int,
    max_id_token_ttl: int,
    id_token_only: bool,
    as_json: bool,
) -> None:
    """Publish a new signing key now; it signs after --publish-ahead, and the keys it replaces
    retire after the longest lifetime of a token they signed."""
    kek = check_kek(key_encryption_key)
    now = current_time()
    actor = cli_actor()
    purpose = ID_TOKEN if id_token_only else None
    new_alg = algorithm(alg)

    async def work(store: SQLStore) -> tuple[str, int, int | None]:
        existing = await store.signing_keys()
        for stored in existing:
            unseal(stored, kek)  # the same key-encryption key, or refuse before writing
        # A retired key leaves the JWKS only once every token it signed has expired: access
        # tokens (--max-access-ttl) and ID tokens (--max-id-token-ttl) alike.
        keep = max(max_access_ttl, max_id_token_ttl)

        def window(keys: Sequence[StoredKey]) -> tuple[int, int | None]:
            # From the keys as the write's transaction finds them (another rotation may have
            # committed since `existing` was read).
            return rotation_window(keys, new_alg, purpose, now, publish_ahead, keep)

        made = dataclasses.replace(generate(alg, now, now, kek), purpose=purpose)
        new, retire_at = await store.admin().add_signing_key_audited(made, window, actor)
        return new.kid, new.activates_at, retire_at

    alg = new_alg  # the name the key signs with (EdDSA: Ed25519)
    try:
        kid, activates_at, retire_at = run_with_store(db, work)
    except KeyEncryptionError as exc:
        fail(str(exc))
    payload = {
        "kid": kid,
        "alg": alg,
        "purpose": purpose,
        "activates_at": activates_at,
        "old_keys_retire_at": retire_at,
    }
    kind = "ID tokens only" if purpose else "access tokens and ID tokens"
    text = f"published key {kid} ({alg}, {kind}); it signs from {activates_at}"
    if retire_at is not None:
        text += f"; older keys leave the JWKS at {retire_at}"
    emit(as_json, payload, text)


@keys.command("list")
@db_option
@click.option("--json", "as_json", is_flag=True)
def keys_list(db: str, as_json: bool) -> None:
    """List the signing keys with their publication window and state (pending, signing,
    verifying, retired), as the admin API's GET /keys."""
    found = run_with_store(db, lambda store: store.signing_keys())
    states = key_states(found, current_time())
    rows = [
        {
            "kid": k.kid,
            "alg": k.alg,
            "state": states[k.kid],
            "created_at": k.created_at,
            "activates_at": k.activates_at,
            "retires_at": k.retires_at,
            "purpose": k.purpose,
            "public_jwk": json.loads(k.public_jwk),
        }
        for k in found
    ]
    header = (
        f"{'KID':<22} {'ALG':<7} {'PURPOSE':<8} {'STATE':<9} {'CREATED':<11} {'SIGNS FROM':<11} "
        "RETIRES"
    )
    lines = [header]
    lines += [
        f"{r['kid']:<22} {r['alg']:<7} {r['purpose'] or 'all':<8} {r['state']:<9} "
        f"{r['created_at']:<11} {r['activates_at']:<11} {r['retires_at'] or '-'}"
        for r in rows
    ]
    emit(as_json, {"keys": rows}, "\n".join(lines))
