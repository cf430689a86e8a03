"""The admin console's OpenID Connect pages: a client's OIDC settings and a user's claims, shown,
edited (checked as the CLI checks them, CSRF required) and audited, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from starlette.testclient import TestClient

from baton.store.sql import SQLStore
from tests.server.test_console import admin_session, audit_rows, csrf_of, make_admin
from tests.support import REDIRECT_URI, RegisteredClient, hidden_inputs


@pytest.fixture
def admin(http: TestClient, store: SQLStore, client: RegisteredClient) -> TestClient:
    make_admin(store)
    admin_session(http)
    return http


def oidc_form(page: str, **fields: str) -> dict[str, str]:
    """The client page's form as a browser would post it unchanged, with `fields` changed."""
    return {
        "csrf": csrf_of(page),
        "version": hidden_inputs(page)["version"],
        "id_token_signed_response_alg": "RS256",
        "subject_type": "public",
        "origins": "derived",
        **fields,
    }


def test_a_clients_oidc_settings_are_shown_edited_and_audited(
    admin: TestClient, store: SQLStore, client: RegisteredClient
) -> None:
    listing = admin.get("/admin/clients").text
    assert f'href="/admin/clients/{client.id}"' in listing
    page = admin.get(f"/admin/clients/{client.id}")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert '<dd id="id-token-alg">RS256</dd>' in page.text
    assert "derived from the redirect URIs" in page.text

    saved = admin.post(
        f"/admin/clients/{client.id}",
        data=oidc_form(
            page.text,
            id_token_signed_response_alg="ES256",
            subject_type="pairwise",
            # The redirect URI is loopback, no sector (RFC 8252 §7.3): the client names one.
            sector_identifier_uri="https://app.example/sector.json",
            post_logout_redirect_uris="https://app.example/bye http://127.0.0.1:9000/bye",
            backchannel_logout_uri="https://app.example/backchannel",
            backchannel_logout_session_required="on",
            require_nonce="on",
            origins="listed",
            allowed_origins="https://App.Example:443 http://127.0.0.1:9000",
        ),
    )
    assert saved.status_code == 200, saved.text
    assert "Saved: " in saved.text and '<dd id="id-token-alg">ES256</dd>' in saved.text
    stored = anyio.run(store.get_client, client.id)
    assert stored is not None
    assert stored.id_token_signed_response_alg == "ES256"
    assert stored.subject_type == "pairwise"
    assert stored.post_logout_redirect_uris == (
        "https://app.example/bye",
        "http://127.0.0.1:9000/bye",
    )
    assert stored.backchannel_logout_uri == "https://app.example/backchannel"
    assert stored.backchannel_logout_session_required and stored.require_nonce
    assert stored.allowed_origins == ("https://app.example", "http://127.0.0.1:9000")
    assert stored.redirect_uris == (REDIRECT_URI,) and stored.scope == "read write"  # untouched

    (row,) = audit_rows(store)
    assert row["action"] == "client.update_oidc" and row["target_id"] == client.id
    assert row["actor"] == "root"
    detail = json.loads(row["detail"])
    assert detail["id_token_signed_response_alg"] == "ES256"
    assert detail["allowed_origins"] == ["https://app.example", "http://127.0.0.1:9000"]
    assert "name" not in detail  # only what changed

    # Posting the same settings again changes nothing and records nothing.
    again = admin.get(f"/admin/clients/{client.id}").text
    assert 'value="listed" checked' in again
    unchanged = admin.post(
        f"/admin/clients/{client.id}",
        data=oidc_form(
            again,
            id_token_signed_response_alg="ES256",
            subject_type="pairwise",
            # The redirect URI is loopback, no sector (RFC 8252 §7.3): the client names one.
            sector_identifier_uri="https://app.example/sector.json",
            post_logout_redirect_uris="https://app.example/bye http://127.0.0.1:9000/bye",
            backchannel_logout_uri="https://app.example/backchannel",
            backchannel_logout_session_required="on",
            require_nonce="on",
            origins="listed",
            allowed_origins="https://app.example http://127.0.0.1:9000",
        ),
    )
    assert "Nothing changed." in unchanged.text
    assert len(audit_rows(store)) == 1

    # Back to the defaults, origins derived again.
    reset = admin.post(f"/admin/clients/{client.id}", data=oidc_form(again))
    assert reset.status_code == 200
    back = anyio.run(store.get_client, client.id)
    assert back is not None and back.allowed_origins is None and back.subject_type == "public"
    assert back.post_logout_redirect_uris == () and back.backchannel_logout_uri is None


