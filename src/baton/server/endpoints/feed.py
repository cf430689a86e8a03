"""The revocation feed for resource servers: a page (`GET /revocations`) and a Server-Sent
Events stream (`GET /revocations/stream`), both read from the outbox the revoking transactions
wrote, so every process serves every event whichever process wrote it.

The watermark a reader resumes from never passes an id whose transaction may still commit: the
database tells when a gap is final (`baton.core.watermark`), never the wall clock."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator
from typing import cast

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from baton.core.vocabulary import ErrorCode, FeedEntryKind
from baton.core.watermark import Gap, coalesce, covers, watermark
from baton.server.endpoints.clientauth import authenticate
from baton.server.endpoints.errors import NO_STORE, NoStoreJSON, OAuthError, invalid_request
from baton.server.endpoints.forms import Form
from baton.server.runtime.context import Baton, baton
from baton.server.runtime.limits import too_many
from baton.store.base import Client, ClientChanged, RevocationEvent
from baton.wire import FeedEvent, FeedPage, RevocationKind

PAGE_LIMIT = 1000
STREAM_BATCH = 500
KEEPALIVE_SECONDS = 10.0
# How often an open stream checks that its resource server may still read the feed: one
# disabled, no longer a resource server, or given a new secret (in any process) gets no event
# committed more than this after the change, and its stream ends.
RECONFIRM_SECONDS = 1.0
# Gaps an open stream watches at most (ids below a sent event that may still commit; normally a
# few, settled within a transaction's time). Past it, the nearest are watched as one range
# (`coalesce`), so a transaction left open for long costs a bounded statement per wake-up.
MAX_OPEN_GAPS = 64
# Streams one resource server may hold open at once in one process; the next is answered 429.
MAX_STREAMS_PER_CLIENT = 8
STREAM_RETRY_AFTER = 5


def event_body(event: RevocationEvent) -> FeedEvent:
    body: FeedEvent = {
        "id": event.id,
        "kind": cast(RevocationKind, event.kind),  # the store writes no other kind
        "grant_id": event.grant_id,
        "effective_at": event.effective_at,
        "expires_at": event.expires_at,
    }
    if event.kind == FeedEntryKind.ACCESS_TOKEN:
        body["jti"] = event.jti
        body["token_digest"] = event.token_digest.hex() if event.token_digest else None
    return body


async def _resource_server(request: Request, app: Baton) -> Client:
    client = await authenticate(request, Form([]), app.store, allow_public=False)
    if not client.is_resource_server:
        raise OAuthError(
            ErrorCode.UNAUTHORIZED_CLIENT,
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
    read = await app.store.read_feed(since, limit)
    page: FeedPage = {
        "events": [event_body(e) for e in read.events],
        "watermark": watermark(read.read_to, read.gaps),
    }
    return NoStoreJSON(page)


class _Streams:
    """The feed streams each resource server holds open in this process."""

    def __init__(self) -> None:
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()  # apps of one process may run on several threads

    def take(self, client_id: str) -> bool:
        with self._lock:
            count = self._open.get(client_id, 0)
            if count >= MAX_STREAMS_PER_CLIENT:
                return False
            self._open[client_id] = count + 1
            return True

    def give_back(self, client_id: str) -> None:
        with self._lock:
            count = self._open.pop(client_id, 0) - 1
            if count > 0:
                self._open[client_id] = count


_streams = _Streams()


class _CountedStream(StreamingResponse):
    """A stream that gives its resource server's slot back when it ends, however it ends
    (the server ended it, the client went away, or a send failed)."""

    def __init__(self, client_id: str, body: AsyncIterator[str]) -> None:
        super().__init__(
            body, media_type="text/event-stream", headers={**NO_STORE, "X-Accel-Buffering": "no"}
        )
        self._client_id = client_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            _streams.give_back(self._client_id)


async def revocations_stream(request: Request) -> Response:
    app = baton(request)
    client = await _resource_server(request, app)
    resume = request.headers.get("last-event-id") or request.query_params.get("since")
    since = _cursor(resume, "Last-Event-ID")
    if not _streams.take(client.id):
        raise too_many(
            STREAM_RETRY_AFTER,
            f"resource server (at most {MAX_STREAMS_PER_CLIENT} feed streams open at once)",
        )
    return _CountedStream(client.id, _events(app, client, since))


async def _still_allowed(app: Baton, client: Client) -> bool:
    """Whether `client`'s row still authenticates as it did when the stream opened: the store
    confirms it as it confirms a cached client's (see `ClientChanged`), here with no token."""
    confirmation = await app.store.find_token(client, None, False, app.clock.now())
    return not isinstance(confirmation, ClientChanged)


async def _events(app: Baton, client: Client, cursor: int) -> AsyncIterator[str]:
    """Everything after `cursor`, then every new event as it is committed, while `client` may
    still read the feed.

    Each message's `id:` is the watermark: resuming from it misses nothing. Events beyond a gap
    (ids another transaction may still commit) go out at once; the gap is watched until it is
    final, and an event that fills it goes out when it commits. Each event is sent once on a
    connection.
    """
    read_to = cursor
    gaps: list[Gap] = []
    sent: set[int] = set()  # ids sent already that lie inside a (coalesced) watched gap
    idle = 0.0
    confirmed_at = time.monotonic()
    yield "retry: 1000\n\n"
    while True:
        read = await app.store.read_feed(read_to, STREAM_BATCH, gaps)
        # Confirmed after the read: a change committed before an event it read is seen here.
        if time.monotonic() - confirmed_at >= RECONFIRM_SECONDS:
            if not await _still_allowed(app, client):
                return  # its reconnection is refused (401 or 403), as a new request would be
            confirmed_at = time.monotonic()
        read_to, gaps = read.read_to, coalesce(read.gaps, MAX_OPEN_GAPS)
        mark = watermark(read_to, gaps)
        fresh = [e for e in read.events if e.id not in sent]
        for k, event in enumerate(fresh):
            # Resuming from a message's id must not skip the events sent after it.
            resume = mark if k + 1 == len(fresh) else min(mark, fresh[k + 1].id - 1)
            data = json.dumps(event_body(event), separators=(",", ":"))
            yield f"id: {resume}\nevent: revocation\ndata: {data}\n\n"
        # Only an id inside a watched gap can be read again.
        sent = {i for i in sent | {e.id for e in fresh} if covers(gaps, i)}
        if read.full:
            continue  # more are waiting
        if fresh:
            idle = 0.0
        elif idle >= KEEPALIVE_SECONDS:
            idle = 0.0
            yield ": keep-alive\n\n"
        idle += await app.store.wait_for_revocations(KEEPALIVE_SECONDS - idle)
