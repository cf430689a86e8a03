"""The token lifecycle's transactions: each a function of a connection, run as one transaction.

Redeeming a code, rotating a refresh token (`exchange`), revoking a token or a grant: each reads
its facts, lets `baton.core.rules` decide, and applies the decision in that same transaction, so
no decision is ever taken on a state another request has already changed. On SQLite, write
transactions start with `BEGIN IMMEDIATE`, which takes the database's write lock up front: two
rotations of one token are serialized before either reads, so the loser reads the winner's
committed exchange and is answered by the leeway rules. On PostgreSQL (READ COMMITTED) the
conditional `UPDATE ... WHERE exchanged_at IS NULL` does the same: it waits for the winner's row
lock, then matches no row.

The facade (`baton.store.sql.facade.SQLStore`) hands these functions to the runner; the admin
console's queries (`baton.store.sql.admin`) share `revoke_grant` and `read_grant`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy import Connection, func, insert, select, update

from baton import spans
from baton.core import rules, signals
from baton.core.audience import narrowed, stored_resources
from baton.core.client_policy import ClientPolicy
from baton.core.facts import AccessFacts, GrantFacts, RefreshFacts, SignIn
from baton.core.pairs import IssuedPair, MintedPair, PlannedPair, plan_pair
from baton.core.policy import Policy, RetryPolicy
from baton.core.rules import CodeProblem, CodeRedemption, Reason
from baton.core.scope import parse as parse_scope
from baton.core.scope import render as render_scope
from baton.core.signals import Signal
from baton.core.tokens import random_id
from baton.core.vocabulary import BACKCHANNEL_CAUSES, RevocationCause, SecurityEventKind
from baton.store.base import (
    TARGET_REFUSED,
    Client,
    ClientChanged,
    CodeRefused,
    ExchangeAsk,
    ExchangeResult,
    GrantSummary,
    Issued,
    NewCode,
    RedeemResult,
    Refused,
    Replayed,
    RevokeResult,
    ScopeRefused,
    SecurityEvent,
    TargetRefused,
    TokenFacts,
)
from baton.store.schema import (
    authorization_codes,
    clients,
    grants,
    refresh_tokens,
    security_events,
    users,
)
from baton.store.sql import outbox
from baton.store.sql.confirm import confirmed, read_confirming, require_enabled
from baton.store.sql.feed import announce_access_deaths, wake_feed
from baton.store.sql.rows import access_from_row, code_facts, grant_from_labels, refresh_from_row
from baton.store.sql.statements import (
    ACCESS_FACTS,
    ANNOUNCE_ACCESS,
    ANNOUNCE_COMPANION,
    ANNOUNCE_GRANT,
    CLAIM_CONTINUATION,
    CLAIM_SUCCESSOR,
    COMPANION_LAST_EXPIRY,
    COMPANIONS_BY_EXPIRY,
    FORGET_CONSENT,
    GRANT_COLUMNS,
    GUARD_FORK,
    INSERT_ACCESS,
    INSERT_REFRESH,
    KEEP_REFRESH,
    OWNER_POLICY,
    REFRESH_FACTS,
    REFRESH_LINEAGE_FACTS,
    REVOKE_ACCESS,
    REVOKE_GRANT,
    UNPAIRED_LAST_EXPIRY,
)


class LostRace(Exception):
    """Another transaction changed a row between our read and our conditional update
    (PostgreSQL; SQLite serializes writers before they read). The caller runs the unit of work
    again in a new transaction, which decides on what the winner wrote: deciding again inside
    this one would keep the locks its conditional update took (a claim holds the grant FOR
    SHARE), and two losers of one race that both found reuse then each waited, to revoke the
    grant, for the other's lock."""


_REUSE_DETAIL = {
    Reason.SIBLING_CONTINUED: "a sibling pair issued from the same token was refreshed first",
    Reason.RETRY_AFTER_CONTINUED: "retried after a pair issued from it was refreshed",
}


