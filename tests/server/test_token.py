"""The token endpoint over HTTP, rule by rule, at the boundary instants (fake clock)."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx2
import pytest
from starlette.testclient import TestClient

from baton.core.clock import FakeClock
from baton.core.policy import Lifetimes, RetryPolicy
from baton.core.rules import CodeProblem, Reason
from baton.store.sql import SQLStore
from tests.support import (
    REDIRECT_URI,
    RegisteredClient,
    authorize,
    first_pair,
    introspect,
    refresh,
    register_client,
    register_user,
    running_app,
)

LEEWAY = 600


def active(http: TestClient, rs: RegisteredClient, token: str) -> bool:
    return bool(introspect(http, rs, token)["active"])


def assert_invalid_grant(response: httpx2.Response, reason: Reason | CodeProblem) -> None:
    assert response.status_code == 400
    body = response.json()
    assert body == {"error": "invalid_grant", "error_description": reason.value}


# -- rule 1: authorization code + PKCE creates a grant and its first pair -------------------------


def test_code_exchange_issues_a_first_pair(http: TestClient, client: RegisteredClient) -> None:
    query, verifier = authorize(http, client)
    response = http.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
        auth=client.basic,
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["refresh_token_expires_in"] == 90 * 86400
    assert body["scope"] == "read write"
    assert body["access_token"].startswith("bat_at_")
    assert body["refresh_token"].startswith("bat_rt_")


def test_a_code_is_single_use_and_its_replay_revokes_the_grant(
    http: TestClient,
    client: RegisteredClient,
    resource_server: RegisteredClient,
    store: SQLStore,
) -> None:
    query, verifier = authorize(http, client)
    data = {
        "grant_type": "authorization_code",
        "code": query["code"][0],
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier or "",
        **client.auth_params(),
    }
    pair = http.post("/token", data=data).json()
    again = http.post("/token", data=data)
    assert_invalid_grant(again, CodeProblem.REUSED)
    # RFC 6749 §4.1.2: the tokens issued from the code are revoked.
    assert not active(http, resource_server, pair["access_token"])
    assert not active(http, resource_server, pair["refresh_token"])
    events = anyio.run(store.security_events)
    assert [e.kind for e in events] == ["code_reuse"]
    assert events[0].subject == "alice"


@pytest.mark.parametrize(("wait", "ok"), [(59, True), (60, False)])
def test_a_code_lives_60_seconds(
    http: TestClient, client: RegisteredClient, clock: FakeClock, wait: int, ok: bool
) -> None:
    query, verifier = authorize(http, client)
    clock.advance(wait)
    response = http.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier or "",
            **client.auth_params(),
        },
    )
    if ok:
        assert response.status_code == 200
    else:
        assert_invalid_grant(response, CodeProblem.EXPIRED)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"redirect_uri": "http://127.0.0.1:9000/other"}, CodeProblem.REDIRECT_MISMATCH),
        ({"redirect_uri": None}, CodeProblem.REDIRECT_MISMATCH),
        ({"code_verifier": None}, CodeProblem.VERIFIER_MISSING),
        ({"code_verifier": "x" * 43}, CodeProblem.VERIFIER_MISMATCH),
        ({"code": "bat_ac_garbage"}, CodeProblem.UNKNOWN),
    ],
)
def test_code_exchange_checks(
    http: TestClient,
    client: RegisteredClient,
    change: dict[str, str | None],
    problem: CodeProblem,
) -> None:
    query, verifier = authorize(http, client)
    data: dict[str, str | None] = {
        "grant_type": "authorization_code",
        "code": query["code"][0],
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
        **change,
    }
    sent = {k: v for k, v in data.items() if v is not None}
    assert_invalid_grant(http.post("/token", data=sent, auth=client.basic), problem)


def test_a_verifier_without_a_challenge_is_refused(
    http: TestClient, client: RegisteredClient, store: SQLStore
) -> None:
    """RFC 9700 §2.1.1: a code_verifier for a code issued without PKCE is a downgrade."""
    client = register_client(store, require_pkce=False)  # an operator's `--pkce-optional`
    query, _ = authorize(http, client, pkce=False)
    data = {
        "grant_type": "authorization_code",
        "code": query["code"][0],
        "redirect_uri": REDIRECT_URI,
        "code_verifier": "a" * 43,
    }
    assert_invalid_grant(
        http.post("/token", data=data, auth=client.basic), CodeProblem.VERIFIER_UNEXPECTED
    )
    del data["code_verifier"]
    assert http.post("/token", data=data, auth=client.basic).status_code == 200


def test_another_clients_code_is_refused(
    http: TestClient, client: RegisteredClient, store: SQLStore
) -> None:
    other = register_client(store)
    query, verifier = authorize(http, client)
    data = {
        "grant_type": "authorization_code",
        "code": query["code"][0],
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier or "",
    }
    refused = http.post("/token", data=data, auth=other.basic)
    unknown = http.post("/token", data={**data, "code": "bat_ac_unknown"}, auth=other.basic)
    assert_invalid_grant(refused, CodeProblem.UNKNOWN)  # issue 21: no oracle
    assert (refused.status_code, refused.content) == (unknown.status_code, unknown.content)
    assert http.post("/token", data=data, auth=client.basic).status_code == 200


# -- rule 2: rotation, companions, the leeway -----------------------------------------------------


def test_refresh_rotates_and_the_old_access_token_dies_at_the_end_of_the_leeway(
    http: TestClient,
    client: RegisteredClient,
    resource_server: RegisteredClient,
    clock: FakeClock,
) -> None:
    first = first_pair(http, client)
    exchanged_at = clock.now()
    second = refresh(http, client, first["refresh_token"]).json()
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    seen = introspect(http, resource_server, second["access_token"])
    assert seen["generation"] == 1
    assert seen["grant_id"] == introspect(http, resource_server, first["access_token"])["grant_id"]

    old = introspect(http, resource_server, first["access_token"])
    assert old["active"] is True
    assert old["revocation_at"] == exchanged_at + LEEWAY
    clock.advance(LEEWAY - 1)
    assert active(http, resource_server, first["access_token"])
    assert active(http, resource_server, first["refresh_token"])
    clock.advance(1)  # exactly exchanged_at + leeway: long before the old token's exp
    assert not active(http, resource_server, first["access_token"])
    assert not active(http, resource_server, first["refresh_token"])
    assert active(http, resource_server, second["access_token"])
    assert "revocation_at" not in introspect(http, resource_server, second["access_token"])


def test_an_access_token_lives_to_its_exp(
    http: TestClient,
    client: RegisteredClient,
    resource_server: RegisteredClient,
    clock: FakeClock,
) -> None:
    pair = first_pair(http, client)
    clock.advance(3599)
    assert active(http, resource_server, pair["access_token"])
    clock.advance(1)
    assert not active(http, resource_server, pair["access_token"])


# -- rule 3: retries inside the leeway ------------------------------------------------------------


def test_replay_returns_the_same_pair_with_expires_in_recomputed(
    http: TestClient, client: RegisteredClient, clock: FakeClock
) -> None:
    first = first_pair(http, client)
    child = refresh(http, client, first["refresh_token"]).json()
    clock.advance(LEEWAY - 1)
    again = refresh(http, client, first["refresh_token"])
    assert again.status_code == 200
    body = again.json()
    assert body["access_token"] == child["access_token"]
    assert body["refresh_token"] == child["refresh_token"]
    assert body["expires_in"] == 3600 - (LEEWAY - 1)
    assert body["refresh_token_expires_in"] == child["refresh_token_expires_in"] - (LEEWAY - 1)


def clients_of(store: SQLStore) -> tuple[RegisteredClient, RegisteredClient]:
    """A user, a confidential client and a resource server, on a store of a test's own app."""
    register_user(store)
    return register_client(store), register_client(store, resource_server=True)


