"""RFC 6749 §5.2: every `error_description` the server can send stays within %x20-21 / %x23-5B /
%x5D-7E (printable ASCII less `"` and `\\`): the literal messages in the source, the rules'
reasons, and descriptions that quote a request's own bytes back."""

from __future__ import annotations

import ast
import re
from enum import StrEnum
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from baton.core import rules
from baton.core.vocabulary import ErrorCode
from baton.server.endpoints.errors import OAuthError, error_description
from tests.support import RegisteredClient, authorization_request

ALLOWED = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")
SOURCE = Path(__file__).resolve().parents[2] / "src" / "baton"
# Whatever builds an OAuth error from a description: its literal parts are error_descriptions.
BUILDERS = {
    "OAuthError",
    "RedirectError",
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "invalid_target",
    "invalid_scope",
}


def _name(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def literal_descriptions() -> list[tuple[str, str]]:
    """(place, text) of every literal piece of a description handed to an error builder."""
    found: list[tuple[str, str]] = []
    for path in sorted(SOURCE.rglob("*.py")):
        if "client" in path.relative_to(SOURCE).parts[:1]:
            continue  # the SDK raises Python exceptions, not OAuth responses
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and _name(node) in BUILDERS):
                continue
            for arg in node.args[:2]:
                for piece in ast.walk(arg):
                    if isinstance(piece, ast.Constant) and isinstance(piece.value, str):
                        found.append((f"{path.relative_to(SOURCE)}:{piece.lineno}", piece.value))
    return found


def test_every_literal_description_in_the_source_is_within_the_rfc_charset() -> None:
    pieces = literal_descriptions()
    assert len(pieces) > 40, "the scan found too few error descriptions: is it still looking?"
    outside = [(place, text) for place, text in pieces if not ALLOWED.fullmatch(text)]
    assert outside == []


def test_every_reason_a_rule_gives_is_within_the_rfc_charset() -> None:
    enums = [v for v in vars(rules).values() if isinstance(v, type) and issubclass(v, StrEnum)]
    values = [member.value for enum in enums for member in enum]
    assert len(values) >= 10
    assert [v for v in values if not ALLOWED.fullmatch(v)] == []


@given(st.text())
def test_any_description_is_sent_within_the_rfc_charset(text: str) -> None:
    error = OAuthError(ErrorCode.INVALID_REQUEST, text)
    assert ALLOWED.fullmatch(error.description)
    bytes(error.response().body).decode("ascii")  # and the JSON body is plain ASCII


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E)))
def test_a_description_already_within_the_charset_is_sent_as_it_is(text: str) -> None:
    if ALLOWED.fullmatch(text):
        assert error_description(text) == text


def test_repeated_parameters_are_refused_in_ascii(
    http: TestClient, client: RegisteredClient
) -> None:
    for path in ("/token", "/revoke", "/introspect"):
        answer = http.post(
            path,
            content=b"grant_type=a&grant_type=b&token=x&token=y",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            auth=client.basic,
        )
        assert answer.status_code == 400
        description = answer.json()["error_description"]
        assert ALLOWED.fullmatch(description), description
        assert "repeated" in description


def test_a_parameter_name_quoted_back_is_made_safe(http: TestClient) -> None:
    answer = http.post(
        "/token",
        content='gr\u00e4nt\\"=1&gr\u00e4nt\\"=2'.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 400
    description = answer.json()["error_description"]
    assert ALLOWED.fullmatch(description), description


def test_a_redirected_error_quoting_the_request_is_made_safe(
    http: TestClient, client: RegisteredClient
) -> None:
    # RFC 6749 §4.1.2.1 holds error_description at the redirect URI to the same characters; an
    # invalid_target error quotes the resource the request named.
    _verifier, params = authorization_request(client, scope=None, state=None)
    params["resource"] = 'https://\u00e9.example/"x\\'
    answer = http.get("/authorize", params=params)
    assert answer.status_code == 302
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert query["error"] == ["invalid_target"]
    assert ALLOWED.fullmatch(query["error_description"][0]), query["error_description"]
