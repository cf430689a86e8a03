"""The one rule for redirect URIs (issue 21 L4): https, http on a loopback IP literal, or a
private-use scheme in reverse-DNS form (RFC 8252 §7); nothing else, whatever the text."""

from __future__ import annotations

import string
from urllib.parse import urlsplit

from hypothesis import example, given
from hypothesis import strategies as st

from baton.core.redirects import client_option_problem, is_https, redirect_uri_problem

label = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=8).filter(
    lambda s: s[0].isalpha()
)
hosts = st.builds(lambda parts: ".".join(parts), st.lists(label, min_size=1, max_size=3))
ports = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))
paths = st.text(string.ascii_letters + string.digits + "/-_.~%", max_size=20).map(lambda p: "/" + p)
queries = st.sampled_from(["", "?a=b", "?x=1&y=2"])
reverse_dns = st.builds(lambda parts: ".".join(parts), st.lists(label, min_size=2, max_size=4))
# A scheme RFC 3986 allows, without a period: never a private-use scheme of reverse-DNS form.
bare_schemes = st.text(string.ascii_lowercase + string.digits + "+-", max_size=10).map(
    lambda rest: "x" + rest
)


@given(hosts, ports, paths, queries)
def test_https_is_accepted(host: str, port: str, path: str, query: str) -> None:
    uri = f"https://{host}{port}{path}{query}"
    assert redirect_uri_problem(uri) is None
    assert is_https(uri)


@given(st.sampled_from(["127.0.0.1", "[::1]"]), ports, paths, queries)
def test_http_on_a_loopback_ip_literal_is_accepted(
    host: str, port: str, path: str, query: str
) -> None:
    uri = f"http://{host}{port}{path}{query}"
    assert redirect_uri_problem(uri) is None
    assert not is_https(uri)


@given(reverse_dns, paths)
def test_a_reverse_dns_private_use_scheme_is_accepted(scheme: str, path: str) -> None:
    uri = f"{scheme}:{path}"
    assert redirect_uri_problem(uri) is None
    assert not is_https(uri)


@given(hosts.filter(lambda h: h not in ("127.0.0.1",)), ports, paths)
@example("localhost", ":9000", "/callback")
def test_http_off_loopback_is_refused(host: str, port: str, path: str) -> None:
    assert redirect_uri_problem(f"http://{host}{port}{path}") is not None


@given(bare_schemes, st.text(string.printable.strip(), max_size=30))
@example("javascript", "alert(document.cookie)")
@example("data", "text/html;base64,PHNjcmlwdD4=")
@example("file", "///etc/passwd")
@example("vbscript", "msgbox")
def test_a_scheme_without_a_period_is_refused(scheme: str, rest: str) -> None:
    if scheme in ("http", "https"):
        return
    assert redirect_uri_problem(f"{scheme}:{rest}") is not None
    assert redirect_uri_problem(f"{scheme.upper()}:{rest}") is not None


@given(st.text(max_size=60))
@example("https://app.example/cb#")
@example("https://app.example/cb\n")
@example("http://[::1")
@example("https://app.example:99999/")
@example("https://user@app.example/")
def test_whatever_the_text_the_rule_answers_and_accepts_only_the_three_kinds(uri: str) -> None:
    problem = redirect_uri_problem(uri)  # never raises
    if problem is not None:
        assert isinstance(problem, str) and problem
        return
    assert "#" not in uri and all("!" <= c <= "~" for c in uri)
    parts = urlsplit(uri)
    if parts.scheme == "https":
        assert parts.hostname and "@" not in parts.netloc
    elif parts.scheme == "http":
        assert parts.hostname in ("127.0.0.1", "::1") and "@" not in parts.netloc
    else:
        assert "." in parts.scheme


def test_client_options() -> None:
    claimed = ("https://app.example/cb",)
    assert client_option_problem(True, claimed, True, False) is None
    assert client_option_problem(False, claimed, False, True) is None
    assert client_option_problem(True, claimed, False, True) is not None  # public: PKCE always
    assert client_option_problem(False, claimed, True, False) is not None  # confidential
    assert client_option_problem(True, (), True, False) is not None
    assert client_option_problem(True, (*claimed, "http://127.0.0.1/cb"), True, False) is not None
    assert client_option_problem(True, ("com.example.app:/cb",), True, False) is not None
