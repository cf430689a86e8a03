"""RP-Initiated Logout 1.0 at `/session/end`, through real HTTP: the user signed out, the
session's grants without `offline_access` revoked and the offline ones kept, the relying parties
told by back-channel logouts, `state` echoed to a registered `post_logout_redirect_uri` only."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest
from sqlalchemy import Connection, select
from starlette.testclient import TestClient

from baton.server.endpoints.logout import end_op_session
from baton.server.runtime.sessions import COOKIE
from baton.store.admin import Actor
from baton.store.schema import sessions
from baton.store.sql import SQLStore, outbox
from tests.server.logout_support import (
    AFTER_LOGOUT,
    id_token,
    logouts,
    oidc_app,
    register_rp,
    sign_in_to,
)
from tests.support import PASSWORD, hidden_inputs, register_user, sign_in

BACKCHANNEL = "http://127.0.0.1:9/backchannel"  # nothing listens: the rows stay to be read


def signed_in(http: TestClient) -> bool:
    """Whether the browser still has a session: the sign-out page offers its form."""
    return 'action="/logout"' in http.get("/logout").text


def active(http: TestClient, client: object, token: str) -> bool:
    response = http.post("/introspect", data={"token": token}, auth=client.basic)  # type: ignore[attr-defined]
    assert response.status_code == 200
    return bool(response.json()["active"])


def test_a_hint_of_this_session_signs_out_at_once_revokes_online_grants_and_keeps_offline(
    database: Path | str,
) -> None:
    with oidc_app(database) as (http, store, _clock):
        register_user(store)
        rp = register_rp(store, backchannel_uri=BACKCHANNEL)
        other = register_rp(store, name="another party")  # no back-channel URI
        online = sign_in_to(http, store, rp, "openid read")
        offline = sign_in_to(http, store, rp, "openid offline_access read")
        elsewhere = sign_in_to(http, store, other, "openid read")
        assert online["sid"] == offline["sid"] == elsewhere["sid"]
        assert signed_in(http)

        response = http.get(
            "/session/end",
            params={
                "id_token_hint": id_token(http, rp, online),
                "post_logout_redirect_uri": AFTER_LOGOUT,
                "state": "bye-123",
                "ui_locales": "fr-CA en",  # ignored, gracefully
            },
        )
        # §3: back to the registered URI with `state`, with no page in between.
        assert response.status_code == 303
        location = urlsplit(response.headers["location"])
        assert location._replace(query="").geturl() == AFTER_LOGOUT
        assert parse_qs(location.query) == {"state": ["bye-123"]}
        assert response.headers["cache-control"] == "no-store"

        assert not signed_in(http)
        # OIDC Core §11: the grant with offline_access outlives the sign-out; the others end.
        assert not active(http, rp, online["access_token"])
        assert not active(http, other, elsewhere["access_token"])
        assert active(http, rp, offline["access_token"])
        refreshed = http.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": offline["refresh_token"]},
            auth=rp.basic,
        )
        assert refreshed.status_code == 200
        grants = {g.grant.id: g.grant for g in anyio.run(store.list_grants)}
        assert grants[online["grant_id"]].revoked_reason == "logout"
        counted = http.app.state.metrics.revocations.labels("grant", "logout")  # type: ignore[attr-defined]
        assert counted._value.get() == 2
        assert grants[offline["grant_id"]].revoked_at is None

        # One back-channel logout for the relying party with a URI (not one per grant), none
        # for the one without; no token is stored, only its claims.
        (row,) = logouts(store)
        assert row.destination == BACKCHANNEL
        claims = json.loads(row.payload)
        assert claims["aud"] == rp.id and claims["sid"] == online["sid"]
        assert claims["subject"] == "alice" and claims["jti"]
        assert "." not in row.payload or "eyJ" not in row.payload

        # The remembered consent stays: signing out is no sign of stolen tokens.
        consent = anyio.run(store.consent, 1, rp.id)
        assert consent is not None


def test_without_a_hint_the_user_is_asked_and_a_forged_answer_is_refused(
    database: Path | str,
) -> None:
    with oidc_app(database) as (http, store, _clock):
        register_user(store)
        rp = register_rp(store, backchannel_uri=BACKCHANNEL)
        grant = sign_in_to(http, store, rp, "openid read")
        ask = {"client_id": rp.id, "post_logout_redirect_uri": AFTER_LOGOUT, "state": "s1"}

        page = http.get("/session/end", params=ask)
        assert page.status_code == 200 and "relying party asks you to sign out" in page.text
        assert signed_in(http) and active(http, rp, grant["access_token"])
        fields = hidden_inputs(page.text)
        assert {k: v for k, v in fields.items() if k != "csrf"} == ask

        # A page elsewhere cannot answer for the user: no CSRF token, no sign-out.
        forged = http.post("/session/end", data={**ask, "decision": "yes"})
        assert forged.status_code == 403 and signed_in(http)
        # "Stay signed in": back to the relying party, still signed in here.
        stay = http.post("/session/end", data={**fields, "decision": "no"})
        assert stay.status_code == 303 and parse_qs(urlsplit(stay.headers["location"]).query) == {
            "state": ["s1"]
        }
        assert signed_in(http) and active(http, rp, grant["access_token"])
        assert logouts(store) == []

        done = http.post("/session/end", data={**fields, "decision": "yes"})
        assert done.status_code == 303
        assert done.headers["location"] == AFTER_LOGOUT + "?state=s1"
        assert not signed_in(http) and not active(http, rp, grant["access_token"])
        assert len(logouts(store)) == 1


def test_a_relying_party_may_post_and_a_hint_of_another_session_is_asked_about(
    database: Path | str,
) -> None:
    with oidc_app(database) as (http, store, _clock):
        register_user(store)
        rp = register_rp(store)
        earlier = sign_in_to(http, store, rp, "openid read")
        hint = id_token(http, rp, earlier)
        http.post("/logout", data=hidden_inputs(http.get("/logout").text))  # signed out
        sign_in_to(http, store, rp, "openid read")  # a new session, a new sid

        # §2: POST is supported too (sent on to the GET); an old session's hint is no proof of
        # this one: ask.
        posted = http.post("/session/end", data={"id_token_hint": hint})
        assert posted.status_code == 303
        page = http.get(posted.headers["location"])
        assert page.status_code == 200 and 'name="decision"' in page.text
        assert signed_in(http)
        fields = hidden_inputs(page.text)
        done = http.post("/session/end", data={**fields, "decision": "yes"})
        # No post_logout_redirect_uri: the signed-out page.
        assert done.status_code == 200 and "Signed out" in done.text
        assert not signed_in(http)


def test_nothing_is_redirected_to_unless_registered_for_the_client_the_request_names(
    database: Path | str,
) -> None:
    with oidc_app(database) as (http, store, _clock):
        register_user(store)
        rp = register_rp(store)
        other = register_rp(store, name="other", post_logout=("https://other.example/bye",))
        grant = sign_in_to(http, store, rp, "openid read")
        hint = id_token(http, rp, grant)
        kid = http.get("/jwks.json").json()["keys"][0]["kid"]
        unsigned = ".".join(
            base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()
            for part in (
                {"alg": "none", "kid": kid},
                {"iss": "http://baton.test", "sub": "alice", "aud": rp.id, "sid": grant["sid"]},
            )
        )
        refused = [
            # An unsigned token naming one of our keys.
            {"id_token_hint": unsigned + "."},
            # Not registered (exact match: not even a longer path or another query).
            {"client_id": rp.id, "post_logout_redirect_uri": "https://evil.example/"},
            {"client_id": rp.id, "post_logout_redirect_uri": AFTER_LOGOUT + "/more"},
            {"client_id": rp.id, "post_logout_redirect_uri": AFTER_LOGOUT + "?x=1"},
            # Another client's URI, for this client.
            {"id_token_hint": hint, "post_logout_redirect_uri": "https://other.example/bye"},
            # client_id and the hint disagree (§2: they MUST match).
            {"id_token_hint": hint, "client_id": other.id},
            # No client to check the URI against.
            {"post_logout_redirect_uri": AFTER_LOGOUT},
            {"client_id": "cl_unknown", "post_logout_redirect_uri": AFTER_LOGOUT},
            # A hint the server never signed.
            {"id_token_hint": "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9."},
            {"id_token_hint": hint[:-4] + "AAAA"},
        ]
        for params in refused:
            response = http.get("/session/end", params=params)
            assert response.status_code == 400, params
            assert "location" not in response.headers
            assert response.headers["content-type"].startswith("text/html")
        posted = http.post("/session/end", data=refused[1])
        assert posted.status_code == 303
        followed = http.get(posted.headers["location"])
        assert followed.status_code == 400 and "location" not in followed.headers
        # Nothing happened.
        assert signed_in(http) and active(http, rp, grant["access_token"])


def test_nobody_signed_in_is_sent_back_at_once(database: Path | str) -> None:
    with oidc_app(database) as (http, store, _clock):
        register_user(store)
        rp = register_rp(store)
        response = http.get(
            "/session/end",
            params={"client_id": rp.id, "post_logout_redirect_uri": AFTER_LOGOUT, "state": "x"},
        )
        assert response.status_code == 303
        assert response.headers["location"] == AFTER_LOGOUT + "?state=x"
        page = http.get("/session/end")
        assert page.status_code == 200 and "Signed out" in page.text


def test_the_metadata_names_the_end_session_endpoint(database: Path | str) -> None:
    with oidc_app(database) as (http, _store, _clock):
        metadata = http.get("/.well-known/oauth-authorization-server").json()
    assert metadata["end_session_endpoint"] == "http://baton.test/session/end"


def test_end_op_session_signs_out_the_session_it_is_given(database: Path | str) -> None:
    """The function `/logout` and the console call: it ends the session and clears it."""
    with oidc_app(database) as (http, store, clock):
        register_user(store)
        rp = register_rp(store, backchannel_uri=BACKCHANNEL)
        grant = sign_in_to(http, store, rp, "openid read")
        assert len(_session_rows(store)) == 1
        app = http.app.state.baton  # type: ignore[attr-defined]
        secret = _session_secret(http)
        cookie_session = {"sid": secret}
        done = anyio.run(end_op_session, app, cookie_session, clock.now(), "192.0.2.1")
        assert cookie_session == {}
        assert done.sessions == 1 and done.revoked == (grant["grant_id"],)
        assert done.told == (rp.id,)
        assert not signed_in(http)
        # A second time: nothing left to end.
        again = anyio.run(end_op_session, app, {"sid": secret}, clock.now(), None)
        assert again.sessions == 0 and len(logouts(store)) == 1


def test_sign_out_everywhere_ends_every_session_and_their_grants(database: Path | str) -> None:
    with oidc_app(database) as (http, store, clock):
        register_user(store)
        rp = register_rp(store, backchannel_uri=BACKCHANNEL)
        grant = sign_in_to(http, store, rp, "openid read")
        kept = sign_in_to(http, store, rp, "openid offline_access read")
        done = anyio.run(store.end_user_op_sessions, 1, clock.now())
        assert done.sessions == 1
        assert done.revoked == (grant["grant_id"],) and done.kept == (kept["grant_id"],)
        assert not signed_in(http)
        assert len(logouts(store)) == 1


def _session_rows(store: SQLStore) -> list[Any]:
    return anyio.run(store.inspect, lambda conn: list(conn.execute(select(sessions)).all()))


def _session_secret(http: TestClient) -> str:
    """The session id the browser's cookie carries (signed by the server; read, not forged)."""
    raw = http.cookies.get("baton_session")
    assert raw is not None
    signer = http.app.state.session_signer  # type: ignore[attr-defined]
    data = json.loads(base64.b64decode(signer.unsign(raw.encode())))
    return str(data["sid"])


