"""The rules together: a hypothesis state machine drives the real app over HTTP and checks every
answer against a small reference model (`token -> facts` and the model's clock).

The model is written from the core issue and the design notes, not from `baton.core.rules`: a
grant with its absolute expiry and revocation, refresh tokens with their idle expiry and the
instant they were exchanged, access tokens with their `exp` and their companion. Time moves only
forward, through a FakeClock, and the rules that move it like to land exactly on the boundary
instants (`exchanged_at + leeway`, `exp`, idle and absolute expiry) or one second either side.

Lifetimes are small so that every expiry is reachable; the absolute lifetime is just above the
idle one, so pairs issued late in a grant's life are capped by it.

The client's own policy changes under the machine too (issue 28): changes written through the
admin store, in force at once, at an instant in the future (often a boundary the clock rules
like to land on) or report-only. The model follows the decided semantics (docs of
`baton.core.policy.Policy` and `Cap`), not the code: an access token keeps the `exp` it was
issued with; a leeway is the one in force at the exchange, kept whatever comes after; a refresh
token or grant issued before a version came into force dies by that version's idle or absolute
lifetime (at `max(start, born + lifetime)`, if that falls before the version's end), is never
extended by it, and stays dead after a looser one; new pairs get the lifetimes in force at
issue, capped by the grant's deadline; the retry policy in force at a retry decides replay or
fork (a leeway already running is honoured under `strict`); a report-only change changes
nothing.
"""

from __future__ import annotations

import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import anyio
import httpx2
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from starlette.testclient import TestClient

from baton.core.client_policy import PolicySettings
from baton.core.clock import FakeClock
from baton.core.policy import Lifetimes, RetryPolicy
from baton.core.rules import Reason
from baton.core.tokens import TokenKind, kind_of, mint
from baton.store.admin import Actor
from baton.store.base import Client
from baton.store.sql import SQLStore
from tests.databases import BACKENDS, empty_tables
from tests.support import (
    ISSUER,
    RegisteredClient,
    first_pair,
    register_client,
    register_user,
    running_app,
)

ACCESS_TTL = 300
IDLE_TTL = 2000
ABSOLUTE_TTL = 2200  # just above the idle lifetime: late pairs are capped by the grant
LEEWAY = 60
LIFETIMES = Lifetimes(
    access_ttl=ACCESS_TTL,
    refresh_idle_ttl=IDLE_TTL,
    refresh_absolute_ttl=ABSOLUTE_TTL,
    leeway=LEEWAY,
)
SCOPE = "read write"
SUBJECT = "alice"
MAX_GRANTS = 3
MAX_GRANTS_EVER = 8

