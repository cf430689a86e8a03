"""URLs that may carry credentials (a database's or Redis's `user:password@host`, a webhook's
token in its path or query), as they may be shown: `baton config show`, the lines `baton serve`
and `baton db` print (`baton.store.engines.display_url` masks a database URL with this too).
The one rule for hiding a credential in a URL. Standard library only: `urllib.parse` reads any
scheme, and the config, the store and the CLI all import it.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "********"

# Query parameters that hold a credential (libpq's `?password=`, redis-py's, `?token=`...).
_CREDENTIAL_PARAMETERS = ("pass", "secret", "token")


def is_credential_parameter(parameter: str) -> bool:
    """Whether a URL's query parameter named `parameter` holds a credential (`password`,
    `sslpassword`, `token`...): the one rule, for whatever shows or prints a URL."""
    return any(word in parameter.lower() for word in _CREDENTIAL_PARAMETERS)


def carries_credential(url: str, *, origin_only: bool = False) -> bool:
    """Whether `url` holds a password (`user:password@host`, `?password=`); with `origin_only`
    (a URL whose path and query may be a token), also whether it has a query. A value that is
    no readable URL counts as one: it cannot be shown to hold none."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return True
    names = [name for name, _ in parse_qsl(parts.query, keep_blank_values=True)]
    if parts.password or any(is_credential_parameter(name) for name in names):
        return True
    return origin_only and bool(parts.query)


def masked_url(url: str, *, origin_only: bool = False) -> str:
    """`url` with its password (and any credential query parameter) replaced by `MASK`; with
    `origin_only`, `scheme://host:port` alone, its path and query replaced by `/MASK` (and a
    value that is no URL by `MASK`). Otherwise a value with nothing to mask (a SQLite file path)
    comes back as it is."""
    try:
        parts = urlsplit(url)
    except ValueError:  # unreadable (a stray `[`): nothing of it is shown
        return MASK
    netloc = parts.netloc
    if parts.password:
        user = netloc.rpartition("@")[0].partition(":")[0]
        netloc = f"{user}:{MASK}@{netloc.rpartition('@')[2]}"
    if origin_only:
        if not parts.netloc:
            return MASK  # no origin to show: not even a URL
        rest = "/" + MASK if parts.path.strip("/") or parts.query or parts.fragment else ""
        return urlunsplit((parts.scheme, netloc, rest, "", ""))
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = parts.query  # as written, unless a parameter is masked
    if any(is_credential_parameter(name) for name, _ in pairs):
        masked = [(name, MASK if is_credential_parameter(name) else value) for name, value in pairs]
        query = urlencode(masked, safe="*")
    if netloc == parts.netloc and query == parts.query:
        return url  # nothing to mask: as written (urlunsplit would rewrite `sqlite:///x`)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
