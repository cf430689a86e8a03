"""A safe outbound GET for URLs an untrusted party chose: client ID metadata documents, a
client's `jwks_uri`.

Server-side request forgery is the risk (draft-ietf-oauth-client-id-metadata-document §8.6:
"Authorization servers MUST NOT fetch a Client ID Metadata Document URL or any URLs contained
within a Client ID Metadata Document that resolve to special-use IP addresses as defined in
RFC 6890"; the same holds for a client's `jwks_uri`). What `fetch()` does about it:

- https only; plain http only to a loopback address and only while `allow_private` (development);
- no credentials in the URL;
- the host is resolved once, on this module's own small pool of threads (`Resolver`), and EVERY
  address it resolves to must
  be public (`refusal()`), or the fetch is refused; the connection then goes to one of those
  checked addresses (`pinned`), never through a second lookup that a DNS-rebinding
  attacker could answer differently. TLS SNI, certificate verification and the Host header still
  use the name (httpcore takes them from the URL, not from the address connected to). A lookup
  cannot be cancelled (getaddrinfo blocks its thread until the resolver gives up), so a name
  whose DNS never answers holds a thread past the time limit: untrusted names get their own
  `LOOKUP_THREADS` threads, never the event loop's default executor that every other lookup of
  the process (upstream logins, the database) shares; a lookup waits for a free thread only
  within the fetch's time limit, and one that every caller gave up on is dropped before it
  takes a thread; a name that failed, or that kept its thread without an answer for most of a
  fetch's time limit, is not looked up again for `NEGATIVE_TTL` seconds (time spent waiting for
  a thread held by other names does not count), and one being looked up is not asked twice at
  once;
- a total time limit, a size cap enforced while the body streams in (and from Content-Length
  before it), no content decoding (`Accept-Encoding: identity`: no decompression bomb);
- no redirect is followed: a 3xx is an error naming where it pointed;
- the response must be JSON (`Content-Type: application/json` or `application/*+json`).

The result carries the HTTP caching information (RFC 9111) for the caller's cache.

`post()` sends to such a URL (a client's `notify_url`, issue 28) under the same address rules,
pinning, redirect refusal and total time limit, and returns the answer's status without reading
its body.

httpx and httpcore are imported by the functions that connect, on the first fetch or post: a
worker that never fetches does not load them (`pinned` holds the connection to checked addresses).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio

from baton.core.addresses import IPAddress, refusal

if TYPE_CHECKING:
    import httpx

DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_BYTES = 5 * 1024


class FetchError(Exception):
    """The URL could not be used; `reason` says why in words an operator can act on, without
    the response body. It names addresses and connection failures: log it, do not show it to
    whoever chose the URL (it would map the server's network for them).

    `unreachable`: no answer was had (the name did not resolve, the connection or TLS failed,
    no answer in time, an HTTP 5xx or 429): perhaps a passing outage, unlike a definite answer
    (a 404, not JSON, too large, a redirect) or a refusal (a private address)."""

    def __init__(self, url: str, reason: str, *, unreachable: bool = False) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason
        self.unreachable = unreachable


@dataclass(frozen=True)
class Fetched:
    """A 200 response's body and what RFC 9111 says about how long it may be reused."""

    url: str
    body: bytes
    content_type: str
    # Cache-Control directives (RFC 9111 §5.2.2).
    max_age: int | None
    no_store: bool
    no_cache: bool
    # Expires and Date (RFC 9111 §5.3, RFC 9110 §6.6.1), Age (RFC 9111 §5.1).
    expires: datetime | None
    date: datetime | None
    age: int

    def lifetime(self, *, default: int, floor: int, ceiling: int) -> int:
        """Seconds this response may be reused, from now: 0 when it must not be (no-store,
        no-cache, max-age=0, already stale); otherwise its freshness lifetime (max-age, else
        Expires - Date, RFC 9111 §4.2.1) minus its Age (§4.2.3), or `default` without either,
        held between `floor` (a positive lifetime is never shorter: a document cannot make the
        server fetch it on every request by saying max-age=1) and `ceiling` (a document is
        re-read at least this often)."""
        if self.no_store or self.no_cache:
            return 0
        if self.max_age is not None:
            remaining = self.max_age - self.age
        elif self.expires is not None:
            # §4.2.1: "the Expires header field value minus the value of the Date header
            # field"; an invalid Expires (parsed as None) or one in the past is already stale.
            origin_date = self.date or datetime.now(UTC)
            remaining = int((self.expires - origin_date).total_seconds()) - self.age
        else:
            remaining = default
        if remaining <= 0:
            return 0
        return max(floor, min(ceiling, remaining))


# Threads for untrusted lookups; a lookup beyond them waits (within the fetch's time limit)
# rather than queue behind names that may never answer.
LOOKUP_THREADS = 4
# Seconds a name whose lookup failed (or did not answer in time) is not looked up again.
NEGATIVE_TTL = 60.0
_NEGATIVE_LIMIT = 4096  # names remembered as failed; past this, start again
_WAIT_STEP = 0.02  # seconds between looks for a free lookup thread


class LookupBusy(OSError):
    """Every lookup thread is held by a lookup still under way."""


class _Flight:
    """One lookup of a name and port, shared by every caller asking for it meanwhile."""

    task: asyncio.Future[list[tuple[Any, ...]]]  # set by `Resolver._start`

    def __init__(self) -> None:
        self.waiters = 0  # callers awaiting it now
        self.started: float | None = None  # monotonic time it got a thread, None while queued


class Resolver:
    """getaddrinfo for names an untrusted party chose, on `threads` threads of its own.

    `free` counts the threads not running a lookup; it is given back by the thread itself when
    getaddrinfo returns, not when the awaiting request gives up, so a name that hangs keeps its
    thread counted until it really is free again. A lookup under way is shared by every caller
    asking for the same name and port (in one event loop); one still waiting for a thread is
    dropped as soon as no caller awaits it any more (its callers' time limits ended), so the
    threads do not go to names nobody asks for once an attack stops.

    Failures are remembered per name for `negative_ttl` seconds (monotonic clock): a lookup
    that failed, and a lookup that had no answer when a caller's time limit ended, but only if
    it had run on its thread for at least half that caller's wait. The time a caller spent
    waiting for a free thread (held by other names, perhaps an attacker's) is not the name's
    fault: were it remembered, anyone holding the threads could have a legitimate name refused
    for `negative_ttl` seconds. A lookup that does answer, however late, clears its name."""

    def __init__(self, threads: int = LOOKUP_THREADS, negative_ttl: float = NEGATIVE_TTL) -> None:
        self.threads = threads
        self.negative_ttl = negative_ttl
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="baton-untrusted-dns")
        self._free = threading.BoundedSemaphore(threads)
        self._failed: dict[str, tuple[float, str]] = {}
        self._flights: dict[tuple[str, int], _Flight] = {}
        # Seconds a lookup waits for a free thread (no caller waits longer than its own limit,
        # and a lookup no caller awaits any more stops waiting at once; this is a backstop).
        self.wait_limit = DEFAULT_TIMEOUT
        self.lookups = 0  # getaddrinfo calls started (for tests)

    @staticmethod
    def system(host: str, port: int) -> list[tuple[Any, ...]]:
        """The system's blocking lookup (a test may replace it on the instance)."""
        return list(
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        )

    def _lookup(self, host: str, port: int) -> list[tuple[Any, ...]]:
        try:
            return self.system(host, port)
        finally:
            self._free.release()

    def _remember_failure(self, host: str, why: str) -> None:
        if len(self._failed) >= _NEGATIVE_LIMIT:
            self._failed.clear()
        self._failed[host] = (time.monotonic() + self.negative_ttl, why)

    async def getaddrinfo(self, host: str, port: int) -> list[tuple[Any, ...]]:
        """getaddrinfo's answer, or OSError (`LookupBusy` while every thread is held). The
        caller bounds the wait (`anyio.fail_after`); a wait cut short while the lookup itself
        ran for most of it is remembered as a failure of the name (see the class)."""
        failed = self._failed.get(host)
        if failed is not None:
            if failed[0] > time.monotonic():
                raise OSError(failed[1])
            del self._failed[host]
        key = (host, port)
        flight = self._flights.get(key)
        if flight is None or flight.task.get_loop() is not asyncio.get_running_loop():
            flight = self._start(host, port)
        task = flight.task
        asked = time.monotonic()
        flight.waiters += 1
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # Out of time (the caller's limit). The name is not tried again for a while, so
            # that requests naming it do not each hold a thread, only if its lookup held one
            # for at least half of this caller's wait: not for time spent queued behind other
            # names.
            now = time.monotonic()
            started = flight.started
            if not task.done() and started is not None and now - started >= (now - asked) / 2:
                self._remember_failure(host, "no answer in time")
            raise
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and flight.started is None and not task.done():
                # Nobody awaits it: it does not take a thread later. Out of the map first, so
                # that a caller asking for the name next starts a lookup of its own rather
                # than join one being cancelled.
                self._land(key, flight)
                task.cancel()

    def _start(self, host: str, port: int) -> _Flight:
        flight = _Flight()
        flight.task = asyncio.ensure_future(self._run(host, port, flight))
        key = (host, port)
        self._flights[key] = flight
        flight.task.add_done_callback(lambda _: self._land(key, flight))
        return flight

    def _land(self, key: tuple[str, int], flight: _Flight) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]

    async def _run(self, host: str, port: int, flight: _Flight) -> list[tuple[Any, ...]]:
        waited = 0.0
        while not self._free.acquire(blocking=False):
            if waited >= self.wait_limit:
                raise LookupBusy("too many host names are being looked up; try again later")
            await asyncio.sleep(_WAIT_STEP)
            waited += _WAIT_STEP
        # Acquired and marked in one step (no await between): a caller leaving sees either a
        # queued lookup it may cancel or a running one it must not.
        flight.started = time.monotonic()
        self.lookups += 1
        loop = asyncio.get_running_loop()
        try:
            found = await loop.run_in_executor(self._executor, self._lookup, host, port)
        except OSError as exc:
            self._remember_failure(host, str(exc) or type(exc).__name__)
            raise
        # It answers: a failure remembered while it ran (a caller's limit ended) was wrong.
        self._failed.pop(host, None)
        return found