# -- codes --------------------------------------------------------------------------------------


def save_code(conn: Connection, code: NewCode) -> None:
    values = {
        "digest": code.digest,
        "client_id": code.client_id,
        "user_id": code.user_id,
        "redirect_uri": code.redirect_uri,
        "scope": code.scope,
        "code_challenge": code.code_challenge,
        "created_at": code.created_at,
        "expires_at": code.expires_at,
        "resources": stored_resources(code.resources),
        "nonce": code.nonce,
        "sid": code.sid,
        "sign_in": None if code.sign_in is None else code.sign_in.stored(),
    }
    conn.execute(insert(authorization_codes).values(**values))
    if code.note_use:
        mark_used(conn, code.client_id, code.created_at)


def mark_used(conn: Connection, client_id: str, now: int) -> None:
    """Records the client's first use (`clients.used_at`), in the unit of work that uses it: the
    expiry of unused dynamic registrations spares a used client for good, even once the purge
    has removed its dead grants. After the first use the UPDATE matches no row (no write)."""
    conn.execute(
        update(clients)
        .where(clients.c.id == client_id, clients.c.used_at.is_(None))
        .values(used_at=now)
    )


# The rules' decisions, as spans (`baton.spans`: nothing while tracing is off).
CODE_DECISION_SPAN = "baton.rules.check_code"
REFRESH_DECISION_SPAN = "baton.rules.decide_refresh"
_DECISIONS: dict[type, str] = {
    rules.Rotate: "rotate",
    rules.Replay: "replay",
    rules.Fork: "fork",
    rules.Reuse: "reuse",
    rules.Reject: "reject",
}


def decided(span: spans.Span, decision: rules.RefreshDecision, token: RefreshFacts | None) -> None:
    """`baton.decision` (rotate, replay, fork, reuse, reject), the reason of a reuse or a
    rejection (`Reason`'s name: unknown, idle_expired, ...) and the grant, when the token has
    one of the asking client's."""
    if span is spans.OFF:
        return
    span.set("baton.decision", _DECISIONS[type(decision)])
    if isinstance(decision, rules.Reuse | rules.Reject):
        span.set("baton.reason", decision.reason.name.lower())
    if token is not None and not isinstance(decision, rules.Reject):
        span.set("baton.grant_id", token.grant.id)


def redeem_code(
    conn: Connection,
    digest: bytes,
    ask: CodeRedemption,
    pair: MintedPair,
    now: int,
    source_address: str | None,
    policy: Policy,
) -> RedeemResult:
    """A code for a new grant and its first pair; a code presented twice revokes the grant it
    produced. Raises `LostRace` when another transaction claimed the code first (PostgreSQL):
    the caller runs it again, and then reads the code as used."""
    row = (
        conn.execute(select(authorization_codes).where(authorization_codes.c.digest == digest))
        .mappings()
        .first()
    )
    code = code_facts(row) if row is not None else None
    with spans.span(CODE_DECISION_SPAN) as span:
        problem = rules.check_code(code, ask, now)
        if span is not spans.OFF:
            span.set("baton.decision", "redeem" if problem is None else problem.name.lower())
    if problem is CodeProblem.REUSED:
        assert code is not None
        # RFC 6749 §4.1.2: the server SHOULD revoke all tokens previously issued
        # based on that authorization code.
        revoked = False
        if code.grant_id is not None:
            revoked = revoke_grant(conn, code.grant_id, now, RevocationCause.CODE_REUSE)
            if revoked:
                _record(
                    conn,
                    SecurityEventKind.CODE_REUSE,
                    read_grant(conn, code.grant_id),
                    None,
                    now,
                    source_address,
                    "authorization code presented twice",
                )
        return CodeRefused(problem, revoked_grant=revoked)
    if problem is not None:
        return CodeRefused(problem)
    assert code is not None
    # RFC 8707 §2.2: the token request may name fewer of the resources the user
    # consented to, never another (invalid_target); the code stays unused.
    if narrowed(code.resources, pair.resources) is None:
        return TARGET_REFUSED
    # The conditional update makes a double redemption impossible even if two
    # transactions got this far (PostgreSQL): only one sees `used_at IS NULL`.
    require_enabled(conn, code.client_id)
    subject = conn.execute(select(users.c.username).where(users.c.id == code.user_id)).scalar_one()
    # The grant keeps the code's session and sign-in: every ID token of the grant repeats them
    # (OIDC Core §12.2: a refreshed ID token's auth_time is "the time of the original
    # authentication"), and logout finds the grants of a session by its sid.
    grant = _new_grant(
        conn,
        code.client_id,
        code.user_id,
        subject,
        code.scope,
        now,
        policy,
        code.resources,
        sid=code.sid,
        sign_in=code.sign_in,
    )
    claimed = conn.execute(
        update(authorization_codes)
        .where(
            authorization_codes.c.digest == digest,
            authorization_codes.c.used_at.is_(None),
        )
        .values(used_at=now, grant_id=grant.id)
    ).rowcount
    if claimed != 1:
        raise LostRace()
    # OIDC Core §3.1.3.6: the ID token carries the nonce of the authentication request.
    planned = plan_pair(grant, pair, 0, code.scope, now, policy, nonce=code.nonce)
    return Issued(_insert_pair(conn, planned, pair, None))