def test_the_sign_out_form_signs_out_at_the_provider(database: Path | str) -> None:
    """The /logout form is the same sign-out as /session/end: the session's grants without
    offline_access die at once and their relying parties are told."""
    with oidc_app(database) as (http, store, _clock):
        register_user(store)
        rp = register_rp(store, backchannel_uri=BACKCHANNEL)
        online = sign_in_to(http, store, rp, "openid read")
        offline = sign_in_to(http, store, rp, "openid offline_access read")
        page = http.get("/logout")
        response = http.post("/logout", data={"csrf": hidden_inputs(page.text)["csrf"]})
        assert response.status_code == 200
        assert not signed_in(http)
        assert not active(http, rp, online["access_token"])
        assert active(http, rp, offline["access_token"])
        (row,) = logouts(store)
        assert json.loads(row.payload)["sid"] == online["sid"]


def test_a_cross_site_post_is_sent_on_to_the_get_which_carries_the_cookie_and_signs_out(
    database: Path | str,
) -> None:
    """The session cookie is SameSite=Lax: a browser leaves it off the form POST a relying party
    auto-submits from its own site. The POST must not answer "signed out" for a session it
    cannot see; its 303 to the GET (a top-level navigation, which carries the cookie) does it."""
    with oidc_app(database) as (http, store, _clock):
        register_user(store)
        rp = register_rp(store, backchannel_uri=BACKCHANNEL)
        grant = sign_in_to(http, store, rp, "openid read")
        ask = {
            "id_token_hint": id_token(http, rp, grant),
            "post_logout_redirect_uri": AFTER_LOGOUT,
            "state": "bye & more",
            "ui_locales": "de",
        }
        # The relying party's page posts the form: the browser sends no session cookie.
        cookie = http.cookies.get(COOKIE)
        assert cookie is not None
        http.cookies.delete(COOKIE)
        posted = http.post("/session/end", data=ask)
        http.cookies.set(COOKIE, cookie)
        assert posted.status_code == 303
        assert posted.headers["cache-control"] == "no-store"
        location = urlsplit(posted.headers["location"])
        assert location.path == "/session/end"
        assert parse_qs(location.query) == {name: [value] for name, value in ask.items()}
        # Nothing happened yet: the session and its grant live.
        assert signed_in(http) and active(http, rp, grant["access_token"])
        assert logouts(store) == []

        # The GET, with the cookie: the hint is of this session, so the sign-out is at once.
        done = http.get(posted.headers["location"])
        assert done.status_code == 303
        assert parse_qs(urlsplit(done.headers["location"]).query) == {"state": ["bye & more"]}
        assert not signed_in(http) and not active(http, rp, grant["access_token"])
        assert len(logouts(store)) == 1


