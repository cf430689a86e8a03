"""`baton consent revoke`: forget a user's remembered consent to a client, and revoke the grants
that user gave it, as the admin API's `DELETE /admin/api/v1/subjects/{subject}/consents` does
(the same store action, `SQLStore.forget_subject_consents`): the next authorization asks the
user again, and each revoked grant is announced on the revocation feed. Audited with the actor
`cli:<login name>`.
"""

from __future__ import annotations

import click

from baton.cli.common import db_option, emit, fail, run_with_store
from baton.cli.users import cli_actor
from baton.store.sql import SQLStore


@click.group()
def consent() -> None:
    """Users' consents to clients."""


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