def issue_client_credentials(
    conn: Connection,
    client_id: str,
    scope: str,
    access: MintedPair,
    now: int,
    resources: tuple[str, ...],
    policy: Policy,
    note_use: bool = True,
) -> IssuedPair:
    # The first use's UPDATE before `require_enabled`'s FOR SHARE: two first grants at once
    # then queue on the row lock rather than each holding a share the other's UPDATE waits for.
    # Only for a dynamic registration (`note_use`): no other client's first use is read, and
    # the token endpoint need not pay that round trip.
    if note_use:
        mark_used(conn, client_id, now)
    require_enabled(conn, client_id)
    grant = _new_grant(conn, client_id, None, None, scope, now, policy, resources)
    planned = plan_pair(grant, access, 0, scope, now, policy)
    return _insert_pair(conn, planned, access, None)


# -- refresh and access tokens ------------------------------------------------------------------


def may_have_forked(server: Policy, client_policy: ClientPolicy | None, now: int) -> bool:
    """Whether a token of a client whose policy is `client_policy` may have been exchanged
    under `fork` (rule 3b) by `now`, so its lineage must be read: `fork` is the server's retry,
    or the retry of any version of the client's that has been in force (issue 28: a family
    forked under a version since replaced is still one family, and a sibling of it presented
    after the change is still reuse). A pending change, report-only or dated later, has forked
    nothing: it changes no decision before its date. An unknown policy (None) may have had it.
    A client that never had `fork` pays nothing for the lineage."""
    if server.retry is RetryPolicy.FORK or client_policy is None:
        return True
    return any(
        version.settings.retry is RetryPolicy.FORK
        and version.effective_at is not None
        and version.effective_at <= now
        for version in client_policy.versions
    )


