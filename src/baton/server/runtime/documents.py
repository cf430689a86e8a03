"""Client ID metadata documents (draft-ietf-oauth-client-id-metadata-document): a `client_id`
that is an https URL names a JSON document, at that URL, that registers its client.

`ClientDocuments.client(client_id)` is what `/authorize` asks instead of the store alone:

- an id the store holds for a client no document made (an operator's, a dynamic
  registration's) is that client, whatever it looks like: a document never overwrites it;
- a document client whose row is still fresh (`document_expires_at`) is used without fetching,
  unless the operator since denied its host (refused), or narrowed `dynamic_client_scopes` or
  `dynamic_client_resources` below what the row holds (fetched again, which narrows it); one an
  operator disabled stays disabled (its document is not even fetched);
- otherwise, while `client_metadata_documents` is on, the URL is checked (§3 "Client
  Identifier URL"), the operator's denied hosts are refused without a fetch, the document is
  fetched (`baton.server.runtime.fetching`: SSRF-hardened (§8.6), 5 KB, no redirects (§5)),
  validated
  (`client_id` equal to the URL, §4; RFC 7591 metadata through `baton.core.registration`; no
  secret, §4.1) and stored as the client's row, cached for as long as its HTTP cache headers
  say, held between `FLOOR` and `CEILING` (§5.2). Concurrent first requests for one URL share
  one fetch.

A document that cannot be used raises `DocumentError` with a reason to show: the request's
redirect URI is not trusted yet (it comes from the document), so `/authorize` shows a page. What
is wrong with the document's own content is said; why it could not be fetched (its host's
addresses, a refused connection, a TLS failure, a timeout) is logged and the page says only
"it could not be fetched": whoever chose the URL would otherwise learn the server's internal
names and probe its network's ports.
Nothing of a failed fetch or an invalid document is cached (§5.2: "MUST NOT cache error
responses ... documents which are invalid or malformed"): the next request fetches again.

A client whose document later becomes invalid (or unreachable) is refused at `/authorize` until
it is valid again. At `/token`, `/introspect` and `/revoke`, `ClientDocuments.authenticating`
refreshes a document client's expired row the same way (see there): an invalid document or a
denied host is refused; an unreachable document keeps a public client's stored row (refusing
refreshes over a document host's outage would strand every user), but not a private_key_jwt
client's, whose keys it can no longer confirm. There a document that forbids reuse (no-store,
no-cache, max-age=0) is still reused for `TOKEN_REUSE` seconds after this process fetched it:
anyone can name a client at `/revoke`, and a fetch per request would be theirs to order.

There is no in-process cache beyond the row: `/authorize` reads the client's row on every
request anyway (a client disabled in any process is refused at once), so a copy in memory
would save no read and would only add staleness. The single-flight map holds only the fetches
under way.
"""

from __future__ import annotations

import functools
import json
import ssl
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from baton.config import Settings
from baton.core.clock import Clock
from baton.core.registration import (
    PRIVATE_KEY_JWT,
    RegistrationError,
    RegistrationPolicy,
    client_metadata,
    dynamic_scopes,
)
from baton.logs import get_logger
from baton.server.runtime import fetching
from baton.store.base import CLIENT_ID_LENGTH, Client, RegisteredVia