def test_fork_issues_a_sibling_pair_per_retry(database: Path | str) -> None:
    with running_app(database, retry=RetryPolicy.FORK) as (http, store, clock):
        client, rs = clients_of(store)
        first = first_pair(http, client)
        a = refresh(http, client, first["refresh_token"]).json()
        clock.advance(10)
        b = refresh(http, client, first["refresh_token"]).json()
        assert a["refresh_token"] != b["refresh_token"]
        for token in (a["access_token"], a["refresh_token"], b["access_token"], b["refresh_token"]):
            seen = introspect(http, rs, token)
            assert seen["active"] is True
            assert seen["generation"] == 1
        # The parent's leeway runs from its first exchange; retries do not extend it.
        clock.advance(LEEWAY - 10)
        assert_invalid_grant(refresh(http, client, first["refresh_token"]), Reason.REUSED)


def test_fork_lets_one_sibling_chain_continue(database: Path | str) -> None:
    """Issue 21 (M6): siblings are one family. The first sibling refreshed continues; the other
    sibling, or the parent retried inside its leeway, is reuse afterwards: the grant dies."""
    with running_app(database, retry=RetryPolicy.FORK) as (http, store, clock):
        client, rs = clients_of(store)
        first = first_pair(http, client)
        a = refresh(http, client, first["refresh_token"]).json()
        b = refresh(http, client, first["refresh_token"]).json()
        clock.advance(5)
        a2 = refresh(http, client, a["refresh_token"])
        assert a2.status_code == 200, a2.text
        # The losing sibling is no longer honoured, and the parent's retry would be reuse.
        assert not active(http, rs, b["refresh_token"])
        assert not active(http, rs, first["refresh_token"])
        assert active(http, rs, a2.json()["refresh_token"])
        assert_invalid_grant(refresh(http, client, b["refresh_token"]), Reason.SIBLING_CONTINUED)
        for token in (a2.json()["access_token"], a2.json()["refresh_token"], b["access_token"]):
            assert not active(http, rs, token)
        events = anyio.run(store.security_events)
        assert [e.kind for e in events if e.kind.endswith("reuse")] == ["refresh_token_reuse"]