def exchange(conn: Connection, ask: ExchangeAsk, policy: Policy, lineage: bool) -> ExchangeResult:
    """A refresh: the rules decide on the token's facts (rotate, retry in the leeway, reuse),
    and the decision is applied here; a lost race decides again on what the winner wrote.

    `policy` is the client's policy in force at `ask.now` (issue 28): it decides, it says
    whether the token rotates, and the leeway and lifetimes it gives are stamped on the rows
    (`retire_at`, `expires_at`), so a later change of policy never takes them back. `lineage`:
    whether the token's lineage (rule 3b) is read, which it must be whenever `fork` may have
    applied to the client's tokens, not only when it is the policy in force now
    (`may_have_forked`): a sibling whose family continued is reuse under any later policy."""
    token = refresh_facts(conn, ask.digest, ask.client, lineage=lineage)
    if isinstance(token, ClientChanged):
        return token
    with spans.span(REFRESH_DECISION_SPAN) as span:
        decision = rules.decide_refresh(token, ask.client_id, ask.now, policy)
        decided(span, decision, token)
    # What the decision says about the client's integration, and what its report-only policy
    # would have refused: counted by the caller, never refused for (`baton.core.signals`).
    noted = signals.exchange_signals(
        token, decision, ask.now, ask.shadow, None if token is None else token.access_expires_at
    )
    if isinstance(decision, rules.Reject):
        return Refused(decision.reason, signals=noted)
    assert token is not None
    if isinstance(decision, rules.Fork):
        # The parent is marked forked from (`forked_at`: its children are one family, rule 3b),
        # while no child's chain has continued; one that continued since our read (PostgreSQL)
        # makes us decide again on it, when we read the lineage. (A token exchanged under `fork`
        # and retried under a later policy is forked too: guarded alike.)
        guarded = GUARD_FORK.rowcount(
            conn, rt_id=token.id, now=ask.now, live_grant_id=token.grant.id
        )
        if lineage and not guarded:
            raise LostRace()
    if isinstance(decision, rules.Replay | rules.Fork):
        # A retry inside the leeway is no attack, but it is what an operator asks about
        # ("which client lost a response?"): kept for the grant's timeline.
        _record(
            conn,
            SecurityEventKind.LEEWAY_RETRY,
            token.grant,
            token.generation,
            ask.now,
            ask.source_address,
            "the same pair sent again (replay)"
            if isinstance(decision, rules.Replay)
            else "a sibling pair issued (fork)",
        )
    if isinstance(decision, rules.Replay):
        return Replayed(decision.sealed_response, decision.sealed_id_token, signals=noted)
    if isinstance(decision, rules.Reuse):
        revoked = revoke_grant(conn, token.grant.id, ask.now, RevocationCause.REUSE, token.grant)
        if revoked:
            _record(
                conn,
                SecurityEventKind.REFRESH_TOKEN_REUSE,
                token.grant,
                token.generation,
                ask.now,
                ask.source_address,
                _REUSE_DETAIL.get(
                    decision.reason,
                    f"exchanged at {token.exchanged_at}, leeway ended at {token.retire_at}",
                ),
            )
        return Refused(decision.reason, revoked_grant=revoked, signals=noted)

    scope = asked_scope(token, ask)
    if not isinstance(scope, frozenset):
        return scope

    if isinstance(decision, rules.Fork):
        # Siblings are generation parent + 1; the parent's leeway still runs from its first
        # exchange (a retry never extends it).
        planned = plan_pair(
            token.grant, ask.child, token.generation + 1, render_scope(scope), ask.now, policy
        )
        return Issued(_insert_pair(conn, planned, ask.child, token.id), retry=True, signals=noted)

    if decision.continues is not None and not CLAIM_CONTINUATION.rowcount(
        conn, parent_id=decision.continues, child_id=token.id
    ):
        # Another sibling's chain continued first (PostgreSQL: it committed while we waited for
        # the parent's row): decide again, on what it wrote; this token is now reuse.
        raise LostRace()
    if not policy.rotate:
        return _keep(conn, ask, policy, lineage, token, render_scope(scope), noted)
    # Rotate: claim the single successor slot first. Only one transaction can move
    # `exchanged_at` from NULL; on PostgreSQL a concurrent one waits for our row lock here and
    # then matches nothing.
    rotation = plan_rotation(token, ask, policy, scope)
    planned, retire_at = rotation.planned, rotation.retire_at
    claimed = CLAIM_SUCCESSOR.rowcount(
        conn,
        rt_id=token.id,
        live_grant_id=token.grant.id,
        exchanged=ask.now,
        retire=retire_at,
        sealed=rotation.sealed,
        sealed_id_token=rotation.sealed_id_token,
    )
    if claimed != 1:
        # Lost the race (PostgreSQL only: SQLite serialized us before the read), or the grant
        # was revoked since. The winner has committed; decide again on what it wrote.
        raise LostRace()
    # The companion access token of the exchanged token dies at the end of the leeway:
    # announce it now, so resource servers schedule it themselves (no job runs at that time).
    announce_access_deaths(conn, ANNOUNCE_COMPANION, token.id, retire_at, ask.now)
    return Issued(_insert_pair(conn, planned, ask.child, token.id), signals=noted)


