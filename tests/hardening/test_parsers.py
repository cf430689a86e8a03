"""Hypothesis against every parser the server owns: round trips of what a well-behaved client
sends, and for anything else the documented refusal and no other exception.

Three of these found server bugs (a 500 instead of a 4xx for non-ASCII Basic credentials and
for non-ASCII digits in the feed cursor, and a traceback from the CLI for a broken IPv6
literal); they stay as the regression tests of the fixes.
"""

from __future__ import annotations

import base64
import string
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus, unquote_plus, urlencode

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from baton.cli.clients import check_redirect_uri
from baton.core import pkce, scope
from baton.core.tokens import TokenKind, _checksum, kind_of, mint
from baton.server.endpoints.clientauth import basic_credentials
from baton.server.endpoints.errors import OAuthError
from baton.server.endpoints.feed import _cursor
from baton.server.endpoints.forms import Form, _parse_escaped, parse_pairs
from tests.support import REDIRECT_URI, RegisteredClient, register_client, running_app

CONTROL = [chr(c) for c in range(0x20)] + ["\x7f"]
# Text a client may legitimately send: any Unicode scalar value but the controls and surrogates.
clean_text = st.text(st.characters(codec="utf-8", exclude_characters=CONTROL), max_size=40)
any_text = st.text(st.characters(codec="utf-8"), max_size=60)
BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


def refused(exc: OAuthError, error: str, status: int) -> bool:
    return exc.error == error and exc.status == status


# -- form bodies --------------------------------------------------------------------------------


@given(st.lists(st.tuples(clean_text, clean_text), max_size=8), st.booleans())
def test_form_pairs_round_trip(pairs: list[tuple[str, str]], as_bytes: bool) -> None:
    body = urlencode(pairs)
    assert parse_pairs(body.encode() if as_bytes else body) == pairs
    # The browser's encoding (%20 instead of +) reads the same.
    assert parse_pairs(urlencode(pairs, quote_via=quote)) == pairs


@given(
    st.lists(st.tuples(clean_text, clean_text), max_size=4),
    st.sampled_from(CONTROL),
    st.booleans(),
    st.integers(min_value=0, max_value=40),
)
def test_a_control_character_anywhere_is_refused(
    pairs: list[tuple[str, str]], control: str, in_name: bool, at: int
) -> None:
    name, value = "token", "abc"
    if in_name:
        name = name[: at % 6] + control + name[at % 6 :]
    else:
        value = value[: at % 4] + control + value[at % 4 :]
    with pytest.raises(OAuthError) as caught:
        parse_pairs(urlencode([*pairs, (name, value)]))
    assert refused(caught.value, "invalid_request", 400)
    assert "control characters" in caught.value.description


@given(st.binary(max_size=200))
@example(b"a=\xff")
@example(b"a=%ff")
@example(b"%C3%28=x")
def test_any_body_parses_or_is_refused_as_invalid_request(raw: bytes) -> None:
    try:
        pairs = parse_pairs(raw)
    except OAuthError as exc:
        assert refused(exc, "invalid_request", 400)
        return
    for name, value in pairs:
        assert not any(c in CONTROL for c in name + value)
    raw.decode("utf-8")  # whatever parsed was UTF-8


def parsed_by_parse_qsl(raw: bytes | str) -> list[tuple[str, str]] | str:
    """The reference: what `parse_qsl` makes of the form, or the error's description."""
    try:
        return _parse_escaped(raw)
    except OAuthError as exc:
        return exc.description


@given(
    st.one_of(
        st.binary(max_size=120),
        st.text(st.sampled_from("ab=&%+2F\x00\x7f é"), max_size=40),
        st.text(max_size=60),
    )
)
@example(b"a=1&&b=&=&c")
@example("a=1\x7f&b=2")
def test_unescaped_forms_take_the_short_way_to_what_parse_qsl_gives(raw: bytes | str) -> None:
    try:
        got: list[tuple[str, str]] | str = parse_pairs(raw)
    except OAuthError as exc:
        got = exc.description
    assert got == parsed_by_parse_qsl(raw)


