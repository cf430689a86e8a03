"""The marker of a message a person reads on a page, for the catalogs (`baton.locale`).

`N_("...")` returns its text unchanged: it only tells the extraction (`baton.locale.extract`,
which reads `baton/server` and `baton/core`) that the text is a message to translate. The page
that shows the text translates it (`baton.server.runtime.pages`). It lives in `core` so that a
rule can word a message for a page without importing the server; `pages` re-exports it.
"""

from __future__ import annotations


def N_(text: str) -> str:
    """Marks `text` as a message for the catalogs, unchanged: it is translated where it is
    shown (`error_page`, the `translated` filter)."""
    return text


def N_plural(one: str, many: str) -> tuple[str, str]:
    """Marks a message with its plural form for the catalogs, unchanged (for `ngettext`)."""
    return one, many