def asked_scope(
    token: RefreshFacts, ask: ExchangeAsk
) -> frozenset[str] | ScopeRefused | TargetRefused:
    """The scope a refresh of `token` asks for (the grant's, or narrower: RFC 6749 §6), or
    why it cannot have it; the resources it names must be the grant's or fewer (RFC 9700 §2.3,
    RFC 8707 §2.2: a refresh may narrow them, never widen)."""
    granted = parse_scope(token.grant.scope)
    scope = granted if ask.scope is None else ask.scope
    if not scope <= granted:
        return ScopeRefused()
    if narrowed(token.grant.resources, ask.child.resources) is None:
        return TARGET_REFUSED
    return scope


@dataclass(frozen=True, slots=True)
class Rotation:
    """What a rotation of a token writes, planned before any write: the child pair, the seals
    of its response kept for a retry inside the leeway, and when the leeway ends."""

    planned: PlannedPair
    sealed: bytes | None
    sealed_id_token: bytes | None
    retire_at: int


def plan_rotation(
    token: RefreshFacts, ask: ExchangeAsk, policy: Policy, scope: frozenset[str]
) -> Rotation:
    """The rotation of `token` the rules decided (`rules.Rotate`), as `exchange` writes it and
    PostgreSQL's one-statement rotation (`baton.store.sql.native`) too: a pure function."""
    planned = plan_pair(
        token.grant, ask.child, token.generation + 1, render_scope(scope), ask.now, policy
    )
    sealed = sealed_id_token = None
    if ask.seal is not None and policy.leeway > 0:
        sealed = ask.seal(planned.issued.seal_payload())
        if planned.issued.id_token is not None:
            sealed_id_token = ask.seal(planned.issued.id_token.encode("utf-8"))
    # The leeway, like every lifetime, starts at the ceiling of the exchange's second, so a
    # client never gets less than the configured leeway to retry in; without a leeway (strict)
    # the old access token dies at the exchange itself. It is the leeway of the policy in force
    # now, promised here: `retire_at` keeps it whatever the client's policy says later.
    start = max(ask.now, ask.child.lifetimes_from or ask.now) if policy.leeway else ask.now
    return Rotation(planned, sealed, sealed_id_token, start + policy.leeway)


def _keep(
    conn: Connection,
    ask: ExchangeAsk,
    policy: Policy,
    lineage: bool,
    token: RefreshFacts,
    scope: str,
    noted: tuple[Signal, ...],
) -> ExchangeResult:
    """A refresh that keeps its refresh token (`Policy.rotate` False: a confidential client,
    RFC 6749 §6 "The authorization server MAY issue a new refresh token"): a new access token
    whose companion is the same refresh token, which is not exchanged (no leeway, nothing to
    detect reuse of); its idle expiry slides from now, never past the grant's (capped) end.
    The old access tokens live to their `exp`: nothing of the pair they belong to ended. The
    token's `issued_at` moves to now: it is stamped again under the policy in force, so a later
    policy's cap counts its idle time from this use (`Policy.refresh_deadline`)."""
    grant = token.grant
    start = max(ask.now, ask.child.lifetimes_from or ask.now)
    grant_end = policy.grant_deadline(grant.created_at, grant.expires_at)
    refresh_expires_at = min(start + policy.lifetimes.refresh_idle_ttl, grant_end)
    # Planned as an access token alone, capped by the refresh token's new expiry (rule 2: an
    # access token never outlives its companion).
    planned = plan_pair(
        replace(grant, expires_at=refresh_expires_at),
        replace(ask.child, refresh=None),
        token.generation,
        scope,
        ask.now,
        policy,
    )
    kept = KEEP_REFRESH.one(
        conn,
        rt_id=token.id,
        live_grant_id=token.grant.id,
        issued_at=ask.now,
        expires_at=refresh_expires_at,
        access_expires=planned.issued.access_expires_at,
    )
    if kept is None:
        # Exchanged or revoked since our read (PostgreSQL): decide again on what it says.
        raise LostRace()
    # The expiry as stored: a later use's, when one committed first (`KEEP_REFRESH` keeps the
    # latest use's stamps).
    issued = replace(_insert_access(conn, planned, token.id), refresh_expires_at=kept["expires_at"])
    return Issued(issued, kept=True, signals=noted)


