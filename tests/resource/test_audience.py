"""The verifier's audience check (RFC 9068 §4, RFC 8707, RFC 9700 §2.3), for opaque and JWT
tokens alike: against Baton's real app (tokens issued by /token, introspected by /introspect)
and against the fake authorization server for what Baton never issues."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from baton.core.clock import FakeClock
from baton.resource import InvalidToken, Verifier
from baton.store.sql import SQLStore
from tests.audience import API_A, API_B, client_credentials, in_process_verifier, register
from tests.resource.conftest import VerifierFactory
from tests.resource.fakes import ISSUER as FAKE_ISSUER
from tests.resource.fakes import RS_ID, RS_SECRET, FakeAuthServer
from tests.support import ISSUER, running_app

KEK = "correct horse battery staple, 32+ chars"
App = tuple[TestClient, SQLStore, FakeClock]


@pytest.fixture(params=["opaque", "jwt"])
def app(request: pytest.FixtureRequest, database: Path | str) -> Iterator[App]:
    options: dict[str, Any] = {"access_token_format": "jwt", "key_encryption_key": KEK}
    with running_app(database, **(options if request.param == "jwt" else {})) as running:
        yield running


def token_for(http: TestClient, store: SQLStore, *resources: str) -> str:
    """An access token from /token for `resources` (none: a client allowed no resource)."""
    client = register(store, allowed=resources)
    response = client_credentials(http, client)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def test_a_token_for_api_a_is_refused_by_the_verifier_of_api_b(app: App) -> None:
    http, store, clock = app
    for_a = in_process_verifier(http, clock, register(store, resource_uri=API_A), API_A)
    rs_b = register(store, resource_uri=API_B)
    for_b = in_process_verifier(http, clock, rs_b, API_B)
    token = token_for(http, store, API_A)
    assert for_a.verify(token).claims["aud"] == API_A
    with pytest.raises(InvalidToken, match="audience"):
        for_b.verify(token)
    with pytest.raises(InvalidToken):  # and again: never for B
        for_b.verify(token)
    # Accepting the issuer as well does not make a token for A one for B.
    with pytest.raises(InvalidToken, match="audience"):
        in_process_verifier(http, clock, rs_b, [API_B, ISSUER]).verify(token)
    both = token_for(http, store, API_A, API_B)
    assert for_a.verify(both).claims["aud"] == for_b.verify(both).claims["aud"] == [API_A, API_B]


def test_a_token_for_no_resource_is_for_a_verifier_that_accepts_the_issuer_only(
    app: App,
) -> None:
    http, store, clock = app
    rs = register(store, resource_uri=API_A)
    token = token_for(http, store)  # the client is allowed no resource: aud is the issuer
    with pytest.raises(InvalidToken, match="audience"):
        in_process_verifier(http, clock, rs, API_A).verify(token)
    accepting = in_process_verifier(http, clock, rs, {API_A, ISSUER})
    assert accepting.verify(token).claims["aud"] == ISSUER


def test_a_verifier_needs_an_audience(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="audience is required"):
        Verifier(ISSUER, RS_ID, RS_SECRET, feed=False)
    with pytest.raises(ValueError, match="audience is required"):
        Verifier(ISSUER, RS_ID, RS_SECRET, audience=[], feed=False)
    monkeypatch.setenv("BATON_ISSUER", ISSUER)
    monkeypatch.setenv("BATON_RS_ID", RS_ID)
    monkeypatch.setenv("BATON_RS_SECRET", RS_SECRET)
    monkeypatch.delenv("BATON_AUDIENCE", raising=False)
    with pytest.raises(ValueError, match="BATON_AUDIENCE is required"):
        Verifier.from_env(feed=False)
    monkeypatch.setenv("BATON_AUDIENCE", f"{API_A} {API_B}")
    assert Verifier.from_env(feed=False).audiences == {API_A, API_B}


def test_introspected_aud_is_compared(fake: FakeAuthServer, make_verifier: VerifierFactory) -> None:
    verifier = make_verifier(audience=API_A)
    assert verifier.verify(fake.opaque_token(aud=[API_B, API_A])).subject == "alice"
    for aud in (API_B, [API_B], FAKE_ISSUER, None, 7, [7]):
        with pytest.raises(InvalidToken):
            verifier.verify(fake.opaque_token(aud=aud))
    # No `aud` in the answer (an opaque token issued before audiences were recorded): a token
    # for no resource, accepted only where the issuer is.
    assert make_verifier(audience=[API_A, FAKE_ISSUER]).verify(fake.opaque_token()).subject


def test_a_jwt_without_aud_is_refused_even_where_the_issuer_is_accepted(
    fake: FakeAuthServer, make_verifier: VerifierFactory
) -> None:
    verifier = make_verifier(audience=FAKE_ISSUER)
    verifier.verify(fake.jwt())
    with pytest.raises(InvalidToken, match="audience"):
        verifier.verify(fake.jwt(aud=None))
