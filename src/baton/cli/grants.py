"""`baton grants list`, `show` and `revoke`: one user's authorization of one client, and the
token family issued from it. `show` prints what the admin API's `GET /grants/{id}` answers (the
grant and its family's summary, never a token); `revoke` is audited with the actor
`cli:<login name>`, as the console's and the admin API's revocations are.
"""

from __future__ import annotations

import json

import click

from baton.cli.common import current_time, db_option, emit, fail, run_with_store
from baton.cli.users import cli_actor
from baton.server.admin.api_records import grant_detail
from baton.store.admin import Family
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


@grants.command("show")
@db_option
@click.argument("grant_id")
@click.option("--json", "as_json", is_flag=True)
def grants_show(db: str, grant_id: str, as_json: bool) -> None:
    """Show a grant and its token family: refresh tokens issued, the current pair's expiry, and
    its security events (never a token)."""

    async def work(store: SQLStore) -> Family | None:
        return await store.admin().family(grant_id)

    family = run_with_store(db, work)
    if family is None:
        fail(f"no grant {grant_id!r}")
    payload = grant_detail(family, current_time())
    tree = payload["family"]
    current = tree["current"] or {}
    lines = [
        f"grant:       {payload['id']}",
        f"client:      {payload['client_id']}",
        f"user:        {payload['username'] or '-'}",
        f"scope:       {payload['scope']}",
        f"status:      {payload['status']}"
        + (f" ({payload['revoked_reason']})" if payload["revoked_reason"] else ""),
        f"created_at:  {payload['created_at']}",
        f"expires_at:  {payload['expires_at']}",
        f"generations: {tree['generations']}",
        f"current:     {json.dumps(current) if current else '-'}",
    ]
    lines += [
        f"event:       {e['occurred_at']} {e['kind']} (generation {e['generation']})"
        for e in tree["events"]
    ]
    emit(as_json, payload, "\n".join(lines))


@grants.command("revoke")
@db_option
@click.argument("grant_id")
@click.option("--json", "as_json", is_flag=True)
def grants_revoke(db: str, grant_id: str, as_json: bool) -> None:
    """Revoke a grant: every token of its family dies at once."""
    actor = cli_actor()

    async def work(store: SQLStore) -> bool | None:
        if await store.get_grant(grant_id) is None:
            return None
        return await store.admin().revoke_grant(grant_id, actor)

    revoked = run_with_store(db, work)
    if revoked is None:
        fail(f"no grant {grant_id!r}")
    text = f"revoked grant {grant_id}" if revoked else f"grant {grant_id} was already revoked"
    emit(as_json, {"grant_id": grant_id, "revoked": bool(revoked)}, text)