def find_token(
    conn: Connection,
    client: Client,
    digest: bytes | None,
    is_refresh: bool,
    server: Policy,
    now: int,
) -> TokenFacts | ClientChanged | None:
    """The facts of a token `client` presented (None: unknown, or no digest to look up), once
    `client`'s row is confirmed unchanged.

    A refresh token's lineage (rule 3b) is read as the exchange reads it (`may_have_forked`),
    decided on its OWNER's policy: a resource server introspects other clients' tokens, and
    its own policy says nothing of theirs. The asking client's policy is the owner's when it
    owns the token (the usual case: one read); for another client's token that was read
    without it, the owner's stored policy is read, and the token again with its lineage only
    if `fork` may have applied to it."""
    if digest is None:  # nothing to find: a read confirms the client
        return confirmed(conn, client, None)
    if not is_refresh:
        return access_facts(conn, digest, client)
    lineage = may_have_forked(server, client.policy, now)
    token = refresh_facts(conn, digest, client, lineage=lineage)
    if lineage or not isinstance(token, RefreshFacts) or token.grant.client_id == client.id:
        return token
    stored = OWNER_POLICY.run(conn, client_id=token.grant.client_id).fetchone()
    owner = None if stored is None else ClientPolicy.from_stored(stored[0])
    if may_have_forked(server, owner, now):
        return refresh_facts(conn, digest, client, lineage=True)
    return token


def revoke_token(
    conn: Connection, client: Client, digest: bytes, is_refresh: bool, now: int
) -> RevokeResult | ClientChanged:
    """RFC 7009: a refresh token revokes its grant, an access token only itself; first
    `client`'s row is confirmed unchanged."""
    client_id = client.id
    if is_refresh:
        token = refresh_facts(conn, digest, client)
        if isinstance(token, ClientChanged):
            return token
        if token is None:
            return "nothing"
        if token.grant.client_id != client_id:
            return "other_client"
        # An exchanged token past its leeway is already dead; revoking it (a client
        # cleaning up) must not take the live family with it.
        if token.exchanged_at is not None and not token.in_leeway(now):
            return "nothing"
        # RFC 7009 §2.1: revoking a refresh token SHOULD also invalidate all access
        # tokens of the same grant; a revoked grant kills every token of its family.
        revoked = revoke_grant(
            conn, token.grant.id, now, RevocationCause.REVOKED, token.grant, forget_consent=False
        )
        return "grant" if revoked else "nothing"
    access = access_facts(conn, digest, client)
    if isinstance(access, ClientChanged):
        return access
    if access is None:
        return "nothing"
    if access.grant.client_id != client_id:
        return "other_client"
    if not REVOKE_ACCESS.rowcount(conn, at_id=access.id, now=now):
        return "nothing"
    announce_access_deaths(conn, ANNOUNCE_ACCESS, access.id, now, now)
    return "access_token"


# -- grants -------------------------------------------------------------------------------------


def read_grant(conn: Connection, grant_id: str) -> GrantFacts | None:
    row = (
        conn.execute(
            select(*GRANT_COLUMNS)
            .outerjoin(users, users.c.id == grants.c.user_id)
            .where(grants.c.id == grant_id)
        )
        .mappings()
        .first()
    )
    return grant_from_labels(row) if row is not None else None