SETTINGS = settings(
    max_examples=25,
    stateful_step_count=35,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# How far to look back among the tokens seen so far: hypothesis favours small integers, so the
# newest tokens are picked most often and old ones still come up.
picks = st.integers(min_value=0, max_value=40)
jumps = st.one_of(
    st.sampled_from(
        [
            1,
            LEEWAY - 1,
            LEEWAY,
            LEEWAY + 1,
            ACCESS_TTL - 1,
            ACCESS_TTL,
            ACCESS_TTL - LEEWAY,
            IDLE_TTL - 1,
            IDLE_TTL,
            ABSOLUTE_TTL - IDLE_TTL,
        ]
    ),
    st.integers(min_value=0, max_value=2 * LEEWAY),
    st.integers(min_value=0, max_value=IDLE_TTL + 100),
)


# A client's policy changes draw their lifetimes from values around the server's, so that
# changes both tighten and loosen, and caps land before, at and after the tokens' own expiries.
policy_access_ttls = st.sampled_from([60, 200, ACCESS_TTL, 600])
policy_idle_ttls = st.sampled_from([100, 500, 1000, IDLE_TTL, 3000])
policy_absolute_ttls = st.sampled_from([300, 1000, ABSOLUTE_TTL, 4000])
policy_leeways = st.sampled_from([0, 1, 30, LEEWAY, 120])
MAX_VERSIONS = 20  # well under `client_policy.MAX_VERSIONS`: every cap holds in the model


def maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A knob left unset (the server's, or with `over`, the one in force) or set."""
    return st.one_of(st.none(), values)


policy_changes = st.builds(
    PolicySettings,
    access_ttl=maybe(policy_access_ttls),
    refresh_idle_ttl=maybe(policy_idle_ttls),
    refresh_absolute_ttl=maybe(policy_absolute_ttls),
    leeway=maybe(policy_leeways),
    retry=maybe(st.sampled_from(RetryPolicy)),
)


# -- the reference model ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Knobs:
    """The client's policy in force, every knob resolved."""

    access_ttl: int
    refresh_idle_ttl: int
    refresh_absolute_ttl: int
    leeway: int
    retry: RetryPolicy

    @property
    def leeway_in_force(self) -> int:
        """`strict` allows no retry whatever leeway is configured."""
        return 0 if self.retry is RetryPolicy.STRICT else self.leeway


@dataclass(frozen=True)
class Version:
    """A change of the client's policy: in force from `effective_at` (None: report-only and
    undated, never in force)."""

    knobs: Knobs
    effective_at: int | None


@dataclass(frozen=True)
class Stretch:
    """A version with the time it was in force, `[start, end)` (end None: still in force)."""

    start: int
    end: int | None
    knobs: Knobs


@dataclass
class Grant:
    server_id: str
    created_at: int
    expires_at: int
    revoked_at: int | None = None
    revoked_by_reuse: bool = False
    tokens: list[str] = field(default_factory=list)
    refresh_tokens: list[str] = field(default_factory=list)

    def live(self, now: int) -> bool:
        return self.revoked_at is None and now < self.expires_at


@dataclass(frozen=True)
class Pair:
    access_token: str
    refresh_token: str
    access_expires_at: int
    refresh_expires_at: int


@dataclass
class Refresh:
    grant: Grant
    generation: int
    issued_at: int
    expires_at: int
    exchanged_at: int | None = None
    retire_at: int | None = None
    child: Pair | None = None  # the pair issued at the exchange, replayed under `replay`
    # Whether the exchange kept the child pair to replay: only under `replay` then (issue 28:
    # a token exchanged under `fork` and retried after a switch to `replay` or `strict` has
    # nothing to replay, and gets a sibling pair, as `rules.decide_refresh` says).
    sealed: bool = False
    parent: Refresh | None = None  # the token this one was issued from
    # Under `fork` (rule 3b): the child of this token whose chain continued (the first child
    # that was itself refreshed); from then on every other child, and this token, is reuse.
    continued: Refresh | None = None
    # Whether a retry of this token got a sibling pair (`fork`): its children are one family,
    # whose first refreshed child claims it whatever the policy in force then (rule 3b).
    forked: bool = False

    def superseded(self) -> bool:
        """A child whose parent's continuation went to a sibling (rule 3b)."""
        parent = self.parent
        return parent is not None and parent.continued not in (None, self)


@dataclass
class Access:
    grant: Grant
    generation: int
    issued_at: int
    expires_at: int
    companion: Refresh
    revoked: bool = False


class BatonMachine(RuleBasedStateMachine):
    retry_policy: ClassVar[RetryPolicy]
    postgres_url: ClassVar[str | None] = None  # None: a SQLite file per example

    def __init__(self) -> None:
        super().__init__()
        retry = self.retry_policy
        self.server_knobs = Knobs(ACCESS_TTL, IDLE_TTL, ABSOLUTE_TTL, LEEWAY, retry)
        self.versions: list[Version] = []  # the client's policy changes, the pending one last
        self.stack = ExitStack()
        database: Path | str
        if self.postgres_url is not None:
            empty_tables(self.postgres_url)
            database = self.postgres_url
        else:
            database = Path(
                self.stack.enter_context(tempfile.TemporaryDirectory(prefix="baton-stateful-"))
            )
        running = self.stack.enter_context(
            running_app(database, clock=FakeClock(), retry=retry, lifetimes=LIFETIMES)
        )
        self.http: TestClient = running[0]
        self.store: SQLStore = running[1]
        self.clock: FakeClock = running[2]
        register_user(self.store, SUBJECT)
        self.client: RegisteredClient = register_client(self.store, name="app")
        self.other: RegisteredClient = register_client(self.store, name="other app")
        self.api: RegisteredClient = register_client(self.store, resource_server=True, name="api")
        self.now = self.clock.now()
        self.grants: list[Grant] = []
        self.refresh_tokens: dict[str, Refresh] = {}
        self.access_tokens: dict[str, Access] = {}
        self.refresh_order: list[str] = []
        self.access_order: list[str] = []
        self.reuse_events: list[tuple[str, int, int]] = []  # (grant id, generation, time)
        self.jtis: dict[str, str] = {}  # access token -> the jti the server gave it

    def teardown(self) -> None:
        self.stack.close()

    # -- the client's policy in the model -----------------------------------------------------

    def knobs_at(self, instant: int) -> Knobs:
        """The policy in force at `instant`: the newest version in force by then (the later
        one of two made in force at the same instant), else the server's."""
        found = self.server_knobs
        newest: int | None = None
        for version in self.versions:
            at = version.effective_at
            if at is not None and at <= instant and (newest is None or at >= newest):
                found, newest = version.knobs, at
        return found

    @property
    def knobs(self) -> Knobs:
        return self.knobs_at(self.now)

    def stretches(self) -> list[Stretch]:
        """Every version that has been in force by now, with the time it was in force; one
        replaced in the second it came into force never was."""
        history = sorted(
            (v for v in self.versions if v.effective_at is not None and v.effective_at <= self.now),
            key=lambda v: v.effective_at or 0,
        )
        found = []
        for index, version in enumerate(history):
            start = version.effective_at
            assert start is not None
            end = history[index + 1].effective_at if index + 1 < len(history) else None
            if end is None or start < end:
                found.append(Stretch(start, end, version.knobs))
        return found

    def deadline(self, born: int, promised: int, idle: bool) -> int:
        """When a refresh token (`idle`) or a grant born at `born` with the expiry it was
        promised stops being honoured: each version that came into force after its birth ends
        it at `max(start, born + lifetime)` if that falls before the version's own end; never
        later than promised."""
        found = promised
        for stretch in self.stretches():
            if stretch.start <= born:
                continue
            knobs = stretch.knobs
            lifetime = knobs.refresh_idle_ttl if idle else knobs.refresh_absolute_ttl
            death = max(stretch.start, born + lifetime)
            if stretch.end is None or death < stretch.end:
                found = min(found, death)
        return found

    def grant_deadline(self, grant: Grant) -> int:
        return self.deadline(grant.created_at, grant.expires_at, idle=False)

    def refresh_deadline(self, refresh: Refresh) -> int:
        return self.deadline(refresh.issued_at, refresh.expires_at, idle=True)

    def may_have_forked(self) -> bool:
        """`fork` is the server's, or a version of the client's policy that has been in force
        has it (a pending change, report-only or dated later, has forked nothing: see
        `test_a_report_only_fork_changes_nothing`)."""
        return RetryPolicy.FORK in (
            self.retry_policy,
            *(
                v.knobs.retry
                for v in self.versions
                if v.effective_at is not None and v.effective_at <= self.now
            ),
        )

    def refresh_live(self, refresh: Refresh) -> bool:
        """Whether the grant of `refresh` still honours refresh tokens (absolute lifetime)."""
        grant = refresh.grant
        return grant.revoked_at is None and self.now < self.grant_deadline(grant)

    # -- model helpers -----------------------------------------------------------------------

    def pick_refresh(self, pick: int) -> str:
        return self.refresh_order[-1 - pick % len(self.refresh_order)]

    def pick_access(self, pick: int) -> str:
        return self.access_order[-1 - pick % len(self.access_order)]

    def record_pair(
        self, body: dict[str, Any], grant: Grant, generation: int, parent: Refresh | None = None
    ) -> Pair:
        """Checks a token response that must carry a fresh pair, and adds it to the model."""
        access_token, refresh_token = body["access_token"], body["refresh_token"]
        assert kind_of(access_token) is TokenKind.ACCESS
        assert kind_of(refresh_token) is TokenKind.REFRESH
        assert access_token not in self.access_tokens
        assert refresh_token not in self.refresh_tokens
        # The lifetimes in force now, capped by the grant's deadline as it is now.
        knobs = self.knobs
        refresh_exp = min(self.now + knobs.refresh_idle_ttl, self.grant_deadline(grant))
        access_exp = min(self.now + knobs.access_ttl, refresh_exp)
        assert body == {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": access_exp - self.now,
            "refresh_token": refresh_token,
            "refresh_token_expires_in": refresh_exp - self.now,
            "scope": SCOPE,
        }
        refresh = Refresh(grant, generation, self.now, refresh_exp, parent=parent)
        self.refresh_tokens[refresh_token] = refresh
        self.access_tokens[access_token] = Access(
            grant, generation, self.now, access_exp, companion=refresh
        )
        self.refresh_order.append(refresh_token)
        self.access_order.append(access_token)
        grant.tokens += [access_token, refresh_token]
        grant.refresh_tokens.append(refresh_token)
        return Pair(access_token, refresh_token, access_exp, refresh_exp)

    def predict_introspection(self, token: str) -> dict[str, Any]:
        """What RFC 7662 introspection by a resource server must answer now (rule 8)."""
        now = self.now
        revocation_at: int | None = None
        described: Access | Refresh
        if token in self.access_tokens:
            described = access = self.access_tokens[token]
            companion = access.companion
            active = (
                now < access.expires_at
                and not access.revoked
                and access.grant.live(now)
                and (companion.retire_at is None or now < companion.retire_at)
            )
            retire_at = companion.retire_at
            if active and retire_at is not None and retire_at < access.expires_at:
                revocation_at = retire_at
            token_type = "Bearer"
        else:
            described = refresh = self.refresh_tokens[token]
            if not self.refresh_live(refresh):
                active = False
            elif refresh.exchanged_at is None:
                active = now < self.refresh_deadline(refresh) and not refresh.superseded()
            elif refresh.continued is not None:
                active = False  # a retry would be reuse: a child's chain continued (rule 3b)
            else:
                # The leeway promised at the exchange (none under `strict` then), whatever
                # policy is in force now.
                assert refresh.retire_at is not None
                active = now < refresh.retire_at
                revocation_at = refresh.retire_at if active else None
            token_type = "refresh_token"
        if not active:
            return {"active": False}
        exp = described.expires_at
        if isinstance(described, Refresh):
            # RFC 7662 §2.2, "when this token will expire": as the policy in force caps it.
            exp = min(exp, self.refresh_deadline(described), self.grant_deadline(described.grant))
        body: dict[str, Any] = {
            "active": True,
            "scope": SCOPE,
            "client_id": self.client.id,
            "token_type": token_type,
            "exp": exp,
            "iat": described.issued_at,
            "iss": ISSUER,
            "grant_id": described.grant.server_id,
            "generation": described.generation,
            "sub": SUBJECT,
            "username": SUBJECT,
        }
        if token_type == "Bearer":
            # The client is allowed no RFC 8707 resource: its tokens are for the issuer.
            body["aud"] = ISSUER
        if revocation_at is not None:
            body["revocation_at"] = revocation_at
        return body

    # -- talking to the server ---------------------------------------------------------------

    def post_refresh(self, token: str, client: RegisteredClient) -> httpx2.Response:
        return self.http.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": token},
            auth=client.basic,
        )

    def introspect(self, token: str) -> dict[str, Any]:
        response = self.http.post("/introspect", data={"token": token}, auth=self.api.basic)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def check_introspection(self, token: str) -> None:
        expected = self.predict_introspection(token)
        kind = "access" if token in self.access_tokens else "refresh"
        state = "revocation_at" if "revocation_at" in expected else expected["active"]
        event(f"introspect {kind}: {state}")
        seen = self.introspect(token)
        if kind == "access" and expected["active"]:
            # The server names each access token with a jti of its choosing: one per token.
            jti = seen.pop("jti")
            assert self.jtis.setdefault(token, jti) == jti
            assert list(self.jtis.values()).count(jti) == 1
        assert seen == expected

    @staticmethod
    def assert_invalid_grant(response: httpx2.Response, reason: Reason) -> None:
        event(f"refused: {reason.name}")
        assert response.status_code == 400, response.text
        assert response.headers["cache-control"] == "no-store"
        assert response.json() == {"error": "invalid_grant", "error_description": reason.value}

    # -- rules -------------------------------------------------------------------------------

    @initialize()
    def start_with_a_grant(self) -> None:
        self.obtain_pair()

    @precondition(
        lambda self: (
            len(self.grants) < MAX_GRANTS
            or (
                len(self.grants) < 2 * MAX_GRANTS and not any(g.live(self.now) for g in self.grants)
            )
        )
    )
    @rule()
    def obtain_pair(self) -> None:
        """Rule 1: code + PKCE creates a grant and its first pair (generation 0)."""
        body = first_pair(self.http, self.client, scope=SCOPE)
        # The grant id is only visible through introspection; a fresh access token is active.
        seen = self.introspect(body["access_token"])
        assert seen["active"] is True
        assert seen["generation"] == 0
        assert seen["grant_id"] not in {g.server_id for g in self.grants}
        grant = Grant(seen["grant_id"], self.now, self.now + self.knobs.refresh_absolute_ttl)
        self.grants.append(grant)
        self.record_pair(body, grant, 0)
        self.check_introspection(body["access_token"])
        self.check_introspection(body["refresh_token"])

    @rule(pick=picks)
    def refresh_any(self, pick: int) -> None:
        """Any refresh token ever seen, old ones included."""
        self.refresh(self.pick_refresh(pick))

    @rule(pick=picks)
    def refresh_newest_of_a_grant(self, pick: int) -> None:
        """The client that behaves: always the newest refresh token of its grant."""
        grant = self.grants[-1 - pick % len(self.grants)]
        self.refresh(grant.refresh_tokens[-1])

    @precondition(
        lambda self: any(r.exchanged_at is not None for r in self.refresh_tokens.values())
    )
    @rule(pick=picks)
    def retry(self, pick: int) -> None:
        """An exchanged token again: a lost response retried, or a replayed stolen token."""
        exchanged = [t for t in self.refresh_order if self.refresh_tokens[t].exchanged_at]
        self.refresh(exchanged[-1 - pick % len(exchanged)])

    @precondition(
        lambda self: (
            RetryPolicy.FORK in (self.retry_policy, *(v.knobs.retry for v in self.versions))
        )
    )
    @rule(pick=picks, superseded=st.booleans())
    def refresh_a_sibling(self, pick: int, superseded: bool) -> None:
        """Rule 3b: under `fork` (the server's or a policy the client had), a token issued from
        the same parent as another one (several holders of one family, or a thief's sibling),
        refreshed before or after the others, whatever policy is in force now."""
        children = [
            t
            for t in self.refresh_order
            if (r := self.refresh_tokens[t]).parent is not None
            and r.exchanged_at is None
            and r.superseded() is superseded
        ]
        if children:
            self.refresh(children[-1 - pick % len(children)])

    @rule(
        pick=picks,
        rotate_at=st.sampled_from(
            [
                "now",
                "exp-leeway",
                "exp-leeway-1",
                "exp-leeway+1",
                "idle end-1",
                "idle end",
                "grant end-100",
                "grant end-1",
            ]
        ),
        delay=st.sampled_from(["0", "1", "leeway-1", "leeway", "leeway+1"]),
    )
    def rotate_then_retry(self, pick: int, rotate_at: str, delay: str) -> None:
        """Rotates the newest token of a grant at an interesting instant (so that the leeway
        ends exactly at, just before or just after the old access token's `exp`; or when the
        grant is about to end), then looks at the old pair and presents the old token again at
        the edge of its leeway."""
        rotatable = [g for g in self.grants if self.rotatable(g)]
        if not rotatable:
            if len(self.grants) >= MAX_GRANTS_EVER:
                return
            self.obtain_pair()
            rotatable = self.grants[-1:]
        grant = rotatable[-1 - pick % len(rotatable)]
        token = grant.refresh_tokens[-1]
        model = self.refresh_tokens[token]
        old_access = grant.tokens[grant.tokens.index(token) - 1]
        access_exp = self.access_tokens[old_access].expires_at
        # The leeway in force around the old access token's `exp` (a change may be due by then).
        leeway = self.knobs_at(max(access_exp - LEEWAY, self.now)).leeway_in_force
        idle_end = self.refresh_deadline(model)
        grant_end = self.grant_deadline(grant)
        when = {
            "now": self.now,
            "exp-leeway": access_exp - leeway,
            "exp-leeway-1": access_exp - leeway - 1,
            "exp-leeway+1": access_exp - leeway + 1,
            "idle end-1": idle_end - 1,
            "idle end": idle_end,
            "grant end-100": grant_end - 100,
            "grant end-1": grant_end - 1,
        }[rotate_at]
        self.move_to(max(when, self.now))
        self.refresh(token)
        if model.exchanged_at != self.now or model.retire_at is None:
            return  # it was not a rotation (dead token, or a retry)
        event(f"rotated at {rotate_at}" if when >= self.now else "rotated now")
        self.check_introspection(old_access)
        after = {"0": 0, "1": 1, "leeway-1": -1, "leeway": 0, "leeway+1": 1}[delay]
        instant = (model.exchanged_at if delay in ("0", "1") else model.retire_at) + after
        if instant < self.now:
            return
        self.move_to(instant)
        self.check_introspection(old_access)
        self.check_introspection(token)
        self.refresh(token)

    def rotatable(self, grant: Grant) -> bool:
        newest = self.refresh_tokens[grant.refresh_tokens[-1]]
        return (
            self.refresh_live(newest)
            and newest.exchanged_at is None
            and self.now < self.refresh_deadline(newest)
        )

    def refresh(self, token: str) -> None:
        model = self.refresh_tokens[token]
        grant = model.grant
        response = self.post_refresh(token, self.client)
        now = self.now

        if grant.revoked_at is not None:
            reason = Reason.GRANT_REVOKED_BY_REUSE if grant.revoked_by_reuse else Reason.REVOKED
            self.assert_invalid_grant(response, reason)
            return
        if now >= self.grant_deadline(grant):
            self.assert_invalid_grant(response, Reason.ABSOLUTE_EXPIRED)
            return
        knobs = self.knobs  # the client's policy in force now decides
        if model.exchanged_at is not None:
            assert model.retire_at is not None
            # The leeway is the one promised at the exchange (`retire_at`; none under `strict`
            # then): a policy changed since neither extends nor shortens it.
            if now >= model.retire_at:
                # Rule 4: reuse detected, the whole family dies at once.
                event(f"reuse at retire_at + {min(now - model.retire_at, 2)}")
                self.reused(response, model, Reason.REUSED)
                return
            if model.continued is not None:
                # Rule 3b (fork): a child's chain continued; a retry now is a replay.
                event("retry after a child continued")
                self.reused(response, model, Reason.RETRY_AFTER_CONTINUED)
                return
            event(f"retry inside the leeway, retire_at - {min(model.retire_at - now, 2)}")
            if knobs.retry is RetryPolicy.STRICT:
                event("retry inside a leeway promised before strict")
            if knobs.retry is not RetryPolicy.FORK and not model.sealed:
                event("retry under replay of a token exchanged under fork")
            if knobs.retry is not RetryPolicy.FORK and model.sealed:
                # `replay` in force (or `strict`, inside a leeway promised before it).
                # Rule 3, replay: the same pair, byte for byte, with expires_in recomputed.
                child = model.child
                assert child is not None
                assert response.status_code == 200, response.text
                assert response.json() == {
                    "access_token": child.access_token,
                    "token_type": "Bearer",
                    "expires_in": max(child.access_expires_at - now, 0),
                    "refresh_token": child.refresh_token,
                    "refresh_token_expires_in": max(child.refresh_expires_at - now, 0),
                    "scope": SCOPE,
                }
                return
            # Rule 3, fork: a fresh sibling pair, generation parent + 1; the parent's leeway
            # still runs from its first exchange.
            assert response.status_code == 200, response.text
            self.record_pair(response.json(), grant, model.generation + 1, parent=model)
            model.forked = True
            return
        if model.superseded():
            # Rule 3b (fork): one sibling's chain continued; any other sibling is reuse.
            event("sibling after another continued")
            self.reused(response, model, Reason.SIBLING_CONTINUED)
            return
        if now >= self.refresh_deadline(model):
            if now < model.expires_at:
                event("idle lifetime capped by a later policy")
            self.assert_invalid_grant(response, Reason.IDLE_EXPIRED)
            return
        # Rule 2: rotation.
        event("rotated")
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        child = self.record_pair(response.json(), grant, model.generation + 1, parent=model)
        model.exchanged_at = now
        model.retire_at = now + knobs.leeway_in_force
        model.child = child
        model.sealed = knobs.retry is RetryPolicy.REPLAY
        parent = model.parent
        if (
            self.may_have_forked()
            and parent is not None
            and (knobs.retry is RetryPolicy.FORK or parent.forked)
        ):
            # The first child refreshed claims its parent's continuation under `fork`, and after
            # a move away from it when the parent was forked from (rule 3b: its siblings never
            # both continue); a parent never forked from has one child and nothing to claim.
            parent.continued = model

    def reused(self, response: httpx2.Response, model: Refresh, reason: Reason) -> None:
        """Reuse detected (rules 4 and 3b): the whole family dies at once."""
        grant = model.grant
        self.assert_invalid_grant(response, reason)
        grant.revoked_at = self.now
        grant.revoked_by_reuse = True
        self.reuse_events.append((grant.server_id, model.generation, self.now))
        self.check_family_dead(grant)
        self.check_security_events()

    @rule(
        pick=picks,
        how=st.sampled_from(["other client", "random", "truncated", "relabelled", "bad checksum"]),
    )
    def refresh_refused(self, pick: int, how: str) -> None:
        """Rule 7 (another client: nothing changes) and unknown or malformed tokens."""
        known = self.pick_refresh(pick)
        if how == "other client":
            response = self.post_refresh(known, self.other)
            self.assert_invalid_grant(response, Reason.UNKNOWN)  # no oracle (issue 21)
            return
        token = {
            "random": mint(TokenKind.REFRESH).plaintext,
            "truncated": known[:-1],
            "relabelled": TokenKind.ACCESS.prefix + known[len(TokenKind.ACCESS.prefix) :],
            "bad checksum": known[:-1] + ("A" if known[-1] != "A" else "B"),
        }[how]
        response = self.post_refresh(token, self.client)
        self.assert_invalid_grant(response, Reason.UNKNOWN)

    @rule(seconds=jumps)
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)
        self.now += seconds

    def boundaries(self) -> dict[int, set[str]]:
        """Every instant at which some token changes state, with the tokens it concerns."""
        found: dict[int, set[str]] = {}
        for grant in self.grants:
            found.setdefault(grant.expires_at, set()).update(grant.tokens)
            found.setdefault(self.grant_deadline(grant), set()).update(grant.refresh_tokens)
            for version in self.versions:
                if version.effective_at is not None:
                    # A change coming into force: the newest pair of each grant.
                    found.setdefault(version.effective_at, set()).update(grant.tokens[-2:])
        for token, refresh in self.refresh_tokens.items():
            found.setdefault(refresh.expires_at, set()).add(token)
            found.setdefault(self.refresh_deadline(refresh), set()).add(token)
            if refresh.retire_at is not None:
                found.setdefault(refresh.retire_at, set()).add(token)
        for token, access in self.access_tokens.items():
            found.setdefault(access.expires_at, set()).add(token)
            if access.companion.retire_at is not None:
                found.setdefault(access.companion.retire_at, set()).add(token)
        return found

    def move_to(self, instant: int) -> None:
        assert instant >= self.now
        self.clock.advance(instant - self.now)
        self.now = instant

    @rule(pick=picks, offset=st.sampled_from([0, 0, -1, 1]))
    def advance_to_a_boundary(self, pick: int, offset: int) -> None:
        """Moves time next to an instant at which some tokens change state, and looks at them."""
        boundaries = self.boundaries()
        future = sorted(i for i in boundaries if i + offset > self.now)
        if not future:
            return
        instant = future[pick % len(future)]
        self.move_to(instant + offset)
        for token in sorted(boundaries[instant]):
            self.check_introspection(token)

    @rule(
        pick=picks,
        edge=st.sampled_from(["retire", "idle", "absolute"]),
        offset=st.sampled_from([0, -1]),
    )
    def refresh_at_an_edge(self, pick: int, edge: str, offset: int) -> None:
        """A refresh exactly at (or one second before) the instant its answer changes."""
        candidates: list[tuple[str, int]] = []
        for token in self.refresh_order:
            refresh = self.refresh_tokens[token]
            if edge == "retire" and refresh.retire_at is not None:
                candidates.append((token, refresh.retire_at + offset))
            elif edge == "idle" and refresh.exchanged_at is None:
                candidates.append((token, self.refresh_deadline(refresh) + offset))
            elif edge == "absolute":
                candidates.append((token, self.grant_deadline(refresh.grant) + offset))
        reachable = [(token, at) for token, at in candidates if at >= self.now]
        if not reachable:
            return
        token, instant = reachable[-1 - pick % len(reachable)]
        self.move_to(instant)
        self.refresh(token)

    @rule(
        pick=picks,
        kind=st.sampled_from([TokenKind.ACCESS, TokenKind.REFRESH]),
        hint=st.sampled_from([None, "access_token", "refresh_token"]),
        by_owner=st.booleans(),
    )
    def revoke(self, pick: int, kind: TokenKind, hint: str | None, by_owner: bool) -> None:
        """Rule 5: a refresh token revokes its grant, an access token only itself; 200 for the
        client it was issued to, invalid_request (and no change) for any other."""
        token = self.pick_refresh(pick) if kind is TokenKind.REFRESH else self.pick_access(pick)
        data = {"token": token}
        if hint is not None:
            data["token_type_hint"] = hint  # a wrong hint must not hide the token
        auth = self.client.basic if by_owner else self.other.basic
        response = self.http.post("/revoke", data=data, auth=auth)
        if not by_owner:
            assert response.status_code == 400, response.text
            assert response.json()["error"] == "invalid_request"
        elif kind is TokenKind.ACCESS:
            assert response.status_code == 200, response.text
            self.access_tokens[token].revoked = True
        else:
            assert response.status_code == 200, response.text
            refresh = self.refresh_tokens[token]
            grant = refresh.grant
            # An exchanged token whose leeway is over is already dead: revoking it must not
            # take the live family with it. Inside the leeway it revokes the whole grant.
            retired = refresh.exchanged_at is not None and not (
                refresh.retire_at is not None
                and self.now < refresh.retire_at
                and grant.live(self.now)
            )
            event(f"revoke refresh: {'retired' if retired else 'grant revoked'}")
            if not retired and grant.revoked_at is None:
                grant.revoked_at = self.now
        self.check_introspection(token)

    def schedule(
        self,
        change: PolicySettings,
        effective_at: int | None,
        report_only: bool = False,
        replace_all: bool = False,
    ) -> None:
        """Writes a change of the client's policy through the admin store, as an operator's
        surface does (`ClientPolicy.schedule`, `AdminStore.schedule_client_policy`), and adds
        it to the model: each knob as set, else the server's (`replace_all`) or the one in force
        now. A pending change it replaces never comes into force."""
        now = self.now
        base = self.server_knobs if replace_all else self.knobs
        knobs = Knobs(
            access_ttl=change.access_ttl or base.access_ttl,
            refresh_idle_ttl=change.refresh_idle_ttl or base.refresh_idle_ttl,
            refresh_absolute_ttl=change.refresh_absolute_ttl or base.refresh_absolute_ttl,
            leeway=base.leeway if change.leeway is None else change.leeway,
            retry=change.retry or base.retry,
        )
        admin = self.store.admin()

        async def write() -> bool:
            found = await admin.client(self.client.id)
            assert found is not None
            policy = found.policy.schedule(
                change, now, effective_at, report_only, replace_all=replace_all
            )
            written = await admin.schedule_client_policy(
                self.client.id, policy, now, Actor("stateful", None, now)
            )
            assert isinstance(written, Client)
            return written.policy != found.policy

        kept = [v for v in self.versions if v.effective_at is not None and v.effective_at <= now]
        if not anyio.run(write):
            # The same settings in force and the same pending change: writing it again writes
            # nothing (`store.admin.policy_change`), so no version starts now.
            if effective_at == now:
                assert knobs == self.knobs
            event("policy change: the same again, nothing written")
            return
        self.versions = [*kept, Version(knobs, effective_at)]
        # The client's next request sees the change (`clients.policy` is confirmed with its
        # row). A resource server's introspection of the client's tokens before that request
        # is decided on this process's cached row of the owner, up to `ClientCache.MAX_AGE`
        # old (`clientauth.owner_policy`, as documented there): not modelled, so the client
        # makes a request at once.
        self.assert_invalid_grant(
            self.post_refresh(mint(TokenKind.REFRESH).plaintext, self.client), Reason.UNKNOWN
        )
        self.check_client_policy()

    @initialize(change=st.none() | policy_changes)
    def start_with_a_policy(self, change: PolicySettings | None) -> None:
        """The client may have a policy of its own from the start."""
        if change is not None:
            self.schedule(change, self.now)

    @precondition(lambda self: len(self.versions) < MAX_VERSIONS)
    @rule(
        change=policy_changes,
        replace_all=st.booleans(),
        when=st.sampled_from(
            ["now", "now", "boundary", "boundary-1", "boundary+1", "later", "report-only"]
        ),
        pick=picks,
        later=st.integers(min_value=1, max_value=2 * LEEWAY),
        report_first=st.booleans(),
    )
    def change_policy(
        self,
        change: PolicySettings,
        replace_all: bool,
        when: str,
        pick: int,
        later: int,
        report_first: bool,
    ) -> None:
        """Issue 28: an operator changes the client's policy, in force at once, at an instant
        to come (a boundary some token meets, or one second either side), or report-only with
        no date (nothing changes). A dated change may be reported first."""
        now = self.now
        effective_at: int | None = now
        if when.startswith("boundary"):
            offset = {"boundary": 0, "boundary-1": -1, "boundary+1": 1}[when]
            future = sorted(i + offset for i in self.boundaries() if i + offset > now)
            effective_at = future[pick % len(future)] if future else now + later
        elif when == "later":
            effective_at = now + later
        elif when == "report-only":
            effective_at = None
        report_only = when == "report-only" or (report_first and effective_at != now)
        event(f"policy change: {when}{' reported first' if report_only else ''}")
        self.schedule(change, effective_at, report_only, replace_all)

    @precondition(
        lambda self: (
            len(self.versions) < MAX_VERSIONS
            and any(
                r.retire_at is not None and r.retire_at > r.exchanged_at
                for r in self.refresh_tokens.values()
            )
        )
    )
    @rule(change=policy_changes, pick=picks, again=st.booleans())
    def change_inside_a_leeway(self, change: PolicySettings, pick: int, again: bool) -> None:
        """A change comes into force while an exchanged token's leeway runs (a rollout lands
        on a client that just lost a response); the token is retried at once, or the newest
        token of its grant is refreshed: the running leeway is the one promised, the retry
        policy the one in force now."""
        running = [
            t
            for t in self.refresh_order
            if (r := self.refresh_tokens[t]).retire_at is not None
            and r.exchanged_at is not None
            and r.exchanged_at < r.retire_at
        ]
        token = running[-1 - pick % len(running)]
        self.schedule(change, self.now)
        event("policy change inside a leeway")
        model = self.refresh_tokens[token]
        self.refresh(token if again else model.grant.refresh_tokens[-1])

    def check_client_policy(self) -> None:
        """GET /client-policy states the policy the model has in force."""
        answer = self.http.get("/client-policy", params={"client_id": self.client.id})
        assert answer.status_code == 200, answer.text
        in_force = answer.json()["in_force"]
        knobs = self.knobs
        assert {
            "access_ttl": in_force["access_ttl"],
            "refresh_idle_ttl": in_force["refresh_idle_ttl"],
            "refresh_absolute_ttl": in_force["refresh_absolute_ttl"],
            "leeway": in_force["leeway"],
            "retry": in_force["retry"],
        } == {
            "access_ttl": knobs.access_ttl,
            "refresh_idle_ttl": knobs.refresh_idle_ttl,
            "refresh_absolute_ttl": knobs.refresh_absolute_ttl,
            "leeway": knobs.leeway_in_force,
            "retry": knobs.retry.value,
        }

    @rule(pick=picks, kind=st.sampled_from([TokenKind.ACCESS, TokenKind.REFRESH]))
    def introspect_one(self, pick: int, kind: TokenKind) -> None:
        token = self.pick_refresh(pick) if kind is TokenKind.REFRESH else self.pick_access(pick)
        self.check_introspection(token)

    @rule()
    def introspect_everything(self) -> None:
        for token in [*self.access_order, *self.refresh_order]:
            self.check_introspection(token)

    # -- checks --------------------------------------------------------------------------------

    def check_family_dead(self, grant: Grant) -> None:
        for token in grant.tokens:
            assert self.introspect(token) == {"active": False}, token

    def check_security_events(self) -> None:
        events = [e for e in anyio.run(self.store.security_events) if e.kind.endswith("reuse")]
        assert [(e.grant_id, e.generation, e.occurred_at) for e in events] == self.reuse_events
        for recorded in events:
            assert recorded.kind == "refresh_token_reuse"
            assert recorded.client_id == self.client.id
            assert recorded.subject == SUBJECT

    @invariant()
    def clocks_agree(self) -> None:
        assert self.clock.now() == self.now