def test_fork_parent_retried_after_a_sibling_continued_is_reuse(database: Path | str) -> None:
    with running_app(database, retry=RetryPolicy.FORK) as (http, store, clock):
        client, rs = clients_of(store)
        first = first_pair(http, client)
        a = refresh(http, client, first["refresh_token"]).json()
        clock.advance(5)
        a2 = refresh(http, client, a["refresh_token"]).json()
        clock.advance(5)  # the parent's leeway still runs
        assert_invalid_grant(
            refresh(http, client, first["refresh_token"]), Reason.RETRY_AFTER_CONTINUED
        )
        assert not active(http, rs, a2["access_token"])


def test_strict_treats_any_second_use_as_reuse(database: Path | str) -> None:
    with running_app(database, retry=RetryPolicy.STRICT) as (http, store, _clock):
        client, rs = clients_of(store)
        first = first_pair(http, client)
        child = refresh(http, client, first["refresh_token"]).json()
        # The leeway is 0: the old access token died at the exchange.
        assert not active(http, rs, first["access_token"])
        assert active(http, rs, child["access_token"])
        assert_invalid_grant(refresh(http, client, first["refresh_token"]), Reason.REUSED)
        assert not active(http, rs, child["access_token"])
        assert not active(http, rs, child["refresh_token"])


# -- rule 4: reuse detection ----------------------------------------------------------------------


def test_reuse_after_the_leeway_revokes_the_whole_family(
    http: TestClient,
    client: RegisteredClient,
    resource_server: RegisteredClient,
    clock: FakeClock,
    store: SQLStore,
) -> None:
    first = first_pair(http, client)
    second = refresh(http, client, first["refresh_token"]).json()
    third = refresh(http, client, second["refresh_token"]).json()
    grant_id = introspect(http, resource_server, third["access_token"])["grant_id"]
    clock.advance(LEEWAY)
    assert_invalid_grant(refresh(http, client, first["refresh_token"]), Reason.REUSED)
    for token in (third["access_token"], third["refresh_token"]):
        assert not active(http, resource_server, token)
    # The newest refresh token is dead too, and says why.
    assert_invalid_grant(
        refresh(http, client, third["refresh_token"]), Reason.GRANT_REVOKED_BY_REUSE
    )
    (event,) = anyio.run(store.security_events)
    assert event.kind == "refresh_token_reuse"
    assert event.grant_id == grant_id
    assert event.client_id == client.id
    assert event.subject == "alice"
    assert event.generation == 0
    assert event.occurred_at == clock.now()
    assert event.source_address == "testclient"


