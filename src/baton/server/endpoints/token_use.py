"""`POST /token-use`: resource servers report access tokens used after their companion was
exchanged (issue 28; `baton.resource` sends them in batches).

A report names each token by its digest, never the token: `{"uses": [{"token_digest": str,
"at": unix seconds, "count": int >= 1}]}`, at most `MAX_USES` entries, where `token_digest` is
the SHA-256 of the access token as presented (opaque or JWT), base64url without padding (43
characters, `baton.core.tokens.digest_text`). The digest rather than the `jti`:
`access_tokens.digest` is unique-indexed, while `access_tokens.jti` has no index on purpose
(migration 0004 keeps token inserts cheap), so a report costs one indexed read, not a scan.

Only a client registered with `--resource-server` may report (client authentication as at the
revocation feed: HTTP Basic, since the body is JSON; otherwise 403 `unauthorized_client`). The
report's tokens are read in one indexed store read, their owners' clients in one more; for each
token whose companion refresh token was already exchanged and that was live at the use, the use
is counted for the owning client as `stale_access` (source `resource`, delay after the
exchange) and, when the client has a report-only policy pending, as what that policy would
refuse (`baton.core.signals`). The instant of a use is clamped to [the exchange, now]: a
resource server's clock cannot place a use before the exchange it follows, nor in the future.
An unknown digest is ignored, and so is a token not issued for the reporter (its audience does not
name the reporter's `resource_uri`; a resource server without one reports the tokens of the default
audience): the revocation feed hands every resource server every superseded token's digest, and none
may count uses of a token it was never shown. At most `MAX_COUNTED` uses of one token count per
report, and each reporter at most `REPORTER_BUDGET` uses per flush interval (`SignalBook.budget`),
so that one reporter cannot inflate a client's figures nor fill the process's book and crowd out
what the token endpoint counts. A resource server reports only the uses it accepted without asking
Baton (its cache, a JWT checked locally): a use it introspected was counted by `/introspect`
already. Nothing here is written at once: the signals go to the process's `SignalBook`, flushed
every `--signal-flush-interval` seconds. The answer is 202 `{"accepted": n}`: the entries counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeGuard

from starlette.requests import Request

from baton.core import rules
from baton.core.facts import AccessFacts
from baton.core.signals import Source, access_signals
from baton.core.tokens import DIGEST_TEXT_LENGTH, digest_from_text
from baton.core.vocabulary import ErrorCode
from baton.server.endpoints.clientauth import authenticate
from baton.server.endpoints.errors import NoStoreJSON, OAuthError, invalid_request
from baton.server.endpoints.forms import Form, NotJSON, read_json
from baton.server.runtime.context import Baton, baton, source_address
from baton.store.base import Client

PATH = "/token-use"
MAX_USES = 1000  # entries in one report (the OpenAPI document's `maxItems`)
# One entry's `count`: far above what a resource server sees of one token between two reports,
# and small enough that no sum of them overflows what the store counts in.
MAX_COUNT = 1_000_000
# The uses of one token counted from one report, whatever its entries add up to: a resource
# server reports every few seconds (`baton.resource`), and an app that keeps a superseded token
# uses it that often at most; the count of a report beyond it says nothing more about the app.
MAX_COUNTED = 100
_MEMBERS = frozenset({"token_digest", "at", "count"})


@dataclass(frozen=True, slots=True)
class Use:
    """One entry of a report: a use (or `count` uses) at `at` of the access token stored
    under `digest` (its SHA-256)."""

    digest: bytes = field(repr=False)
    at: int
    count: int


async def token_use_endpoint(request: Request) -> NoStoreJSON:
    app = baton(request)
    await app.limits.check_address(source_address(request))
    reporter = await _resource_server(request, app)  # before the body: junk is not read
    uses = parse_report(await _json_body(request, app))
    accepted = await count_uses(app, uses, reporter)
    return NoStoreJSON({"accepted": accepted}, 202)


async def _resource_server(request: Request, app: Baton) -> Client:
    """The authenticated resource server (a fresh read of its row: a disabled client or a
    rotated secret is refused at once), charged to its per-client rate limit."""
    client = await authenticate(request, Form([]), app.store, allow_public=False)
    if not client.is_resource_server:
        raise OAuthError(
            ErrorCode.UNAUTHORIZED_CLIENT,
            "only clients registered with --resource-server may report token use",
            403,
        )
    await app.limits.check_client(client.id)
    return client


def reported_by(token: AccessFacts, reporter: Client, default_audience: str) -> bool:
    """Whether `reporter` could have been shown `token`: the token's audience (`aud`) names the
    reporter's `resource_uri`; a resource server registered without one stands for the server's
    default audience (`--access-token-audience`, the issuer unless configured), so it reports
    only the tokens issued for that. Every resource server reads every superseded token's
    digest in the revocation feed: without this, any of them could count uses of tokens it
    never saw against any client."""
    audience = token.audience or (default_audience,)  # rows from before audiences were kept
    if reporter.resource_uri is None:
        return default_audience in audience
    return reporter.resource_uri in audience


async def count_uses(app: Baton, uses: list[Use], reporter: Client) -> int:
    """Notes the signals of each use, reported by `reporter`, of a live, superseded access token
    issued for it; returns how many entries were counted. At most `MAX_COUNTED` uses of one
    token count per report, and the reporter's budget per flush interval bounds the rest
    (`SignalBook.budget`)."""
    if not uses:
        return 0
    now = app.clock.now()
    tokens = await app.store.access_by_digest([use.digest for use in uses])
    if not tokens:
        return 0
    owners = await _owners(app, {token.grant.client_id for token in tokens.values()})
    server = app.settings.policy
    default_audience = app.settings.default_audience
    counted: dict[bytes, int] = {}  # uses of each token counted in this report
    accepted = 0
    for use in uses:
        token = tokens.get(use.digest)
        if token is None or token.companion is None:
            continue  # unknown, or a client_credentials token: no rotation to be stale after
        if not reported_by(token, reporter, default_audience):
            continue  # not issued for this resource server: it cannot have seen it used
        exchanged_at = token.companion.exchanged_at
        if exchanged_at is None:
            continue  # its pair is still the newest: not a stale use
        at = min(max(use.at, exchanged_at), now)
        if not rules.access_liveness(token, at).active:
            continue  # the resource server should have refused it; no integration signal
        owner = owners.get(token.grant.client_id)
        shadow = None if owner is None else owner.policy.shadow_policy(server, now)
        times = min(use.count, MAX_COUNTED - counted.get(use.digest, 0))
        times = app.signals.budget(reporter.id, times) if times > 0 else 0
        if times == 0:
            continue
        counted[use.digest] = counted.get(use.digest, 0) + times
        app.signals.note(access_signals(token, at, shadow, Source.RESOURCE), times=times)
        accepted += 1
    return accepted


async def _owners(app: Baton, client_ids: set[str]) -> dict[str, Client]:
    """The clients owning the reported tokens: from this process's client cache when it holds
    them (a report-only policy judges, it never refuses, so a row up to its `MAX_AGE` old
    serves), the others in one read."""
    found: dict[str, Client] = {}
    missing: list[str] = []
    for client_id in sorted(client_ids):
        cached = app.clients.get(client_id)
        if cached is None:
            missing.append(client_id)
        else:
            found[client_id] = cached
    if missing:
        found.update(await app.store.clients_by_id(missing))
    return found


# -- the body ------------------------------------------------------------------------------------


async def _json_body(request: Request, app: Baton) -> object:
    """The request's JSON value: 415 for another media type, 413 over `--max-body-bytes`
    (declared or read), 400 for what is not JSON (as the registration endpoint answers)."""
    try:
        return await read_json(request, app.settings.max_body_bytes)
    except NotJSON:
        raise invalid_request("the body is not valid JSON") from None


def parse_report(body: object) -> list[Use]:
    """The uses of a report, or `invalid_request` naming the first thing wrong with it."""
    if not isinstance(body, dict):
        raise invalid_request('the body must be a JSON object: {"uses": [...]}')
    extra = sorted(set(body) - {"uses"})
    if extra:
        raise invalid_request(f"unknown member {extra[0]!r}: a report has only 'uses'")
    entries = body.get("uses")
    if not isinstance(entries, list):
        raise invalid_request("'uses' must be an array of {token_digest, at, count}")
    if len(entries) > MAX_USES:
        raise invalid_request(f"at most {MAX_USES} uses in one report ({len(entries)} sent)")
    return [_use(index, entry) for index, entry in enumerate(entries)]


def _use(index: int, entry: object) -> Use:
    where = f"uses[{index}]"
    if not isinstance(entry, dict):
        raise invalid_request(f"{where} must be an object {{token_digest, at, count}}")
    extra = sorted(set(entry) - _MEMBERS)
    if extra:
        # A member this endpoint does not know is refused, not ignored: a reporter that sends
        # more than `token_digest`, `at` and `count` may be sending what must never leave it (a
        # token, or the `jti` of an older reporter that would be counted as nothing).
        raise invalid_request(f"{where}: unknown member {extra[0][:40]!r}")
    text = entry.get("token_digest")
    digest = digest_from_text(text) if isinstance(text, str) else None
    if digest is None:
        raise invalid_request(
            f"{where}.token_digest must be the SHA-256 of the access token, base64url without "
            f"padding ({DIGEST_TEXT_LENGTH} characters)"
        )
    at = entry.get("at")
    if not _is_int(at) or at < 0:
        raise invalid_request(f"{where}.at must be a Unix time in seconds (an integer >= 0)")
    count = entry.get("count", 1)
    if not _is_int(count) or not 1 <= count <= MAX_COUNT:
        raise invalid_request(f"{where}.count must be an integer from 1 to {MAX_COUNT}")
    return Use(digest, at, count)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
