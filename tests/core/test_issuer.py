"""The issuer identifier's rules (RFC 8414 §2) and when one must be given."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton.core.issuer import is_loopback, issuer_problem, missing_issuer_problem

HOSTS = st.from_regex(r"[a-z][a-z0-9-]{0,12}(\.[a-z][a-z0-9-]{0,12}){1,3}", fullmatch=True)


@pytest.mark.parametrize(
    "issuer",
    [
        "https://auth.example",
        "https://auth.example:8443/tenant",
        "http://127.0.0.1:8000",
        "http://[::1]:8000",
        "http://localhost:8000",
        "http://127.0.0.2",
    ],
)
def test_good_issuers_pass(issuer: str) -> None:
    assert issuer_problem(issuer) is None


@pytest.mark.parametrize(
    ("issuer", "why"),
    [
        ("http://auth.example", "https"),
        ("http://10.0.0.1:8000", "https"),
        ("ftp://auth.example", "https"),
        ("https://auth.example/?tenant=a", "query"),
        ("https://auth.example/#top", "fragment"),
        ("https://auth.example?", "query"),
        ("https://user@auth.example", "user information"),
        ("https://", "no host"),
        ("auth.example", "no host"),
        ("https://auth.example:99999", "not a URL"),
        ("https://[::1", "not a URL"),
    ],
)
def test_bad_issuers_say_why(issuer: str, why: str) -> None:
    problem = issuer_problem(issuer)
    assert problem is not None and why in problem


@given(HOSTS, st.sampled_from(["", ":8443"]), st.sampled_from(["", "/t", "/a/b"]))
def test_any_https_issuer_without_query_or_fragment_passes_and_http_off_loopback_does_not(
    host: str, port: str, path: str
) -> None:
    assert issuer_problem(f"https://{host}{port}{path}") is None
    if host != "localhost":
        assert issuer_problem(f"http://{host}{port}{path}") is not None
    assert issuer_problem(f"https://{host}{port}{path}?q=1") is not None


def test_only_loopback_listeners_may_leave_the_issuer_to_its_default() -> None:
    for host in ("127.0.0.1", "::1", "[::1]", "localhost", "127.1.2.3"):
        assert is_loopback(host) and missing_issuer_problem(host, False) is None
    for host in ("0.0.0.0", "::", "10.1.2.3", "auth.example"):
        assert not is_loopback(host)
        assert missing_issuer_problem(host, False) is not None
        assert missing_issuer_problem(host, True) is None
