"""Matching a requested redirect URI to the registered ones (RFC 9700 §4.1.3, RFC 8252 §7.3):
exact strings, except the port of an http loopback IP literal; and the browser origins a client's
redirect URIs give it (CORS)."""

from __future__ import annotations

import string

from hypothesis import example, given
from hypothesis import strategies as st

from baton.core.origins import OriginIndex, OriginSource, client_origins, origin_of, origin_problem
from baton.core.redirects import matching_redirect_uri, redirect_uri_problem

loopback_hosts = st.sampled_from(["127.0.0.1", "[::1]"])
ports = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))
paths = st.text(string.ascii_letters + string.digits + "/-_.~%", max_size=20).map(lambda p: "/" + p)
queries = st.sampled_from(["", "?a=b", "?x=1&y=2"])
label = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=8).filter(
    lambda s: s[0].isalpha()
)
hosts = st.builds(lambda parts: ".".join(parts), st.lists(label, min_size=1, max_size=3))


@given(loopback_hosts, ports, ports, paths, queries)
def test_a_loopback_redirect_uri_matches_on_any_port(
    host: str, registered_port: str, given_port: str, path: str, query: str
) -> None:
    registered = f"http://{host}{registered_port}{path}{query}"
    requested = f"http://{host}{given_port}{path}{query}"
    # The URI as the request gave it: the code remembers it, /token must present it again.
    assert matching_redirect_uri((registered,), requested) == requested


@given(loopback_hosts, ports, ports, paths, paths, queries, queries)
def test_a_loopback_redirect_uri_never_matches_another_path_or_query(
    host: str, port_a: str, port_b: str, path_a: str, path_b: str, query_a: str, query_b: str
) -> None:
    registered = f"http://{host}{port_a}{path_a}{query_a}"
    requested = f"http://{host}{port_b}{path_b}{query_b}"
    matched = matching_redirect_uri((registered,), requested)
    assert (matched is not None) == (path_a + query_a == path_b + query_b)


@given(ports, paths)
def test_the_two_loopback_literals_are_different_hosts(port: str, path: str) -> None:
    assert matching_redirect_uri((f"http://127.0.0.1{path}",), f"http://[::1]{port}{path}") is None


@given(loopback_hosts, ports, paths, st.sampled_from(["user@", "user:pw@", "a@b.example:1@"]))
def test_user_information_never_matches(host: str, port: str, path: str, userinfo: str) -> None:
    assert (
        matching_redirect_uri((f"http://{host}{path}",), f"http://{userinfo}{host}{port}{path}")
        is None
    )
    # nor as a host that reads as a loopback one
    assert (
        matching_redirect_uri((f"http://{host}{path}",), f"http://{host}{port}@evil.example{path}")
        is None
    )


@given(loopback_hosts, ports, paths, st.text(string.ascii_letters, max_size=5))
def test_a_fragment_never_matches(host: str, port: str, path: str, fragment: str) -> None:
    assert (
        matching_redirect_uri((f"http://{host}{path}",), f"http://{host}{port}{path}#{fragment}")
        is None
    )


@given(loopback_hosts, paths)
@example("127.0.0.1", "/cb")
def test_a_port_that_is_not_a_port_never_matches(host: str, path: str) -> None:
    for port in (":0", ":65536", ":080", ":", ":-1", ":1e3", ":99999"):
        assert (
            matching_redirect_uri((f"http://{host}{path}",), f"http://{host}{port}{path}") is None
        )


@given(hosts, ports, ports, paths)
def test_https_matches_only_exactly(host: str, port_a: str, port_b: str, path: str) -> None:
    registered = f"https://{host}{port_a}{path}"
    requested = f"https://{host}{port_b}{path}"
    assert (matching_redirect_uri((registered,), requested) is not None) == (port_a == port_b)


@given(st.integers(1, 65535), paths)
def test_localhost_and_https_loopback_match_only_exactly(port: int, path: str) -> None:
    """RFC 8252 §8.3: the name can resolve off the loopback interface; only the IP literals
    over http get any port (and registration refuses http://localhost outright)."""
    for base in ("http://localhost", "https://127.0.0.1", "https://[::1]", "https://localhost"):
        registered = f"{base}{path}"
        assert matching_redirect_uri((registered,), f"{base}:{port}{path}") is None
        assert matching_redirect_uri((registered,), registered) == registered


@given(
    st.lists(st.text(string.printable, max_size=30), max_size=4),
    st.text(string.printable, max_size=30),
)
def test_a_match_is_registered_or_a_loopback_port_variant(
    registered: list[str], requested: str
) -> None:
    matched = matching_redirect_uri(tuple(registered), requested)
    if matched is not None:
        assert matched == requested
        assert requested in registered or requested.startswith(("http://127.0.0.1", "http://[::1]"))


