"""The revocation feed for resource servers: a page (`GET /revocations`) and a Server-Sent
Events stream (`GET /revocations/stream`), both read from the outbox the revoking transactions
wrote, so every process serves every event whichever process wrote it."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from baton.core.feed import advance
from baton.server.clientauth import authenticate
from baton.server.context import Baton, baton
from baton.server.errors import NO_STORE, NoStoreJSON, OAuthError, invalid_request
from baton.server.forms import Form
from baton.store.base import Client, ClientChanged, RevocationEvent

PAGE_LIMIT = 1000
STREAM_BATCH = 500
KEEPALIVE_SECONDS = 10.0
# How often an open stream checks that its resource server may still read the feed: one
# disabled, no longer a resource server, or given a new secret (in any process) gets no event
# committed more than this after the change, and its stream ends.
RECONFIRM_SECONDS = 1.0


def event_body(event: RevocationEvent) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": event.id,
        "kind": event.kind,
        "grant_id": event.grant_id,
        "effective_at": event.effective_at,
        "expires_at": event.expires_at,
    }
    if event.kind == "access_token":
        body["jti"] = event.jti
        body["token_digest"] = event.token_digest.hex() if event.token_digest else None
    return body


async def _resource_server(request: Request, app: Baton) -> Client:
    client = await authenticate(request, Form([]), app.store, allow_public=False)
    if not client.is_resource_server:
        raise OAuthError(
            "unauthorized_client",
            "only clients registered with --resource-server may read the revocation feed",
            403,
        )
    return client


def _cursor(text: str | None, name: str) -> int:
    if text is None or text == "":
        return 0
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise invalid_request(f"{name} must be a non-negative integer")
    return int(text)


async def revocations_page(request: Request) -> Response:
    app = baton(request)
    await _resource_server(request, app)
    since = _cursor(request.query_params.get("since"), "since")
    limit = min(_cursor(request.query_params.get("limit"), "limit") or PAGE_LIMIT, PAGE_LIMIT)
    events = await app.store.revocations_after(since, limit)
    watermark = advance(since, ((e.id, e.created_at) for e in events), app.clock.now())
    return NoStoreJSON({"events": [event_body(e) for e in events], "watermark": watermark})


async def revocations_stream(request: Request) -> Response:
    app = baton(request)
    client = await _resource_server(request, app)
    resume = request.headers.get("last-event-id") or request.query_params.get("since")
    since = _cursor(resume, "Last-Event-ID")
    return StreamingResponse(
        _events(app, client, since),
        media_type="text/event-stream",
        headers={**NO_STORE, "X-Accel-Buffering": "no"},
    )


async def _still_allowed(app: Baton, client: Client) -> bool:
    """Whether `client`'s row still authenticates as it did when the stream opened: the store
    confirms it as it confirms a cached client's (see `ClientChanged`), here with no token."""
    confirmation = await app.store.find_token(client, None, is_refresh=False)
    return not isinstance(confirmation, ClientChanged)


async def _events(app: Baton, client: Client, cursor: int) -> AsyncIterator[str]:
    """Everything after `cursor`, then every new event as it is committed, while `client` may
    still read the feed.

    Each message's `id:` is the watermark: resuming from it misses nothing. Events beyond a gap
    (an id another transaction may still commit) go out at once and are remembered, so this
    connection sends each event once.
    """
    sent: set[int] = set()
    idle = 0.0
    confirmed_at = time.monotonic()
    yield "retry: 1000\n\n"
    while True:
        events = await app.store.revocations_after(cursor, STREAM_BATCH)
        # Confirmed after the read: a change committed before an event it read is seen here.
        if time.monotonic() - confirmed_at >= RECONFIRM_SECONDS:
            if not await _still_allowed(app, client):
                return  # its reconnection is refused (401 or 403), as a new request would be
            confirmed_at = time.monotonic()
        watermark = advance(cursor, ((e.id, e.created_at) for e in events), app.clock.now())
        fresh = [e for e in events if e.id not in sent]
        for event in fresh:
            data = json.dumps(event_body(event), separators=(",", ":"))
            yield f"id: {min(event.id, watermark)}\nevent: revocation\ndata: {data}\n\n"
        sent = {i for i in sent if i > watermark} | {e.id for e in fresh if e.id > watermark}
        cursor = watermark
        if len(events) == STREAM_BATCH:
            continue  # more are waiting
        if fresh:
            idle = 0.0
        elif idle >= KEEPALIVE_SECONDS:
            idle = 0.0
            yield ": keep-alive\n\n"
        idle += await app.store.wait_for_revocations(KEEPALIVE_SECONDS - idle)
