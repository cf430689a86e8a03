"""A client's policy is asked about on every request: its stored text parsed once, and the
answers for one second and one server policy kept. None of it may change an answer."""

from __future__ import annotations

from dataclasses import replace

from baton.core.client_policy import ClientPolicy, PolicySettings
from baton.core.policy import Lifetimes, Policy, RetryPolicy

T = 1_000_000


def scheduled() -> ClientPolicy:
    policy = ClientPolicy().schedule(PolicySettings(leeway=5, retry=RetryPolicy.STRICT), T, T)
    return policy.schedule(PolicySettings(access_ttl=60), T + 10, T + 100)


def test_a_stored_policy_reads_back_equal_and_once() -> None:
    policy = scheduled()
    text = policy.stored()
    first = ClientPolicy.from_stored(text)
    assert first == policy and hash(first) == hash(policy)
    assert ClientPolicy.from_stored(text) is first  # parsed once: the same immutable value
    assert ClientPolicy.from_stored(None) == ClientPolicy() == ClientPolicy.from_stored("")


def test_answers_follow_the_clock_across_a_scheduled_change() -> None:
    policy = scheduled()
    server = Policy()
    fresh = ClientPolicy(policy.versions)  # the same value, asked nothing yet
    for now in (T - 1, T, T + 99, T + 100, T + 99, T + 100, T + 101):
        assert policy.at(server, now) == fresh.at(server, now)
        assert policy.shadow_policy(server, now) == ClientPolicy(policy.versions).shadow_policy(
            server, now
        )
    assert policy.at(server, T + 99).lifetimes.access_ttl == server.lifetimes.access_ttl
    assert policy.at(server, T + 100).lifetimes.access_ttl == 60
    assert policy.at(server, T - 1) is server


def test_answers_follow_the_server_policy() -> None:
    policy = scheduled()
    short = Policy(lifetimes=Lifetimes(refresh_idle_ttl=600))
    long = Policy(lifetimes=Lifetimes(refresh_idle_ttl=6000))
    assert policy.at(short, T + 1).lifetimes.refresh_idle_ttl == 600
    assert policy.at(long, T + 1).lifetimes.refresh_idle_ttl == 6000


def test_report_only_answers_follow_the_clock() -> None:
    policy = ClientPolicy().schedule(PolicySettings(leeway=1), T, T + 50, report_only=True)
    server = Policy()
    assert policy.shadow_policy(server, T + 49) is not None
    assert policy.shadow_policy(server, T + 50) is None  # in force now, reported no more
    assert policy.at(server, T + 50).leeway == 1


def test_kept_answers_are_not_part_of_the_value() -> None:
    policy = scheduled()
    policy.at(Policy(), T + 200)
    other = ClientPolicy(policy.versions)
    assert other == policy and hash(other) == hash(policy) and repr(other) == repr(policy)
    changed = replace(policy, versions=policy.versions[:1])
    assert changed.at(Policy(), T + 200).lifetimes.access_ttl == Policy().lifetimes.access_ttl
