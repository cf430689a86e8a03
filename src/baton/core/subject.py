"""The `sub` a client sees (OIDC Core §8): the user's own identifier, or a pairwise one.

A pairwise identifier (§8.1) is the same for every client of one sector and different across
sectors, so two relying parties cannot join their records on it. Its sector is the host of the
client's `sector_identifier_uri`, else of its one redirect URI host (§8.1: several hosts need a
sector identifier URI). A native app's redirect URI has no host of its own: a private-use scheme
(RFC 8252 §7.1, a reverse-DNS name unique to the app) is its sector, never the part after `//`;
a loopback one (§7.3, 127.0.0.1, [::1], localhost) names every app on every machine, so such a
client needs a `sector_identifier_uri`. The salt is derived from the key-encryption key, which
never reaches the database: a copy of the database alone cannot turn a pairwise identifier back
into a user.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PUBLIC = "public"
PAIRWISE = "pairwise"
SUBJECT_TYPES = (PUBLIC, PAIRWISE)
_SALT_INFO = b"baton/pairwise-subject/v1"


class SectorError(ValueError):
    """A pairwise client whose sector cannot be told (§8.1)."""


def pairwise_salt(kek_secret: str) -> bytes:
    """The salt of every pairwise identifier, derived from the key-encryption key's secret."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SALT_INFO)
    return hkdf.derive(kek_secret.encode("utf-8"))


def sector_of(redirect_uris: Sequence[str], sector_identifier_uri: str | None) -> str:
    """The sector host of a pairwise client (§8.1)."""
    if sector_identifier_uri:
        host = urlsplit(sector_identifier_uri).hostname
        if host:
            return host
        raise SectorError("sector_identifier_uri has no host")
    hosts = {_sector_of_redirect_uri(uri) for uri in redirect_uris}
    if len(hosts) != 1:
        raise SectorError(
            "a pairwise client whose redirect URIs have several hosts needs a sector_identifier_uri"
        )
    return hosts.pop()


def _sector_of_redirect_uri(uri: str) -> str:
    """The sector of one redirect URI (Core §8.1: "the host component of the redirect_uri").

    RFC 8252 §7.1: a private-use URI scheme is "a domain name under [the app's] control,
    expressed in reverse order", so the scheme identifies the app: `com.a://callback` and
    `org.b://callback` are two sectors, never the shared "host" `callback`. RFC 8252 §7.3: a
    loopback redirect URI is the same for every native app, so its host tells no sector."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        if not scheme:
            raise SectorError(f"the redirect URI {uri!r} has no scheme to tell a sector from")
        return scheme
    host = parts.hostname
    if not host:
        raise SectorError(f"the redirect URI {uri!r} has no host to tell a sector from")
    if _is_loopback(host):
        raise SectorError(
            f"a pairwise client with the loopback redirect URI {uri!r} needs a "
            "sector_identifier_uri: a loopback host is every native app's, not a sector"
        )
    return host


def _is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost (RFC 8252 §7.3, RFC 6761 §6.3)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def subject_for(
    local: str,
    subject_type: str,
    redirect_uris: Sequence[str],
    sector_identifier_uri: str | None,
    salt: bytes,
) -> str:
    """The `sub` of `local` (the user's own identifier) for a client of `subject_type`."""
    if subject_type != PAIRWISE:
        return local
    sector = sector_of(redirect_uris, sector_identifier_uri)
    digest = hashlib.sha256(sector.encode() + b"\x00" + local.encode() + b"\x00" + salt).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