# -- rule 5: revocation ---------------------------------------------------------------------------


def test_revoking_a_refresh_token_kills_the_grant_at_once(
    http: TestClient, client: RegisteredClient, resource_server: RegisteredClient
) -> None:
    first = first_pair(http, client)
    second = refresh(http, client, first["refresh_token"]).json()
    # The first refresh token is in its leeway: revoking it revokes the whole grant, child too.
    response = http.post("/revoke", data={"token": first["refresh_token"]}, auth=client.basic)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    for token in (*first.values(), *second.values()):
        if isinstance(token, str) and token.startswith("bat_"):
            assert not active(http, resource_server, token)
    assert_invalid_grant(refresh(http, client, second["refresh_token"]), Reason.REVOKED)


def test_revoking_an_access_token_revokes_only_it(
    http: TestClient, client: RegisteredClient, resource_server: RegisteredClient
) -> None:
    pair = first_pair(http, client)
    response = http.post(
        "/revoke",
        data={"token": pair["access_token"], "token_type_hint": "refresh_token"},
        auth=client.basic,
    )
    assert response.status_code == 200
    assert not active(http, resource_server, pair["access_token"])
    assert active(http, resource_server, pair["refresh_token"])
    assert refresh(http, client, pair["refresh_token"]).status_code == 200


@pytest.mark.parametrize("token", ["bat_rt_unknown", "not a token at all", "bat_at_" + "A" * 49])
def test_revoking_an_unknown_token_answers_200(
    http: TestClient, client: RegisteredClient, token: str
) -> None:
    assert http.post("/revoke", data={"token": token}, auth=client.basic).status_code == 200


def test_revoking_twice_answers_200(http: TestClient, client: RegisteredClient) -> None:
    pair = first_pair(http, client)
    for _ in range(2):
        response = http.post("/revoke", data={"token": pair["refresh_token"]}, auth=client.basic)
        assert response.status_code == 200


def test_another_clients_token_cannot_be_revoked(
    http: TestClient,
    client: RegisteredClient,
    store: SQLStore,
    resource_server: RegisteredClient,
) -> None:
    other = register_client(store)
    pair = first_pair(http, client)
    # RFC 7009 §2.1: refused, and the client told; nothing is revoked.
    for token in (pair["refresh_token"], pair["access_token"]):
        response = http.post("/revoke", data={"token": token}, auth=other.basic)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"
        assert active(http, resource_server, token)


def test_revoking_a_retired_refresh_token_leaves_the_family_alone(
    http: TestClient,
    client: RegisteredClient,
    resource_server: RegisteredClient,
    clock: FakeClock,
) -> None:
    first = first_pair(http, client)
    second = refresh(http, client, first["refresh_token"]).json()
    clock.advance(LEEWAY)
    http.post("/revoke", data={"token": first["refresh_token"]}, auth=client.basic)
    assert active(http, resource_server, second["refresh_token"])


# -- rule 6: lifetimes ----------------------------------------------------------------------------


def test_idle_and_absolute_expiry(database: Path | str) -> None:
    lifetimes = Lifetimes(access_ttl=100, refresh_idle_ttl=1000, refresh_absolute_ttl=2500)
    with running_app(database, lifetimes=lifetimes) as (http, store, clock):
        register_user(store)
        client = register_client(store)
        pair = first_pair(http, client)
        assert pair["refresh_token_expires_in"] == 1000
        clock.advance(1000)  # exactly issued_at + idle ttl
        assert_invalid_grant(refresh(http, client, pair["refresh_token"]), Reason.IDLE_EXPIRED)

        pair = first_pair(http, client)
        grant_start = clock.now()
        for _ in range(2):
            clock.advance(999)
            pair = refresh(http, client, pair["refresh_token"]).json()
        # 1998 s in: the next refresh token is capped by the grant's absolute lifetime.
        assert pair["refresh_token_expires_in"] == 2500 - 1998
        clock.set(grant_start + 2500)
        assert_invalid_grant(refresh(http, client, pair["refresh_token"]), Reason.ABSOLUTE_EXPIRED)


