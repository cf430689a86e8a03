"""The security review's findings on login and consent delegation, each a regression test that
fails without its fix:

- a login app signs in only delegated users (its own namespace), never a built-in or upstream
  user, who would otherwise be signed in without their password or second factor;
- a sign-in without `remember` is spent by the answer to the client (a code or an error), lives
  only the challenge TTL, and is reached by every sign-out with its grants and back-channel
  logouts;
- the admin API refuses NaN / Infinity, path-unsafe subjects, reserved claim names, and tokens
  whose audience is a resource server;
- two first accepts of one new subject at once both succeed (SQLite and PostgreSQL).

In-process under a fake clock, the "apps" being this test (as in `test_delegation`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio
import pytest
from sqlalchemy import Connection, insert, select, update
from starlette.testclient import TestClient

from baton.core.challenges import LOGIN
from baton.core.clock import FakeClock
from baton.core.tokens import TokenKind, digest, mint, random_id
from baton.passwords import NO_PASSWORD
from baton.store.admin import Actor
from baton.store.base import Client
from baton.store.schema import audit_log, sessions, upstream_links, upstream_providers, users
from baton.store.sql import SQLStore
from tests.server.logout_support import logouts
from tests.server.test_delegation import (
    ADMIN_SCOPE,
    API,
    CONSENT_APP,
    KEK,
    LOGIN_APP,
    _client,
    accept_login,
    admin_token,
    allow,
    app_client,
    call,
    challenge_of,
    claims_of,
    clock,
    code_of,
    http,
    redeem,
    rp,
    running,
    signed_in,
    start,
    store,
    token,
)
from tests.support import (
    REDIRECT_URI,
    RegisteredClient,
    hidden_fields,
    migrated_store,
    register_client,
    running_app,
)

__all__ = ["app_client", "clock", "http", "rp", "running", "store", "token"]  # fixtures

BACKCHANNEL = "http://127.0.0.1:9/backchannel"  # nothing listens: the outbox row is the proof


def _change(store: SQLStore, work: Any) -> None:
    anyio.run(store._change, work)


def _sessions_of(store: SQLStore, username: str, now: int) -> list[Any]:
    """The user's sessions that are live at `now` (not ended, not expired)."""

    def work(conn: Connection) -> list[Any]:
        uid = conn.execute(select(users.c.id).where(users.c.username == username)).scalar()
        return list(
            conn.execute(
                select(sessions).where(
                    sessions.c.user_id == uid,
                    sessions.c.ended_at.is_(None),
                    sessions.c.expires_at > now,
                )
            ).all()
        )

    return anyio.run(store.inspect, work)


def _accept(http: TestClient, token: str, rp: RegisteredClient, body: dict[str, Any]) -> Any:
    response, _ = start(http, rp)
    return call(http, "PUT", f"/login-challenges/{challenge_of(response)}/accept", token, body)


# -- a login app's subjects are its own ----------------------------------------------------------


def _password_user(store: SQLStore, name: str) -> None:
    anyio.run(lambda: store.create_user(name, "$argon2id$v=19$m=65536,t=3,p=4$not-a-real-hash", 0))


def _admin(store: SQLStore, name: str) -> None:
    anyio.run(lambda: store.create_user(name, NO_PASSWORD, 0, admin=True))


def _totp_user(store: SQLStore, name: str) -> None:
    anyio.run(lambda: store.create_user(name, NO_PASSWORD, 0))
    _change(
        store,
        lambda c: c.execute(
            update(users).where(users.c.username == name).values(totp_secret="sealed")
        ),
    )


def _mfa_user(store: SQLStore, name: str) -> None:
    anyio.run(lambda: store.create_user(name, NO_PASSWORD, 0))
    _change(
        store,
        lambda c: c.execute(
            update(users).where(users.c.username == name).values(mfa_required=True)
        ),
    )


