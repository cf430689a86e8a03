"""The SQL statements of the store's hot paths, written once with SQLAlchemy Core for every dialect.

Most are `Prepared` (see `baton.store.prepared`): compiled once per dialect and bound by position
on the driver's cursor, because building and compiling a Core statement on every call costs more
than running it on these paths. They live apart from the transactions that run them
(`baton.store.sql.lifecycle`, `feed`) so that a transaction reads as its steps, and a statement's
comment says what its conditions guarantee under concurrency.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)

from baton.core.vocabulary import FeedEntryKind
from baton.store.prepared import Prepared
from baton.store.schema import (
    access_tokens,
    clients,
    consents,
    grants,
    refresh_tokens,
    revocation_events,
    users,
)

# A grant's columns with its subject (the user's name), labelled `g_*` so that they can be read
# next to a token's own (`baton.store.sql.rows.grant_from_labels`).
GRANT_COLUMNS = (
    grants.c.id.label("g_id"),
    grants.c.client_id.label("g_client_id"),
    grants.c.user_id.label("g_user_id"),
    users.c.username.label("g_subject"),
    grants.c.scope.label("g_scope"),
    grants.c.created_at.label("g_created_at"),
    grants.c.expires_at.label("g_expires_at"),
    grants.c.revoked_at.label("g_revoked_at"),
    grants.c.revoked_reason.label("g_revoked_reason"),
    grants.c.resources.label("g_resources"),
    grants.c.sid.label("g_sid"),
    grants.c.sign_in.label("g_sign_in"),
)


# Before a new grant: the client's `disabled_at`, read FOR SHARE on PostgreSQL (see
# `baton.store.sql.confirm.require_enabled`). A Core statement: it runs once per new grant.
CLIENT_DISABLED_AT = (
    select(clients.c.disabled_at)
    .where(clients.c.id == bindparam("client_id"))
    .with_for_update(read=True)
)


# -- the statements of the hot paths, compiled once per dialect (see baton.store.prepared) -------

_rt, _at = refresh_tokens, access_tokens

CLIENT = Prepared(select(clients).where(clients.c.id == bindparam("client_id")))
# What a request's client must still be, in the transaction that works for it
# (`baton.store.sql.confirm`): its credentials, its kind, enabled, and what RFC 7592 (or an
# operator) may change of what it may do.
CONFIRMED_COLUMNS = (
    "secret_digest",
    "is_public",
    "is_resource_server",
    "disabled_at",
    "grant_types",
    "token_endpoint_auth_method",
    "jwks_uri",
    "redirect_uris",
    # The client's policy: a change scheduled by an operator reaches every cached copy at once.
    "policy",
)
# Their labels beside a token's row (`_CONFIRMING`), read by `confirm.read_confirming` on every
# refresh, revocation and introspection: spelled once here, not per request.
CONFIRMED_LABELS = tuple("c_" + name for name in CONFIRMED_COLUMNS)
CLIENT_AUTHENTICATION = Prepared(
    select(*(clients.c[name] for name in CONFIRMED_COLUMNS)).where(
        clients.c.id == bindparam("client_id")
    )
)

# The policy of a token's owner (its grant's client), for introspection by another client
# (`lifecycle.find_token`: whether `fork` may have applied to the owner's tokens).
OWNER_POLICY = Prepared(select(clients.c.policy).where(clients.c.id == bindparam("client_id")))

# The client a request authenticated as, joined to the token row it asks about: its row as it is
# now, to compare with the one it authenticated against (`read_confirming`). `confirm_id` NULL
# (no client to confirm) matches nothing.
_confirm = clients.alias("confirm")
_CONFIRMING = (
    _confirm.c.id.label("c_id"),
    *(
        _confirm.c[name].label(label)
        for name, label in zip(CONFIRMED_COLUMNS, CONFIRMED_LABELS, strict=True)
    ),
)

_REFRESH_COLUMNS = (
    _rt.c.id,
    _rt.c.generation,
    _rt.c.issued_at,
    _rt.c.expires_at,
    _rt.c.exchanged_at,
    _rt.c.retire_at,
    _rt.c.revoked_at,
    _rt.c.sealed_response,
    _rt.c.sealed_id_token,
    # The companion access token's `exp` (issue 28: a refresh after it is a `late_refresh`).
    _rt.c.access_expires_at,
    *GRANT_COLUMNS,
    *_CONFIRMING,
)
REFRESH_FACTS = Prepared(
    select(*_REFRESH_COLUMNS)
    .join(grants, grants.c.id == _rt.c.grant_id)
    .outerjoin(users, users.c.id == grants.c.user_id)
    .outerjoin(_confirm, _confirm.c.id == bindparam("confirm_id"))
    .where(_rt.c.digest == bindparam("digest"))
)
# The same with the token's lineage (rule 3b), read only under `fork`, so that `replay` and
# `strict` pay nothing for it: the parent is one primary-key lookup.
_parent = refresh_tokens.alias("parent")
REFRESH_LINEAGE_FACTS = Prepared(
    select(
        *_REFRESH_COLUMNS,
        _rt.c.parent_id,
        _rt.c.continued_id,
        _parent.c.continued_id.label("parent_continued_id"),
        _parent.c.forked_at.label("parent_forked_at"),
    )
    .join(grants, grants.c.id == _rt.c.grant_id)
    .outerjoin(users, users.c.id == grants.c.user_id)
    .outerjoin(_parent, _parent.c.id == _rt.c.parent_id)
    .outerjoin(_confirm, _confirm.c.id == bindparam("confirm_id"))
    .where(_rt.c.digest == bindparam("digest"))
)

# Rule 3b: the first child of a parent to be refreshed claims the parent's continuation. Only
# one transaction can move `continued_id` from NULL; on PostgreSQL (READ COMMITTED) a concurrent
# claim waits for our row lock, then re-evaluates the condition on the committed row and matches
# nothing unless the claim was its own token's. SQLite serializes writers before the read.
CLAIM_CONTINUATION = Prepared(
    update(_rt)
    .where(
        _rt.c.id == bindparam("parent_id"),
        or_(_rt.c.continued_id.is_(None), _rt.c.continued_id == bindparam("child_id")),
    )
    .values(continued_id=bindparam("child_id"))
)
# The token's grant is live, its row held FOR SHARE (PostgreSQL; SQLite serializes writers) by a
# statement that issues a new access token of it: a revocation of the grant that has not
# committed yet is waited for, then seen (no pair is issued under a revoked grant), and one that
# starts later waits for this transaction, so the last access expiry it announces to the feed
# counts this pair's (`lifecycle._last_access_expiry`, read after its UPDATE).
_LIVE_GRANT = exists(
    select(grants.c.id)
    .where(grants.c.id == bindparam("live_grant_id"), grants.c.revoked_at.is_(None))
    .with_for_update(read=True)
)

# A sibling is issued only while no child's chain has continued: the parent's row is locked
# and its condition checked in the issuing transaction (PostgreSQL: a concurrent claim is
# waited for, then seen). It marks the parent forked from (`forked_at`): its children are one
# family whatever policy refreshes them later.
GUARD_FORK = Prepared(
    update(_rt)
    .where(_rt.c.id == bindparam("rt_id"), _rt.c.continued_id.is_(None), _LIVE_GRANT)
    .values(forked_at=func.coalesce(_rt.c.forked_at, bindparam("now")))
)

ACCESS_FACTS = Prepared(
    select(
        _at.c.id,
        _at.c.generation,
        _at.c.scope,
        _at.c.issued_at,
        _at.c.expires_at,
        _at.c.revoked_at,
        _at.c.refresh_token_id,
        _at.c.jti,
        _at.c.audience,
        _rt.c.retire_at.label("rt_retire_at"),
        _rt.c.revoked_at.label("rt_revoked_at"),
        # Issue 28: an access token used after its companion was exchanged is a stale use.
        _rt.c.exchanged_at.label("rt_exchanged_at"),
        *GRANT_COLUMNS,
        *_CONFIRMING,
    )
    .join(grants, grants.c.id == _at.c.grant_id)
    .outerjoin(users, users.c.id == grants.c.user_id)
    .outerjoin(_rt, _rt.c.id == _at.c.refresh_token_id)
    .outerjoin(_confirm, _confirm.c.id == bindparam("confirm_id"))
    .where(_at.c.digest == bindparam("digest"))
)

# The single-successor claim: only one transaction can move `exchanged_at` from NULL.
CLAIM_SUCCESSOR = Prepared(
    update(_rt)
    .where(
        _rt.c.id == bindparam("rt_id"),
        _rt.c.exchanged_at.is_(None),
        _rt.c.revoked_at.is_(None),
        _LIVE_GRANT,
    )
    .values(
        exchanged_at=bindparam("exchanged"),
        retire_at=bindparam("retire"),
        sealed_response=bindparam("sealed"),
        sealed_id_token=bindparam("sealed_id_token"),
    )
)

INSERT_REFRESH = Prepared(
    insert(_rt)
    .values(
        digest=bindparam("digest"),
        grant_id=bindparam("grant_id"),
        parent_id=bindparam("parent_id"),
        generation=bindparam("generation"),
        issued_at=bindparam("issued_at"),
        expires_at=bindparam("expires_at"),
        access_expires_at=bindparam("access_expires_at"),
    )
    .returning(_rt.c.id)
)

# A refresh of a client whose refresh tokens do not rotate (`Policy.rotate` False, issue 28):
# the token is not exchanged; its idle expiry slides and its new companion's `exp` is noted.
# `issued_at` moves to the refresh too: the token is stamped again under the policy in force,
# so a later policy's cap (`Policy.refresh_deadline`) counts its idle time from its last use.
# The conditions are `CLAIM_SUCCESSOR`'s: a token exchanged or revoked meanwhile (PostgreSQL:
# waited for, then seen) matches nothing, and the exchange decides again on what it reads.
# The stamps only move forward, together: they are the latest use's. Two keeps at once
# (PostgreSQL: the second waits for the first's row lock, then writes over it), or one whose
# clock read an earlier second committing last, leave a later use's stamps as they are rather
# than take them back (`_LATEST_USE`; SET sees the row as it was before the UPDATE, in both
# dialects). Not a GREATEST of each column: a later use under a policy with a shorter idle
# lifetime must shorten `expires_at` (the cap of the policy in force is stamped at each use).
# It returns the token's expiry as stored.
_LATEST_USE = _rt.c.issued_at <= bindparam("issued_at")
KEEP_REFRESH = Prepared(
    update(_rt)
    .where(
        _rt.c.id == bindparam("rt_id"),
        _rt.c.exchanged_at.is_(None),
        _rt.c.revoked_at.is_(None),
        _LIVE_GRANT,
    )
    .values(
        issued_at=case((_LATEST_USE, bindparam("issued_at")), else_=_rt.c.issued_at),
        expires_at=case((_LATEST_USE, bindparam("expires_at")), else_=_rt.c.expires_at),
        access_expires_at=case(
            (_LATEST_USE, bindparam("access_expires")), else_=_rt.c.access_expires_at
        ),
    )
    .returning(_rt.c.expires_at)
)

INSERT_ACCESS = Prepared(
    insert(_at).values(
        digest=bindparam("digest"),
        grant_id=bindparam("grant_id"),
        refresh_token_id=bindparam("refresh_token_id"),
        generation=bindparam("generation"),
        scope=bindparam("scope"),
        issued_at=bindparam("issued_at"),
        expires_at=bindparam("expires_at"),
        jti=bindparam("jti"),
        audience=bindparam("audience"),
    )
)

REVOKE_ACCESS = Prepared(
    update(_at)
    .where(_at.c.id == bindparam("at_id"), _at.c.revoked_at.is_(None))
    .values(revoked_at=bindparam("now"))
)


# The feed's INSERTs (`_ANNOUNCE_*`) are never the first write of their transaction: each runs
# only after an UPDATE changed a row (`CLAIM_SUCCESSOR`, `REVOKE_ACCESS`, `REVOKE_GRANT`),
# so on PostgreSQL the transaction has its xid before its events take their ids. The feed's
# watermark relies on it (see `baton.core.watermark`); `tests/server/test_feed.py` checks every
# site.


def _announcement(which: Any) -> Prepared:
    """Feed events for the access tokens `which` selects that outlive `effective_at`."""
    dying = select(
        # Typed as the column: a literal infers no SQL type from a `StrEnum` member.
        literal(FeedEntryKind.ACCESS_TOKEN, revocation_events.c.kind.type),
        _at.c.grant_id,
        _at.c.jti,
        _at.c.digest,
        bindparam("effective_at", type_=BigInteger),
        _at.c.expires_at,
        bindparam("now", type_=BigInteger),
    ).where(which == bindparam("key"), _at.c.expires_at > bindparam("expiring_after"))
    return Prepared(
        insert(revocation_events).from_select(
            ["kind", "grant_id", "jti", "token_digest", "effective_at", "expires_at", "created_at"],
            dying,
        )
    )


FORGET_CONSENT = Prepared(
    delete(consents).where(
        consents.c.user_id
        == select(grants.c.user_id).where(grants.c.id == bindparam("grant_id")).scalar_subquery(),
        consents.c.client_id
        == select(grants.c.client_id).where(grants.c.id == bindparam("grant_id")).scalar_subquery(),
    )
)
REVOKE_GRANT = Prepared(
    update(grants)
    .where(grants.c.id == bindparam("grant_id"), grants.c.revoked_at.is_(None))
    .values(revoked_at=bindparam("now"), revoked_reason=bindparam("reason"))
)


# A revoked grant's feed entry matters until its last access token would have expired anyway
# (`baton.store.sql.lifecycle._last_access_expiry`).
UNPAIRED_LAST_EXPIRY = Prepared(
    select(func.max(_at.c.expires_at)).where(
        _at.c.refresh_token_id.is_(None),
        _at.c.grant_id == bindparam("grant_id"),
        _at.c.expires_at > bindparam("after"),
    )
)
COMPANIONS_BY_EXPIRY = Prepared(
    select(_rt.c.id, _rt.c.expires_at)
    .where(_rt.c.grant_id == bindparam("grant_id"), _rt.c.expires_at > bindparam("after"))
    .order_by(_rt.c.expires_at.desc())
)
COMPANION_LAST_EXPIRY = Prepared(
    select(func.max(_at.c.expires_at)).where(
        _at.c.refresh_token_id == bindparam("key"), _at.c.expires_at > bindparam("after")
    )
)
ANNOUNCE_GRANT = Prepared(
    insert(revocation_events).values(
        kind=FeedEntryKind.GRANT,
        grant_id=bindparam("grant_id"),
        effective_at=bindparam("effective_at"),
        expires_at=bindparam("expires_at"),
        created_at=bindparam("created_at"),
    )
)

ANNOUNCE_COMPANION = _announcement(_at.c.refresh_token_id)
ANNOUNCE_ACCESS = _announcement(_at.c.id)
