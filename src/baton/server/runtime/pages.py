"""The template environment behind every HTML page (authorization, sign-in, logout, the
console), so that what a product changes about its pages (a theme folder, translations) is
changed in one place.

Each app has its `Pages` (made by `create_app` from `Settings.theme_dir`, kept on the app's
state, never a module global changed per request: two apps in one process keep their own
themes):

- templates: a theme's `templates/` files take the place of the built-in ones of the same name
  (a Jinja `ChoiceLoader`, the theme first), so a theme may replace one page or `base.html`;
- static files: `/static/{name}` serves the theme's `static/` file, else the built-in one
  (`static_file`), never a file outside those folders;
- words: templates say them through gettext (`{{ _("Sign in") }}`, `{% trans %}`), looked up
  in the language chosen for the request (`Pages.language`: the authorization request's
  `ui_locales`, then `Accept-Language`, then English) in the theme's catalogs, then the
  built-in ones (`baton.locale`). With no catalog the words are the English ones written in
  the template.

Python strings shown on a page are marked with `N_()` (which returns them as they are, for
the catalogs' extraction) and translated when the page renders: `error_page` does it for its
message, with `values` for the `%(name)s` placeholders; a template translates a string it is
given with the `translated` filter (`{{ error|translated }}`).

`page()` is how a handler answers with a page: it adds what every page needs to the context
(`lang` for `<html lang>`, the gettext functions) and never lets a page be cached.

The Jinja environment (`templating`) is built on the first page rendered, not at start-up: a
worker that serves only tokens never loads jinja2. Filters and globals a room adds to every
page (the console's) are given to `add_to_templates`, which keeps them until then.
"""

from __future__ import annotations

import gettext
import mimetypes
import re
from collections.abc import Iterable, Mapping
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from baton import locale
from baton.core.messages import N_ as N_
from baton.core.messages import N_plural as N_plural

if TYPE_CHECKING:
    import jinja2
    from starlette.templating import Jinja2Templates, _TemplateResponse

SERVER = Path(__file__).parents[1]  # baton/server: templates/ and static/
TEMPLATES = SERVER / "templates"
STATIC = SERVER / "static"
DEFAULT_LANGUAGE = "en"

NO_STORE = {"Cache-Control": "no-store"}
# A static file's name: one path segment of plain characters, not hidden (no `..`, no `/`).
_STATIC_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# A language tag as `ui_locales` and `Accept-Language` carry it (RFC 5646, loosely).
_TAG = re.compile(r"^[A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8})*$")


class ThemeError(ValueError):
    """A `--theme-dir` that cannot be used: what is wrong with it."""


# What `add_to_templates` was given, for the environment built later.
_FILTERS: dict[str, Any] = {}
_GLOBALS: dict[str, Any] = {}


@cache
def base_environment() -> jinja2.Environment:
    """The built-in pages' environment, shared by every app (a theme's is an overlay of it),
    with the filters and globals given to `add_to_templates`."""
    from baton.server.runtime import templating  # on the first page: see the module's docstring

    environment = templating.environment(TEMPLATES)
    environment.filters.update(_FILTERS)
    environment.globals.update(_GLOBALS)
    return environment


def add_to_templates(
    *, filters: Mapping[str, Any] | None = None, globals: Mapping[str, Any] | None = None
) -> None:
    """Filters and globals every page's templates have (a theme's too), whether or not the
    environment is built yet."""
    _FILTERS.update(filters or {})
    _GLOBALS.update(globals or {})
    if base_environment.cache_info().currsize:
        base_environment().filters.update(filters or {})
        base_environment().globals.update(globals or {})


# -- one app's pages -----------------------------------------------------------------------------


