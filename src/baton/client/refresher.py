"""The rotation engine: single flight, persist first, lost-response recovery.

One `refresh()` at a time reaches the server for a given store, across threads (a local lock),
tasks (`arefresh` runs `refresh` in a worker thread) and processes (the store's lock). The
sequence under the lock is:

1. re-read the store; if another caller already rotated the pair this caller saw, return the
   stored pair without any exchange;
2. write the *intent* first (`exchanging_since`), so a crash after the server rotated leaves the
   refresh token that is in flight, and when it was sent, in the store;
3. exchange, retrying the *same* refresh token with backoff while no answer arrives, but only
   inside the server's leeway (configured, or read from RFC 8414 metadata when advertised), each
   attempt sized to leave room for the next; the end of the leeway is part of the mark, and once
   it has passed the token is never presented again (the server would take it for reuse);
4. write the new pair, and only then return it: no caller ever holds a pair the store lacks, and
   once it is stored the old pair is never used again;
5. on a definitive `invalid_grant`, keep a tombstone with the reason and raise
   `ReauthorizationRequired`.

A stored pair that still carries an intent when the lock is taken belongs to a process that died
mid-exchange: step 3 runs again with that refresh token (under Baton's `replay` policy, the server
answers with the very pair the dead process received), or, once its leeway is over, the session
ends with `ReauthorizationRequired`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio.to_thread
import httpx

from baton.client.endpoint import OAuthClient, Retryable, verdict
from baton.client.errors import (
    AuthorizationServerUnavailable,
    ClientError,
    LockLost,
    ReauthorizationRequired,
    TokenEndpointError,
)
from baton.client.stores import Lease, TokenStore
from baton.client.superseded import SupersededEvent

if TYPE_CHECKING:
    from baton.client.policy import ClientPolicyInfo
from baton.client.tokens import TokenPair

log = logging.getLogger("baton.client")

METADATA_PATH = "/.well-known/oauth-authorization-server"

# Failures that prove the request never reached the server: the refresh token is still unused.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Answers that say the server did not process the request (RFC 9110 §15.5.9, RFC 8470 §5.2,
# RFC 6585 §4). Any other failure (a timeout waiting for the answer, a reset, a 5xx) may hide a
# rotation whose response was lost.
NOT_PROCESSED = frozenset({408, 425, 429})
# RFC 6749 §4.1.2.1 `temporarily_unavailable`: "the authorization server is currently unable to
# handle the request". Baton answers it when its database or signing key is unavailable: mostly
# before anything was written, but a connection lost while a COMMIT was acknowledged may hide a
# rotation that did happen (docs/security.md). So it may have been processed, like any 5xx; but
# the server says it is down, so the call does not wait out the whole leeway for it: it gives up
# after `timeout`, keeping the mark, and a later call retries inside the leeway (or, after it,
# ends the session as a lost response: never a reuse).
UNAVAILABLE_ERRORS = frozenset({"temporarily_unavailable"})


class StillUnresolved(AuthorizationServerUnavailable):
    """The server said it is unavailable before the exchange was settled: the refresh may have
    been processed, so the pair stays marked as exchanging (a later call retries it inside the
    leeway, and recovers the pair a lost answer held); nothing ended the session."""


class Refused(TokenEndpointError):
    """The token endpoint refused the refresh with an error other than `invalid_grant` (say
    `invalid_target`), and no earlier attempt may have been processed: the refresh token was
    not used, and the stored pair is unchanged (not marked)."""


class NeverSent(AuthorizationServerUnavailable):
    """No attempt reached the token endpoint (or each was refused unprocessed) before the retry
    window closed: the refresh token was never used, the stored pair is unchanged, and a later
    call may try again."""


@dataclass(frozen=True)
class RotationEvent:
    """A rotation that was stored. Tokens appear only as fingerprints."""

    previous: dict[str, Any]
    current: dict[str, Any]
    attempts: int
    recovered: bool  # True: finished an exchange that a dead process had started
    seconds: float


@dataclass(frozen=True)
class FailureEvent:
    """One failed exchange attempt (`will_retry`) or the end of a session."""

    kind: str  # "transport" | "server" | "invalid_grant" | "endpoint" | "lock" | "lost"
    detail: str
    attempt: int
    will_retry: bool
    error: str | None = None


@dataclass
class Hooks:
    """The app's callbacks. A hook that raises is logged and never breaks a rotation or a
    request. `on_superseded`: an API answered `Baton-Token-Superseded` to a request (issue 28;
    once per access token, from `BearerAuth`, `RequestsAuth` and `MCPAuth`)."""

    on_rotation: Callable[[RotationEvent], None] | None = None
    on_failure: Callable[[FailureEvent], None] | None = None
    on_superseded: Callable[[SupersededEvent], None] | None = None


@dataclass(frozen=True)
class RotationInfo:
    """What the server says about its rotation (Baton's `refresh_token_rotation` metadata)."""

    retry_policy: str | None = None
    leeway_seconds: float | None = None


def stored_pair(store: TokenStore) -> TokenPair:
    """`store`'s pair; `ReauthorizationRequired` if there is none or the session ended."""
    pair = store.load()
    if pair is None:
        raise ReauthorizationRequired("no token pair in the store: authorize first")
    if pair.reauthorize is not None:
        raise ReauthorizationRequired(pair.reauthorize, pair.reauthorize_error)
    return pair


@dataclass
class Refresher:
    """Refreshes the pair in `store` through `client`'s token endpoint.

    `leeway`: seconds during which the server accepts a retry of an exchanged refresh token. When
    None, it is read from `metadata_url` (Baton advertises it). 0 means the server accepts no
    retry: a lost response then ends the session at once, without presenting the token again.

    `unknown_leeway_window` (5 s) bounds the retries when the leeway is unknown (servers that do
    not advertise one). Retrying *after* a server's real leeway is reuse: the server revokes the
    grant and raises a security alert, where giving up only ends the session (the lost response
    cannot be recovered either way). 5 s holds several attempts (a reset, a stalled connection)
    while staying short; set `leeway` to the server's documented value when it has one.

    `issuer`: the authorization server whose token endpoint `client` names (set by `discover`).
    A stored pair recorded as issued by another server is never sent here (`ClientError`): its
    refresh token belongs to that server. `resource`: the RFC 8707 resource each refresh names
    when the stored pair did not record one (the MCP specification requires it in every token
    request). `bind_pairs`: a rotated pair that did not record its issuer and token endpoint
    (stored by an earlier version) records this refresher's, so that its refresh token is only
    ever sent there from then on (`MCPAuth` sets it; off by default, so that a deployment moving
    its token endpoint does not strand the pairs of plain `Refresher` users).

    While no attempt may have reached the server (a refused connection, an answer saying the
    request was not processed), retrying stops after about `timeout` seconds, not at the end of
    the window: the token is unused, so there is nothing to recover, and the caller gets
    `NeverSent` (an `AuthorizationServerUnavailable`) quickly instead of blocking, with the store
    locked, through the whole leeway.

    `timeout` caps one attempt; each attempt but the last gets at most a third of the time left in
    the window, and none is sent later than `landing_margin` (at most a fifth of the window) before
    its end, so that it reaches the server, and is processed, inside the leeway. The last attempt
    waits up to `timeout` (at most the window again): its answer may come late, as long as its
    request arrived in time.
    """

    client: OAuthClient
    store: TokenStore
    leeway: float | None = None
    metadata_url: str | None = None
    hooks: Hooks = field(default_factory=Hooks)
    http: httpx.Client | None = None
    timeout: float = 10.0
    unknown_leeway_window: float = 5.0
    backoff_initial: float = 0.1
    backoff_max: float = 2.0
    min_attempt_timeout: float = 0.5
    landing_margin: float = 1.0
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    issuer: str | None = None
    resource: str | None = None
    bind_pairs: bool = False
    _local: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _rotation: RotationInfo | None = field(default=None, init=False, repr=False)

    @classmethod
    def discover(
        cls,
        issuer: str,
        client_id: str,
        client_secret: str | None,
        store: TokenStore,
        **options: Any,
    ) -> Refresher:
        """Reads the server's RFC 8414 metadata for the token endpoint (and Baton's leeway).

        The document's `issuer` must be identical to `issuer` (RFC 8414 §3.3): a document naming
        another issuer (a mix-up, or an impersonation) is refused with `ClientError`."""
        metadata_url = issuer.rstrip("/") + METADATA_PATH
        http = options.get("http")
        own = http is None
        http = http or httpx.Client()
        try:
            response = http.get(metadata_url, timeout=options.get("timeout", 10.0))
            response.raise_for_status()
            document = response.json()
        finally:
            if own:
                http.close()
        if not isinstance(document, dict):
            raise ClientError(f"the metadata at {metadata_url} is not a JSON object")
        if document.get("issuer") != issuer:
            raise ClientError(
                f"the metadata at {metadata_url} names issuer {document.get('issuer')!r}, not"
                f" {issuer!r} (RFC 8414 §3.3: they must be identical)"
            )
        token_endpoint = document.get("token_endpoint")
        if not isinstance(token_endpoint, str) or not token_endpoint:
            raise ClientError(f"the metadata at {metadata_url} has no token_endpoint")
        refresher = cls(
            OAuthClient(token_endpoint, client_id, client_secret),
            store,
            metadata_url=metadata_url,
            issuer=issuer,
            **options,
        )
        refresher._rotation = _rotation_of(document)
        return refresher

    # -- reading --------------------------------------------------------------------------------

    def pair(self) -> TokenPair:
        """The stored pair; `ReauthorizationRequired` if there is none or the session ended."""
        return stored_pair(self.store)

    async def apair(self) -> TokenPair:
        return await anyio.to_thread.run_sync(self.pair)

    def rotation(self) -> RotationInfo:
        """The server's advertised rotation, fetched once; empty if not advertised."""
        if self._rotation is None:
            info = RotationInfo()
            if self.metadata_url is not None:
                try:
                    response = self._http().get(self.metadata_url, timeout=self.timeout)
                    if response.status_code == 200:
                        info = _rotation_of(response.json())
                except (httpx.HTTPError, ValueError) as exc:
                    log.warning("could not read %s: %s", self.metadata_url, exc)
                    return info  # try again next time
            self._rotation = info
        return self._rotation

    def client_policy(self) -> ClientPolicyInfo:
        """The policy the server holds for this client and its scheduled change (issue 28;
        `baton.client.policy.client_policy`), read with this refresher's HTTP client."""
        from baton.client.policy import client_policy  # it imports this module

        issuer = self.issuer
        if issuer is None and self.metadata_url is not None:
            issuer = self.metadata_url.removesuffix(METADATA_PATH)
        if issuer is None:
            raise ClientError("no issuer is known: build the refresher with Refresher.discover")
        return client_policy(issuer, self.client.client_id, http=self._http(), timeout=self.timeout)

    async def aclient_policy(self) -> ClientPolicyInfo:
        return await anyio.to_thread.run_sync(self.client_policy)

    def known_leeway(self) -> float | None:
        """The server's leeway: configured, or advertised; None when unknown."""
        return self.leeway if self.leeway is not None else self.rotation().leeway_seconds

    def retry_window(self) -> float:
        """How long after a refresh token is first sent it may be sent again."""
        return self._window(self.known_leeway())

    def _leeway_unknown(self) -> bool:
        rotation = self._rotation
        return self.leeway is None and (rotation is None or rotation.leeway_seconds is None)

    def _window(self, leeway: float | None) -> float:
        return leeway if leeway is not None and leeway > 0 else self.unknown_leeway_window

    # -- refreshing -----------------------------------------------------------------------------

    def refresh(self, seen: TokenPair | None = None, margin: float = 0.0) -> TokenPair:
        """A pair newer than `seen` (the pair the caller was using), rotating only if no other
        caller already did (and left a pair with more than `margin` seconds to live). Without
        `seen`, always rotates."""
        for _ in range(5):
            try:
                with self._local, self.store.lock() as lease:
                    return self._refresh_locked(seen, margin, lease)
            except LockLost as exc:  # our lease expired: whoever holds it now finishes the job
                self._failed(FailureEvent("lock", str(exc), 0, True))
        raise TokenEndpointError("lost the store's lock five times in a row")

    async def arefresh(self, seen: TokenPair | None = None, margin: float = 0.0) -> TokenPair:
        return await anyio.to_thread.run_sync(self.refresh, seen, margin)

    def _refresh_locked(self, seen: TokenPair | None, margin: float, lease: Lease) -> TokenPair:
        stored = self.pair()
        recovering = stored.exchanging_since is not None
        if (
            not recovering
            and seen is not None
            and stored.access_token != seen.access_token
            and not stored.expires_within(margin, self.clock())
        ):
            return stored  # another thread, task or process rotated while we waited
        if stored.refresh_token is None:
            raise ReauthorizationRequired("the stored pair has no refresh token")
        self._check_bound(stored)
        leeway = self.known_leeway()  # once (it may read the metadata), before the token leaves
        if recovering:
            log.info(
                "finishing an exchange started at %s by a process that died",
                stored.exchanging_since,
            )
            marked = stored
        else:
            now = self.clock()
            marked = stored.marked_exchanging(now, now + self._window(leeway))
            self.store.save(marked, lease)  # the intent, durable before the token leaves
        started = time.monotonic()
        try:
            new, attempts = self._exchange(marked, lease, not recovering, leeway == 0)
        except ReauthorizationRequired as exc:
            self.store.save(TokenPair.tombstone(exc.reason, exc.error), lease)
            raise
        except NeverSent:
            self.store.save(marked.unmarked(), lease)  # the server never saw the token
            raise
        except StillUnresolved:
            raise  # the mark stays: the next call finishes this exchange inside the leeway
        except Refused:
            # A definite error answer other than `invalid_grant` (RFC 6749 §5.2:
            # `invalid_target`, `invalid_request`, `invalid_client`, ...) to the only attempt
            # that may have reached the server: the request was refused before the grant was
            # used, so the refresh token is unused and the mark goes (left, it would end the
            # session as a lost response once the leeway is over).
            self.store.save(marked.unmarked(), lease)
            raise
        if self.bind_pairs:
            # A pair stored before pairs recorded where they were issued learns it now, from the
            # server that just rotated it (the binding `_check_bound` enforces from then on).
            new = replace(
                new,
                issuer=new.issuer or self.issuer,
                token_endpoint=new.token_endpoint or self.client.token_endpoint,
            )
        self.store.save(new, lease)  # persisted before any caller sees it
        self._rotated(
            RotationEvent(
                marked.describe(),
                new.describe(),
                attempts,
                recovered=recovering,
                seconds=time.monotonic() - started,
            )
        )
        return new

    def _check_bound(self, stored: TokenPair) -> None:
        """A refresh token goes only to the server that issued it (RFC 6749 §6, §10.4): never to
        this refresher's endpoint if the pair records another issuer or token endpoint (another
        registration, or a server a malicious resource named, would receive it)."""
        if (
            stored.issuer is not None
            and self.issuer is not None
            and root_issuer(stored.issuer) != root_issuer(self.issuer)
        ):
            raise ClientError(
                f"the stored pair was issued by {stored.issuer!r}: its refresh token is never"
                f" sent to {self.issuer!r}"
            )
        if (
            stored.token_endpoint is not None
            and stored.token_endpoint != self.client.token_endpoint
        ):
            raise ClientError(
                f"the stored pair is refreshed at {stored.token_endpoint!r}, not at"
                f" {self.client.token_endpoint!r}: its refresh token is never sent elsewhere"
            )

    def _exchange(
        self, marked: TokenPair, lease: Lease, fresh: bool = False, no_leeway: bool = False
    ) -> tuple[TokenPair, int]:
        """Sends `marked.refresh_token` until an answer arrives or the retry window closes.

        `fresh`: this call made the mark, so no attempt has been sent yet (otherwise a process
        that died may have sent one). `no_leeway`: the server accepts no retry at all.

        Each attempt gets a third of the time left (at most `timeout`), so that several fit in
        the window; none is sent later than `landing_margin` (at most a fifth of the window)
        before the window ends, so the last one still reaches the server inside its leeway; the
        last one may wait longer for its answer. Once an attempt may have reached the server
        (anything but a failure to connect), the token is never sent after the window: the
        session ends with `ReauthorizationRequired` (a lost response), not a reuse detection.
        """
        assert marked.refresh_token is not None and marked.exchanging_since is not None
        retry_until = marked.retry_until
        if retry_until is None:  # a mark written by an SDK that did not record it
            retry_until = marked.exchanging_since + self.retry_window()
        window = retry_until - marked.exchanging_since
        last_send = retry_until - min(self.landing_margin, window / 5)
        data = {"grant_type": "refresh_token", "refresh_token": marked.refresh_token}
        resource = marked.resource or self.resource
        if resource is not None:
            data["resource"] = resource  # RFC 8707 §2, in a refresh as in the code exchange
        maybe_sent = not fresh
        # While nothing may have reached the server, an outage is not worth the whole window.
        unsent_until = min(last_send, self.clock() + self.timeout)
        if maybe_sent and (no_leeway or self.clock() >= last_send):
            problem = "the exchange was started by a process that did not finish it"
            self._failed(FailureEvent("lost", problem, 0, False))
            raise self._give_up(marked, retry_until, problem, maybe_sent, no_leeway)
        delay = self.backoff_initial
        attempt = 0
        down = False  # an answer said the server is unavailable (`UNAVAILABLE_ERRORS`)
        while True:
            attempt += 1
            lease.renew()
            now = self.clock()
            timeout = max(self.min_attempt_timeout, (last_send - now) / 3)
            if now + timeout + delay / 2 >= last_send:  # no other attempt fits after this one
                timeout = max(timeout, window)
            timeout = min(self.timeout, timeout)
            try:
                response = self.client.post(self._http(), data, timeout)
                result = verdict(response, now, marked)
            except httpx.TransportError as exc:
                result = Retryable(f"{type(exc).__name__}: {exc}".rstrip(": "))
                kind = "transport"
                sent = not isinstance(exc, NOT_SENT)
            except ReauthorizationRequired as exc:
                if maybe_sent and self._leeway_unknown():
                    # A retry refused by a server that did not say its leeway: most likely it
                    # has none, or a shorter one than the SDK assumed.
                    exc = ReauthorizationRequired(
                        f"{exc.reason} (the retry of a refresh whose token response was lost,"
                        f" {now - marked.exchanging_since:.1f} s after it was first sent: a"
                        " server that rotates refresh tokens without a leeway, or with a shorter"
                        " one, cannot recover a lost response)",
                        exc.error,
                    )
                self._failed(FailureEvent("invalid_grant", exc.reason, attempt, False, exc.error))
                raise exc from None
            except TokenEndpointError as exc:
                self._failed(FailureEvent("endpoint", str(exc), attempt, False, exc.error))
                if not maybe_sent and exc.status is not None and 400 <= exc.status < 500:
                    # A 4xx answer to the only attempt that may have reached the server: the
                    # request was refused, the token not rotated.
                    raise Refused(str(exc), exc.error, exc.status) from None
                raise
            else:
                kind = "server"
                sent = response.status_code not in NOT_PROCESSED
                down = down or _unavailable(response)
            if isinstance(result, TokenPair):
                return result, attempt
            maybe_sent = maybe_sent or sent
            pause = delay * (0.5 + random.random() / 2)  # noqa: S311 (jitter, not a secret)
            until = last_send if maybe_sent else unsent_until
            if down and self.clock() + pause >= unsent_until:
                # The server says it is down: not worth the whole window now (see
                # `UNAVAILABLE_ERRORS`); the mark stays for a later call.
                self._failed(FailureEvent(kind, result.problem, attempt, False))
                raise StillUnresolved(
                    f"the authorization server is unavailable ({result.problem}): the refresh"
                    " may have been processed; the next call retries it inside the leeway"
                )
            will_retry = self.clock() + pause < until and not (maybe_sent and no_leeway)
            self._failed(FailureEvent(kind, result.problem, attempt, will_retry))
            if not will_retry:
                raise self._give_up(marked, retry_until, result.problem, maybe_sent, no_leeway)
            self.sleep(pause)
            delay = min(delay * 2, self.backoff_max)

    def _give_up(
        self,
        marked: TokenPair,
        retry_until: float,
        problem: str,
        maybe_sent: bool,
        no_leeway: bool,
    ) -> ClientError:
        """The error that ends an exchange without an answer. If the token may have reached the
        server, the session is over (`ReauthorizationRequired`, kept as a tombstone): presenting
        the token again after the leeway would be reuse, which revokes the grant."""
        assert marked.exchanging_since is not None
        window = retry_until - marked.exchanging_since
        if not maybe_sent:
            return NeverSent(
                f"the authorization server is unavailable ({problem}, for"
                f" {self.clock() - marked.exchanging_since:.0f}s): the refresh token never"
                " reached it, or was not processed, and stays usable; try again later"
            )
        lost = (
            f"the token response to the refresh sent at {_when(marked.exchanging_since)} was lost"
            f" ({problem})"
        )
        if no_leeway:
            return ReauthorizationRequired(
                f"{lost}, and the server rotates refresh tokens without a leeway: a lost response"
                " cannot be recovered from; the SDK does not present the exchanged refresh token"
                " again"
            )
        return ReauthorizationRequired(
            f"{lost}, and no retry was answered before the end of the server's leeway"
            f" ({window:g}s, {_when(retry_until)}): the SDK does not present the exchanged"
            " refresh token again"
        )

    # -- plumbing -------------------------------------------------------------------------------

    def _http(self) -> httpx.Client:
        if self.http is None:
            self.http = httpx.Client(timeout=self.timeout)
        return self.http

    def _rotated(self, event: RotationEvent) -> None:
        if self.hooks.on_rotation is not None:
            _call_hook(self.hooks.on_rotation, event)

    def _failed(self, event: FailureEvent) -> None:
        log.log(logging.INFO if event.will_retry else logging.WARNING, "refresh: %s", event)
        if self.hooks.on_failure is not None:
            _call_hook(self.hooks.on_failure, event)

    def close(self) -> None:
        if self.http is not None:
            self.http.close()


def _call_hook(hook: Callable[[Any], None], event: object) -> None:
    try:
        hook(event)
    except Exception:  # a broken hook must not break a rotation that is already stored
        log.exception("a baton.client hook raised")


def superseded(hooks: Hooks | None, event: SupersededEvent | None) -> None:
    """Tells the app's `on_superseded` hook, if any, about `event`, if any."""
    if event is not None:
        log.info("the access token was superseded: %s", event)
        if hooks is not None and hooks.on_superseded is not None:
            _call_hook(hooks.on_superseded, event)


def _unavailable(response: httpx.Response) -> bool:
    """A 503 `temporarily_unavailable`: the server is down, the exchange unsettled."""
    if response.status_code != 503:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("error") in UNAVAILABLE_ERRORS


def root_issuer(issuer: str) -> str:
    """`issuer` in the form issuers are compared in: `scheme://authority/` as
    `scheme://authority`. RFC 8414 §3.3 compares issuers as strings, and a root issuer with and
    without its slash name the same server (the MCP SDK's `issuers_match`); pydantic renders a
    path-less URL (the protected resource metadata's `authorization_servers`, recorded on the
    SDK's client information) with the slash."""
    parts = urlsplit(issuer)
    if issuer == f"{parts.scheme}://{parts.netloc}/":
        return issuer[:-1]
    return issuer


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


def _rotation_of(document: Any) -> RotationInfo:
    rotation = document.get("refresh_token_rotation") if isinstance(document, dict) else None
    if not isinstance(rotation, dict):
        return RotationInfo()
    policy = rotation.get("retry_policy")
    leeway = rotation.get("leeway_seconds")
    if policy == "strict":
        leeway = 0
    return RotationInfo(
        policy if isinstance(policy, str) else None,
        float(leeway) if isinstance(leeway, int | float) and not isinstance(leeway, bool) else None,
    )