@given(st.sampled_from(["com.example.app", "org.baton.native", "io.x.y.z"]), paths)
def test_private_use_schemes_match_only_exactly(scheme: str, path: str) -> None:
    uri = f"{scheme}:{path}"
    assert matching_redirect_uri((uri,), uri) == uri
    assert matching_redirect_uri((uri,), f"{scheme}:{path}x") is None
    assert matching_redirect_uri((uri,), f"{scheme.upper()}:{path}") is None


# -- origins (CORS) -------------------------------------------------------------------------------


@given(hosts, ports, paths, queries)
def test_an_https_redirect_uri_gives_its_origin(
    host: str, port: str, path: str, query: str
) -> None:
    origins = client_origins((f"https://{host}{port}{path}{query}",), None)
    expected = f"https://{host}" if port in ("", ":443") else f"https://{host}{port}"
    assert origins.allows(expected)
    assert not origins.allows(f"http://{host}{port}")
    assert not origins.allows(f"https://{host}.evil.example{port}")


@given(loopback_hosts, ports, ports)
def test_a_loopback_redirect_uri_gives_every_port_of_its_host(
    host: str, port: str, page_port: str
) -> None:
    origins = client_origins((f"http://{host}{port}/callback",), None)
    assert origins.allows(f"http://{host}{page_port}")
    assert not origins.allows(f"https://{host}{page_port}")
    other = "[::1]" if host == "127.0.0.1" else "127.0.0.1"
    assert not origins.allows(f"http://{other}{page_port}")
    assert not origins.allows(f"http://localhost{page_port}")


def test_private_use_redirect_uris_give_no_origin() -> None:
    origins = client_origins(("com.example.app:/callback",), None)
    for origin in ("com.example.app://", "null", "http://127.0.0.1", "https://example.app"):
        assert not origins.allows(origin)


def test_allowed_origins_replace_the_redirect_uris_origins() -> None:
    origins = client_origins(
        ("https://app.example/cb", "http://127.0.0.1/cb"),
        ("https://SPA.example:443", "http://127.0.0.1:5173"),
    )
    assert origins.allows("https://spa.example")
    assert origins.allows("http://127.0.0.1:5173")
    assert not origins.allows("http://127.0.0.1:5174")  # explicit: that port only
    assert not origins.allows("https://app.example")
    assert client_origins(("https://app.example/cb",), ()).exact == frozenset()


def test_no_origin_is_allowed_by_null_or_a_wildcard() -> None:
    origins = client_origins(("https://app.example/cb",), None)
    for origin in (
        "null",
        "*",
        "",
        "https://app.example/",
        "https://app.example.",
        "HTTPS://app.example",
    ):
        assert not origins.allows(origin)


def test_the_index_answers_for_one_client_or_for_any() -> None:
    index = OriginIndex.of(
        [
            OriginSource("a", ("https://a.example/cb",), None),
            OriginSource("b", ("https://b.example/cb",), None),
            OriginSource("native", ("http://127.0.0.1/cb",), None),
        ]
    )
    assert index.allows("https://a.example", "a")
    assert not index.allows("https://a.example", "b")
    assert index.allows("https://a.example", None)
    assert index.allows("http://127.0.0.1:8080", None)
    assert not index.allows("http://127.0.0.1:8080", "a")
    assert not index.allows("https://a.example", "unknown")
    assert not index.allows("https://c.example", None)


def test_origin_of_and_origin_problem() -> None:
    assert origin_of("https://Example.COM:443/x?y") == "https://example.com"
    assert origin_of("http://[::1]:8080/cb") == "http://[::1]:8080"
    assert origin_of("com.example.app:/cb") is None
    assert origin_of("https://user@example.com/") is None
    assert origin_problem("https://spa.example") is None
    assert origin_problem("http://127.0.0.1:5173") is None
    for bad in ("*", "null", "https://spa.example/app", "ftp://x.example", "https://a@b.example"):
        assert origin_problem(bad) is not None


def test_localhost_matches_any_port_only_for_a_native_app_no_operator_registered() -> None:
    """`localhost=True` (a dynamic or metadata-document native app): `http://localhost` is
    matched like a loopback IP literal, any port; otherwise only as the exact string."""
    registered = ["http://localhost/callback"]
    given = "http://localhost:54321/callback"
    assert matching_redirect_uri(registered, given) is None
    assert matching_redirect_uri(registered, given, localhost=True) == given
    assert matching_redirect_uri(registered, "http://localhost:1/other", localhost=True) is None
    assert (
        matching_redirect_uri(registered, "http://localhost.evil/callback", localhost=True) is None
    )
    assert redirect_uri_problem("http://localhost:3000/cb") is not None
    assert redirect_uri_problem("http://localhost:3000/cb", localhost=True) is None
    assert redirect_uri_problem("http://localhost.evil:3000/cb", localhost=True) is not None
