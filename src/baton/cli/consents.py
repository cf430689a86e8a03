"""`baton consent list`: the remembered consents still in force (what the admin API's `GET
/consents` lists). `baton consent revoke`: forget a user's remembered consent to a client, and
revoke the grants that user gave it, as the admin API's `DELETE /admin/api/v1/subjects/{subject}/
consents` and `DELETE /admin/api/v1/consents/{username}/{client_id}` do (the same store action,
`SQLStore.forget_subject_consents`): the next authorization asks the user again, and each revoked
grant is announced on the revocation feed. Audited with the actor `cli:<login name>`.
"""

from __future__ import annotations

import click

from baton.cli.common import current_time, db_option, emit, fail, run_with_store
from baton.cli.users import cli_actor
from baton.server.admin.api_records import consent_item
from baton.store.sql import SQLStore
from baton.store.sql.records import ConsentListing


@click.group()
def consent() -> None:
    """Users' consents to clients."""


@consent.command("list")
@db_option
@click.option("--user", "username", help="Only this user's.")
@click.option("--client", "client_id", help="Only this client's.")
@click.option("--json", "as_json", is_flag=True)
def consent_list(db: str, username: str | None, client_id: str | None, as_json: bool) -> None:
    """List the remembered consents still in force: what a later authorization gets without
    asking (scope, resources, until when)."""
    now = current_time()

    async def work(store: SQLStore) -> list[ConsentListing]:
        admin, found = store.admin(), []
        after: tuple[str, str] | None = None
        while True:
            page, after = await admin.consent_page(username, client_id, after, 500, now)
            found += page
            if after is None:
                return found

    rows = [consent_item(c) for c in run_with_store(db, work)]
    lines = [f"{'USER':<24} {'CLIENT':<25} {'EXPIRES':<11} SCOPE"]
    lines += [
        f"{r['username']:<24} {r['client_id']:<25} {r['expires_at'] or 'never':<11} {r['scope']}"
        for r in rows
    ]
    emit(as_json, {"consents": rows}, "\n".join(lines) if rows else "no remembered consents")


@consent.command("revoke")
@db_option
@click.option("--user", "username", required=True, help="The user's username.")
@click.option("--client", "client_id", required=True, help="The client's id.")
@click.option("--json", "as_json", is_flag=True)
def consent_revoke(db: str, username: str, client_id: str, as_json: bool) -> None:
    """Forget USER's remembered consent to CLIENT and revoke every live grant USER gave it."""
    actor = cli_actor()

    async def work(store: SQLStore) -> tuple[bool, int | None]:
        if await store.get_client(client_id) is None:
            return False, None
        return True, await store.forget_subject_consents(username, client_id, actor)

    known, revoked = run_with_store(db, work)
    if not known:
        fail(f"no client {client_id!r}")
    if revoked is None:
        fail(f"no user {username!r}")
    payload = {"username": username, "client_id": client_id, "grants_revoked": revoked}
    emit(
        as_json,
        payload,
        f"forgot {username}'s consent to {client_id} ({revoked} grant(s) revoked)",
    )
