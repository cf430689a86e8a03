"""The SDK's security review findings (issue 21, L5 to L7): private store files, no symlinks,
the issuer checked in the callback and in the metadata."""

from __future__ import annotations

from collections.abc import Mapping

import httpx
import pytest

from baton.client import ClientError, MemoryStore, Refresher
from baton.client.refresher import METADATA_PATH

# -- L7: the issuer in the metadata (the callback's `iss` is in test_unit.py) --------------------


def metadata_transport(document: Mapping[str, object]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == METADATA_PATH
        return httpx.Response(200, json=document)

    return httpx.MockTransport(handler)


def test_discover_refuses_metadata_naming_another_issuer() -> None:
    # RFC 8414 §3.3: the document must name the very issuer its URL was built from; otherwise an
    # attacker's server (or a mix-up) would hand the client its own token endpoint.
    evil = {"issuer": "https://evil.example", "token_endpoint": "https://evil.example/token"}
    unnamed = {"token_endpoint": "https://as.example/token"}
    for document, named in ((evil, "'https://evil.example'"), (unnamed, "None")):
        with (
            httpx.Client(transport=metadata_transport(document)) as http,
            pytest.raises(ClientError, match=f"names issuer {named}, not"),
        ):
            Refresher.discover("https://as.example", "cid", "secret", MemoryStore(), http=http)


def test_discover_accepts_metadata_naming_its_issuer() -> None:
    document = {
        "issuer": "https://as.example",
        "token_endpoint": "https://as.example/token",
        "refresh_token_rotation": {"retry_policy": "replay", "leeway_seconds": 30},
    }
    with httpx.Client(transport=metadata_transport(document)) as http:
        refresher = Refresher.discover("https://as.example", "cid", None, MemoryStore(), http=http)
    assert refresher.client.token_endpoint == "https://as.example/token"
    assert refresher.retry_window() == 30
