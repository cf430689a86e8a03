"""The browser origins of every enabled client, for CORS (`baton.server.runtime.cors`).

One read of three columns of the enabled clients' rows; the server derives the origins from them
(`baton.core.origins`) and keeps the result for a few seconds per process.
"""

from __future__ import annotations

import json

from sqlalchemy import Connection, select

from baton.core.origins import OriginSource
from baton.store.schema import clients


def origin_sources(conn: Connection) -> list[OriginSource]:
    """Each enabled client's id, redirect URIs and explicit allowed origins (None: unset)."""
    rows = conn.execute(
        select(clients.c.id, clients.c.redirect_uris, clients.c.allowed_origins).where(
            clients.c.disabled_at.is_(None)
        )
    )
    return [
        OriginSource(
            client_id,
            tuple(json.loads(redirect_uris)),
            None if allowed is None else tuple(json.loads(allowed)),
        )
        for client_id, redirect_uris, allowed in rows
    ]
