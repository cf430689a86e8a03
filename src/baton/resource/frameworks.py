"""Helpers for sync frameworks: a decorator for Flask views and one for Django views.

    verifier = Verifier(...); verifier.start()

    @app.get("/notes")                      # Flask
    @flask_protect(verifier, "read")
    def notes(): return {"hello": g.principal.subject}

    @django_protect(verifier, "read")       # Django
    def notes(request): return JsonResponse({"hello": request.principal.subject})

Both answer failures per RFC 6750 (401 `invalid_token`, 403 `insufficient_scope`, 400
`invalid_request`, a bare challenge without a token). Neither framework is imported until used.
With `resource_metadata` (a `ResourceMetadata`, or its URL) every challenge names the resource's
RFC 9728 metadata (`resource_metadata="..."`, RFC 9728 §5.1); serve the document itself with
`metadata.response_parts(request.method)` at each of `metadata.paths`.

A request whose token is superseded (issue 28) gets `Baton-Token-Superseded: dies-at=<seconds>`
on the view's answer (`Verifier(superseded_header=False)` leaves it out).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from baton.resource.errors import AuthError
from baton.resource.headers import superseded_header, verify_request
from baton.resource.metadata import ResourceMetadata
from baton.resource.verifier import Verifier

View = TypeVar("View", bound=Callable[..., Any])


def _metadata_url(resource_metadata: ResourceMetadata | str | None) -> str | None:
    if isinstance(resource_metadata, ResourceMetadata):
        return resource_metadata.url
    return resource_metadata


def flask_protect(
    verifier: Verifier,
    *scopes: str,
    realm: str = "api",
    resource_metadata: ResourceMetadata | str | None = None,
) -> Callable[[View], View]:
    """Verifies the request's bearer token before the view runs; the principal is `g.principal`."""
    metadata_url = _metadata_url(resource_metadata)

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from flask import (  # type: ignore[import-not-found,unused-ignore]
                Response,
                g,
                make_response,
                request,
            )

            try:
                g.principal = principal = verify_request(verifier, request.headers, *scopes)
            except AuthError as error:
                status, headers, body = error.response_parts(realm, metadata_url)
                return Response(body, status=status, headers=headers)
            superseded = superseded_header(verifier, principal)
            if superseded is None:
                return view(*args, **kwargs)
            response = make_response(view(*args, **kwargs))
            response.headers[superseded[0]] = superseded[1]
            return response

        return cast(View, wrapper)

    return decorate


def django_protect(
    verifier: Verifier,
    *scopes: str,
    realm: str = "api",
    resource_metadata: ResourceMetadata | str | None = None,
) -> Callable[[View], View]:
    """Verifies the request's bearer token before the view runs; the principal is
    `request.principal`."""
    metadata_url = _metadata_url(resource_metadata)

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
            from django.http import HttpResponse  # type: ignore[import-untyped,import-not-found,unused-ignore]

            try:
                request.principal = principal = verify_request(verifier, request.headers, *scopes)
            except AuthError as error:
                status, headers, body = error.response_parts(realm, metadata_url)
                response = HttpResponse(body, status=status, content_type=headers["content-type"])
                for name, value in headers.items():
                    response[name] = value
                return response
            answer = view(request, *args, **kwargs)
            superseded = superseded_header(verifier, principal)
            if superseded is not None:
                answer[superseded[0]] = superseded[1]
            return answer

        return cast(View, wrapper)

    return decorate
