"""A user's own "sign out everywhere" (the /logout page's second button, POST
/logout/everywhere): every session of theirs ends, on every browser, with the grants those
sessions gave without offline_access, and each relying party gets a back-channel logout; other
users' sessions stay, and a forged form changes nothing."""

from __future__ import annotations

from pathlib import Path

import anyio
from starlette.testclient import TestClient

from baton.store.sql import SQLStore
from tests.server.logout_support import logouts, oidc_app, register_rp, sign_in_to
from tests.support import _PASSWORD_HASH, ISSUER, hidden_inputs, register_user, sign_in

BACKCHANNEL = "http://127.0.0.1:9/backchannel"  # nothing listens: the rows stay to be read


def browser(http: TestClient) -> TestClient:
    """Another browser on the same app, with cookies of its own."""
    return TestClient(http.app, base_url=ISSUER, follow_redirects=False)


def signed_in(http: TestClient) -> bool:
    return 'action="/logout"' in http.get("/logout").text


def active(http: TestClient, client: object, token: str) -> bool:
    response = http.post("/introspect", data={"token": token}, auth=client.basic)  # type: ignore[attr-defined]
    return bool(response.json()["active"])


def everywhere(http: TestClient, csrf: str | None = None) -> str:
    if csrf is None:
        csrf = hidden_inputs(http.get("/logout").text)["csrf"]
    response = http.post("/logout/everywhere", data={"csrf": csrf})
    assert response.status_code in (200, 403), response.text
    return response.text if response.status_code == 200 else "403"


def add_bob(store: SQLStore) -> None:
    anyio.run(lambda: store.create_user("bob", _PASSWORD_HASH, 0))


def test_every_session_of_the_user_ends_with_its_grants(database: Path | str) -> None:
    with oidc_app(database) as (laptop, store, clock):
        register_user(store)
        add_bob(store)
        rp = register_rp(store, backchannel_uri=BACKCHANNEL)
        on_laptop = sign_in_to(laptop, store, rp, "openid read")
        clock.advance(1)  # the phone's session is the newest (`sign_in_to` binds to it)
        phone = browser(laptop)
        on_phone = sign_in_to(phone, store, rp, "openid read")
        offline = sign_in_to(phone, store, rp, "openid offline_access read")
        bobs = browser(laptop)
        sign_in(bobs, "/login", "bob")
        assert signed_in(laptop) and signed_in(phone) and signed_in(bobs)
        assert 'action="/logout/everywhere"' in laptop.get("/logout").text

        page = everywhere(laptop)
        assert "Signed out everywhere" in page and "2 sessions ended" in page

        assert not signed_in(laptop) and not signed_in(phone)
        assert signed_in(bobs)  # another user's session is none of this
        assert not active(laptop, rp, on_laptop["access_token"])
        assert not active(laptop, rp, on_phone["access_token"])
        assert active(laptop, rp, offline["access_token"])  # OIDC Core §11
        # One back-channel logout per session ended, each naming its session.
        told = sorted(row.payload for row in logouts(store))
        assert len(told) == 2
        assert any(on_laptop["sid"] in p for p in told) and any(on_phone["sid"] in p for p in told)


def test_a_forged_form_or_nobody_signed_in_ends_nothing(database: Path | str) -> None:
    with oidc_app(database) as (http, store, _clock):
        register_user(store)
        rp = register_rp(store, backchannel_uri=BACKCHANNEL)
        grant = sign_in_to(http, store, rp, "openid read")
        assert everywhere(http, csrf="forged") == "403"
        assert signed_in(http) and active(http, rp, grant["access_token"])

        stranger = browser(http)  # the sign-in form gives it a CSRF token, and no session
        page = everywhere(stranger, hidden_inputs(stranger.get("/login").text)["csrf"])
        assert "You are not signed in" in page
        assert signed_in(http) and active(http, rp, grant["access_token"])
        assert logouts(store) == []
