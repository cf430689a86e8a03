"""Who a scheduled policy change would break, with the evidence, and the notice to send them
(issue 28): pure functions of a client's policy, the server's policy and its integration health.

`evidence` is what `baton report enforcement --json/--csv` and the console show: the signals
counted over the window (`baton.core.signals.Health`), the policy in force and the scheduled
change, and whether the client is *affected*: the report-only policy would have refused one of
its requests since the change was scheduled (refusals counted under a change it replaced do
not count), or it used old access tokens after a refresh later than the change's shorter
leeway allows (uses well inside the new leeway break nothing).

`notice` writes the same facts in plain words for the integrator: what changes and when (UTC),
what their app did, and what to change in it, one line per finding. It names nothing an
integrator would not know from OAuth itself (access and refresh tokens, `expires_in`, grant
types, PKCE), never a token, never the server's internals.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from baton.core.client_policy import (
    ClientPolicy,
    PolicySettings,
    PolicyVersion,
    resolve,
    resolved,
)
from baton.core.policy import Policy, RetryPolicy
from baton.core.signals import Health, Refusal, SignalKind, Tally

DAY = 86_400


class Registered(Protocol):
    """What a notice reads of a registered client (`baton.store.base.Client` has it)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def policy(self) -> ClientPolicy: ...
    @property
    def grant_types(self) -> tuple[str, ...] | None: ...
    @property
    def require_pkce(self) -> bool: ...
    @property
    def is_public(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Subject:
    """The client a notice is about: what its registration says besides its policy."""

    client_id: str
    name: str
    policy: ClientPolicy
    grant_types: tuple[str, ...] | None = None  # registered (None: every grant its type allows)
    require_pkce: bool = True  # registered
    is_public: bool = False  # a public client always rotates and uses PKCE

    @classmethod
    def of(cls, client: Registered) -> Subject:
        return cls(
            client.id,
            client.name,
            client.policy,
            client.grant_types,
            client.require_pkce,
            client.is_public,
        )


# -- plain words -----------------------------------------------------------------------------------


def utc(instant: int) -> str:
    """An instant as the notice writes it: `2026-12-19 09:00 UTC`."""
    return datetime.fromtimestamp(instant, UTC).strftime("%Y-%m-%d %H:%M UTC")


def span(seconds: int) -> str:
    """A duration in the largest whole unit that states it exactly: `60 s`, `15 min`, `2 h`,
    `90 days` (seconds under two minutes, and whenever no unit divides it: never rounded)."""
    if seconds < 120:
        return f"{seconds} s"
    for unit, name in ((DAY, " days"), (3600, " h"), (60, " min")):
        if seconds >= unit and seconds % unit == 0:
            count = seconds // unit
            return f"{count}{' day' if name == ' days' and count == 1 else name}"
    return f"{seconds} s"


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


def _grant_types(types: tuple[str, ...] | None) -> str:
    return "every grant type the client's type allows" if types is None else ", ".join(types)


# -- the policy in force and the scheduled change --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """One knob the scheduled change sets differently from the policy in force."""

    setting: str
    before: Any
    after: Any

    def to_json(self) -> dict[str, Any]:
        return {"setting": self.setting, "from": self.before, "to": self.after}


def _resolved(policy: Policy, settings: PolicySettings, subject: Subject) -> dict[str, Any]:
    return resolved(policy, settings, subject.grant_types, subject.require_pkce, subject.is_public)


def in_force(subject: Subject, server: Policy, now: int) -> dict[str, Any]:
    """The client's policy in force at `now`, every knob resolved, and which of them the client
    sets (the others are the server's defaults)."""
    settings = subject.policy.settings_at(now)
    version = subject.policy.in_force_version(now)
    return {
        **_resolved(subject.policy.at(server, now), settings, subject),
        "since": None if version is None else version.effective_at,
        "client_sets": sorted(settings.to_json()),
    }


def scheduled(subject: Subject, server: Policy, now: int) -> dict[str, Any] | None:
    """The pending change, every knob resolved, and what it changes; None without one."""
    pending = subject.policy.pending(now)
    if pending is None:
        return None
    changes = changes_of(subject, server, now)
    return {
        "settings": _resolved(_pending_policy(server, pending), pending.settings, subject),
        "effective_at": pending.effective_at,
        "report_only": pending.report_only,
        "scheduled_at": pending.scheduled_at,
        "changes": [c.to_json() for c in changes],
    }


def _pending_policy(server: Policy, pending: PolicyVersion) -> Policy:
    return resolve(server, pending.settings, pending.effective_at)


def changes_of(subject: Subject, server: Policy, now: int) -> tuple[Change, ...]:
    """What the pending change sets differently from the policy in force, knob by knob."""
    pending = subject.policy.pending(now)
    if pending is None:
        return ()
    before = in_force(subject, server, now)
    after = _resolved(_pending_policy(server, pending), pending.settings, subject)
    return tuple(
        Change(name, before[name], after[name]) for name in after if before[name] != after[name]
    )


def leeway_after(subject: Subject, server: Policy, now: int) -> int | None:
    """The leeway of the pending change when it is shorter than the one in force, else None."""
    pending = subject.policy.pending(now)
    if pending is None:
        return None
    before = int(in_force(subject, server, now)["leeway"])
    after = int(_resolved(_pending_policy(server, pending), pending.settings, subject)["leeway"])
    return after if after < before else None


def refusals_counted(subject: Subject, health: Health, now: int) -> Tally:
    """The report-only refusals that judge the pending change: those counted since it was
    scheduled. A refusal counted before then was a replaced change's (a shorter leeway the
    operator gave up), not this one's; a tally whose last refusal precedes `scheduled_at` is
    all of that kind. None without a pending change."""
    pending = subject.policy.pending(now)
    tally = health.tally(SignalKind.WOULD_REFUSE)
    if pending is None or tally.last_at is None or tally.last_at < pending.scheduled_at:
        return Tally()
    return tally


def stale_past(tally: Tally, leeway: int) -> int:
    """The stale uses counted at or after `leeway` seconds after the exchange: those a leeway of
    that length refuses (a use well inside it breaks nothing)."""
    return sum(count for delay, count in tally.delays.items() if delay >= leeway)


def affected(subject: Subject, server: Policy, health: Health, now: int) -> bool:
    """Whether the scheduled change would break this client: its report-only policy refused a
    request since the change was scheduled, or it used old access tokens after a refresh at
    least as long after it as the change's shorter leeway (`stale_past`)."""
    if refusals_counted(subject, health, now).count > 0:
        return True
    shorter = leeway_after(subject, server, now)
    if shorter is None:
        return False
    return stale_past(health.tally(SignalKind.STALE_ACCESS), shorter) > 0


# -- the evidence ----------------------------------------------------------------------------------


def evidence(subject: Subject, server: Policy, health: Health, now: int) -> dict[str, Any]:
    """The evidence of one client over the window `health.since`..`now`, as JSON."""
    counted = health.to_json()
    return {
        "client_id": subject.client_id,
        "name": subject.name,
        "affected": affected(subject, server, health, now),
        "since": health.since,
        "until": now,
        **{kind.value: counted[kind.value] for kind in SignalKind},
        "would_refuse_by_rule": counted["would_refuse_by_rule"],
        "active_grants": health.active_grants,
        "grants_breaking": health.grants_breaking,
        "breaking_share": health.breaking_share,
        "in_force": in_force(subject, server, now),
        "scheduled": scheduled(subject, server, now),
    }


# One CSV row per client: these columns, in this order (`evidence_row`).
CSV_COLUMNS = (
    "client_id",
    "name",
    "affected",
    "since",
    "until",
    *(
        f"{kind.value}_{part}"
        for kind in SignalKind
        for part in ("count", "p50_delay_seconds", "p95_delay_seconds", "last_seen")
    ),
    *(f"would_refuse_{reason.value}" for reason in Refusal),
    "active_grants",
    "grants_breaking",
    "breaking_share",
    "effective_at",
    "report_only",
    "changes",
)


def evidence_row(found: dict[str, Any]) -> dict[str, Any]:
    """An `evidence` dict flattened to `CSV_COLUMNS` (a change as `setting:from->to`)."""
    row: dict[str, Any] = {name: found[name] for name in ("client_id", "name", "affected")}
    row["since"], row["until"] = found["since"], found["until"]
    for kind in SignalKind:
        tally = found[kind.value]
        row[f"{kind.value}_count"] = tally["count"]
        for part in ("p50_delay_seconds", "p95_delay_seconds"):
            row[f"{kind.value}_{part}"] = tally[part]
        row[f"{kind.value}_last_seen"] = tally["last_seen"]
    for reason in Refusal:
        row[f"would_refuse_{reason.value}"] = (
            found["would_refuse_by_rule"].get(reason.value, {}).get("count", 0)
        )
    for name in ("active_grants", "grants_breaking", "breaking_share"):
        row[name] = found[name]
    change = found["scheduled"]
    row["effective_at"] = None if change is None else change["effective_at"]
    row["report_only"] = None if change is None else change["report_only"]
    row["changes"] = (
        ""
        if change is None
        else " ".join(
            f"{c['setting']}:{_plain(c['from'])}->{_plain(c['to'])}" for c in change["changes"]
        )
    )
    return row


def _plain(value: Any) -> str:
    if value is None:
        return "any"
    if isinstance(value, list):
        return ",".join(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


# -- the notice ------------------------------------------------------------------------------------


def describe(change: Change) -> str:
    """One change, as the integrator reads it."""
    before, after = change.before, change.after
    match change.setting:
        case "access_ttl":
            return f"access tokens are valid for {span(after)} (until now {span(before)})"
        case "refresh_idle_ttl":
            return (
                f"a refresh token not used for {span(after)} stops working "
                f"(until now {span(before)})"
            )
        case "refresh_absolute_ttl":
            return (
                f"a sign-in lasts at most {span(after)}, however often it is refreshed, after "
                f"which the user signs in again (until now {span(before)})"
            )
        case "leeway" if after == 0:
            return (
                f"after a refresh, the previous access token and refresh token stop working at "
                f"once (until now they kept working for {span(before)})"
            )
        case "leeway":
            return (
                f"after a refresh, the previous access token and refresh token keep working "
                f"for {span(after)} (until now {span(before)})"
            )
        case "retry":
            return {
                RetryPolicy.STRICT.value: "a refresh token can be used only once: sending it "
                "again, even to retry a refresh whose response was lost, ends the sign-in",
                RetryPolicy.REPLAY.value: "sending a refresh token again shortly after a refresh "
                "(a retry) returns the same new tokens",
                RetryPolicy.FORK.value: "sending a refresh token again shortly after a refresh "
                "(a retry) returns another new pair of tokens",
            }[after]
        case "rotate":
            return (
                "each refresh returns a new refresh token and the previous one stops working"
                if after
                else "a refresh returns a new access token and the refresh token stays the same"
            )
        case "grant_types":
            return (
                f"the grant types allowed are: {_grant_types(_tuple(after))} "
                f"(until now {_grant_types(_tuple(before))})"
            )
        case "require_pkce":
            return (
                "every authorization request must use PKCE (a code_challenge with S256)"
                if after
                else "authorization requests may omit PKCE"
            )
    return f"{change.setting} changes from {before} to {after}"  # pragma: no cover


def _tuple(value: list[str] | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


def _delays(tally: Tally, after: str) -> str:
    """`, typically 118 s after the exchange (95% within 121 s)`, or nothing without delays."""
    if tally.p50 is None or tally.p95 is None:
        return ""
    return f", typically {tally.p50} s {after} (95% within {tally.p95} s)"


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing the app did, and what to change in it."""

    kind: str  # a SignalKind, or a Refusal of the report-only policy
    did: str
    fix: str


def findings(subject: Subject, server: Policy, health: Health, now: int) -> list[Finding]:
    """What the client's app did over the window, one finding per kind, with its fix."""
    days = max(1, round((now - health.since) / DAY))
    window = "in the last day" if days == 1 else f"in the last {days} days"
    pending = subject.policy.pending(now)
    when = (
        None
        if pending is None
        else (None if pending.effective_at is None else utc(pending.effective_at))
    )
    from_when = f"from {when}" if when is not None else "once the change takes effect"
    shorter = leeway_after(subject, server, now)
    out: list[Finding] = []

    stale = health.tally(SignalKind.STALE_ACCESS)
    if stale.count:
        did = (
            f"used an access token after its refresh token had been exchanged "
            f"{_times(stale.count)} {window}{_delays(stale, 'after the exchange')}"
        )
        if shorter is not None:
            dies = f"{shorter} s after the exchange" if shorter else "as soon as it is refreshed"
            too_late = stale_past(stale, shorter)
            if too_late:
                did += (
                    f"; {from_when} such a token stops working {dies}, and {too_late} of these "
                    "uses came at least that late"
                )
            else:
                did += (
                    f"; {from_when} such a token stops working {dies}, and none of these uses "
                    "came that late"
                )
        out.append(
            Finding(
                SignalKind.STALE_ACCESS,
                did,
                "Use the new access token from each refresh response at once, and stop using "
                "the previous one (also in other threads, processes or caches of your app).",
            )
        )
    retry = health.tally(SignalKind.LEEWAY_RETRY)
    if retry.count:
        did = (
            f"sent a refresh token again after it had already been used for a refresh "
            f"{_times(retry.count)} {window}{_delays(retry, 'after the first use')}"
        )
        if shorter is not None:
            did += f"; {from_when} " + (
                "sending it again ends the sign-in"
                if shorter == 0
                else f"sending it again more than {shorter} s after the first use ends the sign-in"
            )
        fix = (
            "Store the new refresh token and access token as soon as a refresh response "
            "arrives, before using them, so your app never sends the old refresh token again"
        )
        fix += (
            "; do not retry a refresh."
            if shorter == 0
            else f"; do not retry a refresh more than {shorter} s after the first attempt."
            if shorter is not None
            else "."
        )
        out.append(Finding(SignalKind.LEEWAY_RETRY, did, fix))
    reuse = health.tally(SignalKind.REUSE)
    if reuse.count:
        out.append(
            Finding(
                SignalKind.REUSE,
                f"sent a refresh token that had already been replaced {_times(reuse.count)} "
                f"{window}{_delays(reuse, 'after it was replaced')}; each time the sign-in "
                "was ended and the user had to sign in again",
                "Keep exactly one current refresh token per sign-in, replace it with the one "
                "each refresh returns, and let only one part of your app refresh at a time.",
            )
        )
    late = health.tally(SignalKind.LATE_REFRESH)
    if late.count:
        out.append(
            Finding(
                SignalKind.LATE_REFRESH,
                f"refreshed after its access token had already expired {_times(late.count)} "
                f"{window}{_delays(late, 'after it expired')}",
                "Refresh shortly before the access token expires (expires_in of the token "
                "response), rather than after a request fails.",
            )
        )
    refused = refusals_counted(subject, health, now).count > 0
    for reason, tally in sorted(health.refusals.items()) if refused else ():
        finding = _refusal(reason, tally, window, from_when, subject, server, now)
        if finding is not None:
            out.append(finding)
    return out


def _refusal(
    reason: Refusal,
    tally: Tally,
    window: str,
    from_when: str,
    subject: Subject,
    server: Policy,
    now: int,
) -> Finding | None:
    """A report-only refusal the signals above do not already say (leeway and strict are the
    stale uses and retries)."""
    pending = subject.policy.pending(now)
    if pending is None or not tally.count:
        return None
    after = _resolved(_pending_policy(server, pending), pending.settings, subject)
    times = _times(tally.count)
    match reason:
        case Refusal.ACCESS_TTL:
            return Finding(
                reason,
                f"used access tokens older than {span(after['access_ttl'])} {times} {window}; "
                f"{from_when} they stop working at that age",
                "Read expires_in from each token response rather than assuming how long an "
                "access token lives, and refresh before it ends.",
            )
        case Refusal.IDLE:
            return Finding(
                reason,
                f"refreshed with a refresh token unused for more than "
                f"{span(after['refresh_idle_ttl'])} {times} {window}; {from_when} such a "
                "refresh is refused and the user signs in again",
                "Expect users to sign in again after that long without a refresh, or refresh "
                "more often.",
            )
        case Refusal.ABSOLUTE:
            return Finding(
                reason,
                f"refreshed a sign-in older than {span(after['refresh_absolute_ttl'])} {times} "
                f"{window}; {from_when} such a refresh is refused and the user signs in again",
                "Handle a refused refresh (invalid_grant) by sending the user to sign in again.",
            )
        case Refusal.GRANT_TYPE:
            allowed = _grant_types(_tuple(after["grant_types"]))
            return Finding(
                reason,
                f"used a grant type that will no longer be allowed {times} {window}",
                f"Use only the grant types allowed {from_when}: {allowed}.",
            )
        case Refusal.PKCE:
            return Finding(
                reason,
                f"sent authorization requests without PKCE {times} {window}; {from_when} they "
                "are refused",
                "Send a code_challenge (method S256) with every authorization request and the "
                "code_verifier with the code.",
            )
    return None  # leeway and strict: said with the stale uses and the retries


def _already_out(changes: tuple[Change, ...]) -> str:
    """What the change does to the tokens the app already holds (the decided semantics of a
    change, `baton.core.policy.Policy`): access tokens keep their expiry and a previous token
    already working after a refresh keeps its end; a shorter refresh lifetime caps refresh
    tokens already issued at their next refresh."""
    said = (
        "Access tokens your app already holds keep the expiry they were issued with, and a "
        "previous token still working after a refresh made before then keeps working as "
        "promised; the new rules apply to refreshes and requests made from that time."
    )
    shorter = [
        c.setting
        for c in changes
        if c.setting in ("refresh_idle_ttl", "refresh_absolute_ttl") and c.after < c.before
    ]
    if shorter:
        said += " Refresh tokens already issued get the shorter lifetime from their next refresh."
    return said


def notice(subject: Subject, server: Policy, health: Health, now: int) -> str:
    """The plain-words notice for the integrator of `subject`: what changes, when, what their
    app did, what to change."""
    pending = subject.policy.pending(now)
    name = subject.name or subject.client_id
    lines = [f"To the developers of {name} (client ID {subject.client_id}):", ""]
    if pending is None:
        lines.append("No change to how this server treats your app's tokens is scheduled.")
    else:
        when = (
            f"From {utc(pending.effective_at)}"
            if pending.effective_at is not None
            else "At a date still to be announced"
        )
        changes = changes_of(subject, server, now)
        lines.append(f"{when}, for your app:")
        lines += [f"- {describe(c)}" for c in changes] or [
            "- nothing changes for your app's tokens"
        ]
        lines.append(_already_out(changes))
    found = findings(subject, server, health, now)
    lines.append("")
    if not found:
        lines.append("We saw nothing your app does that this change would break.")
        return "\n".join(lines)
    lines.append("What we saw your app do (counts from our server, no tokens were kept):")
    lines += [f"- It {f.did}." for f in found]
    lines.append("")
    lines.append("What to change:")
    lines += [f"- {fix}" for fix in dict.fromkeys(f.fix for f in found)]
    return "\n".join(lines)
