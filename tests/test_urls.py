"""One rule hides a credential in a URL (`baton.urls`), for every line Baton prints one on:
`config show`, the serve and db hints, and the database URL of "Baton serving ... on ..."."""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from baton.store.engines import display_url
from baton.urls import MASK, carries_credential, masked_url

PASSWORDS = st.text(alphabet=st.characters(codec="utf-8"), min_size=4, max_size=24).filter(
    lambda p: p.strip() == p and MASK not in p
)


@given(PASSWORDS)
def test_a_database_url_is_never_shown_with_its_password(password: str) -> None:
    url = f"postgresql://app:{quote(password, safe='')}@db.example:5432/baton"
    for shown in (masked_url(url), display_url(url)):
        assert quote(password, safe="") not in shown
        assert password not in shown.replace(MASK, "")
        assert "db.example" in shown and MASK in shown
    assert carries_credential(url)


def test_a_password_in_the_query_is_masked_too() -> None:
    url = "postgresql://app@db.example/baton?sslmode=require&password=S3cretPW"
    assert "S3cretPW" not in masked_url(url)
    assert "S3cretPW" not in display_url(url)
    assert "sslmode=require" in display_url(url)


def test_urls_without_a_credential_come_back_as_they_were() -> None:
    assert masked_url("/var/lib/baton/baton.db") == "/var/lib/baton/baton.db"
    assert display_url("baton.db") == "sqlite:///baton.db"
    assert display_url("postgresql://app@db.example/baton").endswith("app@db.example/baton")
    assert not carries_credential("redis://127.0.0.1:6379/0")