# Cache lifetime bounds (seconds): a document is fetched at most once per FLOOR (unless its
# headers forbid reuse; at the token endpoints even then, per process: `TOKEN_REUSE`) and at
# least once per CEILING; DEFAULT without cache headers.
FLOOR = 5 * 60
# Seconds a document this process fetched is reused at /token, /introspect and /revoke
# (`ClientDocuments.authenticating`) even when its headers say it must not be (no-store,
# no-cache, max-age=0): anyone can name a client there (a junk token at /revoke), and a fetch
# per request would let them make this server fetch the document at will.
TOKEN_REUSE = FLOOR
CEILING = 24 * 60 * 60
DEFAULT = FLOOR
# The draft's "recommended maximum size to read is 5 kilobytes" (§8.7).
MAX_BYTES = 5 * 1024
TIMEOUT = 5.0
# Seconds after a document could not be fetched for want of an answer during which the token
# endpoint does not try again (`authenticating`): each of its requests would otherwise wait
# for the time limit while the document's host is down.
RETRY_UNREACHABLE = 60
# URLs remembered as unreachable, and as fetched lately; past this, start again.
_UNREACHABLE_LIMIT = 1024
# The URL is the client's id: at most what `clients.id` holds (its widening waits for a later
# release, `baton.store.schema.CLIENT_ID_LENGTH`).
MAX_URL = CLIENT_ID_LENGTH
# JWK members that only a private (or symmetric) key has (RFC 7518 §6.2.2, §6.3.2, §6.4.1):
# §4.1 "private key material MUST NOT be included".
_PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
# What a page says of a document that could not be fetched (the details are logged).
NOT_FETCHED = "it could not be fetched"
INVALID = "it is not a valid client metadata document"

log = get_logger("baton.documents")


class DocumentError(Exception):
    """The document at `url` cannot be used; `reason` says why (English, technical: shown
    inside a translated sentence, as the redirect URI rule's problems are; never a fetch's
    details). `unreachable`: it could not be fetched for want of an answer
    (`fetching.FetchError.unreachable`), perhaps a passing outage."""

    def __init__(self, url: str, reason: str, *, unreachable: bool = False) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason
        self.unreachable = unreachable


class DocumentStore(Protocol):
    """What metadata documents ask of the store (`baton.store.sql.documents`)."""

    async def get_client(self, client_id: str) -> Client | None: ...

    async def registered_resources(self) -> frozenset[str]:
        """Every registered resource server's `resource_uri` (RFC 8707)."""
        ...

    async def save_document_client(self, client: Client) -> Client | None:
        """Stores a document's client (a new row, or the document's columns of its row); None
        when the id is held by a client no document made."""
        ...


def looks_like_document_url(client_id: str) -> bool:
    """A client id this server would fetch (case-insensitive scheme, RFC 3986 §3.1)."""
    return client_id[:8].lower() == "https://"


def url_problem(url: str) -> str | None:
    """Why `url` is not a Client Identifier URL (draft §3), or None."""
    if len(url) > MAX_URL:
        return f"it is longer than {MAX_URL} characters, the longest client id this server holds"
    if not url.isascii() or not url.isprintable() or " " in url:
        return "it must be printable ASCII without spaces"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "it is not a valid URL"
    del port
    # §3: "MUST use the https URL scheme", "MUST NOT contain a userinfo component",
    # "MUST contain a path component", "MUST NOT contain single-dot or double-dot path
    # components", "MUST NOT contain a fragment component".
    if parts.scheme != "https":
        return "it must use the https scheme"
    if "@" in parts.netloc:
        return "it must not contain user information"
    if not parts.hostname:
        return "it has no host"
    if "#" in url:
        return "it must not contain a fragment"
    if not parts.path:
        return "it must contain a path"
    if any(unquote(segment) in (".", "..") for segment in parts.path.split("/")):
        return "its path must not contain . or .. segments"
    return None


def host_of(url: str) -> str:
    """The host a person is shown: lower case, without a trailing dot or the port."""
    return (urlsplit(url).hostname or "").rstrip(".").lower()


def _ascii_pattern(pattern: str) -> str:
    """A host pattern as the URLs it is matched against spell it: an internationalized name
    in its IDNA (punycode) form, label by label (`*` stays); lower case."""
    labels = []
    for label in pattern.strip().rstrip(".").split("."):
        try:
            labels.append(label.encode("idna").decode("ascii") if label else label)
        except UnicodeError:
            labels.append(label)  # not a name IDNA can spell: it matches nothing it cannot
    return ".".join(labels).lower()


