"""The OpenAPI 3.1 description of every HTTP endpoint, served at /openapi.json."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from baton.config import Settings
from baton.server.context import baton


def openapi_document(settings: Settings) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Baton", "version": "0.1.0"},
        "servers": [{"url": settings.issuer}],
        "paths": {},
    }


async def openapi_endpoint(request: Request) -> JSONResponse:
    return JSONResponse(openapi_document(baton(request).settings))
