"""The upstream sign-in against a fake upstream that misbehaves: a bad `nonce`, another `iss`
(in the ID token, and RFC 9207's parameter), a signature by another key, an expired ID token,
the upstream refusing (`error=access_denied`), a token endpoint that hangs past the timeout, a
discovery document of another issuer, a replayed or foreign `state`. Each one: a page that
says why and leads back to the login page, no session, nothing linked. And the review's
findings: an upstream that drips or floods its answer, the sealed sign-in in the cookie, a
made user's name, a planted unverified address, a deleted user's account, and the `amr` after
Baton's second factor.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx
import pytest
from sqlalchemy import func, select, update
from tests.support import hidden_inputs, register_user
from tests.upstream.conftest import KEK, TIMEOUT, Baton, FakeUpstream, add_provider

from baton.core import totp
from baton.core.keys import key_encryption_key
from baton.core.pkce import s256
from baton.core.upstream import username_for
from baton.server.endpoints import mfa
from baton.server.endpoints.upstream import Upstreams, UpstreamUnavailable
from baton.server.runtime.sessions import COOKIE
from baton.store.admin import Actor
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
            lambda conn: conn.execute(
                change.values(disabled_at=1, email="dora@example.com", email_verified=True)
            )
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
            lambda conn: conn.execute(
                change.values(mfa_required=True, email="erin@example.com", email_verified=True)
            )
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


# -- the security review's findings -------------------------------------------------------------


def made_username(flow: Flow) -> str:
    query = (
        select(users.c.username)
        .join(upstream_links, upstream_links.c.user_id == users.c.id)
        .where(upstream_links.c.provider_id == flow.provider_id)
    )
    found: str = anyio.run(flow.baton.store.inspect, lambda c: c.execute(query).scalar_one())
    return found


def test_an_upstream_that_drips_its_answer_is_cut_off_at_the_timeout(
    fake_upstream: FakeUpstream,
) -> None:
    # Each byte comes within any read timeout; the whole call has one deadline.
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable) as refused:
        anyio.run(Upstreams(timeout=TIMEOUT)._get_json, f"{fake_upstream.issuer}/drip", "Fake")
    assert time.monotonic() - started < 2.0
    assert refused.value.status == 504 and "did not answer in time" in refused.value.message


class Flood(httpx.AsyncBaseTransport):
    """An upstream answering 20 MB of JSON white space, in 64 KB chunks: `pulled` counts the
    chunks Baton read. `said` sends a Content-Length header."""

    def __init__(self, said: bool) -> None:
        self.said = said
        self.pulled = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(320):
                self.pulled += 1
                yield b" " * (1 << 16)

        headers = {"Content-Length": str(320 << 16)} if self.said else {}
        return httpx.Response(200, headers=headers, stream=Stream(chunks()))


class Stream(httpx.AsyncByteStream):
    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.chunks:
            yield chunk


@pytest.mark.parametrize("said", [False, True])
def test_an_upstream_that_floods_its_answer_is_cut_off_at_the_size_cap(said: bool) -> None:
    # The body is read as it comes and dropped past the cap (512 KB), not read whole (20 MB)
    # and refused then; a Content-Length over the cap is refused before any of it is read.
    flood = Flood(said)
    with pytest.raises(UpstreamUnavailable, match="too large"):
        anyio.run(Upstreams(timeout=5, transport=flood)._get_json, "https://up.test/x", "Fake")
    assert flood.pulled == (0 if said else 9)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_the_cookie_does_not_reveal_the_nonce_or_the_verifier(flow: Flow) -> None:
    sent = begin(flow)
    signed = flow.baton.http.cookies[COOKIE]
    content = json.loads(base64.b64decode(signed.split(".")[0]))
    held = _strings(content)
    assert not any(sent["nonce"] in s for s in held)
    assert not any(s256(s) == sent["code_challenge"] for s in held)
    assert finish(flow, sent["state"]).status_code == 303  # and it still works


def test_an_old_copy_of_the_cookie_is_refused_by_the_upstream(flow: Flow) -> None:
    """The pending sign-in lives in the cookie: a copy from before the callback still holds
    it. That the answer is used once rests on the upstream refusing its code a second time
    (RFC 6749 §4.1.2), as the fake does: no second session."""
    sent = begin(flow)
    saved = dict(flow.baton.http.cookies)
    assert finish(flow, sent["state"]).status_code == 303
    flow.baton.http.cookies.clear()
    for name, value in saved.items():
        flow.baton.http.cookies.set(name, value)
    again = finish(flow, sent["state"])
    assert again.status_code == 502 and "refused the sign-in (invalid_grant)" in again.text
    assert live_sessions(flow.baton) == flow.sessions_before + 1


def test_a_made_user_is_never_named_after_preferred_username(flow: Flow) -> None:
    # An upstream account must not pick a local name (and so a `sub`, or the name a login app
    # later resolves to this row).
    flow.fake.claims = {"sub": "squatter", "preferred_username": "carol"}
    sent = begin(flow)
    assert finish(flow, sent["state"]).status_code == 303
    assert made_username(flow) == username_for(flow.provider_id, "squatter")
    assert anyio.run(flow.baton.store.get_user, "carol") is None


def test_a_deleted_made_users_account_is_refused_not_made_again(flow: Flow) -> None:
    sent = begin(flow)
    assert finish(flow, sent["state"]).status_code == 303
    name = made_username(flow)
    actor = Actor("root", None, flow.baton.clock.now())
    assert anyio.run(flow.baton.store.admin().delete_user, name, actor) is not None
    flow.baton.http.cookies.clear()
    before = live_sessions(flow.baton)
    sent = begin(flow)
    response = finish(flow, sent["state"])
    assert response.status_code == 403 and "was deleted" in response.text
    assert live_sessions(flow.baton) == before


def test_an_unverified_address_planted_at_a_first_sign_in_takes_over_nothing(flow: Flow) -> None:
    """The attacker signs in first with the victim's address, unverified: a user is made with
    it (unverified). The victim's verified account later gets a user of its own."""
    pid = flow.provider_id + "x"
    add_provider(
        flow.baton.store, pid, flow.fake.issuer, name="X", create_users=True, link_by_email=True
    )
    flow = Flow(flow.baton, flow.fake, pid, flow.sessions_before)
    flow.fake.claims = {"sub": "attacker", "email": "victim@example.org", "email_verified": False}
    sent = begin(flow)
    assert finish(flow, sent["state"]).status_code == 303
    flow.baton.http.cookies.clear()
    flow.fake.claims = {"sub": "victim", "email": "victim@example.org", "email_verified": True}
    sent = begin(flow)
    assert finish(flow, sent["state"]).status_code == 303
    query = select(upstream_links.c.subject, upstream_links.c.user_id).where(
        upstream_links.c.provider_id == pid
    )
    rows = dict(anyio.run(flow.baton.store.inspect, lambda c: c.execute(query).all()))
    assert rows["attacker"] != rows["victim"]


