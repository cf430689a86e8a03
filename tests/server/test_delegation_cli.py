"""`baton client create|update|show` with a client's own login and consent apps and homepage."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.test_cli import baton, create_client, failed, ok, one_json_object


@pytest.fixture(autouse=True)
def no_baton_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("BATON_"):
            monkeypatch.delenv(name)


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = tmp_path / "baton.db"
    ok("db", "upgrade", "--db", str(path))
    return str(path)


def test_a_client_names_its_login_and_consent_apps_and_homepage(db: str) -> None:
    created = create_client(
        db,
        "--redirect-uri",
        "https://app.example/cb",
        "--login-url",
        "https://login.example/login",
        "--consent-url",
        "http://127.0.0.1:5000/consent",
        "--client-uri",
        "https://app.example/",
    )
    assert created["login_url"] == "https://login.example/login"
    client_id = created["client_id"]
    shown = one_json_object(ok("client", "show", "--db", db, client_id, "--json"))
    assert shown["login_url"] == "https://login.example/login"
    assert shown["consent_url"] == "http://127.0.0.1:5000/consent"
    assert shown["client_uri"] == "https://app.example/"
    text = ok("client", "show", "--db", db, client_id).stdout
    assert "login_url:" in text and "https://login.example/login" in text

    updated = one_json_object(
        ok(
            "client",
            "update",
            "--db",
            db,
            client_id,
            "--json",
            "--login-url",
            "https://other.example/in",
            "--consent-url",
            "",
        )
    )
    assert updated["login_url"] == "https://other.example/in"
    assert updated["consent_url"] is None  # "" removes it
    assert updated["client_uri"] == "https://app.example/"  # untouched
    # and it is what the store now holds
    again = one_json_object(ok("client", "show", "--db", db, client_id, "--json"))
    assert again == updated


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--login-url", "http://login.example/login"),
        ("--consent-url", "javascript:alert(1)"),
        ("--client-uri", "https://user@app.example/"),
    ],
)
def test_an_app_url_must_be_https_or_loopback(db: str, option: str, value: str) -> None:
    failed(
        baton(
            "client",
            "create",
            "--db",
            db,
            "--name",
            "x",
            "--redirect-uri",
            "https://app.example/cb",
            option,
            value,
        ),
        option,
    )
    client_id = create_client(db, "--redirect-uri", "https://app.example/cb")["client_id"]
    failed(baton("client", "update", "--db", db, client_id, option, value), option)