@given(st.lists(st.tuples(st.sampled_from("abcd"), clean_text), max_size=8))
def test_form_keeps_each_parameter_once_and_empty_means_omitted(
    pairs: list[tuple[str, str]],
) -> None:
    names = [name for name, _ in pairs]
    if len(set(names)) < len(names):
        with pytest.raises(OAuthError) as caught:
            Form(pairs)
        assert refused(caught.value, "invalid_request", 400)
        assert "repeated" in caught.value.description
        return
    form = Form(pairs)
    for name, value in pairs:
        assert form.get(name) == (value or None)
        assert (name in form) == (value != "")
        if value == "":
            with pytest.raises(OAuthError, match=f"missing parameter: {name}"):
                form.require(name)
        else:
            assert form.require(name) == value
    assert "e" not in form and form.get("e") is None


# -- Basic credentials ------------------------------------------------------------------------


def basic(client_id: str, secret: str, scheme: str = "Basic") -> str:
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return f"{scheme} {base64.b64encode(raw).decode()}"


@given(any_text, any_text, st.sampled_from(["Basic", "basic", "BASIC", "bAsIc"]))
def test_basic_credentials_round_trip(client_id: str, secret: str, scheme: str) -> None:
    """RFC 6749 §2.3.1: each part form-encoded, then Base64; any text survives."""
    assert basic_credentials(basic(client_id, secret, scheme)) == (client_id, secret)


@given(st.sampled_from(["Bearer", "Digest", "Basicx", "", "Negotiate"]), any_text)
def test_other_schemes_are_not_basic(scheme: str, rest: str) -> None:
    assume(scheme.lower() != "basic")
    assert basic_credentials(f"{scheme} {rest}") is None


@given(st.text(st.characters(max_codepoint=0x7F), max_size=60))
@example("====")
@example("bm9jb2xvbg==")  # "nocolon"
@example("//8=")  # not UTF-8
@example("JWZmOnNlY3JldA==")  # "%ff:secret"
def test_malformed_ascii_basic_is_invalid_client(encoded: str) -> None:
    try:
        found = basic_credentials("Basic " + encoded)
    except OAuthError as exc:
        assert refused(exc, "invalid_client", 401)
        assert exc.headers["WWW-Authenticate"].startswith("Basic")
        return
    decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    raw_id, _, raw_secret = decoded.partition(":")
    assert found == (unquote_plus(raw_id), unquote_plus(raw_secret))
    assert basic_credentials(basic(*found)) == found


@given(st.text(st.characters(min_codepoint=0x80, max_codepoint=0xFF), min_size=1, max_size=8))
def test_non_ascii_basic_is_invalid_client(encoded: str) -> None:
    with pytest.raises(OAuthError) as caught:
        basic_credentials("Basic " + encoded)
    assert refused(caught.value, "invalid_client", 401)


# -- tokens with their checksum -----------------------------------------------------------------

kinds = st.sampled_from(list(TokenKind))


@given(kinds, st.text(st.sampled_from(BASE62), min_size=43, max_size=43))
def test_a_token_with_its_checksum_is_recognised(kind: TokenKind, body: str) -> None:
    head = kind.prefix + body
    assert kind_of(head + _checksum(head)) is kind


@given(kinds, st.data())
def test_any_single_character_change_is_detected(kind: TokenKind, data: st.DataObject) -> None:
    """CRC32 catches every burst of up to 32 bits; one character changed is such a burst."""
    token = mint(kind).plaintext
    assert kind_of(token) is kind
    at = data.draw(st.integers(0, len(token) - 1))
    other = data.draw(st.sampled_from(BASE62 + "_-.é").filter(lambda c: c != token[at]))
    assert kind_of(token[:at] + other + token[at + 1 :]) is None