SECRET = b"12345678901234567890"


def _linked_user(flow: Flow, username: str, **values: Any) -> tuple[Flow, int]:
    """A user with a verified address, a provider that links by it, and that user's id."""
    baton = flow.baton
    register_user(baton.store, username)
    email = f"{username}@example.com"
    change = update(users).where(users.c.username == username)
    anyio.run(
        baton.store._write,
        lambda conn: conn.execute(change.values(email=email, email_verified=True, **values)),
    )
    user = anyio.run(baton.store.get_user, username)
    assert user is not None
    pid = flow.provider_id + "m"
    add_provider(baton.store, pid, flow.fake.issuer, name="Mfa", link_by_email=True)
    flow.fake.claims = {"sub": f"{username}-up", "email": email, "amr": ["hwk"]}
    return Flow(baton, flow.fake, pid, flow.sessions_before), user.id


def _amr(baton: Baton, user_id: int) -> list[str]:
    query = select(sessions.c.amr).where(sessions.c.user_id == user_id)
    found = anyio.run(baton.store.inspect, lambda c: c.execute(query).scalar_one())
    return list(json.loads(found))


def _code(baton: Baton, path: str, code: str) -> Any:
    page = baton.http.get(path)
    assert page.status_code == 200, page.text
    return baton.http.post(path, data={"csrf": hidden_inputs(page.text)["csrf"], "code": code})


def test_the_second_factor_adds_to_the_upstreams_amr(flow: Flow) -> None:
    # RFC 8176: the upstream's methods ("hwk"), plus Baton's one-time password and "mfa".
    flow, user_id = _linked_user(flow, "gwen")
    sealed = totp.seal_secret(SECRET, key_encryption_key(KEK), user_id)
    assert anyio.run(flow.baton.store.enrol_totp, user_id, sealed, 0, [], 0, None)
    sent = begin(flow)
    response = finish(flow, sent["state"])
    assert response.headers["location"] == mfa.SECOND_STEP
    step = totp.time_step(flow.baton.clock.now())
    assert _code(flow.baton, mfa.SECOND_STEP, totp.hotp(SECRET, step)).status_code == 303
    assert _amr(flow.baton, user_id) == ["hwk", "mfa", "otp"]


def test_the_enrolment_after_an_upstream_keeps_the_upstreams_amr(flow: Flow) -> None:
    flow, user_id = _linked_user(flow, "hana", mfa_required=True)
    sent = begin(flow)
    assert finish(flow, sent["state"]).headers["location"] == mfa.ENROL
    page = flow.baton.http.get(mfa.ENROL)
    found = re.search(r'<code class="secret" id="secret">([A-Z2-7]+)</code>', page.text)
    assert found, page.text
    secret = totp.from_b32(found.group(1))
    code = totp.hotp(secret, totp.time_step(flow.baton.clock.now()))
    assert _code(flow.baton, mfa.ENROL, code).status_code == 200
    assert _amr(flow.baton, user_id) == ["hwk"]
