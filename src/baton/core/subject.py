"""The `sub` a client sees (OIDC Core §8): the user's own identifier, or a pairwise one.

A pairwise identifier (§8.1) is the same for every client of one sector and different across
sectors, so two relying parties cannot join their records on it. Its sector is the host of the
client's `sector_identifier_uri`, else of its one redirect URI host (§8.1: several hosts need a
sector identifier URI). The salt is derived from the key-encryption key, which never reaches the
database: a copy of the database alone cannot turn a pairwise identifier back into a user.
"""

from __future__ import annotations

import base64
import hashlib
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
    hosts = {urlsplit(uri).hostname or urlsplit(uri).scheme for uri in redirect_uris}
    if len(hosts) != 1:
        raise SectorError(
            "a pairwise client whose redirect URIs have several hosts needs a sector_identifier_uri"
        )
    return hosts.pop()


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