class ReplayMachine(BatonMachine):
    retry_policy = RetryPolicy.REPLAY


class ForkMachine(BatonMachine):
    retry_policy = RetryPolicy.FORK


class StrictMachine(BatonMachine):
    retry_policy = RetryPolicy.STRICT


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "machine", [ReplayMachine, ForkMachine, StrictMachine], ids=["replay", "fork", "strict"]
)
def test_rules_against_the_reference_model(
    machine: type[BatonMachine], backend: str, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        run_state_machine_as_test(machine, settings=SETTINGS)
        return
    # The same model on PostgreSQL, with fewer examples (each step is a network round trip).
    url: str = request.getfixturevalue("postgres_database")
    on_postgres = type(machine.__name__ + "OnPostgres", (machine,), {"postgres_url": url})
    run_state_machine_as_test(on_postgres, settings=settings(SETTINGS, max_examples=8))


# -- what the machine found, kept as plain tests -------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_family_that_moved_on_under_fork_stays_moved_on_after_a_switch_to_replay(
    backend: str, request: pytest.FixtureRequest
) -> None:
    """Rule 3b holds across a change of policy: under `fork` a child of T was refreshed (T's
    family moved on), then the client's policy switches to `replay`; T presented again inside
    its leeway is reuse, as introspection already says, not a replay of a pair that was itself
    exchanged. (Found by the machine: the exchange read the lineage only under `fork` in force;
    fixed on main meanwhile, `lifecycle.may_have_forked`.)
    """
    with ExitStack() as stack:
        database: Path | str
        if backend == "sqlite":
            database = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        else:
            database = request.getfixturevalue("postgres_database")
            empty_tables(str(database))
        http, store, clock = stack.enter_context(
            running_app(database, clock=FakeClock(), retry=RetryPolicy.FORK, lifetimes=LIFETIMES)
        )
        register_user(store, SUBJECT)
        client = register_client(store, name="app")
        api = register_client(store, resource_server=True, name="api")
        first = first_pair(http, client, scope=SCOPE)["refresh_token"]
        answer = http.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": first},
            auth=client.basic,
        )
        second = answer.json()["refresh_token"]
        answer = http.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": second},
            auth=client.basic,
        )
        assert answer.status_code == 200, answer.text
        now = clock.now()
        admin = store.admin()

        async def switch() -> None:
            found = await admin.client(client.id)
            assert found is not None
            policy = found.policy.schedule(PolicySettings(retry=RetryPolicy.REPLAY), now, now)
            await admin.schedule_client_policy(client.id, policy, now, Actor("test", None, now))

        anyio.run(switch)
        seen = http.post("/introspect", data={"token": first}, auth=api.basic).json()
        assert seen == {"active": False}
        answer = http.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": first},
            auth=client.basic,
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["error_description"] == Reason.RETRY_AFTER_CONTINUED.value


