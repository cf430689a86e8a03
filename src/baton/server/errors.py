"""OAuth errors (RFC 6749 §5.2) and how they become responses."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthError(Exception):
    """An error answered as RFC 6749 §5.2 JSON."""

    def __init__(
        self,
        error: str,
        description: str,
        status: int = 400,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"error": self.error, "error_description": self.description},
            status_code=self.status,
            headers={**NO_STORE, **self.headers},
        )


def invalid_request(description: str, status: int = 400) -> OAuthError:
    return OAuthError("invalid_request", description, status)


def invalid_client(description: str) -> OAuthError:
    # RFC 6749 §5.2: 401 with a WWW-Authenticate challenge (a MUST when the client tried the
    # Authorization header; harmless otherwise, and it tells the client which scheme works).
    challenge = {"WWW-Authenticate": 'Basic realm="baton"'}
    return OAuthError("invalid_client", description, 401, challenge)


async def oauth_error_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OAuthError)
    return exc.response()
