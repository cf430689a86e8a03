"""Hostile and malformed input: always a 4xx that says why, never a 500."""

from __future__ import annotations

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from baton.server.endpoints import authorize as authorize_module
from baton.server.endpoints import token as token_module
from tests.support import RegisteredClient

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
ENDPOINTS = ["/token", "/revoke", "/introspect"]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_bodies_over_64_kib_are_refused(
    http: TestClient, client: RegisteredClient, path: str
) -> None:
    body = "grant_type=client_credentials&pad=" + "a" * (64 * 1024)
    response = http.post(path, content=body, headers=FORM, auth=client.basic)
    assert response.status_code == 413
    assert response.json()["error"] == "invalid_request"
    assert "64" in response.json()["error_description"] or "65536" in response.text


def test_a_chunked_oversized_body_is_refused_too(
    http: TestClient, client: RegisteredClient
) -> None:
    def chunks() -> object:
        for _ in range(100):
            yield b"a" * 1024

    response = http.post("/token", content=chunks(), headers=FORM, auth=client.basic)  # type: ignore[arg-type]
    assert response.status_code == 413


@pytest.mark.parametrize(
    "content_type", ["application/json", "text/plain", "multipart/form-data; boundary=x"]
)
@pytest.mark.parametrize("path", ENDPOINTS)
def test_wrong_content_types_get_415(
    http: TestClient, client: RegisteredClient, path: str, content_type: str
) -> None:
    response = http.post(
        path,
        content=b'{"grant_type": "client_credentials"}',
        headers={"Content-Type": content_type},
        auth=client.basic,
    )
    assert response.status_code == 415
    assert "Content-Type" in response.json()["error_description"]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_repeated_parameters_are_refused(
    http: TestClient, client: RegisteredClient, path: str
) -> None:
    response = http.post(
        path,
        content="grant_type=client_credentials&token=a&token=b&grant_type=x",
        headers=FORM,
        auth=client.basic,
    )
    assert response.status_code == 400
    assert "repeated" in response.json()["error_description"]


@pytest.mark.parametrize(
    "body",
    [b"grant_type=\xff\xfe", b"grant_type=%ff%fe", b"grant_type=a%00b", b"token=%C3%28"],
)
def test_non_utf8_and_control_characters_are_refused(
    http: TestClient, client: RegisteredClient, body: bytes
) -> None:
    response = http.post("/token", content=body, headers=FORM, auth=client.basic)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_an_empty_value_counts_as_omitted(http: TestClient, client: RegisteredClient) -> None:
    """RFC 6749 §3.1: parameters sent without a value MUST be treated as omitted."""
    response = http.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": ""}, auth=client.basic
    )
    assert response.json()["error_description"] == "missing parameter: refresh_token"


@pytest.mark.parametrize(
    "header",
    [
        "Basic",
        "Basic ====",
        "Basic bm9jb2xvbg==",  # "nocolon": no separator
        "Basic //8=",  # not UTF-8 once decoded
        "Basic JWZmOnNlY3JldA==",  # "%ff:secret": percent-decodes to invalid UTF-8
        "Digest username=x",
    ],
)
def test_malformed_authorization_headers(http: TestClient, header: str) -> None:
    response = http.post(
        "/token", data={"grant_type": "client_credentials"}, headers={"Authorization": header}
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_unknown_paths_and_methods_answer_json(http: TestClient) -> None:
    response = http.get("/token")
    assert response.status_code == 405
    assert response.json()["error"] == "invalid_request"
    assert response.headers["allow"] == "POST"
    assert response.headers["cache-control"] == "no-store"
    response = http.get("/nowhere")
    assert response.status_code == 404
    assert response.json()["error"] == "invalid_request"
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("path", ["/token", "/authorize"])
def test_an_unexpected_error_is_a_json_server_error_and_is_logged(
    http: TestClient,
    client: RegisteredClient,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
) -> None:
    """A bug on a machine endpoint or a page: RFC 6749 §5.2's `server_error`, never cached,
    never a plain-text page; the error itself goes on to the ASGI server, which logs it."""

    async def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(token_module, "read_form", broken)
    monkeypatch.setattr(authorize_module, "_authorize", broken)
    tolerant = TestClient(http.app, base_url=str(http.base_url), raise_server_exceptions=False)

    def ask(http: TestClient) -> httpx2.Response:
        if path == "/token":
            return http.post("/token", data={"grant_type": "x"}, auth=client.basic)
        return http.get(path, params={"client_id": client.id, "response_type": "code"})

    response = ask(tolerant)
    assert response.status_code == 500
    assert response.json() == {
        "error": "server_error",
        "error_description": "unexpected server error",
    }
    assert response.headers["cache-control"] == "no-store"
    assert "a bug" not in response.text
    with pytest.raises(RuntimeError, match="a bug"):
        ask(http)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.sampled_from(ENDPOINTS),
    body=st.one_of(
        st.binary(max_size=300),
        st.lists(
            st.tuples(
                st.sampled_from(
                    [
                        "grant_type",
                        "refresh_token",
                        "code",
                        "token",
                        "scope",
                        "client_id",
                        "client_secret",
                        "code_verifier",
                        "redirect_uri",
                        "token_type_hint",
                    ]
                ),
                st.text(max_size=80),
            ),
            max_size=6,
        ).map(lambda pairs: "&".join(f"{k}={v}" for k, v in pairs).encode("utf-8", "replace")),
    ),
    use_auth=st.booleans(),
)
def test_no_input_gives_a_server_error(
    http: TestClient, client: RegisteredClient, path: str, body: bytes, use_auth: bool
) -> None:
    if use_auth:
        response = http.post(path, content=body, headers=FORM, auth=client.basic)
    else:
        response = http.post(path, content=body, headers=FORM)
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        assert "error" in response.json()