@pytest.mark.parametrize("server_retry", [RetryPolicy.REPLAY, RetryPolicy.STRICT])
def test_a_resource_server_sees_a_family_that_moved_on_under_the_owners_fork(
    server_retry: RetryPolicy, tmp_path: Path
) -> None:
    """Introspection by a resource server judges a refresh token by its owner's policy: the
    owner's `fork` (over a server that does not fork) moved T's family on when a child of T was
    refreshed, so T is inactive, as a retry of it would be reuse. (Found by the machine: the
    lineage was read by the introspecting client's policy, which never forked; fixed on main
    meanwhile, `lifecycle.find_token`.)"""
    with running_app(tmp_path, clock=FakeClock(), retry=server_retry, lifetimes=LIFETIMES) as (
        http,
        store,
        clock,
    ):
        register_user(store, SUBJECT)
        client = register_client(store, name="app")
        api = register_client(store, resource_server=True, name="api")
        now = clock.now()
        admin = store.admin()

        async def fork() -> None:
            found = await admin.client(client.id)
            assert found is not None
            policy = found.policy.schedule(PolicySettings(retry=RetryPolicy.FORK), now, now)
            await admin.schedule_client_policy(client.id, policy, now, Actor("test", None, now))

        anyio.run(fork)
        first = first_pair(http, client, scope=SCOPE)["refresh_token"]
        token = first
        for _ in range(2):
            answer = http.post(
                "/token",
                data={"grant_type": "refresh_token", "refresh_token": token},
                auth=client.basic,
            )
            assert answer.status_code == 200, answer.text
            token = answer.json()["refresh_token"]
        seen = http.post("/introspect", data={"token": first}, auth=api.basic).json()
        assert seen == {"active": False}
        answer = http.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": first},
            auth=client.basic,
        )
        assert answer.json()["error_description"] == Reason.RETRY_AFTER_CONTINUED.value