K = TypeVar("K")
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """One run of a fetch per key at a time: concurrent callers for a key share it
    (`ClientDocuments` by document URL, `ClientKeys` by `jwks_uri`), so a burst of requests
    naming one URL costs one fetch. Only the runs under way are held."""

    def __init__(self) -> None:
        self._flights: dict[K, asyncio.Future[V]] = {}

    async def run(self, key: K, work: Callable[[], Awaitable[V]]) -> V:
        """`work()`'s outcome, from the run under way for `key` if there is one (in this
        event loop), else from a new one."""
        flight = self._flights.get(key)
        if flight is None or flight.get_loop() is not asyncio.get_running_loop():
            flight = asyncio.ensure_future(work())
            self._flights[key] = flight
            flight.add_done_callback(lambda done: self._land(key, done))
        # Shielded: one caller giving up (its request cancelled) does not cancel the others'.
        return await asyncio.shield(flight)

    def _land(self, key: K, done: asyncio.Future[V]) -> None:
        if self._flights.get(key) is done:
            del self._flights[key]
        if not done.cancelled():
            done.exception()  # retrieved: a failure nobody awaited any more is not logged


_resolver = Resolver()


def resolver() -> Resolver:
    """The process's resolver of untrusted names."""
    return _resolver


async def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses `host` resolves to through the untrusted names' `Resolver` (an IP literal
    is itself), de-duplicated in the resolver's order."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    infos = await _resolver.getaddrinfo(host, port)
    found: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        # IPv6 sockaddrs may carry a zone ("fe80::1%eth0"): refused as link-local anyway.
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None


