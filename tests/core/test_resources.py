"""The RFC 8707 resources of an authorization request: those named, each one the client may
have, or by default all of them (`baton.core.audience.requested`)."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from baton.core.audience import TargetError
from baton.core.audience import requested as resources

uris = st.sampled_from(
    ["https://api.example/", "https://billing.example/v1", "urn:example:orders", "https://x/?q=1"]
)


@given(st.lists(uris, unique=True), st.data())
def test_named_resources_within_the_allowed_are_the_request(
    allowed: list[str], data: st.DataObject
) -> None:
    asked = data.draw(st.lists(st.sampled_from(allowed), max_size=6)) if allowed else []
    chosen = resources(tuple(asked), tuple(allowed))
    assert chosen == tuple(sorted(set(asked or allowed)))  # none named: every allowed one


@given(st.lists(uris, unique=True), st.text(max_size=40))
@example(["https://api.example/"], "https://api.example/#frag")
@example(["https://api.example/"], "https://api.example")
@example(["https://api.example/"], "http://[::1")
def test_anything_else_is_invalid_target(allowed: list[str], other: str) -> None:
    if other in allowed:
        return
    with pytest.raises(TargetError):
        resources((*allowed[:1], other), tuple(allowed))


def test_a_fragment_is_refused_even_if_registered() -> None:
    with pytest.raises(TargetError, match="fragment"):
        resources(("https://api.example/#x",), ("https://api.example/#x",))