def test_a_resource_server_sees_a_cap_written_elsewhere_at_once(tmp_path: Path) -> None:
    """A change written by another process (the CLI) comes into force for every decision at its
    instant: a resource server's introspection agrees with the refresh the owner would get."""
    with running_app(tmp_path, clock=FakeClock(), lifetimes=LIFETIMES) as (http, store, clock):
        register_user(store, SUBJECT)
        client = register_client(store, name="app")
        api = register_client(store, resource_server=True, name="api")
        token = first_pair(http, client, scope=SCOPE)["refresh_token"]
        clock.advance(10)
        answer = http.post(  # the client's row is in this process's cache
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": token},
            auth=client.basic,
        )
        token = answer.json()["refresh_token"]
        now = clock.now()
        admin = store.admin()

        async def shorten() -> None:
            found = await admin.client(client.id)
            assert found is not None
            policy = found.policy.schedule(PolicySettings(refresh_absolute_ttl=300), now, now)
            await admin.schedule_client_policy(client.id, policy, now, Actor("cli", None, now))

        anyio.run(shorten)
        clock.advance(290)  # the grant, 300 s old, is past the new absolute lifetime
        seen = http.post("/introspect", data={"token": token}, auth=api.basic).json()
        answer = http.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": token},
            auth=client.basic,
        )
        assert answer.json()["error_description"] == Reason.ABSOLUTE_EXPIRED.value
        assert seen == {"active": False}