def test_access_token_never_outlives_its_refresh_token(database: Path | str) -> None:
    lifetimes = Lifetimes(access_ttl=3600, refresh_idle_ttl=1800)
    with running_app(database, lifetimes=lifetimes) as (http, store, _clock):
        register_user(store)
        pair = first_pair(http, register_client(store))
        assert pair["expires_in"] == 1800


# -- rule 7: another client's refresh token -------------------------------------------------------


def test_another_clients_refresh_token_changes_nothing(
    http: TestClient, client: RegisteredClient, store: SQLStore, clock: FakeClock
) -> None:
    other = register_client(store)
    first = first_pair(http, client)
    # Issue 21: answered exactly as an unknown token, so the answer is no oracle.
    unknown = refresh(http, other, "bat_rt_" + "A" * 49)
    assert_invalid_grant(unknown, Reason.UNKNOWN)
    refused = refresh(http, other, first["refresh_token"])
    assert (refused.status_code, refused.content) == (400, unknown.content)
    # Even an exchanged token after its leeway: no reuse detection on another client's word.
    assert refresh(http, client, first["refresh_token"]).status_code == 200
    clock.advance(LEEWAY)
    assert_invalid_grant(refresh(http, other, first["refresh_token"]), Reason.UNKNOWN)
    assert anyio.run(store.security_events) == []


# -- rule 9 and the response shape ----------------------------------------------------------------


@pytest.mark.parametrize("token", ["bat_rt_x", "bat_rt_" + "A" * 49, "garbage"])
def test_unknown_or_malformed_refresh_tokens(
    http: TestClient, client: RegisteredClient, token: str
) -> None:
    assert_invalid_grant(refresh(http, client, token), Reason.UNKNOWN)


def test_scope_can_be_narrowed_on_refresh_but_not_widened(
    http: TestClient, client: RegisteredClient, resource_server: RegisteredClient
) -> None:
    pair = first_pair(http, client, scope="read")
    widened = refresh(http, client, pair["refresh_token"], scope="read write")
    assert widened.status_code == 400
    assert widened.json()["error"] == "invalid_scope"
    pair = first_pair(http, client)
    narrowed = refresh(http, client, pair["refresh_token"], scope="read").json()
    assert narrowed["scope"] == "read"
    assert introspect(http, resource_server, narrowed["access_token"])["scope"] == "read"
    # The refresh token keeps the whole grant.
    assert refresh(http, client, narrowed["refresh_token"]).json()["scope"] == "read write"


def test_public_clients_refresh_with_their_client_id(
    http: TestClient, store: SQLStore, resource_server: RegisteredClient
) -> None:
    register_user(store)
    public = register_client(store, public=True)
    pair = first_pair(http, public)
    child = refresh(http, public, pair["refresh_token"])
    assert child.status_code == 200
    assert active(http, resource_server, child.json()["access_token"])


# -- client_credentials ---------------------------------------------------------------------------


def test_client_credentials_issues_an_access_token_only(
    http: TestClient, client: RegisteredClient, resource_server: RegisteredClient
) -> None:
    response = http.post(
        "/token", data={"grant_type": "client_credentials", "scope": "read"}, auth=client.basic
    )
    assert response.status_code == 200
    body = response.json()
    assert "refresh_token" not in body
    assert body["scope"] == "read"
    seen = introspect(http, resource_server, body["access_token"])
    assert seen["active"] is True
    assert seen["generation"] == 0
    assert "sub" not in seen
    http.post("/revoke", data={"token": body["access_token"]}, auth=client.basic)
    assert not active(http, resource_server, body["access_token"])