def test_signing_in_again_as_the_same_user_keeps_the_sid_so_a_later_logout_ends_old_grants(
    database: Path | str,
) -> None:
    with oidc_app(database) as (http, store, clock):
        register_user(store)
        rp = register_rp(store, backchannel_uri=BACKCHANNEL)
        before = sign_in_to(http, store, rp, "openid read")
        old_secret = _session_secret(http)
        clock.advance(60)
        # Re-authentication (prompt=login, max_age): the same user at the login form.
        assert sign_in(http, "/login", "alice", PASSWORD).status_code == 303
        assert _session_secret(http) != old_secret  # a new cookie: no session fixation
        rows = sorted(_session_rows(store), key=lambda row: row.created_at)
        assert len(rows) == 2 and rows[0].ended_at is not None and rows[1].ended_at is None
        assert rows[0].sid == rows[1].sid == before["sid"]  # the same session at the provider
        assert rows[1].created_at == clock.now()  # a new auth_time
        # Re-authenticating signs nobody out: the grant lives, and no relying party is told.
        assert active(http, rp, before["access_token"]) and logouts(store) == []

        # The relying party's sign-out with the ID token from before the re-login: it is this
        # session's (no question asked), and it ends the grant from before the re-login too.
        response = http.get(
            "/session/end",
            params={
                "id_token_hint": id_token(http, rp, before),
                "post_logout_redirect_uri": AFTER_LOGOUT,
            },
        )
        assert response.status_code == 303 and response.headers["location"] == AFTER_LOGOUT
        assert not signed_in(http) and not active(http, rp, before["access_token"])
        (row,) = logouts(store)
        assert json.loads(row.payload)["sid"] == before["sid"]