@functools.lru_cache(maxsize=16)
def _ascii_patterns(patterns: tuple[str, ...]) -> tuple[str, ...]:
    """`patterns` as `_ascii_pattern` spells them, blanks left out; computed once per setting
    (the denied hosts are matched on every token request of a document client)."""
    return tuple(spelled for pattern in patterns if (spelled := _ascii_pattern(pattern)))


def host_matches(host: str, patterns: tuple[str, ...]) -> bool:
    """`host` (from an ASCII URL) is one of `patterns`: an exact name, or `*.example.com` for
    any name under example.com (not example.com itself). A pattern written in Unicode
    (`bücher.example`) matches its IDNA form (`xn--bcher-kva.example`)."""
    host = host.rstrip(".").lower()
    for pattern in _ascii_patterns(tuple(patterns)):
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


def document_client(
    url: str, document: object, policy: RegistrationPolicy, expires_at: int, now: int
) -> Client:
    """The client `document` (decoded JSON, fetched from `url`) registers; `DocumentError` when
    it cannot."""
    if not isinstance(document, dict):
        raise DocumentError(url, f"{INVALID}: it is not a JSON object")
    # §4: "MUST contain a client_id property whose value MUST match the Client Identifier URL
    # ... using simple string comparison".
    if document.get("client_id") != url:
        raise DocumentError(url, f"{INVALID}: its client_id does not match its URL")
    # §4.1: "the client_secret and client_secret_expires_at properties MUST NOT be used".
    for member in ("client_secret", "client_secret_expires_at"):
        if member in document:
            raise DocumentError(url, f"{INVALID}: it must not contain {member}")
    _refuse_private_keys(url, document.get("jwks"))
    if not document.get("redirect_uris"):
        raise DocumentError(url, f"{INVALID}: it has no redirect_uris")
    try:
        metadata = client_metadata(document, policy)
    except RegistrationError as exc:
        raise DocumentError(url, f"{INVALID}: {exc.description}") from None
    return metadata.applied_to(
        Client(
            id=url,
            name="",
            secret_digest=None,
            is_public=metadata.is_public,  # `none`; `private_key_jwt` authenticates by its keys
            is_resource_server=False,
            redirect_uris=(),
            scope="",
            created_at=now,
            registered_via=RegisteredVia.DOCUMENT,
            document_expires_at=expires_at,
        ),
        metadata.client_name or host_of(url),
    )


def _refuse_private_keys(url: str, jwks: Any) -> None:
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if isinstance(keys, list) and any(
        isinstance(key, dict) and _PRIVATE_JWK_MEMBERS & key.keys() for key in keys
    ):
        raise DocumentError(url, f"{INVALID}: its jwks holds private key material")


async def dynamic_policy(
    settings: Settings,
    oidc: bool,
    store: DocumentStore,
    *,
    document: bool,
    vouched: bool = False,
) -> RegistrationPolicy:
    """What a client no operator registered may get, a metadata document's (`document`) or a
    dynamic registration's: `--dynamic-client-scopes` and, while OpenID Connect is on, its scopes,
    less any `admin:*` one (`dynamic_scopes`); `--dynamic-client-resources`, else every
    registered resource server; `client_credentials` only when `vouched` (registered with the
    initial access token), never for a document."""
    resources = tuple(settings.dynamic_client_resources)
    if not resources:
        resources = tuple(sorted(await store.registered_resources()))
    return RegistrationPolicy(
        scopes=dynamic_scopes(settings.dynamic_client_scopes, oidc),
        resources=resources,
        document=document,
        machine_grants=vouched and not document,
    )


