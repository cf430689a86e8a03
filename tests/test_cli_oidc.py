"""The command line's OpenID Connect settings: `baton client create/update/show/list` with a
client's OIDC options, and `baton user set/show` with a user's claims; errors in one line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import Result

from baton.store.sql import SQLStore
from tests.test_cli import (
    REDIRECT_URI,
    baton,
    create_client,
    create_user,
    failed,
    ok,
    one_json_object,
)


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


def stored_client(db: str, client_id: str) -> Any:
    async def read() -> Any:
        store = SQLStore.open(db)
        try:
            return await store.get_client(client_id)
        finally:
            await store.close()

    return anyio.run(read)


def show(db: str, client_id: str) -> dict[str, Any]:
    return one_json_object(ok("client", "show", "--db", db, client_id, "--json"))


def update(db: str, client_id: str, *args: str) -> Result:
    return baton("client", "update", "--db", db, client_id, "--json", *args)


def test_a_client_is_created_with_its_oidc_settings(db: str) -> None:
    created = create_client(
        db,
        "--redirect-uri",
        "https://app.example/cb",
        "--scope",
        "openid profile email offline_access",
        "--id-token-alg",
        "EdDSA",
        "--subject-type",
        "pairwise",
        "--post-logout-redirect-uri",
        "https://app.example/bye",
        "--post-logout-redirect-uri",
        "com.example.app:/bye",
        "--backchannel-logout-uri",
        "https://app.example/logout",
        "--backchannel-logout-session-required",
        "--require-nonce",
        "--allowed-origin",
        "https://App.Example",
    )
    assert created["id_token_signed_response_alg"] == "Ed25519"  # EdDSA's current name
    assert created["subject_type"] == "pairwise"
    assert created["allowed_origins"] == ["https://app.example"]
    client = stored_client(db, created["client_id"])
    assert client.id_token_signed_response_alg == "Ed25519"
    assert client.post_logout_redirect_uris == ("https://app.example/bye", "com.example.app:/bye")
    assert client.backchannel_logout_uri == "https://app.example/logout"
    assert client.backchannel_logout_session_required and client.require_nonce
    assert client.allowed_origins == ("https://app.example",)
    shown = show(db, created["client_id"])
    assert "client_secret" not in shown and "secret" not in json.dumps(shown)
    assert shown["post_logout_redirect_uris"] == ["https://app.example/bye", "com.example.app:/bye"]

    plain = create_client(db, "--redirect-uri", REDIRECT_URI)
    assert plain["id_token_signed_response_alg"] == "RS256"
    assert plain["subject_type"] == "public" and plain["allowed_origins"] is None
    assert plain["require_nonce"] is False


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--id-token-alg", "HS256"), "unsupported ID token algorithm"),
        (("--subject-type", "secret"), "unknown subject type"),
        (
            ("--subject-type", "pairwise", "--redirect-uri", "https://b.example/cb"),
            "needs a sector_identifier_uri",
        ),
        (("--sector-identifier-uri", "http://rp.example/s.json"), "https"),
        (("--post-logout-redirect-uri", "https://app.example/bye#x"), "fragment"),
        (("--post-logout-redirect-uri", "javascript:alert(1)//"), "reverse-DNS"),
        (("--backchannel-logout-uri", "http://rp.example/logout"), "must use https"),
        (("--backchannel-logout-session-required",), "needs a backchannel logout URI"),
        (("--allowed-origin", "https://app.example/path"), "no path"),
        (("--allowed-origin", "https://app.example", "--no-allowed-origins"), "one of"),
    ],
)
def test_client_create_refuses_bad_oidc_settings_in_one_line(
    db: str, args: tuple[str, ...], says: str
) -> None:
    result = baton(
        "client",
        "create",
        "--db",
        db,
        "--name",
        "x",
        "--redirect-uri",
        "https://a.example/cb",
        *args,
    )
    failed(result, says)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert ok("client", "list", "--db", db).stdout.strip() == "no clients"


def test_client_update_changes_only_what_is_given(db: str) -> None:
    client_id = create_client(db, "--redirect-uri", "https://app.example/cb", "--require-nonce")[
        "client_id"
    ]
    before = stored_client(db, client_id)
    updated = one_json_object(
        ok("client", "update", "--db", db, client_id, "--json", "--id-token-alg", "ES256")
    )
    assert updated["id_token_signed_response_alg"] == "ES256"
    assert updated["require_nonce"] is True  # untouched
    after = stored_client(db, client_id)
    assert after.secret_digest == before.secret_digest and after.name == before.name
    assert after.redirect_uris == before.redirect_uris and after.require_pkce

    one_json_object(
        ok(
            "client",
            "update",
            "--db",
            db,
            client_id,
            "--json",
            "--no-require-nonce",
            "--allowed-origin",
            "https://a.example",
            "--allowed-origin",
            "http://127.0.0.1:3000",
            "--post-logout-redirect-uri",
            "https://app.example/bye",
        )
    )
    assert stored_client(db, client_id).allowed_origins == (
        "https://a.example",
        "http://127.0.0.1:3000",
    )
    assert not stored_client(db, client_id).require_nonce
    # None allowed, then back to the redirect URIs' origins; post-logout URIs removed.
    assert one_json_object(update(db, client_id, "--no-allowed-origins"))["allowed_origins"] == []
    back = one_json_object(
        update(db, client_id, "--derived-origins", "--no-post-logout-redirect-uris")
    )
    assert back["allowed_origins"] is None and back["post_logout_redirect_uris"] == []
    assert stored_client(db, client_id).allowed_origins is None

    # A sector identifier URI set, then removed with "".
    sector = "https://rp.example/sector.json"
    assert (
        one_json_object(update(db, client_id, "--sector-identifier-uri", sector))[
            "sector_identifier_uri"
        ]
        == sector
    )
    assert show(db, client_id)["sector_identifier_uri"] == sector
    assert (
        one_json_object(update(db, client_id, "--sector-identifier-uri", ""))[
            "sector_identifier_uri"
        ]
        is None
    )

    # The backchannel logout URI with its sid requirement; removing the URI alone is refused.
    one_json_object(
        update(
            db,
            client_id,
            "--backchannel-logout-uri",
            "http://127.0.0.1:8000/logout",
            "--backchannel-logout-session-required",
        )
    )
    failed(update(db, client_id, "--backchannel-logout-uri", ""), "needs a backchannel logout URI")
    cleared = one_json_object(
        update(
            db,
            client_id,
            "--backchannel-logout-uri",
            "",
            "--no-backchannel-logout-session-required",
        )
    )
    assert cleared["backchannel_logout_uri"] is None


def test_client_update_checks_pairwise_against_the_registered_redirect_uris(db: str) -> None:
    client_id = create_client(
        db, "--redirect-uri", "https://a.example/cb", "--redirect-uri", "https://b.example/cb"
    )["client_id"]
    failed(update(db, client_id, "--subject-type", "pairwise"), "sector_identifier_uri")
    assert stored_client(db, client_id).subject_type == "public"
    done = update(
        db,
        client_id,
        "--subject-type",
        "pairwise",
        "--sector-identifier-uri",
        "https://rp.example/s.json",
    )
    assert one_json_object(done)["subject_type"] == "pairwise"


def test_client_update_and_show_of_an_unknown_client(db: str) -> None:
    failed(update(db, "cl_nope", "--require-nonce"), "no client 'cl_nope'")
    failed(baton("client", "show", "--db", db, "cl_nope"), "no client 'cl_nope'")


def test_client_show_and_list_as_text(db: str) -> None:
    client_id = create_client(db, "--redirect-uri", REDIRECT_URI, name="Reporting")["client_id"]
    text = ok("client", "show", "--db", db, client_id).stdout
    assert "client_id:" in text and client_id in text
    assert "id_token_signed_response_alg:" in text and "RS256" in text
    assert "(derived from the redirect URIs)" in text
    assert "secret" not in text
    listing = ok("client", "list", "--db", db).stdout
    assert client_id in listing and "Reporting" in listing
    payload = one_json_object(ok("client", "list", "--db", db, "--json"))
    assert [c["client_id"] for c in payload["clients"]] == [client_id]


# -- users' claims ---------------------------------------------------------------------------


def user_set(db: str, *args: str) -> Result:
    return baton("user", "set", "--db", db, "alice", "--json", *args)


def test_user_set_and_show_the_claims(db: str) -> None:
    create_user(db, "alice")
    shown = one_json_object(ok("user", "show", "--db", db, "alice", "--json"))
    assert shown["email"] is None and shown["profile"] == {} and shown["updated_at"] is None
    assert "password" not in json.dumps(shown)

    first = one_json_object(
        user_set(
            db,
            "--email",
            "alice@example.com",
            "--email-verified",
            "--name",
            "Alice Liddell",
            "--given-name",
            "Alice",
            "--zoneinfo",
            "Europe/London",
            "--locale",
            "en-GB",
        )
    )
    assert first["email"] == "alice@example.com" and first["email_verified"] is True
    assert first["profile"] == {
        "name": "Alice Liddell",
        "given_name": "Alice",
        "zoneinfo": "Europe/London",
        "locale": "en-GB",
    }
    assert isinstance(first["updated_at"], int)

    # "" clears one claim; the others stay.
    second = one_json_object(user_set(db, "--locale", ""))
    assert "locale" not in second["profile"] and second["profile"]["name"] == "Alice Liddell"
    # A new address is unverified unless said.
    third = one_json_object(user_set(db, "--email", "alice@new.example"))
    assert third["email_verified"] is False
    text = ok("user", "show", "--db", db, "alice").stdout
    assert "email:          alice@new.example" in text and "email_verified: no" in text
    assert "given_name:" in text and "Alice" in text


def test_updated_at_moves_only_when_a_value_changes(db: str) -> None:
    """OIDC Core §5.1: updated_at is when the user's information last changed, not when
    someone last saved the same values."""
    from baton.core.user_claims import ClaimChanges

    create_user(db, "alice")

    def set_at(now: int, **values: str) -> Any:
        async def work() -> Any:
            store = SQLStore.open(db)
            try:
                found = await store.set_user_claims("alice", ClaimChanges(values), now)
                assert found is not None
                return found[1].updated_at
            finally:
                await store.close()

        return anyio.run(work)

    assert set_at(100, name="Alice") == 100
    assert set_at(200, name="Alice") == 100  # the same value: nothing changed
    assert set_at(300, name="Alice L.") == 300


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--email", "not-an-address"), "not an email address"),
        (("--birthdate", "05/31/1990"), "YYYY-MM-DD"),
        (("--picture", "javascript:alert(1)"), "http or https URL"),
        (("--email-verified",), "needs an email address"),
        ((), "nothing to set"),
    ],
)
def test_user_set_refuses_in_one_line(db: str, args: tuple[str, ...], says: str) -> None:
    create_user(db, "alice")
    result = user_set(db, *args)
    failed(result, says)
    assert result.stderr.count("\n") == 1
    assert one_json_object(ok("user", "show", "--db", db, "alice", "--json"))["updated_at"] is None


def test_user_set_and_show_of_an_unknown_user(db: str) -> None:
    failed(baton("user", "set", "--db", db, "nobody", "--name", "x"), "no user 'nobody'")
    failed(baton("user", "show", "--db", db, "nobody"), "no user 'nobody'")


def test_every_profile_member_has_an_option() -> None:
    from baton.core.claims import PROFILE_MEMBERS

    help_text = ok("user", "set", "--help").stdout
    for member in PROFILE_MEMBERS:
        assert "--" + member.replace("_", "-") in help_text


@pytest.mark.parametrize(
    "args",
    [
        ["client", "update", "cl_x", "--require-nonce"],
        ["client", "show", "cl_x"],
        ["client", "list"],
        ["user", "set", "alice", "--name", "x"],
        ["user", "show", "alice"],
    ],
)
def test_the_new_commands_refuse_an_unmigrated_database(tmp_path: Path, args: list[str]) -> None:
    where = str(tmp_path / "empty.db")
    failed(baton(*args, "--db", where), "not migrated", "baton db upgrade")


def test_client_update_scope_lets_an_existing_client_turn_to_openid(db: str) -> None:
    """An OAuth client registered before OpenID Connect gains `openid` without a new id."""
    client_id = create_client(db, "--redirect-uri", "https://app.example/cb", "--scope", "read")[
        "client_id"
    ]
    before = stored_client(db, client_id)
    ok("client", "update", "--db", db, client_id, "--scope", "read openid offline_access")
    after = stored_client(db, client_id)
    assert after.scope == "offline_access openid read"
    assert after.secret_digest == before.secret_digest
    assert after.id_token_signed_response_alg == before.id_token_signed_response_alg
    refused = update(db, client_id, "--scope", 'read "quoted"')
    assert refused.exit_code == 1 and "--scope" in refused.stderr
    assert stored_client(db, client_id).scope == "offline_access openid read"


@pytest.mark.parametrize("redirect_uri", ["http://127.0.0.1/callback", "http://[::1]:8080/cb"])
def test_a_pairwise_loopback_client_needs_a_sector_identifier_uri(
    db: str, redirect_uri: str
) -> None:
    """RFC 8252 §7.3: a loopback redirect URI is every native app's; as a pairwise sector
    (OIDC Core §8.1) it would give unrelated apps one `sub`. Refused in one line."""
    args = ("client", "create", "--db", db, "--name", "native", "--public")
    pairwise = ("--redirect-uri", redirect_uri, "--subject-type", "pairwise")
    result = baton(*args, *pairwise)
    failed(result, "loopback", "sector_identifier_uri")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    sector = ("--sector-identifier-uri", "https://native.example/sector.json")
    created = one_json_object(ok(*args, *pairwise, *sector, "--json"))
    assert created["subject_type"] == "pairwise"
    # A private-use scheme is its own sector (RFC 8252 §7.1): no sector_identifier_uri needed.
    scheme = ("--redirect-uri", "com.example.native:/callback", "--subject-type", "pairwise")
    assert one_json_object(ok(*args, *scheme, "--json"))["subject_type"] == "pairwise"
