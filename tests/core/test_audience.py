"""RFC 8707 resources: the narrowing rule, the audience a token gets, and how both are stored."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton.core.audience import (
    aud_claim,
    audience_from_stored,
    audience_of,
    narrowed,
    requested_resource_problem,
    resource_uri_problem,
    resources_from_stored,
    stored_audience,
    stored_resources,
)

uris = st.sampled_from([f"https://api{n}.test/" for n in range(6)] + ["http://127.0.0.1:9/x"])
resource_lists = st.lists(uris, unique=True, max_size=5).map(tuple)


@given(resource_lists, resource_lists)
def test_a_request_narrows_the_grant_and_never_widens_it(
    granted: tuple[str, ...], asked: tuple[str, ...]
) -> None:
    result = narrowed(granted, asked)
    if not asked:
        assert result == granted  # none named: every resource of the grant
    elif set(asked) <= set(granted):
        assert result == asked
    else:
        assert result is None  # invalid_target
    assert result is None or set(result) <= set(granted)


@given(resource_lists, st.none() | uris)
def test_the_audience_and_its_stored_forms(resources: tuple[str, ...], default: str | None) -> None:
    audience = audience_of(resources, default)
    assert audience == (resources or ((default,) if default else ()))
    assert audience_from_stored(stored_audience(audience)) == audience
    assert resources_from_stored(stored_resources(resources)) == resources
    if audience:
        claim = aud_claim(audience)
        assert claim == audience[0] if len(audience) == 1 else claim == list(audience)


@pytest.mark.parametrize(
    "uri",
    ["https://api.test", "https://api.test/v1?x=1", "http://127.0.0.1:8000/", "http://[::1]/a"],
)
def test_acceptable_resource_uris(uri: str) -> None:
    assert resource_uri_problem(uri) is None
    assert requested_resource_problem(uri) is None


@pytest.mark.parametrize(
    "uri",
    [
        "api",
        "/api",
        "https://api.test/#",
        "https://api.test/#x",
        "http://api.test",
        "http://localhost/a",  # loopback by IP only, as for redirect URIs (RFC 8252 §8.3)
        "urn:x:y",
        "ftp://api.test",
        "https:///x",
        "http://[::1",
    ],
)
def test_refused_resource_uris(uri: str) -> None:
    assert resource_uri_problem(uri) is not None


@given(st.text(max_size=40))
def test_any_requested_resource_is_judged_without_raising(text: str) -> None:
    problem = requested_resource_problem(text)
    assert problem is None or "absolute URI" in problem