@given(kinds, st.integers(1, 10), st.booleans())
def test_truncated_or_extended_tokens_are_refused(kind: TokenKind, n: int, cut: bool) -> None:
    token = mint(kind).plaintext
    assert kind_of(token[:-n] if cut else token + "0" * n) is None


@given(any_text)
def test_any_text_is_a_kind_or_none_never_an_error(text: str) -> None:
    kind = kind_of(text)
    if kind is not None:
        assert text.startswith(kind.prefix) and len(text) == 56
        assert text[-6:] == _checksum(text[:-6])


# -- PKCE ---------------------------------------------------------------------------------------

UNRESERVED = string.ascii_letters + string.digits + "-._~"
verifiers = st.text(st.sampled_from(UNRESERVED), min_size=43, max_size=128)


@given(verifiers)
def test_a_valid_verifier_matches_its_own_challenge_only(verifier: str) -> None:
    challenge = pkce.s256(verifier)
    assert pkce.is_valid_verifier(verifier)
    assert pkce.is_valid_challenge(challenge)
    assert pkce.verify_s256(verifier, challenge)
    other = verifier[:-1] + ("A" if verifier[-1] != "A" else "B")
    assert not pkce.verify_s256(other, challenge)


@given(any_text, any_text)
@example("a" * 42, "x")  # one too short
@example("a" * 129, "x")  # one too long
@example("a" * 43 + "\n", "x")
def test_an_invalid_verifier_never_verifies_and_never_raises(verifier: str, challenge: str) -> None:
    valid = len(verifier) in range(43, 129) and all(c in UNRESERVED for c in verifier)
    assert pkce.is_valid_verifier(verifier) == valid
    if not valid:
        assert not pkce.verify_s256(verifier, pkce.s256(verifier) if verifier.isascii() else "")
    pkce.is_valid_challenge(challenge)


@given(any_text)
def test_challenges_are_exactly_43_base64url_characters(challenge: str) -> None:
    alphabet = string.ascii_letters + string.digits + "-_"
    expected = len(challenge) == 43 and all(c in alphabet for c in challenge)
    assert pkce.is_valid_challenge(challenge) == expected


# -- scope strings ------------------------------------------------------------------------------

SCOPE_CHARS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"\\')
scope_tokens = st.text(st.sampled_from(SCOPE_CHARS), min_size=1, max_size=12)


@given(st.lists(scope_tokens, max_size=6, unique=True).flatmap(st.permutations))
def test_scope_round_trip_in_any_order(tokens: list[str]) -> None:
    scopes = frozenset(tokens)
    assert scope.parse(scope.render(scopes)) == scopes
    assert scope.parse(" ".join(tokens)) == scopes
    assert scope.parse(" ".join(list(scopes) * 2)) == scopes  # duplicates collapse


@given(any_text)
@example("read  write")  # two spaces
@example(" read")
@example("read ")
@example('re"ad')
@example("re\\ad")
@example("réad")
def test_any_scope_string_parses_or_raises_scope_error(text: str) -> None:
    try:
        found = scope.parse(text)
    except scope.ScopeError:
        assert text != "" and any(
            p == "" or any(c not in SCOPE_CHARS for c in p) for p in text.split(" ")
        )
        return
    assert scope.render(found) == " ".join(sorted(set(text.split(" ")))) if text else found == set()


# -- redirect URIs ------------------------------------------------------------------------------

hosts = st.sampled_from(["app.example", "example.com", "10.0.0.1", "sub.domain.test"])
loopback = st.sampled_from(["127.0.0.1", "localhost", "[::1]"])
paths = st.text(st.sampled_from(string.ascii_letters + "/-_."), max_size=20).map(lambda p: "/" + p)


@given(hosts, paths, st.sampled_from(["", "?a=b"]))
def test_cli_accepts_https_and_loopback_http(host: str, path: str, query: str) -> None:
    for uri in (f"https://{host}{path}{query}", f"http://127.0.0.1:9000{path}{query}"):
        assert check_redirect_uri(uri) == uri