def list_grants(
    conn: Connection, client_id: str | None, username: str | None
) -> list[GrantSummary]:
    stats = (
        select(
            refresh_tokens.c.grant_id,
            func.count().label("n"),
            func.max(refresh_tokens.c.issued_at).label("last"),
        )
        .group_by(refresh_tokens.c.grant_id)
        .subquery()
    )
    query = (
        select(*GRANT_COLUMNS, stats.c.n, stats.c.last)
        .outerjoin(users, users.c.id == grants.c.user_id)
        .outerjoin(stats, stats.c.grant_id == grants.c.id)
        .order_by(grants.c.created_at, grants.c.id)
    )
    if client_id is not None:
        query = query.where(grants.c.client_id == client_id)
    if username is not None:
        query = query.where(users.c.username == username)
    return [
        GrantSummary(grant_from_labels(row), row["n"] or 0, row["last"])
        for row in conn.execute(query).mappings()
    ]


def list_security_events(conn: Connection) -> list[SecurityEvent]:
    rows = conn.execute(select(security_events).order_by(security_events.c.id)).mappings()
    return [SecurityEvent(**r) for r in rows]


def revoke_grant(
    conn: Connection,
    grant_id: str,
    now: int,
    reason: RevocationCause,
    known: GrantFacts | None = None,
    *,
    forget_consent: bool = True,
) -> bool:
    """Kills every token of the family at once: liveness is derived from the grant's row.

    The revocation feed hears of it in the same transaction; the entry matters until the last
    access token of the family would have expired anyway. A reuse, a replayed code, an
    operator's revocation also forget the user's remembered consent (`forget_consent`): the user
    is asked again next time, rather than a remembered consent handing whoever holds the client
    a fresh code. Only the client's own RFC 7009 revocation keeps it (signing out, cleaning up is
    no sign that its tokens were in the wrong hands, nor the user withdrawing consent).
    """
    if REVOKE_GRANT.rowcount(conn, grant_id=grant_id, now=now, reason=reason) != 1:
        return False
    last = _last_access_expiry(conn, grant_id, now)
    ANNOUNCE_GRANT.run(
        conn,
        grant_id=grant_id,
        effective_at=now,
        expires_at=now if last is None else last,
        created_at=now,
    )
    wake_feed(conn)
    outbox.grant_revoked(conn, grant_id, reason, now, known)  # a webhook, in the same transaction
    if reason in BACKCHANNEL_CAUSES:
        # Back-Channel Logout 1.0 §2.7: the OP sends a logout token when the session ends at
        # the OP; a reuse or an administrator ends the grant's, and its relying party is told
        # at once (written here, so the revocation and the token commit or fail together). A
        # plain OAuth grant costs nothing more; an OpenID Connect one, one read of its client.
        outbox.grant_logout(conn, grant_id, now, known)
    if forget_consent:
        FORGET_CONSENT.run(conn, grant_id=grant_id)
    return True


def _last_access_expiry(conn: Connection, grant_id: str, now: int) -> int | None:
    """The latest `exp` among the grant's access tokens that expire after `now`, or None.

    `access_tokens` has no index of every row by grant (migration 0005): the access tokens
    with a companion are found through it, the others (client_credentials) by the grant. The
    companions are read newest expiry first, and only while one could still hold a later
    access token: an access token never outlives its companion (`Policy.pair_expiries`), so
    once a companion expires no later than the best found, none after it can do better: the
    access tokens of one or two companions are read, however long the grant has rotated."""
    best: int | None = UNPAIRED_LAST_EXPIRY.run(conn, grant_id=grant_id, after=now).fetchone()[0]
    for refresh_id, refresh_expires_at in COMPANIONS_BY_EXPIRY.run(
        conn, grant_id=grant_id, after=now
    ):
        if best is not None and refresh_expires_at <= best:
            break
        found = COMPANION_LAST_EXPIRY.run(conn, key=refresh_id, after=now).fetchone()[0]
        if found is not None and (best is None or found > best):
            best = found
    return best


