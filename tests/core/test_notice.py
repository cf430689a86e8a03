"""The evidence of a scheduled policy change and the notice an integrator reads (issue 28)."""

from __future__ import annotations

import csv
import io

from baton.core.client_policy import ClientPolicy, PolicySettings
from baton.core.notice import (
    CSV_COLUMNS,
    Subject,
    affected,
    evidence,
    evidence_row,
    findings,
    notice,
    span,
    utc,
)
from baton.core.policy import Lifetimes, Policy, RetryPolicy
from baton.core.signals import Health, Refusal, SignalKind

DAY = 86_400
NOW = 1_796_000_000  # 2026-11-30 00:53:20 UTC
EFFECTIVE = NOW + 14 * DAY
SERVER = Policy()  # leeway 600 s, access tokens 1 h


def tightening(**change: object) -> ClientPolicy:
    settings = PolicySettings(**change)  # type: ignore[arg-type]
    return ClientPolicy().schedule(settings, NOW - DAY, effective_at=EFFECTIVE, report_only=True)


def bad_client_health() -> Health:
    """412 stale uses, 118 s after the exchange for most: the issue's deliberately bad client."""
    health = Health("cl_bad", NOW - 7 * DAY, active_grants=10)
    delays = {118: 300, 121: 92, 130: 20}
    health.add(SignalKind.STALE_ACCESS, None, 412, NOW - 100, delays, ["g1", "g2"])
    health.add(SignalKind.WOULD_REFUSE, Refusal.LEEWAY, 412, NOW - 100, delays, ["g1", "g2"])
    return health


def test_the_bad_client_reads_what_changes_when_what_it_did_and_what_to_do() -> None:
    subject = Subject("cl_bad", "Bad App", tightening(leeway=60))
    text = notice(subject, SERVER, bad_client_health(), NOW)
    assert "To the developers of Bad App (client ID cl_bad)" in text
    assert f"From {utc(EFFECTIVE)}" in text
    assert "2026-12-14 00:53 UTC" in text  # the date, in UTC, written out
    assert "keep working for 60 s (until now 10 min)" in text
    assert (
        "used an access token after its refresh token had been exchanged 412 times in the last "
        "7 days, typically 118 s after the exchange (95% within 121 s); from 2026-12-14 00:53 UTC "
        "such a token stops working 60 s after the exchange"
    ) in text
    assert "Use the new access token from each refresh response at once" in text
    # What the operator's notice must never hold: internals an integrator does not know.
    for jargon in ("leeway", "shadow", "would_refuse", "stale_access", "signal"):
        assert jargon not in text.lower()


def test_a_client_without_findings_is_told_nothing_breaks() -> None:
    subject = Subject("cl_good", "Good App", tightening(leeway=60))
    text = notice(subject, SERVER, Health("cl_good", NOW - 7 * DAY), NOW)
    assert "We saw nothing your app does that this change would break." in text
    assert "What to change" not in text


def test_one_fix_per_kind_of_finding() -> None:
    health = bad_client_health()
    health.add(SignalKind.LEEWAY_RETRY, None, 3, NOW - 50, {5: 3}, ["g1"])
    health.add(SignalKind.REUSE, None, 1, NOW - 40, {900: 1}, ["g3"])
    health.add(SignalKind.LATE_REFRESH, None, 7, NOW - 30, {40: 7}, ["g1"])
    health.add(SignalKind.WOULD_REFUSE, Refusal.PKCE, 2, NOW - 20, {})
    subject = Subject("cl_bad", "Bad App", tightening(leeway=60, require_pkce=True))
    found = findings(subject, SERVER, health, NOW)
    assert [f.kind for f in found] == [
        SignalKind.STALE_ACCESS,
        SignalKind.LEEWAY_RETRY,
        SignalKind.REUSE,
        SignalKind.LATE_REFRESH,
        Refusal.PKCE,  # leeway refusals are said with the stale uses, not twice
    ]
    text = notice(subject, SERVER, health, NOW)
    fixes = text.split("What to change:\n")[1].splitlines()
    assert len(fixes) == 5
    assert any("do not retry a refresh more than 60 s after the first attempt" in f for f in fixes)
    assert any("code_challenge" in f for f in fixes)
    assert "sent a refresh token again after it had already been used for a refresh 3 times" in (
        text
    )
    assert "once in the last 7 days" in text  # one reuse


def test_strict_says_a_refresh_token_is_used_once() -> None:
    subject = Subject("cl_bad", "Bad App", tightening(retry=RetryPolicy.STRICT))
    text = notice(subject, SERVER, bad_client_health(), NOW)
    assert "a refresh token can be used only once" in text
    assert "stop working at once (until now they kept working for 10 min)" in text
    assert "such a token stops working as soon as it is refreshed" in text


def test_stale_uses_affect_a_client_only_when_the_change_shortens_the_leeway() -> None:
    stale_only = Health("cl", NOW - 7 * DAY)
    stale_only.add(SignalKind.STALE_ACCESS, None, 5, NOW - 10, {30: 4, 90: 1}, ["g"])
    shorter = Subject("cl", "App", tightening(leeway=60))
    longer_ttl = Subject("cl", "App", tightening(access_ttl=600))
    nothing = Subject("cl", "App", ClientPolicy())
    assert affected(shorter, SERVER, stale_only, NOW)
    assert not affected(longer_ttl, SERVER, stale_only, NOW)
    assert not affected(nothing, SERVER, stale_only, NOW)
    # A report-only refusal always affects the client, whatever the change is.
    assert affected(longer_ttl, SERVER, bad_client_health(), NOW)