def _upstream_user(store: SQLStore, name: str) -> None:
    user = anyio.run(lambda: store.create_user(name, NO_PASSWORD, 0))
    provider = random_id("up")[:20]

    def work(conn: Connection) -> None:
        conn.execute(
            insert(upstream_providers).values(
                id=provider,
                name="Corp",
                issuer="https://idp.example",
                client_id="baton",
                scope="openid",
                created_at=0,
            )
        )
        conn.execute(
            insert(upstream_links).values(
                provider_id=provider, subject="upstream-sub", user_id=user.id, created_at=0
            )
        )

    _change(store, work)


@pytest.mark.parametrize(
    "make",
    [_password_user, _admin, _totp_user, _mfa_user, _upstream_user],
    ids=["password", "admin", "totp", "mfa_required", "upstream"],
)
def test_a_login_app_cannot_sign_in_a_built_in_or_upstream_user(
    http: TestClient, store: SQLStore, rp: RegisteredClient, token: str, make: Any
) -> None:
    name = f"builtin-{make.__name__.strip('_')}"
    make(store, name)
    response, _ = start(http, rp)
    challenge = challenge_of(response)
    answer = call(http, "PUT", f"/login-challenges/{challenge}/accept", token, {"subject": name})
    assert answer.status_code == 409, answer.text
    problem = answer.json()
    assert problem["type"] == "urn:baton:problem:subject-not-delegated"
    assert "built-in or upstream user" in problem["detail"]
    # Nothing was decided: the app may still accept a name of its own.
    assert call(http, "GET", f"/login-challenges/{challenge}", token).status_code == 200
    assert _sessions_of(store, name, 0) == []


def test_a_login_app_gets_no_console_session_for_an_administrator(
    http: TestClient, store: SQLStore, rp: RegisteredClient, token: str
) -> None:
    """The review's proof: an admin:challenges holder named the console administrator (password
    and a required second factor) and got a console session in its own browser."""
    _password_user(store, "opadmin")
    _change(
        store,
        lambda c: c.execute(
            update(users)
            .where(users.c.username == "opadmin")
            .values(is_admin=True, mfa_required=True)
        ),
    )
    answer = _accept(http, token, rp, {"subject": "opadmin", "remember": True})
    assert answer.status_code == 409
    console = http.get("/admin/clients", follow_redirects=False)
    assert console.status_code != 200


def test_a_delegated_user_is_signed_in_again(
    http: TestClient, store: SQLStore, rp: RegisteredClient, token: str
) -> None:
    """The user a login app made (no password, nothing else) stays the app's to sign in."""
    for _ in range(2):
        http.cookies.clear()
        page, _ = signed_in(http, token, rp, subject="delegated-dan")
        assert page.status_code == 200, page.text  # the consent page
    row = anyio.run(store.get_user, "delegated-dan")
    assert row is not None and row.password_hash == NO_PASSWORD and not row.is_admin


# -- a sign-in without `remember` ------------------------------------------------------------------


def _backchannel_client(store: SQLStore) -> RegisteredClient:
    secret = mint(TokenKind.CLIENT_SECRET)
    client = Client(
        id=random_id("cl_"),
        name="back-channel rp",
        secret_digest=secret.digest,
        is_public=False,
        is_resource_server=False,
        redirect_uris=(REDIRECT_URI,),
        scope="openid profile read",
        created_at=0,
        backchannel_logout_uri=BACKCHANNEL,
    )
    anyio.run(store.create_client, client)
    return RegisteredClient(client.id, secret.plaintext)


def _logouts_for(store: SQLStore, sid: str) -> list[dict[str, Any]]:
    payloads = [json.loads(row.payload) for row in logouts(store) if row.destination == BACKCHANNEL]
    return [p for p in payloads if json.dumps(p).find(sid) >= 0]


def _once_only_tokens(
    http: TestClient, store: SQLStore, token: str, subject: str
) -> tuple[RegisteredClient, dict[str, Any]]:
    client = _backchannel_client(store)
    page, verifier = signed_in(http, token, client, subject=subject)  # remember: false
    tokens = redeem(http, client, code_of(allow(http, page))["code"][0], verifier)
    at = tokens["access_token"]
    assert http.get("/userinfo", headers={"Authorization": f"Bearer {at}"}).status_code == 200
    return client, tokens


