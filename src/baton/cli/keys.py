"""`baton keys rotate` and `baton keys list`: the signing keys of JWT access tokens, published
ahead of use and retired after the longest access-token lifetime.
"""

from __future__ import annotations

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
from baton.core.keys import ALGORITHM_CHOICES, KeyEncryptionError, algorithm, generate, unseal
from baton.store.sql import SQLStore


@click.group()
def keys() -> None:
    """Signing keys for JWT access tokens."""


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
@click.option("--json", "as_json", is_flag=True)
def keys_rotate(
    db: str,
    key_encryption_key: str | None,
    alg: str,
    publish_ahead: int,
    max_access_ttl: int,
    as_json: bool,
) -> None:
    """Publish a new signing key now; it signs after --publish-ahead, and the old keys retire
    after the longest access-token lifetime."""
    kek = check_kek(key_encryption_key)
    now = current_time()

    async def work(store: SQLStore) -> tuple[str, int, int | None]:
        existing = await store.signing_keys()
        for stored in existing:
            unseal(stored, kek)  # the same key-encryption key, or refuse before writing
        activates_at = now + publish_ahead if existing else now
        retire_at = activates_at + max_access_ttl if existing else None
        new = generate(alg, now, activates_at, kek)
        await store.add_signing_key(new, retire_at)
        return new.kid, activates_at, retire_at

    alg = algorithm(alg)  # the name the key signs with (EdDSA: Ed25519)
    try:
        kid, activates_at, retire_at = run_with_store(db, work)
    except KeyEncryptionError as exc:
        fail(str(exc))
    payload = {
        "kid": kid,
        "alg": alg,
        "activates_at": activates_at,
        "old_keys_retire_at": retire_at,
    }
    text = f"published key {kid} ({alg}); it signs from {activates_at}"
    if retire_at is not None:
        text += f"; older keys leave the JWKS at {retire_at}"
    emit(as_json, payload, text)


@keys.command("list")
@db_option
@click.option("--json", "as_json", is_flag=True)
def keys_list(db: str, as_json: bool) -> None:
    """List the signing keys with their publication window."""
    found = run_with_store(db, lambda store: store.signing_keys())
    rows = [
        {
            "kid": k.kid,
            "alg": k.alg,
            "created_at": k.created_at,
            "activates_at": k.activates_at,
            "retires_at": k.retires_at,
        }
        for k in found
    ]
    lines = [f"{'KID':<22} {'ALG':<7} {'CREATED':<11} {'SIGNS FROM':<11} RETIRES"]
    lines += [
        f"{r['kid']:<22} {r['alg']:<7} {r['created_at']:<11} {r['activates_at']:<11} "
        f"{r['retires_at'] or '-'}"
        for r in rows
    ]
    emit(as_json, {"keys": rows}, "\n".join(lines))