class Pages:
    """One app's templates, static folders and catalogs: built-in, or a theme's first."""

    def __init__(self, theme_dir: str | Path | None = None) -> None:
        theme = Path(theme_dir).expanduser() if theme_dir else None
        if theme is not None and not theme.is_dir():
            raise ThemeError(f"theme folder {str(theme)!r} does not exist or is not a folder")
        self.theme = theme
        self._themed = theme / "templates" if theme and (theme / "templates").is_dir() else None
        folders = [locale.HERE, *([theme / "locale"] if theme else [])]
        self.catalogs = locale.load_catalogs(*folders)
        self.tags = {DEFAULT_LANGUAGE: DEFAULT_LANGUAGE, **locale.language_names(*folders)}
        self.static = [*([theme / "static"] if theme else []), STATIC]

    @cached_property
    def environment(self) -> jinja2.Environment:
        """The templates' environment: the built-in one, or with a theme an overlay of it."""
        base = base_environment()
        if self._themed is None:
            return base
        import jinja2  # loaded by `base_environment`

        # An overlay shares the filters and globals (the console's too) and has its own
        # loader and template cache: another app's pages are never this theme's.
        loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(self._themed)), base.loader])  # type: ignore[list-item]
        return base.overlay(loader=loader, cache_size=400)

    @cached_property
    def templates(self) -> Jinja2Templates:
        from starlette.templating import Jinja2Templates  # imports jinja2: on the first page

        return Jinja2Templates(env=self.environment)

    # -- the language of a request ---------------------------------------------------------------

    def language(self, request: Request, context: Mapping[str, Any] | None = None) -> str:
        """The page's language tag (as `<html lang>` says it): the first of the authorization
        request's `ui_locales` (OIDC Core §3.1.2.1: "preferred languages ... as a
        space-separated list of BCP47 language tag values, ordered by preference") that Baton
        speaks, then the best of `Accept-Language` by its q-values (RFC 9110 §12.5.4), then
        English."""
        ui_locales = _ui_locales(request, context or {})
        for tag in ui_locales.split():
            if (found := self._match(tag)) is not None:
                return found
        for tag in _accepted(request.headers.get("accept-language", "")):
            if (found := self._match(tag)) is not None:
                return found
        return DEFAULT_LANGUAGE

    def _match(self, tag: str) -> str | None:
        """The catalog for `tag`: itself (`pt-BR`), else its primary language (`fr-CA` -> `fr`)."""
        if not _TAG.match(tag):
            return None
        wanted = tag.replace("_", "-").lower()
        for candidate in (wanted, wanted.split("-")[0]):
            if candidate in self.tags:
                return self.tags[candidate]
        return None

    def catalog(self, language: str) -> gettext.NullTranslations:
        return self.catalogs.get(language.lower()) or gettext.NullTranslations()

    def translate(
        self, request: Request, text: str, values: Mapping[str, Any] | None = None
    ) -> str:
        """`text` (marked with `N_`) in the language of `request`'s page, formatted by `values`."""
        translated = self.catalog(self.language(request)).gettext(text)
        return translated % dict(values) if values else translated

    # -- rendering -------------------------------------------------------------------------------

    def render_context(self, request: Request, context: Mapping[str, Any]) -> dict[str, Any]:
        """`context` with what each page needs: its language and the gettext functions."""
        language = self.language(request, context)
        catalog = self.catalog(language)
        from baton.server.runtime.templating import newstyle  # jinja2's side: on the first page

        return {**context, "lang": language, "catalog": catalog, **newstyle(catalog)}

    def response(
        self,
        request: Request,
        name: str,
        context: Mapping[str, Any] | None = None,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
    ) -> _TemplateResponse:
        return self.templates.TemplateResponse(
            request,
            name,
            self.render_context(request, context or {}),
            status_code=status_code,
            headers=headers,
            media_type=media_type,
            background=background,
        )

    # -- static files ----------------------------------------------------------------------------

    def static_file(self, name: str) -> Path | None:
        """The file `/static/{name}` serves: the theme's, else the built-in one; None for a name
        that is not one plain file name (`..`, a path, a hidden file) or names no file. A file
        whose real path (symbolic links followed) leaves its folder is refused too."""
        if not _STATIC_NAME.match(name) or ".." in name:
            return None
        for folder in self.static:
            candidate = folder / name
            if not candidate.is_file():
                continue
            root = folder.resolve()
            if candidate.resolve().is_relative_to(root):
                return candidate
            return None
        return None