def _header_values(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> list[str]:
    return [v.decode("latin-1") for k, v in headers if k.lower() == name]


def _http_date(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _seconds(value: str | None) -> int | None:
    """A delta-seconds value (RFC 9111 §1.2.2): digits only; anything else is None."""
    if value is None:
        return None
    value = value.strip().strip('"')
    return int(value) if value.isdigit() else None


def _cache_control(values: Iterable[str]) -> dict[str, str | None]:
    directives: dict[str, str | None] = {}
    for value in values:
        for part in value.split(","):
            name, _, argument = part.strip().partition("=")
            if name:
                directives.setdefault(name.strip().lower(), argument or None)
    return directives


def _caching(
    url: str, body: bytes, content_type: str, headers: Sequence[tuple[bytes, bytes]]
) -> Fetched:
    directives = _cache_control(_header_values(headers, b"cache-control"))
    max_age: int | None = None
    if "max-age" in directives:
        # An invalid max-age is read the most restrictive way (RFC 9111 §4.2.1 on
        # conflicting or duplicate directives): stale, 0.
        max_age = _seconds(directives["max-age"])
        max_age = 0 if max_age is None else max_age
    expires_value = _header(headers, b"expires")
    expires = _http_date(expires_value)
    if expires_value is not None and expires is None:
        # §5.3: "A cache recipient MUST interpret invalid date formats ... as representing a
        # time in the past (i.e., 'already expired')."
        expires = datetime(1970, 1, 1, tzinfo=UTC)
    return Fetched(
        url=url,
        body=body,
        content_type=content_type,
        max_age=max_age,
        no_store="no-store" in directives,
        no_cache="no-cache" in directives,
        expires=expires,
        date=_http_date(_header(headers, b"date")),
        age=_seconds(_header(headers, b"age")) or 0,
    )


def default_ssl_context() -> ssl.SSLContext:
    """The trust store httpx uses everywhere else in Baton (certifi, or `SSL_CERT_FILE` /
    `SSL_CERT_DIR` when set)."""
    import httpx  # on first use: see the module's docstring

    return httpx.create_ssl_context()


def _target(url: str, allow_private: bool) -> tuple[httpx.URL, str, int]:
    """`url` parsed, its host (ASCII) and port, or `FetchError` for a URL never used: not
    https (http only while `allow_private`), with credentials, without a host."""
    import httpx  # on first use: see the module's docstring

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise FetchError(url, f"not a valid URL ({exc})") from None
    if parsed.scheme not in ("https", "http"):
        raise FetchError(url, "only https URLs are fetched")
    if parsed.scheme == "http" and not allow_private:
        raise FetchError(url, "only https URLs are fetched")
    if parsed.userinfo:
        raise FetchError(url, "a URL with credentials is not fetched")
    # The ASCII (IDNA) form is what is resolved; SNI and Host are sent from the URL by httpcore.
    host = parsed.raw_host.decode("ascii")
    if not host:
        raise FetchError(url, "the URL has no host")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return parsed, host, port


async def _checked_addresses(
    url: str, parsed: httpx.URL, host: str, port: int, allow_private: bool
) -> list[IPAddress]:
    """The addresses `host` resolves to, once, every one of them public (unless
    `allow_private`), and plain http only to loopback: else `FetchError`."""
    try:
        addresses = await resolve(host, port)
    except (OSError, UnicodeError) as exc:
        raise FetchError(
            url, f"the host {host} could not be resolved ({exc})", unreachable=True
        ) from None
    if not addresses:
        raise FetchError(url, f"the host {host} has no address")
    if not allow_private:
        for address in addresses:
            why = refusal(address)
            if why:
                raise FetchError(url, f"the host {host} resolves to {why}; it is not fetched")
    if parsed.scheme == "http" and not (allow_private and all(a.is_loopback for a in addresses)):
        raise FetchError(url, "only https URLs are fetched")
    return addresses


async def fetch(
    url: str,
    *,
    allow_private: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
    ssl_context: ssl.SSLContext | None = None,
    user_agent: str = "Baton",
) -> Fetched:
    """GET `url` as JSON under the rules of this module's docstring; raises `FetchError`."""
    parsed, host, port = _target(url, allow_private)
    try:
        with anyio.fail_after(timeout):
            return await _fetch(
                url,
                parsed,
                host,
                port,
                allow_private=allow_private,
                max_bytes=max_bytes,
                ssl_context=ssl_context,
                user_agent=user_agent,
            )
    except TimeoutError:
        raise FetchError(
            url, f"no complete answer within {timeout:g} seconds", unreachable=True
        ) from None


async def post(
    url: str,
    body: bytes,
    *,
    content_type: str,
    headers: Sequence[tuple[str, str]] = (),
    allow_private: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    ssl_context: ssl.SSLContext | None = None,
    user_agent: str = "Baton",
) -> int:
    """POSTs `body` to a URL an untrusted party chose (a client's `notify_url`, issue 28)
    under this module's rules: https (http only to loopback while `allow_private`), every
    address the name resolves to public, the connection to a checked address, no redirect
    followed (a 3xx is returned as it is), `timeout` for the whole exchange. Returns the
    answer's status as soon as its head is in: the body is never read, so a receiver can
    neither make the server buffer it nor hold the sender by trickling it. Raises
    `FetchError` (a refused address: before any connection)."""
    import httpcore  # on first use: see the module's docstring

    from baton.server.runtime.pinned import pinned_pool

    parsed, host, port = _target(url, allow_private)
    sent = [
        (b"Content-Type", content_type.encode("latin-1")),
        (b"Accept-Encoding", b"identity"),
        (b"User-Agent", user_agent.encode("ascii", "replace")),
        *((name.encode("latin-1"), value.encode("latin-1")) for name, value in headers),
    ]
    try:
        with anyio.fail_after(timeout):
            addresses = await _checked_addresses(url, parsed, host, port, allow_private)
            try:
                pool = pinned_pool(addresses, ssl_context or default_ssl_context())
                async with (
                    pool,
                    pool.stream("POST", str(parsed), headers=sent, content=body) as response,
                ):
                    return response.status
            except httpcore.TimeoutException:
                raise TimeoutError from None
            except (
                httpcore.NetworkError,
                httpcore.ProtocolError,
                httpcore.UnsupportedProtocol,
            ) as exc:
                raise FetchError(
                    url, f"the connection failed ({exc or type(exc).__name__})", unreachable=True
                ) from None
            except ssl.SSLError as exc:
                raise FetchError(url, f"TLS failed ({exc})", unreachable=True) from None
    except TimeoutError:
        raise FetchError(url, f"no answer within {timeout:g} seconds", unreachable=True) from None


async def _fetch(
    url: str,
    parsed: httpx.URL,
    host: str,
    port: int,
    *,
    allow_private: bool,
    max_bytes: int,
    ssl_context: ssl.SSLContext | None,
    user_agent: str,
) -> Fetched:
    import httpcore  # on first use: see the module's docstring

    from baton.server.runtime.pinned import pinned_pool

    addresses = await _checked_addresses(url, parsed, host, port, allow_private)
    pool = pinned_pool(addresses, ssl_context or default_ssl_context())
    headers = [
        (b"Accept", b"application/json"),
        (b"Accept-Encoding", b"identity"),
        (b"User-Agent", user_agent.encode("ascii", "replace")),
    ]
    try:
        async with pool, pool.stream("GET", str(parsed), headers=headers) as response:
            status = response.status
            response_headers = list(response.headers)
            if 300 <= status < 400:
                location = _header(response_headers, b"location") or "nowhere"
                raise FetchError(
                    url,
                    f"it redirects (HTTP {status}) to {location}; redirects are not followed",
                )
            if status != 200:
                raise FetchError(
                    url,
                    f"it answered HTTP {status}, not 200",
                    unreachable=status >= 500 or status == 429,
                )
            content_type = _header(response_headers, b"content-type") or ""
            if not _is_json(content_type):
                raise FetchError(
                    url,
                    f"its content type is {content_type or 'missing'}, not application/json",
                )
            declared = _seconds(_header(response_headers, b"content-length"))
            if declared is not None and declared > max_bytes:
                raise FetchError(url, f"it is larger than {max_bytes} bytes")
            body = bytearray()
            async for chunk in response.aiter_stream():
                body += chunk
                if len(body) > max_bytes:
                    raise FetchError(url, f"it is larger than {max_bytes} bytes")
    except httpcore.TimeoutException:
        raise TimeoutError from None
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
        raise FetchError(
            url, f"the connection failed ({exc or type(exc).__name__})", unreachable=True
        ) from None
    except ssl.SSLError as exc:
        raise FetchError(url, f"TLS failed ({exc})", unreachable=True) from None
    return _caching(url, bytes(body), content_type, response_headers)