def test_sign_out_everywhere_reaches_a_sign_in_without_remember(
    http: TestClient, store: SQLStore, token: str
) -> None:
    _, tokens = _once_only_tokens(http, store, token, "ivan")
    sid = claims_of(tokens["id_token"])["sid"]
    assert call(http, "DELETE", "/subjects/ivan/sessions", token).status_code == 204
    info = http.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert info.status_code == 401, "the grant outlived 'sign out everywhere'"
    assert _logouts_for(store, sid), "the relying party was not told"


def test_the_relying_partys_logout_reaches_a_sign_in_without_remember(
    http: TestClient, store: SQLStore, token: str
) -> None:
    _, tokens = _once_only_tokens(http, store, token, "ivy")
    sid = claims_of(tokens["id_token"])["sid"]
    ended = http.get("/session/end", params={"id_token_hint": tokens["id_token"]})
    assert ended.status_code == 200, ended.text
    info = http.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert info.status_code == 401
    assert _logouts_for(store, sid)


def test_a_spent_sign_in_answers_no_other_request(
    http: TestClient, store: SQLStore, rp: RegisteredClient, token: str
) -> None:
    """The consent form posted again (the back button) after the code went out: the sign-in
    served its one authorization, so the login app is asked, no second code is issued."""
    page, _ = signed_in(http, token, rp, subject="spent-sam")
    form = hidden_fields(page.text)
    code_of(http.post("/authorize", data={**form, "decision": "allow"}))
    again = http.post("/authorize", data={**form, "decision": "allow"})
    assert again.status_code == 303 and again.headers["location"].startswith(LOGIN_APP + "?")


def test_a_consent_reject_spends_the_sign_in(
    http: TestClient, store: SQLStore, rp: RegisteredClient, token: str
) -> None:
    """The review's proof: the consent app's reject went to the client without ending the
    once-only sign-in, which could then answer another client's request through the consent
    form."""
    consenting = _client(store, consent_url=CONSENT_APP)
    page, _ = signed_in(http, token, consenting, subject="dave")  # remember: false
    consent = challenge_of(page, CONSENT_APP)
    answer = call(
        http, "PUT", f"/consent-challenges/{consent}/reject", token, {"error": "access_denied"}
    )
    assert code_of(http.get(answer.json()["redirect_to"]))["error"] == ["access_denied"]
    csrf = hidden_fields(http.get("/logout").text)["csrf"][0]
    response, _ = start(http, rp)  # another client's request, as its consent form posts it
    posted = dict(parse_qsl(urlsplit(str(response.request.url)).query))
    again = http.post("/authorize", data={**posted, "csrf": csrf, "decision": "allow"})
    assert again.status_code == 303, again.text
    assert again.headers["location"].startswith(LOGIN_APP + "?")


def test_a_sign_in_without_remember_lives_only_the_challenge_ttl(
    http: TestClient, store: SQLStore, clock: FakeClock, token: str
) -> None:
    """An abandoned flow (the consent app never answers) leaves no 8-hour session."""
    consenting = _client(store, consent_url=CONSENT_APP)
    page, _ = signed_in(http, token, consenting, subject="abandoning-abe")
    challenge_of(page, CONSENT_APP)
    ttl = http.app.state.baton.settings.challenge_ttl  # type: ignore[attr-defined]
    now = clock.now()
    assert len(_sessions_of(store, "abandoning-abe", now)) == 1
    assert _sessions_of(store, "abandoning-abe", now + ttl) == []


def test_a_remembered_sign_in_keeps_its_lifetime(
    http: TestClient, store: SQLStore, clock: FakeClock, rp: RegisteredClient, token: str
) -> None:
    signed_in(http, token, rp, subject="remembering-rita", remember=True, remember_for=3600)
    assert len(_sessions_of(store, "remembering-rita", clock.now() + 3599)) == 1