def test_an_edit_from_a_page_opened_before_another_save_is_refused(
    admin: TestClient, store: SQLStore, client: RegisteredClient
) -> None:
    """Two admins open the client page; the first saves. The second's save, made from what it
    saw before, would silently undo the first's: it is refused (409), nothing of it is
    written, and the page shows the client as it now is."""
    first = admin.get(f"/admin/clients/{client.id}").text
    second = admin.get(f"/admin/clients/{client.id}").text
    saved = admin.post(f"/admin/clients/{client.id}", data=oidc_form(first, require_nonce="on"))
    assert saved.status_code == 200 and "Saved" in saved.text
    stale = admin.post(
        f"/admin/clients/{client.id}", data=oidc_form(second, id_token_signed_response_alg="ES256")
    )
    assert stale.status_code == 409
    assert "changed since you opened this page, so nothing was saved" in stale.text
    now = anyio.run(store.admin().client, client.id)
    assert now is not None and now.require_nonce and now.id_token_signed_response_alg == "RS256"
    # The page it answered carries the current version: saving from it works.
    again = admin.post(
        f"/admin/clients/{client.id}",
        data=oidc_form(stale.text, require_nonce="on", id_token_signed_response_alg="ES256"),
    )
    assert again.status_code == 200 and "Saved" in again.text


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"id_token_signed_response_alg": "HS256"}, "unsupported ID token algorithm"),
        ({"subject_type": "secret"}, "unknown subject type"),
        ({"post_logout_redirect_uris": "javascript:alert(1)//"}, "reverse-DNS form"),
        ({"post_logout_redirect_uris": "https://app.example/bye#x"}, "fragment"),
        ({"backchannel_logout_uri": "http://rp.example/logout"}, "must use https"),
        ({"backchannel_logout_session_required": "on"}, "needs a backchannel logout URI"),
        ({"origins": "listed", "allowed_origins": "https://app.example/path"}, "no path"),
        ({"sector_identifier_uri": "http://rp.example/sector.json"}, "https"),
    ],
)
def test_a_bad_oidc_setting_is_explained_and_nothing_is_stored(
    admin: TestClient,
    store: SQLStore,
    client: RegisteredClient,
    fields: dict[str, str],
    says: str,
) -> None:
    page = admin.get(f"/admin/clients/{client.id}").text
    answer = admin.post(f"/admin/clients/{client.id}", data=oidc_form(page, **fields))
    assert answer.status_code == 400 and says.lower() in answer.text.lower(), answer.text
    assert audit_rows(store) == []
    stored = anyio.run(store.get_client, client.id)
    assert stored is not None and stored.id_token_signed_response_alg == "RS256"


def test_a_pairwise_client_with_several_hosts_needs_a_sector(
    admin: TestClient, store: SQLStore
) -> None:
    from tests.support import register_client

    several = register_client(
        store, redirect_uris=("https://a.example/cb", "https://b.example/cb"), name="multi"
    )
    page = admin.get(f"/admin/clients/{several.id}").text
    refused = admin.post(
        f"/admin/clients/{several.id}", data=oidc_form(page, subject_type="pairwise")
    )
    assert refused.status_code == 400 and "sector_identifier_uri" in refused.text
    sector = "https://rp.example/sector.json"
    accepted = admin.post(
        f"/admin/clients/{several.id}",
        data=oidc_form(page, subject_type="pairwise", sector_identifier_uri=sector),
    )
    assert accepted.status_code == 200, accepted.text
    stored = anyio.run(store.get_client, several.id)
    assert stored is not None and stored.sector_identifier_uri == sector


