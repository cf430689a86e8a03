"""The upstream sign-in against a fake upstream that misbehaves: a bad `nonce`, another `iss`
(in the ID token, and RFC 9207's parameter), a signature by another key, an expired ID token,
the upstream refusing (`error=access_denied`), a token endpoint that hangs past the timeout, a
discovery document of another issuer, a replayed or foreign `state`. Each one: a page that
says why and leads back to the login page, no session, nothing linked.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import anyio
import pytest
from sqlalchemy import func, select, update
from tests.support import register_user
from tests.upstream.conftest import TIMEOUT, Baton, FakeUpstream, add_provider

from baton.store.schema import sessions, upstream_links, users
from baton.store.sql import SQLStore

NEXT = "/admin"


def count(store: SQLStore, table: Any, *where: Any) -> int:
    query = select(func.count()).select_from(table).where(*where)
    found: int = anyio.run(store.inspect, lambda conn: conn.execute(query).scalar_one())
    return found


def live_sessions(baton: Baton) -> int:
    return count(baton.store, sessions, sessions.c.ended_at.is_(None))


def links(baton: Baton, provider_id: str) -> int:
    return count(baton.store, upstream_links, upstream_links.c.provider_id == provider_id)


@dataclass
class Flow:
    """A test's Baton, fake upstream, provider (an id of its own) and the live sessions
    before it began."""

    baton: Baton
    fake: FakeUpstream
    provider_id: str
    sessions_before: int


_ids = itertools.count()


@pytest.fixture
def flow(baton: Baton, fake_upstream: FakeUpstream) -> Flow:
    provider_id = f"fake{next(_ids)}"
    add_provider(baton.store, provider_id, fake_upstream.issuer, name="Fake", create_users=True)
    return Flow(baton, fake_upstream, provider_id, live_sessions(baton))


def begin(flow: Flow) -> dict[str, str]:
    """Starts a sign-in: the authorization request Baton sends to the upstream."""
    baton, fake = flow.baton, flow.fake
    response = baton.http.get(f"/login/upstream/{flow.provider_id}", params={"next": NEXT})
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith(f"{fake.issuer}/authorize?")
    return fake.expect(location)


def finish(flow: Flow, state: str, **params: str) -> Any:
    query = urlencode({"code": "fake-code", "state": state, **params})
    return flow.baton.http.get(f"/login/upstream/{flow.provider_id}/callback?{query}")


def assert_refused(
    flow: Flow, response: Any, status: int, says: str, back: str = "/login?next=%2Fadmin"
) -> None:
    assert response.status_code == status, response.text
    assert says in response.text
    assert f'href="{back}"' in response.text  # the way back (keeping `next` when it is known)
    assert live_sessions(flow.baton) == flow.sessions_before
    assert links(flow.baton, flow.provider_id) == 0


def test_a_good_answer_signs_in_and_links(flow: Flow) -> None:
    sent = begin(flow)
    assert sent["response_type"] == "code" and sent["code_challenge_method"] == "S256"
    callback = f"http://baton.test/login/upstream/{flow.provider_id}/callback"
    assert sent["redirect_uri"] == callback
    assert set(sent["scope"].split()) == {"openid", "email", "profile"}
    response = finish(flow, sent["state"])
    assert response.status_code == 303, response.text
    assert response.headers["location"] == NEXT
    assert flow.fake.exchanged == 1
    assert live_sessions(flow.baton) == flow.sessions_before + 1
    assert links(flow.baton, flow.provider_id) == 1
    # The state was single use: the same answer again is refused, and no second session.
    again = finish(flow, sent["state"])
    assert again.status_code == 400
    assert "expired or was started in another browser" in again.text
    assert live_sessions(flow.baton) == flow.sessions_before + 1


def test_a_bad_nonce_is_refused(flow: Flow) -> None:
    sent = begin(flow)
    flow.fake.claims = {"nonce": "not-the-one-baton-sent"}
    assert_refused(flow, finish(flow, sent["state"]), 400, "nonce")


def test_an_id_token_of_another_issuer_is_refused(flow: Flow) -> None:
    sent = begin(flow)
    flow.fake.claims = {"iss": "https://evil.example"}
    assert_refused(flow, finish(flow, sent["state"]), 400, "issuer (iss)")


def test_an_iss_parameter_of_another_issuer_is_refused(flow: Flow) -> None:
    """RFC 9207 §2.4: a mix-up attack's response names another issuer; not even the code is
    exchanged."""
    sent = begin(flow)
    response = finish(flow, sent["state"], iss="https://evil.example")
    assert_refused(flow, response, 400, "names another issuer")
    assert flow.fake.exchanged == 0


def test_a_signature_by_another_key_is_refused(flow: Flow) -> None:
    sent = begin(flow)
    flow.fake.sign_with_other_key = True
    assert_refused(flow, finish(flow, sent["state"]), 400, "signature")


def test_an_unsigned_or_hmac_id_token_is_refused(flow: Flow) -> None:
    """`alg: none`, or HS256 keyed with the client secret (which Baton refuses): never a
    sign-in, whatever the claims say."""
    for header in ({"alg": "none"}, {"alg": "HS256"}):
        sent = begin(flow)
        claims = json.loads(base64.urlsafe_b64decode(flow.fake.id_token().split(".")[1] + "=="))
        flow.fake.raw_token = ".".join(
            base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()
            for part in (header, claims)
        ) + (".c2ln" if header["alg"] == "HS256" else ".")
        assert_refused(flow, finish(flow, sent["state"]), 400, "algorithm")


def test_a_rotated_upstream_key_is_fetched_once(flow: Flow) -> None:
    """An unknown `kid`: the upstream rotated its key; Baton reads the JWKS again, once."""
    sent = begin(flow)
    assert finish(flow, sent["state"]).status_code == 303  # the JWKS is cached now
    reads = flow.fake.jwks_reads
    flow.fake.rotate()
    flow.baton.http.cookies.clear()
    sent = begin(flow)
    assert finish(flow, sent["state"]).status_code == 303
    assert flow.fake.jwks_reads == reads + 1


def test_an_expired_id_token_is_refused(flow: Flow) -> None:
    sent = begin(flow)
    now = int(time.time())
    flow.fake.claims = {"exp": now - 600, "iat": now - 900}
    assert_refused(flow, finish(flow, sent["state"]), 400, "expired")


def test_an_id_token_for_another_client_is_refused(flow: Flow) -> None:
    sent = begin(flow)
    flow.fake.claims = {"aud": "someone-else"}
    assert_refused(flow, finish(flow, sent["state"]), 400, "not for this client")


def test_the_upstream_refusing_is_said(flow: Flow) -> None:
    sent = begin(flow)
    query = urlencode({"error": "access_denied", "state": sent["state"]})
    response = flow.baton.http.get(f"/login/upstream/{flow.provider_id}/callback?{query}")
    assert_refused(flow, response, 403, "Fake did not sign you in (access_denied)")
    assert flow.fake.exchanged == 0


def test_a_hanging_token_endpoint_is_a_clear_page_in_time(flow: Flow) -> None:
    sent = begin(flow)
    flow.fake.hang = TIMEOUT + 1.0
    started = time.monotonic()
    response = finish(flow, sent["state"])
    assert time.monotonic() - started < TIMEOUT + 0.8
    assert_refused(flow, response, 504, "Fake did not answer in time")


def test_a_state_of_another_browser_is_refused(flow: Flow) -> None:
    """The attacker's own sign-in's answer, pasted into the victim's browser (login CSRF):
    the victim's browser holds no such state."""
    sent = begin(flow)
    flow.baton.http.cookies.clear()  # the victim's browser: none of the attacker's cookies
    response = finish(flow, sent["state"])
    assert_refused(flow, response, 400, "started in another browser", back="/login")
    assert flow.fake.exchanged == 0


