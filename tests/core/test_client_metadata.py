"""A client's OpenID Connect settings: what `checked` accepts, normalizes and refuses (the one
check of the CLI and the console)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton.core.client_metadata import (
    MetadataError,
    OidcSettings,
    checked,
    id_token_alg,
    problems,
)
from baton.core.origins import origin_of, origin_problem
from baton.core.subject import subject_for
from baton.store.base import Client

ONE_HOST = ("https://app.example/cb",)


def test_the_defaults_are_a_client_registered_without_settings() -> None:
    client = Client("cl_x", "x", None, True, False, ONE_HOST, "", 0)
    assert OidcSettings.of(client) == OidcSettings()
    assert checked(OidcSettings(), ONE_HOST) == OidcSettings()
    assert checked(OidcSettings(), ()) == OidcSettings()  # no redirect URI: still fine


@pytest.mark.parametrize(
    ("given_name", "alg"),
    [("RS256", "RS256"), ("ES256", "ES256"), ("Ed25519", "Ed25519"), ("EdDSA", "Ed25519")],
)
def test_id_token_algorithms_and_the_old_eddsa_name(given_name: str, alg: str) -> None:
    assert id_token_alg(given_name) == alg
    settings = checked(OidcSettings(id_token_signed_response_alg=given_name), ONE_HOST)
    assert settings.id_token_signed_response_alg == alg


@pytest.mark.parametrize("name", ["HS256", "none", "rs256", "", "PS256"])
def test_other_algorithms_are_refused(name: str) -> None:
    with pytest.raises(MetadataError, match="unsupported ID token algorithm"):
        checked(OidcSettings(id_token_signed_response_alg=name), ONE_HOST)


def test_pairwise_needs_a_sector_it_can_tell() -> None:
    several = ("https://a.example/cb", "https://b.example/cb")
    pairwise = OidcSettings(subject_type="pairwise")
    assert checked(pairwise, ONE_HOST) == pairwise
    # Two URIs on one host are one sector.
    assert checked(pairwise, ("https://a.example/1", "https://a.example/2")) == pairwise
    with pytest.raises(MetadataError, match="needs a sector_identifier_uri"):
        checked(pairwise, several)
    with pytest.raises(MetadataError, match="without redirect URIs"):
        checked(pairwise, ())
    sector = "https://rp.example/sectors.json"
    with_sector = checked(pairwise.changed(sector_identifier_uri=sector), several)
    # ... and the sector is the one subject_for computes with (no SectorError later).
    sub = subject_for("alice", "pairwise", several, with_sector.sector_identifier_uri, b"s")
    assert sub != "alice"
    for bad in (
        "http://rp.example/s.json",
        "rp.example/s.json",
        "https:///s",
        "https://a@b/s",
        "https://rp.example/s.json#x",
    ):
        with pytest.raises(MetadataError, match="sector_identifier_uri"):
            checked(pairwise.changed(sector_identifier_uri=bad), several)
    with pytest.raises(MetadataError, match="sector cannot be told"):
        checked(pairwise, ("http://[",))
    with pytest.raises(MetadataError, match="unknown subject type"):
        checked(OidcSettings(subject_type="secret"), ONE_HOST)


def test_post_logout_redirect_uris_follow_the_redirect_rule() -> None:
    fine = ("https://app.example/bye?x=1", "http://127.0.0.1:9000/bye", "com.example.app:/bye")
    settings = checked(OidcSettings(post_logout_redirect_uris=(*fine, fine[0])), ONE_HOST)
    assert settings.post_logout_redirect_uris == fine  # duplicates once
    for bad, says in [
        ("https://app.example/bye#frag", "fragment"),
        ("http://app.example/bye", "https"),
        ("javascript:alert(1)//", "reverse-DNS"),
        ("/relative", "absolute"),
    ]:
        with pytest.raises(MetadataError, match=says) as raised:
            checked(OidcSettings(post_logout_redirect_uris=(bad,)), ONE_HOST)
        assert str(raised.value).startswith("post-logout redirect URI")


def test_the_backchannel_logout_uri() -> None:
    for fine in (
        "https://rp.example/logout?x=1",
        "http://127.0.0.1:8000/logout",
        "http://[::1]:8000/logout",
    ):
        assert checked(OidcSettings(backchannel_logout_uri=fine), ()).backchannel_logout_uri == fine
    for bad, says in [
        ("https://rp.example/logout#frag", "fragment"),  # Back-Channel Logout §2.2
        ("http://rp.example/logout", "must use https"),
        ("http://localhost/logout", "must use https"),
        ("/logout", "absolute"),
        ("ftp://rp.example/logout", "absolute"),
        ("https://user@rp.example/logout", "user information"),
        ("https://rp.example:99999/logout", "absolute"),
    ]:
        with pytest.raises(MetadataError, match=says):
            checked(OidcSettings(backchannel_logout_uri=bad), ONE_HOST)
    with pytest.raises(MetadataError, match="needs a backchannel logout URI"):
        checked(OidcSettings(backchannel_logout_session_required=True), ONE_HOST)
    both = OidcSettings(
        backchannel_logout_uri="https://rp.example/logout", backchannel_logout_session_required=True
    )
    assert checked(both, ONE_HOST) == both


def test_allowed_origins_are_origins_serialized_as_browsers_send_them() -> None:
    settings = checked(
        OidcSettings(
            allowed_origins=(
                "HTTPS://App.Example:443",
                "https://app.example",
                "https://app.example:8443",
                "http://127.0.0.1:3000",
                "http://[::1]:3000",
            )
        ),
        ONE_HOST,
    )
    assert settings.allowed_origins == (
        "https://app.example",
        "https://app.example:8443",
        "http://127.0.0.1:3000",
        "http://[::1]:3000",
    )
    assert checked(OidcSettings(allowed_origins=()), ONE_HOST).allowed_origins == ()
    assert checked(OidcSettings(allowed_origins=None), ONE_HOST).allowed_origins is None
    for bad, says in [
        ("https://app.example/", "no path"),
        ("https://app.example/cb", "no path"),
        ("https://app.example?x", "no path"),
        ("app.example", "scheme://host"),
        ("null", "scheme://host"),
        ("*", "scheme://host"),
        ("http://app.example", "must use https"),
        ("http://localhost:3000", "must use https"),
        ("https://u@app.example", "user information"),
        ("chrome-extension://abc", "scheme://host"),
    ]:
        with pytest.raises(MetadataError, match=says):
            checked(OidcSettings(allowed_origins=(bad,)), ONE_HOST)


def test_every_problem_is_listed() -> None:
    found = problems(
        OidcSettings(
            id_token_signed_response_alg="HS256",
            post_logout_redirect_uris=("http://x.example/",),
            allowed_origins=("ftp://x",),
        ),
        ONE_HOST,
    )
    assert len(found) == 3


def test_differences_name_only_what_changed() -> None:
    before = OidcSettings()
    after = before.changed(require_nonce=True, allowed_origins=("https://a.example",))
    assert before.differences(after) == {
        "require_nonce": True,
        "allowed_origins": ["https://a.example"],
    }
    assert before.differences(before) == {}


_hosts = st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){1,3}", fullmatch=True)
_ports = st.none() | st.integers(min_value=1, max_value=65535)


@given(host=_hosts, port=_ports, upper=st.booleans())
def test_an_https_origin_is_accepted_and_normalizing_is_idempotent(
    host: str, port: int | None, upper: bool
) -> None:
    raw = f"https://{host.upper() if upper else host}" + (f":{port}" if port else "")
    assert origin_problem(raw) is None
    once = origin_of(raw)
    assert once is not None and once == origin_of(once) and origin_problem(once) is None
    assert once.startswith(f"https://{host}")
    assert once.endswith(f":{port}") == (port is not None and port != 443)


@given(text=st.text(max_size=60))
def test_no_text_raises_anything_but_metadata_error(text: str) -> None:
    settings = OidcSettings(
        id_token_signed_response_alg=text,
        subject_type="pairwise",
        sector_identifier_uri=text,
        post_logout_redirect_uris=(text,),
        backchannel_logout_uri=text,
        allowed_origins=(text,),
    )
    with contextlib.suppress(MetadataError):
        checked(settings, (text,))