@given(hosts, loopback, paths, st.sampled_from(["#", "#frag"]))
def test_cli_refuses_fragments_relative_and_plain_http(
    host: str, local: str, path: str, fragment: str
) -> None:
    for uri in (
        f"http://{host}{path}",  # plain http off loopback
        f"https://{host}{path}{fragment}",  # a fragment (RFC 6749 §3.1.2)
        f"http://{local}{path}{fragment}",
        path,  # relative
        f"https://{path}",  # no host
    ):
        with pytest.raises(SystemExit) as caught:
            check_redirect_uri(uri)
        assert caught.value.code == 1, uri


@given(any_text)
def test_cli_check_returns_the_uri_unchanged_or_exits(uri: str) -> None:
    try:
        assert check_redirect_uri(uri) == uri
    except SystemExit as exc:
        assert exc.code == 1


def test_cli_check_refuses_a_broken_ipv6_literal() -> None:
    with pytest.raises(SystemExit):
        check_redirect_uri("http://[::1")


@pytest.fixture
def app_client(tmp_path: Path) -> Iterator[tuple[TestClient, RegisteredClient]]:
    with running_app(tmp_path) as (http, store, _clock):
        yield (
            http,
            register_client(store, redirect_uris=(REDIRECT_URI, "https://app.example/cb?x=1")),
        )


def near_misses(uri: str) -> st.SearchStrategy[str]:
    return st.sampled_from(
        [
            uri + "/",
            uri + "?",
            uri + "#",
            uri + "&y=2",
            uri.upper(),
            uri.replace("http", "https", 1),
            uri.replace("127.0.0.1", "localhost"),
            uri.replace("callback", "callback/../callback"),
            uri.replace("callback", "%63allback"),
            uri[:-1],
            " " + uri,
        ]
    )


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_authorize_matches_redirect_uris_exactly(
    app_client: tuple[TestClient, RegisteredClient], data: st.DataObject
) -> None:
    """RFC 9700 §4.1.3: exact string matching; anything else is an error page, never a
    redirect (no open redirector)."""
    http, client = app_client
    registered = data.draw(st.sampled_from([REDIRECT_URI, "https://app.example/cb?x=1"]))
    uri = data.draw(st.one_of(near_misses(registered), any_text, st.just(registered)))
    query = {
        "response_type": "code",
        "client_id": client.id,
        "redirect_uri": uri,
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",  # RFC 7636 App. B
        "code_challenge_method": "S256",
    }
    response = http.get("/authorize", params=query)
    if uri == registered:
        assert response.status_code == 303  # on to the login page
        assert response.headers["location"].startswith("/login?next=")
    elif uri == "" or any(c in CONTROL for c in uri):
        assert response.status_code == 400  # empty means omitted: two registered, none chosen
    else:
        assert response.status_code == 400, (uri, response.headers.get("location"))
        assert "location" not in response.headers
        assert "not registered" in response.text


# -- the revocation feed's cursor and Last-Event-ID ---------------------------------------------


@given(st.integers(min_value=0, max_value=10**18 - 1))
def test_cursors_round_trip(n: int) -> None:
    assert _cursor(str(n), "since") == n
    assert _cursor(None, "since") == 0 and _cursor("", "since") == 0


@given(st.text(st.characters(max_codepoint=0x7F), max_size=25))
@example("-1")
@example("1e3")
@example(" 1")
@example("0x10")
@example("1" * 19)
def test_ascii_cursors_parse_or_are_refused(text: str) -> None:
    try:
        found = _cursor(text, "Last-Event-ID")
    except OAuthError as exc:
        assert refused(exc, "invalid_request", 400)
        assert "Last-Event-ID" in exc.description
        assert not (text.isdigit() and len(text) <= 18)
        return
    assert found == (int(text) if text else 0)


@given(st.text(st.characters(min_codepoint=0x80, categories=("Nd", "No")), min_size=1, max_size=3))
@example("²")
def test_unicode_digits_are_refused_as_cursors(text: str) -> None:
    with pytest.raises(OAuthError):
        _cursor(text, "since")