def check_theme(theme_dir: str | Path) -> str | None:
    """Why `theme_dir` cannot serve (`baton serve` says it before starting), or None: the folder
    exists, its catalogs read, and each of its templates compiles."""
    try:
        pages = Pages(theme_dir)
    except (ThemeError, locale.CatalogError) as exc:
        return str(exc)
    import jinja2

    folder = Path(theme_dir).expanduser() / "templates"
    for path in sorted(folder.rglob("*.html")) if folder.is_dir() else []:
        name = path.relative_to(folder).as_posix()
        try:
            pages.environment.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            return f"{path}:{exc.lineno}: {exc.message}"
    return None


def _ui_locales(request: Request, context: Mapping[str, Any]) -> str:
    """The `ui_locales` of the authorization request this page belongs to: in its query
    (/authorize), among the request parameters the page carries on (`params`, the consent and
    account pages), inside the `next` URL the login page continues to, or as a handler that
    read a posted form noted it (`request.state.ui_locales`: the form's body is read once)."""
    if found := request.query_params.get("ui_locales"):
        return found
    noted = getattr(request.state, "ui_locales", None)
    if isinstance(noted, str) and noted:
        return noted
    params = context.get("params")
    if isinstance(params, Iterable) and not isinstance(params, (str, bytes)):
        for pair in params:
            if isinstance(pair, tuple) and len(pair) == 2 and pair[0] == "ui_locales":
                return str(pair[1])
    next_url = context.get("next") or request.query_params.get("next") or ""
    if isinstance(next_url, str) and next_url.startswith("/authorize?"):
        for name, value in parse_qsl(urlsplit(next_url).query):
            if name == "ui_locales":
                return value
    return ""


def _accepted(header: str) -> list[str]:
    """The language ranges of an `Accept-Language` header, most wanted first (by q-value, then
    by order); `*` and ranges with q=0 left out."""
    ranked: list[tuple[float, int, str]] = []
    for index, item in enumerate(header.split(",")[:32]):
        tag, _, rest = item.strip().partition(";")
        quality = 1.0
        for parameter in rest.split(";"):
            key, _, value = parameter.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        tag = tag.strip()
        if tag and tag != "*" and 0 < quality <= 1:
            ranked.append((-quality, index, tag))
    return [tag for _, _, tag in sorted(ranked)]


def pages_of(request: Request) -> Pages:
    """The pages of the app serving `request` (built-in ones for an app `create_app` did not
    give any)."""
    state = request.app.state
    found = getattr(state, "pages", None)
    if not isinstance(found, Pages):
        found = state.pages = _default_pages()
    return found


_DEFAULT: list[Pages] = []


def _default_pages() -> Pages:
    if not _DEFAULT:
        _DEFAULT.append(Pages())
    return _DEFAULT[0]


class _AppTemplates:
    """`templates.TemplateResponse(request, ...)` for modules that render a page themselves
    (the console, RP-initiated logout): through the app's `Pages`, so with its theme and the
    request's language. Filters and globals go through `add_to_templates`."""

    def TemplateResponse(
        self,
        request: Request,
        name: str,
        context: dict[str, Any] | None = None,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
    ) -> _TemplateResponse:
        return pages_of(request).response(
            request, name, context, status_code, headers, media_type, background
        )


templates = _AppTemplates()


def page(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """The template `name` rendered for `request`, never cached (`no-store`)."""
    return pages_of(request).response(
        request, name, context or {}, status, {**NO_STORE, **(headers or {})}
    )


def error_page(
    request: Request,
    message: str,
    status: int,
    headers: dict[str, str] | None = None,
    values: Mapping[str, Any] | None = None,
) -> Response:
    """The error page: what went wrong, said to the person in front of the browser. `message`
    is translated (mark it with `N_`), then formatted with `values` (`%(name)s`) if given."""
    context = {"message": message, "values": dict(values) if values else None}
    return page(request, "error.html", context, status, headers)


async def static(request: Request) -> Response:
    """`/static/{name}`: a file of the theme's `static/` folder, else a built-in one (the
    stylesheets); 404 for anything else, a path that tries to leave the folders included."""
    name = request.path_params.get("name", "")
    found = pages_of(request).static_file(name)
    if found is None:
        return Response("not found\n", 404, media_type="text/plain", headers=NO_STORE)
    media_type = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
    return FileResponse(
        found,
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )
