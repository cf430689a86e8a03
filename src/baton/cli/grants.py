"""`baton grants list` and `baton grants revoke`: one user's authorization of one client, and
the token family issued from it.
"""

from __future__ import annotations

import click

from baton.cli.common import current_time, db_option, emit, fail, run_with_store
from baton.core.vocabulary import RevocationCause
from baton.store.sql import SQLStore


@click.group()
def grants() -> None:
    """Grants: one user's authorization of one client, and the tokens issued from it."""


@grants.command("list")
@db_option
@click.option("--client", "client_id", help="Only this client's grants.")
@click.option("--user", "username", help="Only this user's grants.")
@click.option("--json", "as_json", is_flag=True)
def grants_list(db: str, client_id: str | None, username: str | None, as_json: bool) -> None:
    """List grants with their state."""
    found = run_with_store(db, lambda store: store.list_grants(client_id, username))
    now = current_time()
    rows = []
    for summary in found:
        g = summary.grant
        if g.revoked_at is not None:
            status = f"revoked ({g.revoked_reason})"
        elif now >= g.expires_at:
            status = "expired"
        else:
            status = "active"
        rows.append(
            {
                "grant_id": g.id,
                "client_id": g.client_id,
                "user": g.subject,
                "scope": g.scope,
                "status": status,
                "created_at": g.created_at,
                "expires_at": g.expires_at,
                "revoked_at": g.revoked_at,
                "refresh_tokens_issued": summary.generations,
            }
        )
    lines = [f"{'GRANT':<27} {'CLIENT':<25} {'USER':<16} {'STATUS':<20} TOKENS"]
    lines += [
        f"{r['grant_id']:<27} {r['client_id']:<25} {r['user'] or '-':<16} {r['status']:<20} "
        f"{r['refresh_tokens_issued']}"
        for r in rows
    ]
    emit(as_json, {"grants": rows}, "\n".join(lines))


@grants.command("revoke")
@db_option
@click.argument("grant_id")
@click.option("--json", "as_json", is_flag=True)
def grants_revoke(db: str, grant_id: str, as_json: bool) -> None:
    """Revoke a grant: every token of its family dies at once."""

    async def work(store: SQLStore) -> bool | None:
        if await store.get_grant(grant_id) is None:
            return None
        return await store.revoke_grant(grant_id, current_time(), RevocationCause.ADMIN)

    revoked = run_with_store(db, work)
    if revoked is None:
        fail(f"no grant {grant_id!r}")
    text = f"revoked grant {grant_id}" if revoked else f"grant {grant_id} was already revoked"
    emit(as_json, {"grant_id": grant_id, "revoked": bool(revoked)}, text)
