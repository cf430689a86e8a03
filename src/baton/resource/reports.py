"""Reporting the use of superseded access tokens to Baton (issue 28, `POST /token-use`).

An access token is *superseded* once its companion refresh token was exchanged: the feed (or
the introspection answer's `revocation_at`) announces its death at the end of the leeway,
before its `exp`. A client that keeps using it did not pick up the new pair (another process
refreshed, a response was lost, or the app holds tokens in memory). The resource server is the
only one who sees those uses, so it tells Baton, which counts them per client (integration
health, `baton report enforcement`).

What leaves the resource server is the token's SHA-256 digest only (base64url, unpadded:
`baton.core.tokens.digest_text`), never the token: Baton finds the token by the digest it
stores it under, with one indexed read per report. Only the uses the verifier accepted without
asking Baton are reported (a cache hit, a JWT checked locally): a use it introspected was
counted by Baton's `/introspect` already. Uses are aggregated per (digest, second) in a bounded
buffer (beyond `max_pending` entries a use is dropped and counted), sent in batches of at most
`MAX_BATCH` uses and `MAX_BATCH_BYTES` (under Baton's default `--max-body-bytes`, 64 KiB: about
680 entries) by a daemon thread every `interval` seconds and once more at `stop()`. Recording
is a dict update under a lock: a request never waits for Baton, and a Baton that fails or is
unreachable never fails a request (the failure is logged, the batch kept for the next round
while there is room, or dropped when Baton refuses it for good).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import httpx

from baton.core.tokens import DIGEST_TEXT_LENGTH

log = logging.getLogger("baton.resource.reports")

MAX_BATCH = 1000  # entries per POST: the server's limit (`POST /token-use`)
MAX_BATCH_BYTES = 60_000  # a body Baton's default `--max-body-bytes` (64 KiB) takes
# What the server accepts of one entry: anything but a 43-character digest, or a larger count,
# would have the whole batch refused, so neither is sent.
MAX_COUNT = 1_000_000
_COMPACT = (",", ":")
# Answers that say "not now" rather than "never": the batch is kept for the next round.
_TRANSIENT = frozenset({408, 425, 429})


class TokenUseReporter:
    """Buffers the uses of superseded access tokens and posts them to `endpoint`,
    authenticated with the resource server's own client credentials."""

    def __init__(
        self,
        endpoint: str,
        auth: tuple[str, str],
        *,
        interval: float = 5.0,
        max_pending: int = 10_000,
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if interval <= 0 or max_pending < 1:
            raise ValueError("token use reports: interval > 0 and max_pending >= 1")
        self.endpoint = endpoint
        self.interval = interval
        self.max_pending = max_pending
        self._auth = auth
        self._timeout = timeout
        self._transport = transport
        self._lock = threading.Lock()  # guards `_pending` and the counters
        self._send_lock = threading.Lock()  # one flush at a time (the thread, `stop`, a test)
        self._pending: dict[tuple[str, int], int] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._client: httpx.Client | None = None
        self.sent = 0  # uses Baton accepted
        self.dropped = 0  # uses never sent: the buffer was full, or Baton refused them for good
        self.failures = 0
        self.last_error: str | None = None

    # -- on the request path -----------------------------------------------------------------

    def record(self, token_digest: str, at: float, count: int = 1) -> None:
        """One use at `at` (seconds since the epoch) of a superseded token, named by its
        SHA-256 digest as `digest_text` spells it (never the token)."""
        key = (token_digest, int(at))
        with self._lock:
            if len(token_digest) != DIGEST_TEXT_LENGTH:
                self.dropped += count
                return
            if not self._add_locked(key, count):
                return
        if self._thread is None and not self._stopped:
            self.start()  # a verifier nobody started (introspection only) still reports

    def pending(self) -> int:
        with self._lock:
            return sum(self._pending.values())

    # -- sending -----------------------------------------------------------------------------

    def flush(self) -> int:
        """Sends what is buffered, in batches of at most `MAX_BATCH`; returns how many uses
        Baton accepted. Never raises: failures are logged and counted."""
        with self._send_lock:
            with self._lock:
                taken, self._pending = self._pending, {}
            batches = _batches(list(taken.items()))
            accepted = 0
            for number, batch in enumerate(batches):
                outcome = self._post(batch)
                if outcome == "sent":
                    accepted += sum(count for _, count in batch)
                elif outcome == "drop":
                    self._count_dropped(sum(count for _, count in batch))
                else:  # Baton is down: keep this batch and the rest for the next round
                    self._requeue([item for rest in batches[number:] for item in rest])
                    break
            with self._lock:
                self.sent += accepted
            return accepted

    def _post(self, batch: list[_Item]) -> str:
        """ "sent", "retry" (Baton unreachable or busy) or "drop" (refused for good)."""
        body = json.dumps({"uses": [_entry(item) for item in batch]}, separators=_COMPACT)
        try:
            response = self._http().post(
                self.endpoint, content=body, headers={"content-type": "application/json"}
            )
        except httpx.HTTPError as exc:
            self._failed(f"{self.endpoint} unreachable: {type(exc).__name__}")
            return "retry"
        if 200 <= response.status_code < 300:
            return "sent"
        self._failed(f"{self.endpoint} answered {response.status_code}")
        if response.status_code >= 500 or response.status_code in _TRANSIENT:
            return "retry"
        # 400, 401, 403 (not a resource server), 404 (a Baton without /token-use): sending the
        # same batch again would get the same answer.
        return "drop"

    def _failed(self, problem: str) -> None:
        with self._lock:
            self.failures += 1
            self.last_error = problem
        log.warning("token use report not delivered: %s", problem)

    def _count_dropped(self, count: int) -> None:
        with self._lock:
            self.dropped += count

    def _requeue(self, items: list[_Item]) -> None:
        with self._lock:
            for key, count in items:
                self._add_locked(key, count)

    def _add_locked(self, key: tuple[str, int], count: int) -> bool:
        """Counts `count` uses under `key` (the lock held); False when the buffer is full and
        they were dropped (counted in `dropped`)."""
        if key in self._pending:
            self._pending[key] = min(MAX_COUNT, self._pending[key] + count)
        elif len(self._pending) < self.max_pending:
            self._pending[key] = count
        else:
            self.dropped += count
            return False
        return True

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                auth=self._auth, timeout=self._timeout, transport=self._transport
            )
        return self._client

    # -- the thread --------------------------------------------------------------------------

    def start(self) -> None:
        """Starts the sending thread (idempotent)."""
        with self._lock:
            self._stopped = False
            if self._thread is not None:
                return
            self._wake.clear()
            self._thread = threading.Thread(
                target=self._run, name="baton-token-use-reports", daemon=True
            )
        self._thread.start()

    def _run(self) -> None:
        while not self._wake.wait(self.interval):
            self._guarded(self.flush)

    def stop(self, timeout: float = 5.0) -> None:
        """Stops the thread and sends what is left (the shutdown flush)."""
        with self._lock:
            self._stopped = True
            thread, self._thread = self._thread, None
        self._wake.set()
        if thread is not None:
            thread.join(timeout)
        self._guarded(self.flush)
        if self._client is not None:
            self._client.close()
            self._client = None

    @staticmethod
    def _guarded(action: Callable[[], Any]) -> None:
        try:
            action()
        except Exception:  # a report must never take the thread (or a shutdown) down
            log.exception("token use report failed")

    def health(self) -> dict[str, Any]:
        with self._lock:
            return {
                "endpoint": self.endpoint,
                "pending": sum(self._pending.values()),
                "sent": self.sent,
                "dropped": self.dropped,
                "failures": self.failures,
                "last_error": self.last_error,
            }


_Item = tuple[tuple[str, int], int]


def _entry(item: _Item) -> dict[str, Any]:
    (token_digest, at), count = item
    return {"token_digest": token_digest, "at": at, "count": count}


def _batches(items: list[_Item]) -> list[list[_Item]]:
    """`items` cut into batches of at most `MAX_BATCH` entries and `MAX_BATCH_BYTES`: each
    entry's size is its compact JSON (about 90 bytes: the 43-character digest, `at`, `count`)
    and a comma."""
    batches: list[list[_Item]] = []
    current: list[_Item] = []
    size = len('{"uses":[]}')
    for item in items:
        grown = len(json.dumps(_entry(item), separators=_COMPACT)) + 1  # and its comma
        if current and (len(current) == MAX_BATCH or size + grown > MAX_BATCH_BYTES):
            batches.append(current)
            current, size = [], len('{"uses":[]}')
        current.append(item)
        size += grown
    if current:
        batches.append(current)
    return batches
