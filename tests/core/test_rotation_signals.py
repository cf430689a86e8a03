"""What a plain rotation says about its client: nothing when it came in time with no
report-only policy (nearly every refresh, answered without building anything), a late refresh
when it came at or after its access token's `exp`, and the report-only policy's refusals
whenever there is one."""

from __future__ import annotations

from baton.core.facts import GrantFacts, RefreshFacts
from baton.core.policy import Lifetimes, Policy
from baton.core.rules import Rotate
from baton.core.signals import Refusal, SignalKind, exchange_signals

T0 = 1_700_000_000
GRANT = GrantFacts("grt_1", "cl_rotation", 1, "alice", "read", T0, T0 + 10_000, None, None)
TOKEN = RefreshFacts(1, GRANT, 0, T0, T0 + 5_000, None, None, None, None)


def test_a_rotation_in_time_without_a_report_only_policy_says_nothing() -> None:
    assert exchange_signals(TOKEN, Rotate(), T0 + 10, None) == ()
    assert exchange_signals(TOKEN, Rotate(), T0 + 10, None, T0 + 11) == ()
    assert exchange_signals(TOKEN, Rotate(continues=3), T0 + 10, None, None) == ()


def test_a_rotation_at_or_after_the_access_exp_is_a_late_refresh() -> None:
    for now, delay in ((T0 + 300, 0), (T0 + 360, 60)):
        signals = exchange_signals(TOKEN, Rotate(), now, None, T0 + 300)
        assert [(s.kind, s.delay, s.grant_id) for s in signals] == [
            (SignalKind.LATE_REFRESH, delay, "grt_1")
        ]


def test_a_report_only_policy_is_judged_on_a_rotation_in_time() -> None:
    shadow = Policy(Lifetimes(refresh_idle_ttl=5), since=T0 + 10)
    signals = exchange_signals(TOKEN, Rotate(), T0 + 10, shadow, T0 + 300)
    assert [(s.kind, s.reason) for s in signals] == [(SignalKind.WOULD_REFUSE, Refusal.IDLE)]
    lenient = Policy(since=T0 + 10)
    assert exchange_signals(TOKEN, Rotate(), T0 + 10, lenient, T0 + 300) == ()