class ClientDocuments:
    """The clients of client ID metadata documents, for `/authorize`."""

    def __init__(
        self,
        settings: Settings,
        store: DocumentStore,
        clock: Clock,
        forget: Callable[[str], None] | None = None,
        *,
        oidc: bool = False,
    ) -> None:
        self.settings = settings
        self.oidc = oidc
        self.store = store
        self.clock = clock
        self.forget = forget
        # For tests and development: the trust store and the time limit of a fetch.
        self.ssl_context: ssl.SSLContext | None = None
        self.timeout = TIMEOUT
        self._flights: fetching.SingleFlight[str, Client] = fetching.SingleFlight()
        # Until when (clock seconds) `authenticating` does not fetch a URL found unreachable.
        self._unreachable: dict[str, int] = {}
        # When (clock seconds) this process last fetched a URL's document and stored its row.
        self._fetched_at: dict[str, int] = {}
        self.fetches = 0  # documents fetched by this process (for tests and metrics)

    @property
    def scopes(self) -> frozenset[str]:
        """What a document's client may be granted (`baton.core.registration.dynamic_scopes`,
        as for a dynamic registration): the operator's scopes, OpenID Connect's while it is on."""
        return dynamic_scopes(self.settings.dynamic_client_scopes, self.oidc)

    def trusted(self, client: Client) -> bool:
        """The operator vouches for this document client's host
        (`client_documents_trusted_hosts`)."""
        return client.registered_via == RegisteredVia.DOCUMENT and host_matches(
            host_of(client.id), self.settings.client_documents_trusted_hosts
        )

    async def client(self, client_id: str) -> Client | None:
        """The client `client_id` names (disabled or not: the caller decides), fetching its
        metadata document when it is a document's and its copy is stale; None when unknown.
        Raises `DocumentError` when the document cannot be used."""
        existing = await self.store.get_client(client_id)
        if existing is not None and existing.registered_via != RegisteredVia.DOCUMENT:
            return existing
        if not looks_like_document_url(client_id):
            return existing
        if not self.settings.client_metadata_documents:
            return None  # documents turned off: their clients are unknown here
        if existing is not None and existing.disabled_at is not None:
            return existing
        self._refuse_denied(client_id)  # on every use: a host denied since is refused at once
        if existing is not None and not self._stale(existing):
            return existing
        return await self._single_flight(client_id)

    def _refuse_denied(self, url: str) -> None:
        host = host_of(url)
        if host_matches(host, self.settings.client_documents_denied_hosts):
            raise DocumentError(url, f"this server does not accept clients from {host}")

    def _stale(self, client: Client) -> bool:
        """The row must be fetched again: its document expired, or it holds a scope or a
        resource the operator no longer lets document clients have (a fetch narrows it)."""
        return self._expired(client) or self._too_wide(client)

    def _expired(self, client: Client) -> bool:
        return (client.document_expires_at or 0) <= self.clock.now()

    def _too_wide(self, client: Client) -> bool:
        if not set(client.scope.split()) <= self.scopes:
            return True
        resources = self.settings.dynamic_client_resources
        return bool(resources) and not set(client.allowed_resources) <= set(resources)

    async def authenticating(self, client: Client) -> Client:
        """The row to authenticate document client `client` (as the store holds it) with at
        `/token`, `/introspect` or `/revoke`; any other client is returned as it is, with no
        work. Raises `DocumentError` when the client must be refused.

        - its host is denied (`client_documents_denied_hosts`, checked on every use): refused;
        - its row is fresh: used as it is (no fetch);
        - its row expired, but this process fetched its document less than `TOKEN_REUSE`
          seconds ago (it forbade reuse: no-store, no-cache, max-age=0; any other document's
          row lasts at least `FLOOR`): used as it is (no fetch). At `/authorize` (`client`)
          such a document is fetched on every request, as its headers ask: that is where a
          person is shown what it says now; here a fetch per request would be anyone's to
          trigger (a junk token at `/revoke` names the client) and would make refresh-token
          requests pay for an outbound fetch each;
        - its row is stale (`_stale`): its document is fetched again (one fetch shared by
          every request, `/authorize`'s too) and the refreshed row used. A document now
          invalid, or whose URL answered with something that is not one (a 404), is refused.
          A document that could not be fetched for want of an answer (no DNS, no connection,
          a timeout, a 5xx), or any document while `client_metadata_documents` is off (nothing
          is fetched then), leaves the stored row in use for a public client: it proves nothing
          at these endpoints but its grants, and a CDN's outage must not strand its users. A
          private_key_jwt client is refused then: its `jwks_uri` (and whether it still
          authenticates that way) comes from the document, which can no longer be confirmed.
          A URL found unreachable is not tried again here for `RETRY_UNREACHABLE` seconds
          (the same outcome meanwhile): each request would otherwise wait out the time limit.
        """
        if client.registered_via != RegisteredVia.DOCUMENT:
            return client
        self._refuse_denied(client.id)
        if not self._stale(client):
            return client
        now = self.clock.now()
        if self._reusable(client, now):
            return client
        if self._unreachable.get(client.id, 0) > now:
            failure = DocumentError(client.id, NOT_FETCHED, unreachable=True)
        elif self.settings.client_metadata_documents:
            try:
                return await self._single_flight(client.id)
            except DocumentError as exc:
                if not exc.unreachable:
                    raise
                failure = exc
                if len(self._unreachable) >= _UNREACHABLE_LIMIT:
                    self._unreachable.clear()
                self._unreachable[client.id] = now + RETRY_UNREACHABLE
        else:
            failure = DocumentError(client.id, "client metadata documents are turned off")
        if client.token_endpoint_auth_method == PRIVATE_KEY_JWT:
            raise DocumentError(
                client.id, f"{failure.reason}, so the client's keys cannot be confirmed"
            )
        return client  # the stored row, as it was

    def _reusable(self, client: Client, now: int) -> bool:
        """`client`'s expired row is the one a fetch of this process stored (or a later one:
        a row's expiry is never before its fetch) less than `TOKEN_REUSE` seconds ago, and
        the operator's settings have not narrowed what it may hold since."""
        fetched_at = self._fetched_at.get(client.id)
        return (
            fetched_at is not None
            and fetched_at > now - TOKEN_REUSE
            and (client.document_expires_at or 0) >= fetched_at
            and not self._too_wide(client)
        )

    async def _single_flight(self, url: str) -> Client:
        return await self._flights.run(url, lambda: self._fetch(url))

    async def _fetch(self, url: str) -> Client:
        if (problem := url_problem(url)) is not None:
            raise DocumentError(url, f"its URL is not allowed: {problem}")
        self._refuse_denied(url)
        self.fetches += 1
        try:
            fetched = await fetching.fetch(
                url,
                allow_private=self.settings.client_documents_allow_private,
                timeout=self.timeout,
                max_bytes=MAX_BYTES,
                ssl_context=self.ssl_context,
            )
        except fetching.FetchError as exc:
            # The details name addresses and connection failures: the operator's, not the
            # page's (it is shown to whoever chose the URL).
            log.warning(
                "a client metadata document could not be fetched", url=url, reason=exc.reason
            )
            raise DocumentError(url, NOT_FETCHED, unreachable=exc.unreachable) from None
        try:
            document = json.loads(fetched.body)
        except (ValueError, RecursionError):
            raise DocumentError(url, f"{INVALID}: it is not valid JSON") from None
        now = self.clock.now()
        lifetime = fetched.lifetime(default=DEFAULT, floor=FLOOR, ceiling=CEILING)
        policy = await dynamic_policy(self.settings, self.oidc, self.store, document=True)
        client = document_client(url, document, policy, now + lifetime, now)
        stored = await self.store.save_document_client(client)
        if stored is None:
            # An operator registered this id meanwhile: theirs, not the document's.
            raise DocumentError(url, "another client holds this client_id")
        self._unreachable.pop(url, None)
        if len(self._fetched_at) >= _UNREACHABLE_LIMIT:
            self._fetched_at.clear()
        self._fetched_at[url] = now
        if self.forget is not None:
            self.forget(url)  # the token endpoint's cached row, if any, is out of date
        return stored