def test_a_report_only_fork_changes_nothing(tmp_path: Path) -> None:
    """Under `replay`, a token retried inside its leeway after its child was refreshed gets the
    child pair again; a report-only change to `fork`, never in force, must not make it reuse."""
    with running_app(tmp_path, clock=FakeClock(), lifetimes=LIFETIMES) as (http, store, clock):
        register_user(store, SUBJECT)
        client = register_client(store, name="app")
        now = clock.now()
        admin = store.admin()

        async def report_fork() -> None:
            found = await admin.client(client.id)
            assert found is not None
            policy = found.policy.schedule(
                PolicySettings(retry=RetryPolicy.FORK), now, None, report_only=True
            )
            await admin.schedule_client_policy(client.id, policy, now, Actor("test", None, now))

        anyio.run(report_fork)
        first = first_pair(http, client, scope=SCOPE)["refresh_token"]
        answers: list[dict[str, Any]] = []
        for token in (first, None, first):
            token = token or answers[-1]["refresh_token"]
            answer = http.post(
                "/token",
                data={"grant_type": "refresh_token", "refresh_token": token},
                auth=client.basic,
            )
            assert answer.status_code == 200, answer.text
            answers.append(answer.json())
        assert answers[2] == answers[0]  # the same pair again (rule 3, replay)