def test_another_user_signing_in_signs_the_first_out_at_the_provider(
    database: Path | str,
) -> None:
    with oidc_app(database) as (http, store, _clock):
        register_user(store)
        register_user(store, "bob")
        rp = register_rp(store, backchannel_uri=BACKCHANNEL)
        online = sign_in_to(http, store, rp, "openid read")
        offline = sign_in_to(http, store, rp, "openid offline_access read")

        # "Use another account": bob signs in on alice's browser.
        assert sign_in(http, "/login", "bob", PASSWORD).status_code == 303
        assert signed_in(http)
        rows = {row.user_id: row for row in _session_rows(store)}
        assert rows[1].ended_at is not None and rows[2].ended_at is None
        assert rows[2].sid != online["sid"]  # bob's own session
        # Alice's session ended as a sign-out does: her online grant revoked, her relying party
        # told; her offline_access grant kept (OIDC Core §11).
        assert not active(http, rp, online["access_token"])
        assert active(http, rp, offline["access_token"])
        grants = {g.grant.id: g.grant for g in anyio.run(store.list_grants)}
        assert grants[online["grant_id"]].revoked_reason == "logout"
        (row,) = logouts(store)
        claims = json.loads(row.payload)
        assert row.destination == BACKCHANNEL
        assert claims["subject"] == "alice" and claims["sid"] == online["sid"]