def test_a_pairwise_client_with_a_loopback_redirect_uri_needs_a_sector(
    admin: TestClient, store: SQLStore, client: RegisteredClient
) -> None:
    """RFC 8252 §7.3: every native app shares the loopback host; as a pairwise sector (OIDC
    Core §8.1) it would give unrelated apps the same `sub`."""
    page = admin.get(f"/admin/clients/{client.id}").text
    refused = admin.post(
        f"/admin/clients/{client.id}", data=oidc_form(page, subject_type="pairwise")
    )
    assert refused.status_code == 400
    assert "loopback" in refused.text and "sector_identifier_uri" in refused.text
    stored = anyio.run(store.get_client, client.id)
    assert stored is not None and stored.subject_type == "public"


def test_client_edits_need_the_csrf_token_and_an_existing_client(
    admin: TestClient, store: SQLStore, client: RegisteredClient
) -> None:
    page = admin.get(f"/admin/clients/{client.id}").text
    forged = oidc_form(page, require_nonce="on", csrf="forged")
    assert admin.post(f"/admin/clients/{client.id}", data=forged).status_code == 403
    assert admin.get("/admin/clients/cl_nope").status_code == 404
    assert admin.post("/admin/clients/cl_nope", data=oidc_form(page)).status_code == 404
    assert audit_rows(store) == []
    stored = anyio.run(store.get_client, client.id)
    assert stored is not None and not stored.require_nonce


def user_form(page: str, **fields: str) -> dict[str, str]:
    return {"csrf": csrf_of(page), "username": "alice", **fields}


def test_a_users_claims_are_shown_edited_and_audited(
    admin: TestClient, store: SQLStore, client: RegisteredClient
) -> None:
    listing = admin.get("/admin/users")
    assert 'href="/admin/users/claims?username=alice"' in listing.text
    page = admin.get("/admin/users/claims", params={"username": "alice"})
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    for member in ("name", "given_name", "family_name", "locale", "zoneinfo", "birthdate"):
        assert f'name="{member}"' in page.text

    saved = admin.post(
        "/admin/users/claims",
        data=user_form(
            page.text,
            email="alice@example.com",
            email_verified="on",
            name="Alice <Liddell>",
            given_name="Alice",
            locale="en-GB",
        ),
    )
    assert saved.status_code == 200, saved.text
    assert "Alice &lt;Liddell&gt;" in saved.text  # escaped
    assert "verified</span>" in saved.text
    alice = anyio.run(store.get_user, "alice")
    assert alice is not None and alice.email == "alice@example.com" and alice.email_verified
    assert alice.profile == {"name": "Alice <Liddell>", "given_name": "Alice", "locale": "en-GB"}
    assert alice.updated_at is not None

    (row,) = audit_rows(store)
    assert (row["action"], row["target_kind"], row["target_id"]) == (
        "user.set_claims",
        "user",
        "alice",
    )
    detail = json.loads(row["detail"])
    assert set(detail["claims"]) == {"email", "email_verified", "name", "given_name", "locale"}
    assert "alice@example.com" not in row["detail"]  # the names changed, not the values

    # An empty field clears its claim; the rest stay.
    cleared = admin.post(
        "/admin/users/claims",
        data=user_form(
            saved.text,
            email="alice@example.com",
            email_verified="on",
            name="Alice <Liddell>",
            given_name="Alice",
        ),
    )
    assert cleared.status_code == 200
    alice = anyio.run(store.get_user, "alice")
    assert alice is not None and "locale" not in alice.profile and alice.email_verified
    assert json.loads(audit_rows(store)[-1]["detail"]) == {"claims": ["locale"]}


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"email": "not an address"}, "not an email address"),
        ({"birthdate": "5 May 1990"}, "YYYY-MM-DD"),
        ({"picture": "javascript:alert(1)"}, "http or https URL"),
        ({"locale": "en US"}, "BCP 47"),
    ],
)
def test_a_bad_claim_is_explained_and_nothing_is_stored(
    admin: TestClient, store: SQLStore, client: RegisteredClient, fields: dict[str, Any], says: str
) -> None:
    page = admin.get("/admin/users/claims", params={"username": "alice"}).text
    answer = admin.post("/admin/users/claims", data=user_form(page, **fields))
    assert answer.status_code == 400 and says.lower() in answer.text.lower(), answer.text
    assert audit_rows(store) == []
    alice = anyio.run(store.get_user, "alice")
    assert alice is not None and alice.email is None and alice.profile == {}