def test_evidence_has_the_counts_the_policy_and_the_change() -> None:
    subject = Subject("cl_bad", "Bad App", tightening(leeway=60))
    found = evidence(subject, SERVER, bad_client_health(), NOW)
    assert found["affected"] is True
    assert found["stale_access"]["count"] == 412
    assert found["stale_access"]["p50_delay_seconds"] == 118
    assert found["stale_access"]["p95_delay_seconds"] == 121
    assert found["stale_access"]["last_seen"] == NOW - 100
    assert found["would_refuse_by_rule"]["leeway"]["count"] == 412
    assert found["breaking_share"] == 0.2
    assert found["in_force"]["leeway"] == 600
    assert found["in_force"]["client_sets"] == []  # every knob is the server's default
    assert found["scheduled"]["effective_at"] == EFFECTIVE
    assert found["scheduled"]["report_only"] is True
    assert found["scheduled"]["changes"] == [{"setting": "leeway", "from": 600, "to": 60}]


def test_a_public_client_always_rotates_and_uses_pkce() -> None:
    """As `GET /client-policy` states it: the knobs a public client cannot change."""
    subject = Subject("cl", "SPA", ClientPolicy(), require_pkce=False, is_public=True)
    found = evidence(subject, SERVER, Health("cl", 0), NOW)
    assert found["in_force"]["rotate"] is True
    assert found["in_force"]["require_pkce"] is True


def test_a_csv_row_has_every_column() -> None:
    subject = Subject("cl_bad", "Bad App", tightening(leeway=60))
    row = evidence_row(evidence(subject, SERVER, bad_client_health(), NOW))
    assert tuple(row) == CSV_COLUMNS
    out = io.StringIO()
    csv.DictWriter(out, CSV_COLUMNS).writerow(row)
    assert "leeway:600->60" in out.getvalue()
    assert row["would_refuse_leeway"] == 412


def test_an_undated_report_only_change_says_the_date_is_to_come() -> None:
    policy = ClientPolicy().schedule(PolicySettings(leeway=60), NOW, None, report_only=True)
    text = notice(Subject("cl_bad", "Bad App", policy), SERVER, bad_client_health(), NOW)
    assert "At a date still to be announced" in text
    assert "once the change takes effect such a token stops working 60 s" in text


def test_spans_are_never_rounded() -> None:
    assert span(60) == "60 s"
    assert span(900) == "15 min"
    assert span(7200) == "2 h"
    assert span(90 * DAY) == "90 days"
    assert span(DAY) == "1 day"
    assert span(3601) == "3601 s"


def test_the_notice_says_what_happens_to_tokens_already_out() -> None:
    leeway = notice(Subject("cl", "App", tightening(leeway=60)), SERVER, bad_client_health(), NOW)
    assert "Access tokens your app already holds keep the expiry they were issued with" in leeway
    assert "Refresh tokens already issued" not in leeway
    idle = notice(
        Subject("cl", "App", tightening(refresh_idle_ttl=30 * DAY)), SERVER, Health("cl", 0), NOW
    )
    assert "a refresh token not used for 30 days stops working (until now 90 days)" in idle
    assert "Refresh tokens already issued get the shorter lifetime from their next refresh" in idle


def test_stale_uses_well_inside_the_new_leeway_do_not_make_a_client_affected() -> None:
    """Review finding (issue 28): a well-behaved client with concurrent requests has a few
    stale uses 0-1 s after a rotation; a 60 s leeway refuses none of them, so the client is not
    affected, and the notice says none came that late."""
    server = Policy(Lifetimes(leeway=300), RetryPolicy.REPLAY)
    policy = ClientPolicy().schedule(PolicySettings(leeway=60), NOW - DAY, NOW + 7 * DAY, True)
    subject = Subject("good", "Good app", policy)
    health = Health("good", NOW - 7 * DAY)
    health.add(SignalKind.STALE_ACCESS, None, 12, NOW - 100, {0: 10, 1: 2})
    assert not affected(subject, server, health, NOW)
    assert "none of these uses came that late" in notice(subject, server, health, NOW)
    health.add(SignalKind.STALE_ACCESS, None, 1, NOW - 50, {61: 1})
    assert affected(subject, server, health, NOW)
    assert "and 1 of these uses came at least that late" in notice(subject, server, health, NOW)


def test_refusals_counted_under_a_replaced_report_only_change_do_not_mark_the_client() -> None:
    """Review finding (issue 28): refusals counted under a 10 s report-only leeway the operator
    then replaced by 120 s still made the client affected, and the notice cited them."""
    server = Policy(Lifetimes(leeway=300), RetryPolicy.REPLAY)
    first = ClientPolicy().schedule(PolicySettings(leeway=10), NOW - 3 * DAY, NOW + 7 * DAY, True)
    second = first.schedule(
        PolicySettings(leeway=120), NOW - DAY, NOW + 7 * DAY, True, replace_all=True
    )
    subject = Subject("c", "App", second)
    health = Health("c", NOW - 7 * DAY)
    health.add(SignalKind.STALE_ACCESS, None, 5, NOW - 2 * DAY, {30: 5})
    health.add(SignalKind.WOULD_REFUSE, Refusal.LEEWAY, 5, NOW - 2 * DAY, {30: 5}, ["g1"])
    assert not affected(subject, server, health, NOW)
    # Counted since the change was scheduled: they judge it.
    health.add(SignalKind.WOULD_REFUSE, Refusal.LEEWAY, 1, NOW - 3600, {130: 1}, ["g2"])
    assert affected(subject, server, health, NOW)