def _new_grant(
    conn: Connection,
    client_id: str,
    user_id: int | None,
    subject: str | None,
    scope: str,
    now: int,
    policy: Policy,
    resources: tuple[str, ...] = (),
    *,
    sid: str | None = None,
    sign_in: SignIn | None = None,
) -> GrantFacts:
    grant = GrantFacts(
        id=random_id("grt_"),
        client_id=client_id,
        user_id=user_id,
        subject=subject,
        scope=scope,
        created_at=now,
        expires_at=policy.grant_expiry(now),
        revoked_at=None,
        revoked_reason=None,
        resources=resources,
        sid=sid,
        sign_in=sign_in,
    )
    conn.execute(
        insert(grants).values(
            id=grant.id,
            client_id=client_id,
            user_id=user_id,
            scope=scope,
            created_at=now,
            expires_at=grant.expires_at,
            resources=stored_resources(resources),
            sid=sid,
            sign_in=None if sign_in is None else sign_in.stored(),
        )
    )
    return grant


def _insert_pair(
    conn: Connection, planned: PlannedPair, pair: MintedPair, parent_id: int | None
) -> IssuedPair:
    issued = planned.issued
    refresh_id: int | None = None
    # The planned refresh token, not the pair's: an OpenID Connect grant without offline_access
    # gets none (`rules.issues_refresh_token`), its access token then has no companion.
    if planned.refresh is not None:
        assert issued.refresh_expires_at is not None
        refresh_id = INSERT_REFRESH.run(
            conn,
            digest=planned.refresh.digest,
            grant_id=issued.grant_id,
            parent_id=parent_id,
            generation=issued.generation,
            issued_at=planned.issued_at,
            expires_at=issued.refresh_expires_at,
            # Its companion's `exp`: a refresh after it is a `late_refresh` (issue 28).
            access_expires_at=issued.access_expires_at,
        ).fetchone()[0]
    return _insert_access(conn, planned, refresh_id)


def _insert_access(conn: Connection, planned: PlannedPair, refresh_id: int | None) -> IssuedPair:
    """The planned pair's access token, whose companion is the refresh token `refresh_id`."""
    issued = planned.issued
    INSERT_ACCESS.run(
        conn,
        digest=planned.access_digest,
        grant_id=issued.grant_id,
        refresh_token_id=refresh_id,
        generation=issued.generation,
        scope=issued.scope,
        issued_at=planned.issued_at,
        expires_at=issued.access_expires_at,
        jti=planned.jti,
        audience=planned.audience,
    )
    return issued


def _record(
    conn: Connection,
    kind: SecurityEventKind,
    grant: GrantFacts | None,
    generation: int | None,
    now: int,
    source_address: str | None,
    detail: str,
) -> None:
    fields = {
        "kind": kind,
        "grant_id": grant.id if grant else None,
        "client_id": grant.client_id if grant else None,
        "subject": grant.subject if grant else None,
        "generation": generation,
        "source_address": source_address,
        "detail": detail,
    }
    conn.execute(insert(security_events).values(occurred_at=now, **fields))
    outbox.security_event(conn, fields, now)  # a webhook


def refresh_facts(
    conn: Connection, digest: bytes, client: Client | None = None, *, lineage: bool = False
) -> RefreshFacts | ClientChanged | None:
    """The refresh token stored under `digest`, if `client` (when given) still authenticates
    as it did; with its lineage (rule 3b) when `lineage`."""
    facts = REFRESH_LINEAGE_FACTS if lineage else REFRESH_FACTS
    return read_confirming(conn, facts, client, digest, refresh_from_row)


def access_facts(
    conn: Connection, digest: bytes, client: Client | None = None
) -> AccessFacts | ClientChanged | None:
    """The access token stored under `digest`, if `client` (when given) still authenticates
    as it did."""
    return read_confirming(conn, ACCESS_FACTS, client, digest, access_from_row)