def test_a_state_that_does_not_match_is_refused(flow: Flow) -> None:
    begin(flow)
    response = finish(flow, "forged-state")
    assert_refused(flow, response, 400, "another browser", back="/login")
    assert flow.fake.exchanged == 0


def test_a_sign_in_too_old_is_refused(flow: Flow) -> None:
    sent = begin(flow)
    flow.baton.clock.advance(601)  # challenge_ttl
    response = finish(flow, sent["state"])
    assert_refused(flow, response, 400, "expired", back="/login")
    assert flow.fake.exchanged == 0


def test_a_discovery_document_of_another_issuer_is_refused(
    baton: Baton, fake_upstream: FakeUpstream
) -> None:
    """OIDC Discovery §4.3: the document's `issuer` must be the configured one exactly."""
    add_provider(baton.store, "slash", fake_upstream.issuer + "/", name="Slash")
    response = baton.http.get("/login/upstream/slash", params={"next": NEXT})
    assert response.status_code == 502
    assert "Slash is misconfigured" in response.text
    assert "baton_session" not in response.headers.get("set-cookie", "")


def test_a_disabled_user_is_refused(flow: Flow) -> None:
    baton, fake = flow.baton, flow.fake
    register_user(baton.store, "dora")

    async def disable() -> None:
        change = update(users).where(users.c.username == "dora")
        await baton.store._write(
            lambda conn: conn.execute(change.values(disabled_at=1, email="dora@example.com"))
        )

    anyio.run(disable)
    add_provider(baton.store, "mail", fake.issuer, name="Mail", link_by_email=True)
    flow = Flow(baton, fake, "mail", flow.sessions_before)
    sent = begin(flow)
    fake.claims = {"sub": "dora-upstream", "email": "dora@example.com"}
    response = finish(flow, sent["state"])
    assert_refused(flow, response, 403, "This account is disabled.")


def test_an_unknown_or_disabled_provider_is_not_found(
    baton: Baton, fake_upstream: FakeUpstream
) -> None:
    assert baton.http.get("/login/upstream/nobody").status_code == 404
    add_provider(baton.store, "off", fake_upstream.issuer, name="Off")
    assert "Sign in with Off" in baton.http.get("/login").text
    anyio.run(baton.store.set_upstream_disabled, "off", 1)
    assert baton.http.get("/login/upstream/off").status_code == 404
    assert "Sign in with Off" not in baton.http.get("/login").text


def test_a_second_factor_required_here_is_not_skipped(flow: Flow) -> None:
    """The upstream stands for the password only: a user who must use a second factor at Baton
    goes on to its second step (here: enrolment), and no session begins yet."""
    baton, fake = flow.baton, flow.fake
    register_user(baton.store, "erin")

    async def require() -> None:
        change = update(users).where(users.c.username == "erin")
        await baton.store._write(
            lambda conn: conn.execute(change.values(mfa_required=True, email="erin@example.com"))
        )

    anyio.run(require)
    add_provider(baton.store, "mfa", fake.issuer, name="Mfa", link_by_email=True)
    flow = Flow(baton, fake, "mfa", flow.sessions_before)
    sent = begin(flow)
    fake.claims = {"sub": "erin-upstream", "email": "erin@example.com"}
    response = finish(flow, sent["state"])
    assert response.status_code == 303
    assert response.headers["location"] == "/login/enrol"
    assert live_sessions(baton) == flow.sessions_before