def test_claim_edits_need_the_csrf_token_and_an_existing_user(
    admin: TestClient, store: SQLStore, client: RegisteredClient
) -> None:
    page = admin.get("/admin/users/claims", params={"username": "alice"}).text
    forged = user_form(page, email="eve@example.com", csrf="forged")
    assert admin.post("/admin/users/claims", data=forged).status_code == 403
    missing = user_form(page, username="nobody", email="x@example.com")
    assert admin.post("/admin/users/claims", data=missing).status_code == 404
    assert admin.get("/admin/users/claims", params={"username": "nobody"}).status_code == 404
    assert audit_rows(store) == []
    alice = anyio.run(store.get_user, "alice")
    assert alice is not None and alice.email is None


def test_only_admins_see_or_edit_claims(
    http: TestClient, store: SQLStore, client: RegisteredClient
) -> None:
    anonymous = http.get("/admin/users/claims", params={"username": "alice"})
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")
    posted = http.post("/admin/users/claims", data={"csrf": "x", "username": "alice"})
    assert posted.status_code == 303
    assert audit_rows(store) == []


def test_a_clients_own_login_and_consent_apps_are_set_in_the_console(
    admin: TestClient, store: SQLStore, client: RegisteredClient
) -> None:
    page = admin.get(f"/admin/clients/{client.id}").text
    apps = {
        "login_url": "https://login.example/signin",
        "consent_url": "http://127.0.0.1:9000/consent",
        "client_uri": "https://app.example/",
    }
    saved = admin.post(f"/admin/clients/{client.id}", data=oidc_form(page, **apps))
    assert saved.status_code == 200, saved.text
    assert '<dd class="mono" id="login-url">https://login.example/signin</dd>' in saved.text
    stored = anyio.run(store.get_client, client.id)
    assert stored is not None
    assert (stored.login_url, stored.consent_url, stored.client_uri) == tuple(apps.values())
    (row,) = audit_rows(store)
    assert json.loads(row["detail"]) == apps

    # Emptied: the server's apps (or the built-in pages) again.
    cleared = admin.post(f"/admin/clients/{client.id}", data=oidc_form(saved.text))
    assert cleared.status_code == 200
    back = anyio.run(store.get_client, client.id)
    assert back is not None and (back.login_url, back.consent_url, back.client_uri) == (
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"login_url": "http://login.example/"}, "must use https"),
        ({"consent_url": "javascript:alert(1)"}, "absolute https url"),
        ({"client_uri": "https://user@app.example/"}, "user information"),
    ],
)
def test_a_bad_app_url_is_explained_and_nothing_is_stored(
    admin: TestClient,
    store: SQLStore,
    client: RegisteredClient,
    fields: dict[str, str],
    says: str,
) -> None:
    page = admin.get(f"/admin/clients/{client.id}").text
    answer = admin.post(f"/admin/clients/{client.id}", data=oidc_form(page, **fields))
    assert answer.status_code == 400 and says in answer.text.lower(), answer.text
    assert audit_rows(store) == []
    stored = anyio.run(store.get_client, client.id)
    assert stored is not None and stored.login_url is None and stored.consent_url is None
