"""What makes a redirect URI acceptable: the one rule that registration (CLI and console) and the
authorization endpoint all call, so that a URI stored before a rule tightened is refused at
`/authorize` too, never redirected to.

Three kinds of redirect URI, and nothing else (RFC 8252 §7, RFC 9700 §4.1):
- `https` with a host (a claimed https URI for native apps, RFC 8252 §7.2);
- `http` to a loopback IP literal, `127.0.0.1` or `[::1]` (RFC 8252 §7.3). Not `localhost`:
  RFC 8252 §8.3 and OAuth 2.1 §8.4.2 make it NOT RECOMMENDED, because the name can resolve to an
  address off the loopback interface (a hosts file, a resolver), and the code would then travel
  in the clear over a network. The IP literal always means this machine;
- a private-use scheme in reverse-DNS form, a scheme containing a period such as
  `com.example.app:/oauth2redirect` (RFC 8252 §7.1), which no browser runs as script.

So `javascript:`, `data:`, `file:`, `vbscript:` and every other scheme without a period are
refused, as are fragments (RFC 6749 §3.1.2), user information (`https://a@b/`: a host that is
not what it reads as), and anything that is not printable ASCII without spaces (RFC 3986 §2).

Matching a requested redirect URI to the registered ones (`matching_redirect_uri`) is exact
string comparison (RFC 9700 §4.1.3), with the one exception RFC 8252 §7.3 requires: the port of
an http loopback IP literal, which a native app picks when it opens its listening socket.

One exception to the `localhost` refusal, `localhost=True`: a native app no operator registered
(a dynamic registration or a client ID metadata document, `Client.loopback_by_name`). MCP
clients (MCP Inspector, the TypeScript SDK's examples, desktop agents) register
`http://localhost:PORT/callback`, and no operator is there to ask them for 127.0.0.1; RFC 8252
§8.3 makes it NOT RECOMMENDED, not forbidden, and browsers resolve `localhost` to the loopback
interface only (RFC 6761 §6.3; the WHATWG URL standard's "potentially trustworthy" localhost). For
such a client a `localhost` URI is matched like a loopback IP literal, any port.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlsplit

LOOPBACK = ("127.0.0.1", "::1")

# RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ); RFC 8252 §7.1 asks for a
# reverse domain name: labels separated by periods, none empty.
_PRIVATE_USE_SCHEME = re.compile(r"[a-z][a-z0-9+-]*(\.[a-z0-9][a-z0-9+-]*)+")
_URI_CHARS = re.compile(r"[!-~]+")  # printable ASCII, no space (RFC 3986 §2)
# An http loopback IP literal URI taken apart: its host, its port (absent, or 1-65535 written
# without leading zeros) and everything after the authority, which starts with "/" or "?" (or
# is empty). Only these exact lower-case spellings: anything else is matched as a string.
_LOOPBACK_URI = re.compile(
    r"http://(127\.0\.0\.1|\[::1\]|localhost)"
    r"(?::([1-9][0-9]{0,4}))?"
    r"((?:[/?][!-~]*)?)"
)


def redirect_uri_problem(uri: str, *, localhost: bool = False) -> str | None:
    """Why `uri` may not be a redirect URI, or None when it may; `localhost`: plain http to
    `localhost` too (a native app no operator registered, see the module's docstring)."""
    if not _URI_CHARS.fullmatch(uri):
        return f"redirect URI {uri!r} must be printable ASCII without spaces (RFC 3986)"
    try:
        parts = urlsplit(uri)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in range
    except ValueError as exc:
        return f"redirect URI {uri!r} is not a valid URI: {exc}"
    scheme = parts.scheme  # urlsplit lowers it: schemes are case-insensitive (RFC 3986 §3.1)
    if not scheme:
        return f"redirect URI {uri!r} must be absolute (RFC 6749 §3.1.2)"
    if "#" in uri:
        return f"redirect URI {uri!r} must have no fragment (RFC 6749 §3.1.2)"
    if scheme in ("http", "https"):
        if not hostname:
            return f"redirect URI {uri!r} has no host"
        if "@" in parts.netloc:
            return f"redirect URI {uri!r} must not carry user information"
        if (
            scheme == "http"
            and hostname not in LOOPBACK
            and not (localhost and hostname == "localhost")
        ):
            return (
                f"redirect URI {uri!r} must use https: plain http is allowed only for the "
                "loopback addresses 127.0.0.1 and [::1] (RFC 8252 §7.3; not localhost, §8.3)"
            )
        return None
    if not _PRIVATE_USE_SCHEME.fullmatch(scheme):
        return (
            f"redirect URI {uri!r} must use https, http on loopback, or a private-use scheme "
            "in reverse-DNS form such as com.example.app:/callback (RFC 8252 §7.1)"
        )
    return None


def is_https(uri: str) -> bool:
    """A claimed https redirect URI (RFC 8252 §7.2): the only kind that identifies its app."""
    return redirect_uri_problem(uri) is None and urlsplit(uri).scheme == "https"


def client_option_problem(
    public: bool, redirect_uris: tuple[str, ...], remember_consent: bool, pkce_optional: bool
) -> str | None:
    """Why a client may not be registered with these options (CLI and console), or None."""
    if pkce_optional and public:
        return "PKCE cannot be optional for a public client (RFC 9700 §2.1.1)"
    if remember_consent and not public:
        return (
            "remembering consent is an option for public clients only: "
            "a confidential client's consent is always remembered"
        )
    if remember_consent and not (redirect_uris and all(map(is_https, redirect_uris))):
        return (
            "a public client's consent can be remembered only when every redirect URI is a "
            "claimed https URI (RFC 8252 §8.6): any local program can receive a loopback or "
            "private-use scheme redirect"
        )
    return None


def _loopback_parts(uri: str, localhost: bool) -> tuple[str, str] | None:
    """(host, path and query) of an http loopback IP literal URI (or, with `localhost`, an
    http://localhost one) with or without a valid port, or None for any other URI. A fragment
    never: a redirect URI has none (RFC 6749 §3.1.2)."""
    found = _LOOPBACK_URI.fullmatch(uri)
    if found is None or "#" in uri or (found.group(1) == "localhost" and not localhost):
        return None
    port = found.group(2)
    if port is not None and int(port) > 65535:
        return None
    return found.group(1), found.group(3)


def matching_redirect_uri(
    registered: Sequence[str], given: str, *, localhost: bool = False
) -> str | None:
    """The redirect URI to use for a request naming `given`, if it matches one of `registered`
    (the client's): `given` itself, as the request spelled it (the code remembers it, and the
    token request must present that same string, RFC 6749 §4.1.3); None when nothing matches.

    Exact string matching (RFC 9700 §4.1.3: "exact string matching"), except that "the
    authorization server MUST allow any port to be specified at the time of the request for
    loopback IP redirect URIs" (RFC 8252 §7.3): a registered `http://127.0.0.1/cb` or
    `http://[::1]:8080/cb` matches a given URI that differs from it only by its port (any port,
    or none). Host, path and query must be the same characters; user information or a
    fragment never match; the scheme and host must be written `http`, `127.0.0.1`, `[::1]`.

    `localhost` gets exact matching only (and registration refuses `http://localhost` outright,
    `redirect_uri_problem`), but for a native app no operator registered (`localhost=True`,
    see the module's docstring). RFC 8252 §8.3 makes loopback redirects by name NOT RECOMMENDED:
    the name can be made to resolve off the loopback interface (a hosts file, a resolver, a
    proxy configuration), so letting any port through for it would widen an already weak
    registration into any service on whatever `localhost` resolves to. The IP literals always
    mean this machine, which is what makes any port of them safe: only a program on the
    user's own machine can listen there, and PKCE binds the code to the app that asked.
    """
    if given in registered:
        return given
    parts = _loopback_parts(given, localhost)
    if parts is None:
        return None
    for uri in registered:
        if _loopback_parts(uri, localhost) == parts:
            return given
    return None
