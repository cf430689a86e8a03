"""Learning from an API that the access token just used was superseded (issue 28).

A resource server protected by `baton.resource` answers `Baton-Token-Superseded: dies-at=<unix
seconds>` (an RFC 8941 dictionary) to a request whose access token is still valid but whose
companion refresh token was already exchanged: the token dies at the end of the server's
leeway, before its `exp`. With a shared store that happens for a moment only (another process
rotated; the next request reads the new pair from the store). When the store still holds the
superseded pair, someone rotated it without this store seeing it: a copy of the refresh token in
another store, or an app that keeps tokens in memory. The app's `Hooks.on_superseded` is told
either way, once per access token, with a `SupersededEvent` (fingerprints and times, never a
token).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from baton.client.tokens import TokenPair, fingerprint

HEADER = "Baton-Token-Superseded"  # the name `baton.resource` answers (SUPERSEDED_HEADER)
# The longest header (its lines joined) read at all: `baton.resource` sends
# `dies-at=<seconds>`, 18 bytes. The API is not trusted to be kind: a longer value (a hostile or
# broken server) is ignored unparsed, which also bounds the member pattern's backtracking (it is
# quadratic on a run of whitespace: 16 KB of it cost seconds of CPU per response).
MAX_HEADER = 256

log = logging.getLogger("baton.client")

# One RFC 8941 §3.2 dictionary member: a key, an optional `=` bare item (a quoted string may
# hold commas), optional parameters; members are separated by commas.
_MEMBER = re.compile(
    r'\s*([a-z*][a-z0-9_\-.*]*)(?:=("(?:[^"\\]|\\.)*"|[^,;]*))?((?:;[^,]*)?)\s*(?:,|$)'
)
_INTEGER = re.compile(r"-?[0-9]{1,15}")  # RFC 8941 §3.3.1


def dies_at_of(values: Iterable[str]) -> int | None:
    """The `dies-at` Integer of `Baton-Token-Superseded` header values (several lines are one
    dictionary, RFC 8941 §4.2; the last value of a key wins), or None when absent, malformed or
    longer than `MAX_HEADER`."""
    text = ", ".join(values)
    if len(text) > MAX_HEADER:
        return None
    found: int | None = None
    for match in _MEMBER.finditer(text):
        if match.group(1) == "dies-at":
            value = (match.group(2) or "").strip()
            found = int(value) if _INTEGER.fullmatch(value) else None
    return found


@dataclass(frozen=True)
class SupersededEvent:
    """An API said the access token a request carried was superseded.

    `dies_at`: when the API stops accepting it (seconds since the epoch). `access_token`: its
    fingerprint (`baton.client.fingerprint`), `expires_at` its own expiry. `stored_newer`: the
    store already holds a newer pair, which the next request carries; False means the store
    still holds the superseded pair: the rotation happened elsewhere (a copy of the refresh token
    in another store, tokens kept in memory), and requests fail from `dies_at` on."""

    dies_at: int
    access_token: str | None
    expires_at: float | None
    stored_newer: bool


class SupersededWatch:
    """Reads the header off API responses for one auth object; one event per access token."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._told: str | None = None  # the fingerprint of the last token an event was made for

    def event(
        self, values: Iterable[str], used: TokenPair, load: Callable[[], TokenPair | None]
    ) -> SupersededEvent | None:
        """The event for a response whose header `values` say `used` was superseded (None when
        they do not, or when this token was already reported); `load` reads the store.

        Advisory: the API already answered, so this never raises (a request that looks failed
        after a non-idempotent POST succeeded would be retried). The header is read once per
        token, a malformed value included: a hostile API cannot make every answer cost a
        parse."""
        values = list(values)
        if not values:
            return None
        name = fingerprint(used.access_token)
        with self._lock:
            if name == self._told:
                return None
            self._told = name
        dies_at = dies_at_of(values)
        if dies_at is None:
            return None
        try:
            stored = load()
        except Exception as error:  # any store (SQLite busy, Redis down, a corrupt document):
            # the next request meets it; this answer stands. The type only: a message may
            # quote the stored document, tokens included.
            log.warning(
                "the store could not be read after a Baton-Token-Superseded answer: %s",
                type(error).__name__,
            )
            stored = None
        newer = (
            stored is not None
            and stored.reauthorize is None
            and stored.access_token != used.access_token
        )
        return SupersededEvent(dies_at, name, used.expires_at, newer)
