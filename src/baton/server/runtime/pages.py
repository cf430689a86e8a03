"""The one template environment behind every HTML page (authorization, sign-in, logout, the
console), so that what a product changes about its pages (a theme folder, translations) is
changed in one place.

Templates say their words through gettext (`{{ _("Sign in") }}`, `{% trans %}`): with no
catalog the words are the English ones written in the template. `page()` is how a handler
answers with a page: it adds what every page needs to the context and never lets a page be
cached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

SERVER = Path(__file__).parents[1]  # baton/server: templates/ and static/
TEMPLATES = SERVER / "templates"
STATIC = SERVER / "static"

NO_STORE = {"Cache-Control": "no-store"}

_environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    autoescape=jinja2.select_autoescape(default=True),
    extensions=["jinja2.ext.i18n"],
)
_environment.install_null_translations(newstyle=True)  # type: ignore[attr-defined]
templates = Jinja2Templates(env=_environment)


def page(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """The template `name` rendered for `request`, never cached (`no-store`)."""
    return templates.TemplateResponse(
        request, name, context or {}, status_code=status, headers={**NO_STORE, **(headers or {})}
    )


def error_page(
    request: Request, message: str, status: int, headers: dict[str, str] | None = None
) -> Response:
    """The error page: what went wrong, said to the person in front of the browser."""
    return page(request, "error.html", {"message": message}, status, headers)
