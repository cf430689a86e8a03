"""A client's own policy, and changes to it scheduled for an instant (issue 28).

A client may set, over the server's defaults, any of the knobs in `PolicySettings`: lifetimes,
leeway, retry policy, whether refresh tokens rotate, grant types, PKCE. Each change is a
`PolicyVersion` with the instant it takes effect (`effective_at`); the policy in force at an
instant is the newest version whose `effective_at` has passed, over the server's policy. Nothing
runs at `effective_at`: every decision asks `ClientPolicy.at(now)`, so a change takes effect for
every process at the same instant, as a leeway ends (docs/lifecycle.md).

A version may be *report-only* until it takes effect (or for good, with no `effective_at`):
it is then evaluated beside the policy in force on every exchange and every access-token check
the server sees, and what it would have refused is recorded (`baton.core.signals`), while
nothing is refused for it.

What a change does to tokens already out (`Policy`'s docstring): access tokens keep their `exp`
and a running leeway keeps its end, since resource servers hold those as promised; the idle and
absolute lifetimes of refresh tokens are capped at their next exchange; every other knob applies
to requests and exchanges from `effective_at` on.

Stored as one JSON column of the client (`clients.policy`), so the client's cached row carries
its whole schedule and a change to it is seen by every process that confirms the row.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field, fields, replace
from typing import Any

from baton.core.policy import Cap, Lifetimes, Policy, RetryPolicy
from baton.core.registration import CLIENT_CREDENTIALS, GRANT_TYPES

MAX_LIFETIME = 10 * 365 * 86_400  # ten years: anything longer is a typo
# The versions a client keeps: enough that the caps of every change an operator made in a
# token's lifetime hold; past it the oldest is forgotten (a token it alone had ended, still
# within its own lifetimes, would be honoured again).
MAX_VERSIONS = 32


class PolicyError(ValueError):
    """A policy setting that cannot be; the message says which and why."""


# The knobs a client may set, in the order they are shown; each is None when the server's
# default applies. Every surface (CLI flags, admin API, console form, client policy endpoint)
# is derived from this tuple and `PolicySettings`' field docs.
DURATIONS = ("access_ttl", "refresh_idle_ttl", "refresh_absolute_ttl", "leeway")


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """A client's settings over the server's policy (None: the server's)."""

    access_ttl: int | None = None  # seconds an access token lives (`exp`)
    refresh_idle_ttl: int | None = None  # seconds a refresh token lives unused
    refresh_absolute_ttl: int | None = None  # seconds a grant lives, refreshed or not
    leeway: int | None = None  # seconds an exchanged pair stays usable for a retry
    retry: RetryPolicy | None = None  # what a retry inside the leeway gets
    rotate: bool | None = None  # False: a confidential client keeps its refresh token
    grant_types: tuple[str, ...] | None = None  # the grant types the client may use
    require_pkce: bool | None = None  # refuse an authorization request without PKCE

    def __post_init__(self) -> None:
        for name in DURATIONS:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise PolicyError(f"{name} must be a whole number of seconds")
            low = 0 if name == "leeway" else 1
            if not low <= value <= MAX_LIFETIME:
                raise PolicyError(f"{name} must be between {low} and {MAX_LIFETIME} seconds")
        if self.grant_types is not None:
            unknown = sorted(set(self.grant_types) - set(GRANT_TYPES))
            if unknown:
                raise PolicyError(f"unsupported grant type {unknown[0]!r}")

    @property
    def empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))

    def over(self, other: PolicySettings) -> PolicySettings:
        """These settings, with `other`'s wherever these leave a knob unset."""
        return PolicySettings(
            **{
                f.name: getattr(self, f.name)
                if getattr(self, f.name) is not None
                else getattr(other, f.name)
                for f in fields(self)
            }
        )

    def check_for(self, *, is_public: bool) -> None:
        """Refuses settings the client's kind cannot have (raises `PolicyError`)."""
        if is_public and self.rotate is False:
            # RFC 9700 §4.14.2: a public client's refresh tokens must be sender-constrained or
            # rotate; Baton's are not sender-constrained.
            raise PolicyError("a public client's refresh tokens always rotate (RFC 9700 §4.14.2)")
        if is_public and self.grant_types is not None and CLIENT_CREDENTIALS in self.grant_types:
            raise PolicyError("client_credentials is for confidential clients only")
        if is_public and self.require_pkce is False:
            raise PolicyError("a public client always uses PKCE (OAuth 2.1 §7.5.1)")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, RetryPolicy):
                value = value.value
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def check_against(self, server: Policy) -> None:
        """Refuses settings the server cannot honour (raises `PolicyError`): an access-token
        lifetime beyond the server's `--access-ttl`, since a signing key stays published only
        that long after it is replaced, so a JWT access token would stop verifying before its
        `exp` (the promise every change keeps)."""
        if self.access_ttl is not None and self.access_ttl > server.lifetimes.access_ttl:
            raise PolicyError(
                f"access_ttl must not exceed the server's --access-ttl "
                f"({server.lifetimes.access_ttl} s): signing keys stay published only that long"
            )

    @classmethod
    def from_json(cls, value: Any, *, lenient: bool = False) -> PolicySettings:
        """Settings from their JSON object (unknown members refused, `PolicyError`).

        `lenient`, for what the store holds: a knob or a value this release does not know (one a
        later release wrote, during a rolling upgrade) is left to the server's default instead
        of failing every request of the client."""
        if not isinstance(value, dict):
            raise PolicyError("a policy is a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown and not lenient:
            raise PolicyError(f"unknown policy setting {unknown[0]!r}")
        if lenient:
            kept: dict[str, Any] = {}
            for name in known & set(value):
                try:
                    cls.from_json({name: value[name]})
                except PolicyError:
                    continue
                kept[name] = value[name]
            value = kept
        args: dict[str, Any] = {}
        for name, raw in value.items():
            if raw is None:
                continue
            if name == "retry":
                try:
                    args[name] = RetryPolicy(raw)
                except ValueError:
                    raise PolicyError(
                        f"retry must be one of {', '.join(p.value for p in RetryPolicy)}"
                    ) from None
            elif name in ("rotate", "require_pkce"):
                if not isinstance(raw, bool):
                    raise PolicyError(f"{name} must be true or false")
                args[name] = raw
            elif name == "grant_types":
                if not isinstance(raw, list) or not all(isinstance(g, str) for g in raw):
                    raise PolicyError("grant_types must be a list of grant types")
                args[name] = tuple(dict.fromkeys(raw))
            else:
                args[name] = raw
        return cls(**args)


NO_SETTINGS = PolicySettings()


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    """One change of a client's policy: its whole settings from `effective_at` on (None: not
    yet dated, only reported). `report_only`: evaluated and reported before it takes effect.
    `scheduled_at`: when the change was made (shown to the operator and the integrator)."""

    settings: PolicySettings
    effective_at: int | None
    scheduled_at: int
    report_only: bool = False

    def __post_init__(self) -> None:
        if self.effective_at is None and not self.report_only:
            raise PolicyError("a change without an effective date must be report-only")

    def to_json(self) -> dict[str, Any]:
        return {
            "settings": self.settings.to_json(),
            "effective_at": self.effective_at,
            "scheduled_at": self.scheduled_at,
            "report_only": self.report_only,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> PolicyVersion:
        """A version as the store holds it (`PolicySettings.from_json`, lenient)."""
        return cls(
            settings=PolicySettings.from_json(value.get("settings", {}), lenient=True),
            effective_at=value.get("effective_at"),
            scheduled_at=int(value["scheduled_at"]),
            report_only=bool(value.get("report_only", False)),
        )


@dataclass(frozen=True, slots=True)
class ClientPolicy:
    """A client's policy over time: the version in force, and at most one pending change."""

    versions: tuple[PolicyVersion, ...] = field(default=())
    # The last `at` and `shadow_policy` answers, by name, with the server policy and the second
    # they were asked for: every request of the client asks again within the second, and
    # working them out again would cost more than the rest of a refresh's policy work. Not part
    # of the value (equality, hash, repr) and never copied by `replace`.
    _answers: dict[str, tuple[Policy, int, Policy | None]] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def in_force_version(self, now: int) -> PolicyVersion | None:
        current = None
        for version in self.versions:
            if (
                version.effective_at is not None
                and version.effective_at <= now
                and (current is None or version.effective_at >= (current.effective_at or 0))
            ):
                current = version
        return current

    def settings_at(self, now: int) -> PolicySettings:
        """The client's settings in force at `now` (none set: the server's)."""
        version = self.in_force_version(now)
        return NO_SETTINGS if version is None else version.settings

    def pending(self, now: int) -> PolicyVersion | None:
        """The change scheduled after `now` (or undated, report-only), if any."""
        for version in self.versions:
            if version.effective_at is None or version.effective_at > now:
                return version
        return None

    def shadow(self, now: int) -> PolicySettings | None:
        """The settings to evaluate beside those in force at `now` without enforcing them: the
        pending change's, while it is report-only."""
        pending = self.pending(now)
        return pending.settings if pending is not None and pending.report_only else None

    def at(self, server: Policy, now: int) -> Policy:
        """The policy in force for this client at `now`, over the server's, with the caps of
        every version in force up to `now` (`Policy.caps`)."""
        if not self.versions:
            return server
        answer = self._answers.get("at")
        if answer is not None and answer[0] is server and answer[1] == now and answer[2]:
            return answer[2]
        version = self.in_force_version(now)
        if version is None:
            policy = server
        else:
            policy = resolve(server, version.settings, version.effective_at)
            policy = replace(policy, caps=self._caps(server, now, None))
        self._answers["at"] = (server, now, policy)
        return policy

    def shadow_policy(self, server: Policy, now: int) -> Policy | None:
        """The report-only policy to evaluate at `now`, over the server's, or None."""
        if not self.versions:
            return None
        answer = self._answers.get("shadow")
        if answer is not None and answer[0] is server and answer[1] == now:
            return answer[2]
        policy = self._shadow_policy(server, now)
        self._answers["shadow"] = (server, now, policy)
        return policy

    def _shadow_policy(self, server: Policy, now: int) -> Policy | None:
        pending = self.pending(now)
        if pending is None or not pending.report_only:
            return None
        # As if in force from now: the tokens already out are judged as they would be at the
        # instant it takes effect.
        policy = resolve(server, pending.settings, now)
        return replace(policy, caps=self._caps(server, now, pending.settings))

    def _caps(self, server: Policy, now: int, then: PolicySettings | None) -> tuple[Cap, ...]:
        """Each version in force up to `now`, with the stretch it was in force (and `then` from
        `now` on, when given: the report-only settings, as if in force from now)."""
        history = sorted(
            (v for v in self.versions if v.effective_at is not None and v.effective_at <= now),
            key=lambda v: v.effective_at or 0,
        )
        stretches: list[tuple[int, PolicySettings]] = [
            (v.effective_at or 0, v.settings) for v in history
        ]
        if then is not None:
            stretches.append((now, then))
        caps = []
        for index, (start, settings) in enumerate(stretches):
            end = stretches[index + 1][0] if index + 1 < len(stretches) else None
            if end is not None and end <= start:
                continue  # replaced in the same second: never in force
            lifetimes = resolve(server, settings, start).lifetimes
            caps.append(Cap(start, end, lifetimes.refresh_idle_ttl, lifetimes.refresh_absolute_ttl))
        return tuple(caps)

    def schedule(
        self,
        change: PolicySettings,
        now: int,
        effective_at: int | None = None,
        report_only: bool = False,
        *,
        replace_all: bool = False,
    ) -> ClientPolicy:
        """This policy with `change` applied over the settings in force now (or, with
        `replace_all`, as the whole settings), taking effect at `effective_at` (None with
        `report_only`: reported until dated; an instant at or before `now`: at once). Any
        pending change is replaced. Versions that were in force are kept (the caps they put on
        tokens issued before them hold, `Policy.caps`), the newest `MAX_VERSIONS`."""
        if effective_at is not None and effective_at <= now:
            if report_only:
                # A mistyped date must not turn a trial into enforcement.
                raise PolicyError("a report-only change needs a date after now, or none")
            effective_at = now
        base = NO_SETTINGS if replace_all else self.settings_at(now)
        settings = change if replace_all else change.over(base)
        version = PolicyVersion(settings, effective_at, now, report_only)
        return ClientPolicy((*self._kept(now), version)[-MAX_VERSIONS:])

    def cancel(self, now: int) -> ClientPolicy:
        """This policy without its pending change."""
        return ClientPolicy(self._kept(now))

    def _kept(self, now: int) -> tuple[PolicyVersion, ...]:
        """The versions that have been in force by `now` (the pending change left out)."""
        return tuple(
            v for v in self.versions if v.effective_at is not None and v.effective_at <= now
        )

    def stored(self) -> str | None:
        if not self.versions:
            return None
        return json.dumps(
            [v.to_json() for v in self.versions], separators=(",", ":"), sort_keys=True
        )

    @classmethod
    def from_stored(cls, text: str | None) -> ClientPolicy:
        """The policy a client's row holds (`stored`'s inverse). Every request that confirms its
        client's row reads it, inside its transaction: the same text gives the same (immutable)
        policy, parsed once while it is among the last `_PARSED_LIMIT` texts read."""
        if not text:
            return NO_POLICY
        return _parsed(text)


NO_POLICY = ClientPolicy()
_PARSED_LIMIT = 512  # stored policies kept parsed: a server's clients with a policy, and more


@functools.lru_cache(maxsize=_PARSED_LIMIT)
def _parsed(text: str) -> ClientPolicy:
    return ClientPolicy(tuple(PolicyVersion.from_json(v) for v in json.loads(text)))


def resolve(server: Policy, settings: PolicySettings, since: int | None) -> Policy:
    """The server's policy with a client's settings over it, in force from `since`."""
    if settings.empty:
        return server if since is None else replace(server, since=since)
    lifetimes = server.lifetimes
    changed = {
        name: getattr(settings, name) for name in DURATIONS if getattr(settings, name) is not None
    }
    if changed:
        lifetimes = Lifetimes(
            **{
                "access_ttl": lifetimes.access_ttl,
                "refresh_idle_ttl": lifetimes.refresh_idle_ttl,
                "refresh_absolute_ttl": lifetimes.refresh_absolute_ttl,
                "leeway": lifetimes.leeway,
                "code_ttl": lifetimes.code_ttl,
                **changed,
            }
        )
    return Policy(
        lifetimes=lifetimes,
        retry=settings.retry if settings.retry is not None else server.retry,
        rotate=settings.rotate if settings.rotate is not None else server.rotate,
        since=since,
    )


def grant_types_in_force(
    registered: tuple[str, ...] | None, settings: PolicySettings
) -> tuple[str, ...] | None:
    """The grant types a client may use: its policy's, else those it registered (None: every
    grant its type allows)."""
    return settings.grant_types if settings.grant_types is not None else registered


def pkce_in_force(registered: bool, settings: PolicySettings) -> bool:
    """Whether the client's authorization requests need PKCE: its policy's say, else its own."""
    return settings.require_pkce if settings.require_pkce is not None else registered


def resolved(
    policy: Policy,
    settings: PolicySettings,
    grant_types: tuple[str, ...] | None,
    require_pkce: bool,
    is_public: bool = False,
) -> dict[str, Any]:
    """Every knob of a client's policy, resolved, as `GET /client-policy`, the report and its
    notice state them: `policy` is the policy in force (its lifetimes, leeway, retry and
    rotation; the leeway is 0 under `strict`), `settings` the client's own (for the grant types
    and PKCE, which fall back on its registration: `grant_types`, `require_pkce`)."""
    lifetimes = policy.lifetimes
    allowed = grant_types_in_force(grant_types, settings)
    return {
        "access_ttl": lifetimes.access_ttl,
        "refresh_idle_ttl": lifetimes.refresh_idle_ttl,
        "refresh_absolute_ttl": lifetimes.refresh_absolute_ttl,
        "leeway": policy.leeway,
        "retry": policy.retry.value,
        # RFC 9700 §4.14.2 and OAuth 2.1 §7.5.1: a public client always rotates, always PKCE.
        "rotate": policy.rotate or is_public,
        "grant_types": None if allowed is None else list(allowed),
        "require_pkce": pkce_in_force(require_pkce, settings) or is_public,
    }