def test_a_console_revocation_rings_the_outbox_bell_at_once(database: Path | str) -> None:
    """An administrator's revocation of an OIDC grant writes a back-channel logout; this
    process's delivery loops are woken when it commits, not at their next poll."""
    with oidc_app(database) as (http, store, clock):
        register_user(store)
        rp = register_rp(store, backchannel_uri=BACKCHANNEL)
        grant = sign_in_to(http, store, rp, "openid read")
        seen = outbox.BELL.rung
        revoked = anyio.run(
            store.admin().revoke_grant, grant["grant_id"], Actor("root", None, clock.now())
        )
        assert revoked and len(logouts(store)) == 1
        assert outbox.BELL.rung != seen


def test_a_write_that_fails_leaves_no_wake_flag_on_its_connection(database: Path | str) -> None:
    """A transaction that flagged a logout and then failed rolled it back: nothing to ring, now
    or at the pooled connection's next (unrelated) transaction."""
    with oidc_app(database) as (_http, store, _clock):
        infos: list[dict[object, object]] = []

        def fails(conn: Connection) -> None:
            infos.append(conn.info)  # the pooled connection's own, kept across checkouts
            conn.info[outbox.WAKE_OUTBOX] = True
            raise RuntimeError("the transaction fails after writing a logout")

        for write in (store._write, store.admin()._write):
            infos.clear()
            seen = outbox.BELL.rung
            with pytest.raises(RuntimeError):
                anyio.run(write, fails)
            assert outbox.WAKE_OUTBOX not in infos[0]
            assert anyio.run(write, lambda conn: outbox.WAKE_OUTBOX in conn.info) is False
            assert outbox.BELL.rung == seen
