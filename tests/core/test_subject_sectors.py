"""The pairwise sector of a native app (OIDC Core §8.1, RFC 8252 §7.1, §7.3): its private-use
scheme, never the part after `//`; a loopback redirect URI names no sector at all, so two
unrelated apps never see the same pairwise `sub`."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton.core.client_metadata import MetadataError, OidcSettings, checked
from baton.core.subject import SectorError, sector_of, subject_for

SALT = b"s" * 32
SECTOR_URI = "https://rp.example/sector.json"

_label = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)
# A private-use scheme: a reverse-DNS name (RFC 8252 §7.1), never http or https.
_scheme = st.lists(_label, min_size=2, max_size=4).map(".".join)


def pairwise(*redirect_uris: str, sector_identifier_uri: str | None = None) -> str:
    return subject_for("alice", "pairwise", redirect_uris, sector_identifier_uri, SALT)


def test_two_private_use_schemes_with_the_same_path_are_two_sectors() -> None:
    assert sector_of(("com.a://callback",), None) == "com.a"
    assert sector_of(("org.b://callback",), None) == "org.b"
    assert pairwise("com.a://callback") != pairwise("org.b://callback")
    # One app, several private-use redirect URIs: one sector.
    assert sector_of(("com.a://callback", "com.a:/other"), None) == "com.a"


@given(_scheme, _scheme, _label)
def test_different_private_use_schemes_get_different_subs(a: str, b: str, path: str) -> None:
    if a == b:
        assert pairwise(f"{a}://{path}") == pairwise(f"{b}:/{path}")
    else:
        assert pairwise(f"{a}://{path}") != pairwise(f"{b}://{path}")


@given(st.lists(_label, min_size=2, max_size=3).map(".".join), _label, _label)
def test_one_https_host_is_one_sub(host: str, one: str, two: str) -> None:
    assert pairwise(f"https://{host}/{one}") == pairwise(f"https://{host}:8443/{two}?x=1")


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1/callback",
        "http://127.0.0.1:51004/callback",
        "http://127.1.2.3/cb",
        "http://[::1]/callback",
        "http://[::1]:8080/callback",
        "http://localhost/callback",
        "https://LOCALHOST:9/cb",
    ],
)
def test_a_loopback_redirect_uri_is_no_sector(uri: str) -> None:
    with pytest.raises(SectorError, match=r"loopback.*needs a sector_identifier_uri"):
        sector_of((uri,), None)
    with pytest.raises(SectorError):
        pairwise(uri)
    # Two apps on loopback, each with its own sector_identifier_uri, see different subs.
    mine = pairwise(uri, sector_identifier_uri="https://a.example/s.json")
    theirs = pairwise(uri, sector_identifier_uri="https://b.example/s.json")
    assert mine != theirs


def test_loopback_beside_another_redirect_uri_still_needs_a_sector() -> None:
    with pytest.raises(SectorError, match="loopback"):
        sector_of(("com.a:/cb", "http://127.0.0.1/cb"), None)


def test_registration_refuses_a_pairwise_loopback_client_in_one_line() -> None:
    settings = OidcSettings(subject_type="pairwise")
    with pytest.raises(MetadataError) as refused:
        checked(settings, ("http://127.0.0.1/callback",))
    message = str(refused.value)
    assert "sector_identifier_uri" in message and "\n" not in message
    with_sector = settings.changed(sector_identifier_uri=SECTOR_URI)
    assert checked(with_sector, ("http://127.0.0.1/callback",)) == with_sector
    assert checked(settings, ("com.a://callback",)) == settings
