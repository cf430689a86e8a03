"""A client's stored policy read by a release that does not know all of it, a report-only change
that cannot turn into enforcement by a mistyped date, and lifetimes the server cannot honour
(issue 28 review: R1 M2, M3; R3 #4, #9)."""

from __future__ import annotations

import json

import pytest

from baton.core.client_policy import (
    NO_POLICY,
    ClientPolicy,
    PolicyError,
    PolicySettings,
)
from baton.core.policy import Lifetimes, Policy, RetryPolicy

NOW = 1_700_000_000


def test_a_knob_or_value_a_later_release_wrote_is_left_to_the_servers_default() -> None:
    stored = json.dumps(
        [
            {
                "settings": {"leeway": 60, "sender_constrained": True, "retry": "quantum"},
                "effective_at": NOW,
                "scheduled_at": NOW,
                "report_only": False,
            }
        ]
    )
    policy = ClientPolicy.from_stored(stored)
    assert policy.settings_at(NOW) == PolicySettings(leeway=60)
    # An operator's input stays strict: the same members are refused with a reason.
    with pytest.raises(PolicyError, match="sender_constrained"):
        PolicySettings.from_json({"leeway": 60, "sender_constrained": True})
    with pytest.raises(PolicyError, match="retry must be one of"):
        PolicySettings.from_json({"retry": "quantum"})


@pytest.mark.parametrize("when", [NOW - 86_400, NOW])
def test_a_report_only_change_dated_now_or_before_is_refused_not_enforced(when: int) -> None:
    with pytest.raises(PolicyError, match="report-only change needs a date after now"):
        NO_POLICY.schedule(PolicySettings(retry=RetryPolicy.STRICT), NOW, when, report_only=True)
    # Undated, or dated later, it is reported and nothing is enforced.
    for later in (None, NOW + 1):
        scheduled = NO_POLICY.schedule(PolicySettings(leeway=0), NOW, later, report_only=True)
        assert scheduled.settings_at(NOW) == PolicySettings()
        assert scheduled.shadow(NOW) == PolicySettings(leeway=0)


def test_an_access_lifetime_beyond_the_servers_is_refused() -> None:
    server = Policy(Lifetimes(access_ttl=3600))
    PolicySettings(access_ttl=3600).check_against(server)
    PolicySettings(access_ttl=60, leeway=7200).check_against(server)
    with pytest.raises(PolicyError, match="--access-ttl"):
        PolicySettings(access_ttl=3601).check_against(server)
