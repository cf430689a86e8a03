"""The Jinja side of `pages`: the environment every page renders in and the gettext functions
its templates call. Imported by `pages` on the first page rendered, so that a worker that serves
no page does not load jinja2.
"""

from __future__ import annotations

import gettext
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from baton.core.messages import N_plural


def environment(templates: Path) -> jinja2.Environment:
    """The built-in pages' environment, its templates read from `templates`."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        autoescape=jinja2.select_autoescape(default=True),
        extensions=["jinja2.ext.i18n"],
    )
    # `{% trans %}` blocks are read with their white space collapsed, as the catalogs hold them.
    environment.policies["ext.i18n.trimmed"] = True
    # English until a page's context brings its language's functions (`Pages.render_context`).
    environment.install_null_translations(newstyle=True)  # type: ignore[attr-defined]
    environment.filters["translated"] = _translated
    environment.filters["lifetime"] = _lifetime
    return environment


# -- translating in templates --------------------------------------------------------------------


def newstyle(catalog: gettext.NullTranslations) -> dict[str, Callable[..., str]]:
    """The gettext functions a template calls (`_`, `{% trans %}`), in Jinja's "new style":
    the translation is autoescaped, then given its `%(name)s` values (escaped in turn)."""

    def finish(context: jinja2.runtime.Context, text: str, variables: Mapping[str, Any]) -> str:
        if context.eval_ctx.autoescape:
            # The catalog's words are trusted like the template's; the values are escaped.
            return Markup(text) % variables  # noqa: S704
        return text % variables

    @jinja2.pass_context
    def gettext_(context: jinja2.runtime.Context, message: str, **variables: Any) -> str:
        return finish(context, catalog.gettext(message), variables)

    @jinja2.pass_context
    def ngettext_(
        context: jinja2.runtime.Context, one: str, many: str, n: int, **variables: Any
    ) -> str:
        variables.setdefault("num", n)
        return finish(context, catalog.ngettext(one, many, n), variables)

    @jinja2.pass_context
    def pgettext_(
        context: jinja2.runtime.Context, where: str, message: str, **variables: Any
    ) -> str:
        variables.setdefault("context", where)
        return finish(context, catalog.pgettext(where, message), variables)

    @jinja2.pass_context
    def npgettext_(
        context: jinja2.runtime.Context, where: str, one: str, many: str, n: int, **variables: Any
    ) -> str:
        variables.setdefault("num", n)
        variables.setdefault("context", where)
        return finish(context, catalog.npgettext(where, one, many, n), variables)

    return {
        "_": gettext_,
        "gettext": gettext_,
        "ngettext": ngettext_,
        "pgettext": pgettext_,
        "npgettext": npgettext_,
    }


def _catalog_of(context: jinja2.runtime.Context) -> gettext.NullTranslations:
    found = context.get("catalog")
    return found if isinstance(found, gettext.NullTranslations) else gettext.NullTranslations()


@jinja2.pass_context
def _translated(
    context: jinja2.runtime.Context, text: str | None, values: Mapping[str, Any] | None = None
) -> str:
    """A string the handler gave (marked with `N_`), in the page's language. Only given
    `values` is it formatted, so a message that quotes user input with a `%` stays whole."""
    if not text:
        return ""
    translated = _catalog_of(context).gettext(str(text))
    if values:
        try:
            return translated % dict(values)
        except (KeyError, ValueError, TypeError):
            return str(text) % dict(values)
    return translated


# The units `_lifetime` says a span in, the largest first.
_UNITS = (
    (86400, N_plural("%(num)d day", "%(num)d days")),
    (3600, N_plural("%(num)d hour", "%(num)d hours")),
    (60, N_plural("%(num)d minute", "%(num)d minutes")),
    (1, N_plural("%(num)d second", "%(num)d seconds")),
)


@jinja2.pass_context
def _lifetime(context: jinja2.runtime.Context, seconds: int) -> str:
    """`seconds` in the largest whole unit a person reads at a glance (90 days, 12 hours), in
    the page's language with its plural rule."""
    catalog = _catalog_of(context)
    for size, (one, many) in _UNITS:
        if seconds >= size or size == 1:
            count = seconds // size
            return catalog.ngettext(one, many, count) % {"num": count}
    raise AssertionError("unreachable")