def test_client_credentials_scope_and_public_clients(
    http: TestClient, client: RegisteredClient, store: SQLStore
) -> None:
    too_much = http.post(
        "/token", data={"grant_type": "client_credentials", "scope": "admin"}, auth=client.basic
    )
    assert too_much.status_code == 400
    assert too_much.json()["error"] == "invalid_scope"
    public = register_client(store, public=True)
    response = http.post(
        "/token", data={"grant_type": "client_credentials", "client_id": public.id}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unauthorized_client"


# -- client authentication ------------------------------------------------------------------------


def test_basic_credentials_are_form_decoded(http: TestClient, client: RegisteredClient) -> None:
    """RFC 6749 §2.3.1: strict clients (openid-client) encode `-` as %2D before Base64."""
    import base64

    assert client.secret is not None
    encoded_id = "".join(f"%{ord(c):02X}" if c in "-_" else c for c in client.id)
    encoded_secret = "".join(f"%{ord(c):02X}" if c in "-_" else c for c in client.secret)
    raw = base64.b64encode(f"{encoded_id}:{encoded_secret}".encode()).decode()
    response = http.post(
        "/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {raw}"},
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("kwargs", "status", "error"),
    [
        ({"auth": ("cl_nobody", "secret")}, 401, "invalid_client"),
        ({"wrong_secret": True}, 401, "invalid_client"),
        ({"headers": {"Authorization": "Basic !!!"}}, 401, "invalid_client"),
        ({"headers": {"Authorization": "Bearer abc"}}, 401, "invalid_client"),
        ({"no_auth": True}, 401, "invalid_client"),
        ({"both": True}, 400, "invalid_request"),
    ],
)
def test_client_authentication_failures(
    http: TestClient,
    client: RegisteredClient,
    kwargs: dict[str, object],
    status: int,
    error: str,
) -> None:
    data = {"grant_type": "client_credentials"}
    assert client.secret is not None
    if kwargs.get("wrong_secret"):
        response = http.post(
            "/token",
            data=data,
            auth=(client.id, client.secret[:-1] + ("x" if client.secret[-1] != "x" else "y")),
        )
    elif kwargs.get("no_auth"):
        response = http.post("/token", data=data)
    elif kwargs.get("both"):
        response = http.post(
            "/token", data={**data, "client_secret": client.secret}, auth=client.basic
        )
    else:
        response = http.post("/token", data=data, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status
    assert response.json()["error"] == error
    assert response.headers["cache-control"] == "no-store"
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Basic")


def test_unsupported_and_missing_grant_type(http: TestClient, client: RegisteredClient) -> None:
    response = http.post("/token", data={"grant_type": "password"}, auth=client.basic)
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"
    response = http.post("/token", data={}, auth=client.basic)
    assert response.json() == {
        "error": "invalid_request",
        "error_description": "missing parameter: grant_type",
    }


class MidSecondClock(FakeClock):
    """A clock that is always part-way through its second: `ceiling()` is the next one."""

    def ceiling(self) -> int:
        return self.now() + 1


@pytest.mark.parametrize("retry", [RetryPolicy.REPLAY, RetryPolicy.STRICT])
def test_lifetimes_are_never_shorter_than_announced(tmp_path: Path, retry: RetryPolicy) -> None:
    """Lifetimes start at the ceiling of the issuing second: a token issued at 12.9 s with a
    3600 s lifetime lives until 3612 + 1, and `expires_in` never overstates what is left."""
    clock = MidSecondClock()
    with running_app(tmp_path, clock=clock, retry=retry) as (http, store, _clock):
        client, rs = clients_of(store)
        pair = first_pair(http, client)
        assert pair["expires_in"] == 3600
        assert introspect(http, rs, pair["access_token"])["exp"] == clock.now() + 1 + 3600
        clock.advance(3600)  # 3600 s and a fraction after the issue: still alive
        assert active(http, rs, pair["access_token"])
        pair = first_pair(http, client)
        exchanged_at = clock.now()
        child = refresh(http, client, pair["refresh_token"]).json()
        assert child["expires_in"] == 3600
        old = introspect(http, rs, pair["access_token"])
        if retry is RetryPolicy.STRICT:
            assert old["active"] is False  # no leeway: dead at the exchange itself
        else:
            assert old["revocation_at"] == exchanged_at + 1 + LEEWAY  # never less than 600 s