# -- the admin API's bodies and tokens -------------------------------------------------------------


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(
    http: TestClient, store: SQLStore, token: str, constant: str
) -> None:
    consenting = _client(store, consent_url=CONSENT_APP)
    page, _ = signed_in(http, token, consenting, subject="erin", remember=True)
    consent = challenge_of(page, CONSENT_APP)
    raw = '{"session": {"id_token": {"x": ' + constant + '}, "userinfo": {"y": 1}}}'
    answer = http.put(
        f"{API}/consent-challenges/{consent}/accept",
        content=raw,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["type"] == "urn:baton:problem:bad-body"


@pytest.mark.parametrize("subject", ["org/frank", "/", ".", ".."])
def test_a_subject_the_paths_cannot_address_is_refused(
    http: TestClient, rp: RegisteredClient, token: str, subject: str
) -> None:
    answer = _accept(http, token, rp, {"subject": subject})
    assert answer.status_code == 400, answer.text
    assert "/" in answer.json()["detail"]


def test_a_dotted_subject_is_fine(http: TestClient, rp: RegisteredClient, token: str) -> None:
    assert _accept(http, token, rp, {"subject": "first.last"}).status_code == 200
    assert call(http, "DELETE", "/subjects/first.last/sessions", token).status_code == 204


@pytest.mark.parametrize(
    "claim", ["events", "_claim_names", "_claim_sources", "cnf", "typ", "nonce"]
)
def test_reserved_claims_are_refused(
    http: TestClient, store: SQLStore, token: str, claim: str
) -> None:
    consenting = _client(store, consent_url=CONSENT_APP)
    page, _ = signed_in(http, token, consenting, subject="reserved-rob", remember=True)
    consent = challenge_of(page, CONSENT_APP)
    for place in ("id_token", "userinfo"):
        body = {"session": {place: {claim: {"x": 1}}}}
        answer = call(http, "PUT", f"/consent-challenges/{consent}/accept", token, body)
        assert answer.status_code == 400, answer.text
        assert claim in answer.json()["detail"]


def test_a_token_for_a_resource_server_does_not_open_the_admin_api(
    http: TestClient, store: SQLStore, rp: RegisteredClient
) -> None:
    """RFC 8707: a token the app got for https://rs.example/ is that server's; replayed here it
    must not act as the app."""
    app = register_client(
        store, scope="admin:challenges admin:sessions", allowed_resources=("https://rs.example/",)
    )
    response, _ = start(http, rp)
    challenge = challenge_of(response)
    for extra in ({"resource": "https://rs.example/"}, {}):  # named, or the client's default
        got = http.post(
            "/token",
            data={"grant_type": "client_credentials", "scope": "admin:challenges", **extra},
            auth=app.basic,
        )
        assert got.status_code == 200, got.text
        at = got.json()["access_token"]
        assert claims_of(at)["aud"] == "https://rs.example/"
        answer = call(http, "GET", f"/login-challenges/{challenge}", at)
        assert answer.status_code == 401, answer.text
        assert "audience" in answer.json()["detail"]


def test_refusals_of_a_known_caller_are_audited(
    http: TestClient, store: SQLStore, app_client: RegisteredClient, token: str
) -> None:
    """docs/identity.md: every call whose caller is known is audited, its 404 / 400 too."""
    actor = f"client:{app_client.id}"

    def refusals() -> list[tuple[str, int]]:
        rows = anyio.run(
            store.inspect,
            lambda c: c.execute(select(audit_log).where(audit_log.c.actor == actor)).all(),
        )
        return [
            (r.action, json.loads(r.detail).get("refused"))
            for r in rows
            if r.detail and "refused" in json.loads(r.detail)
        ]

    assert call(http, "GET", "/login-challenges/" + "x" * 201, token).status_code == 404
    assert (
        call(http, "PUT", "/consent-challenges/" + "x" * 201 + "/accept", token).status_code == 404
    )
    assert call(http, "DELETE", "/subjects/%20lead/sessions", token).status_code == 404
    assert call(http, "DELETE", "/subjects/%20lead/consents", token).status_code == 404
    consents = call(http, "DELETE", "/subjects/carol/consents?client_id=%01", token)
    assert consents.status_code == 400
    assert sorted(refusals()) == [
        ("consent_challenge.accept", 404),
        ("login_challenge.read", 404),
        ("subject.consents.delete", 400),
        ("subject.consents.delete", 404),
        ("subject.sessions.delete", 404),
    ]


# -- the browser binding cookie ----------------------------------------------------------------


def test_a_binding_value_this_server_did_not_issue_is_not_used(
    http: TestClient, rp: RegisteredClient, token: str
) -> None:
    """A sibling subdomain tosses `baton_flow=V` into the victim's browser and holds V itself:
    the victim's challenge must not be bound to V, else the attacker's browser could redeem the
    victim's verifier."""
    tossed = "t" * 43
    http.cookies.set("baton_flow", tossed, domain="baton.test", path="/authorize")
    response, _ = start(http, rp)
    issued = response.cookies.get("baton_flow")
    assert issued is not None and issued != tossed
    redirect_to = accept_login(http, token, challenge_of(response), subject="tossed-tom")
    attacker = TestClient(http.app, base_url="http://baton.test", follow_redirects=False)
    attacker.cookies.set("baton_flow", tossed, domain="baton.test", path="/authorize")
    refused = attacker.get(redirect_to)
    assert refused.status_code == 403 and "another browser" in refused.text
    assert http.get(redirect_to).status_code == 200  # the victim's own browser goes on


def test_under_https_the_binding_cookie_is_host_only(tmp_path: Path) -> None:
    with running_app(
        tmp_path,
        issuer="https://baton.test",
        key_encryption_key=KEK,
        login_url=LOGIN_APP,
        signing_alg="ES256",
    ) as (https, store, _):
        rp = _client(store)
        token = admin_token(https, register_client(store, scope=ADMIN_SCOPE, name="login app"))
        response, _ = start(https, rp)
        cookie = response.headers["set-cookie"]
        assert cookie.startswith("__Host-baton_flow=")
        assert "secure" in cookie.lower() and "path=/;" in cookie.lower() + ";"
        assert "domain" not in cookie.lower()
        answer = call(
            https,
            "PUT",
            f"/login-challenges/{challenge_of(response)}/accept",
            token,
            {"subject": "secure-sue"},
        )
        assert https.get(answer.json()["redirect_to"]).status_code == 200  # consent page


# -- racing first accepts --------------------------------------------------------------------------


def test_two_first_accepts_of_one_new_subject_both_succeed(database: Path | str) -> None:
    """Two tabs (or two app instances) accept the same brand-new subject at once: one user,
    two decided challenges, no error (PostgreSQL's unique violation was a 500)."""
    from tests.databases import empty_tables

    if isinstance(database, str):
        empty_tables(database)
    store = migrated_store(database if isinstance(database, str) else database / "race.db")
    results: list[object] = []

    async def main() -> None:
        await store.create_client(
            Client(
                id="c1",
                name="c",
                secret_digest=None,
                is_public=True,
                is_resource_server=False,
                redirect_uris=("http://127.0.0.1/cb",),
                scope="openid",
                created_at=0,
            )
        )
        for i in range(20):
            await store.create_challenge(
                digest(f"ch{i}"), LOGIN, "c1", digest("b"), {}, None, 0, 10_000
            )

        async def one(i: int) -> None:
            try:
                decided = await store.decide_challenge(
                    digest(f"ch{i}"),
                    LOGIN,
                    {"decision": "accept"},
                    digest(f"v{i}"),
                    Actor("client:x", None, 1),
                    "login_challenge.accept",
                    "t",
                    subject=f"new{i // 2}",
                )
                results.append(decided)
            except Exception as exc:
                results.append(exc)

        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(one, i)

    anyio.run(main)
    assert not [r for r in results if isinstance(r, (Exception, str))], results
    for n in range(10):
        user = anyio.run(store.get_user, f"new{n}")
        assert user is not None and user.password_hash == NO_PASSWORD
