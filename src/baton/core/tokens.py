"""The token format: kind prefix, 256 random bits (43 random base-62 characters), checksum.

`bat_rt_<43 base62 chars><6 base62 chars of CRC32>`. The prefix tells the kind (so introspection
and revocation never need the `token_type_hint`) and lets secret scanners find leaked tokens; the
checksum rejects a mistyped or truncated token without a database read. Only the SHA-256 digest
of a token is ever stored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import zlib
from dataclasses import dataclass, field
from enum import Enum

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BODY_LEN = 43  # ceil(256 / log2(62))
BODY_LENGTH = _BODY_LEN  # a token's random characters, for `minted`
_CHECK_LEN = 6  # ceil(32 / log2(62))


class TokenKind(Enum):
    ACCESS = "bat_at_"
    REFRESH = "bat_rt_"
    CODE = "bat_ac_"
    CLIENT_SECRET = "bat_cs_"

    @property
    def prefix(self) -> str:
        return self.value


_PREFIX_LEN = 7
_TOKEN_LEN = _PREFIX_LEN + _BODY_LEN + _CHECK_LEN
_KINDS = {kind.prefix: kind for kind in TokenKind}


# Every two-digit base-62 number, in order: a checksum is three of them (`_checksum`).
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]


# Random base-62 text straight from random bytes: the 248 byte values below 4 x 62 map evenly
# onto the alphabet (b % 62) and the other 8 are dropped, so every character is uniform and
# independent of the others. One bytes.translate in C, where encoding a 256-bit integer took
# twenty-odd big-integer divisions per token.
_TO_BASE62 = bytes(ord(_ALPHABET[b % 62]) if b < 248 else 0 for b in range(256))
_DROPPED = bytes(range(248, 256))


def random_base62(width: int) -> str:
    """`width` random base-62 characters: width x log2(62) bits of entropy."""
    text = b""
    while len(text) < width:  # 56 bytes for 43 characters: short once in ~10^14 draws
        text += secrets.token_bytes(width + width // 8 + 8).translate(_TO_BASE62, _DROPPED)
    return text[:width].decode("ascii")


def random_base62_parts(*widths: int) -> list[str]:
    """Random base-62 strings of these widths, as many `random_base62` calls would give, from
    one draw of the system's randomness: every character is uniform and independent of every
    other, so cutting one draw in pieces gives independent strings. One system call, and one
    release of the GIL, rather than one per string (a refresh needs three)."""
    total = sum(widths)
    text = random_base62(total)
    parts = []
    start = 0
    for width in widths:
        parts.append(text[start : start + width])
        start += width
    return parts


def _checksum(text: str) -> str:
    """The CRC-32 of `text` in 6 base-62 digits, most significant first: a CRC-32 is below
    62**6 = 3844**3, so three pairs of digits."""
    high, low = divmod(zlib.crc32(text.encode("ascii")), 3844)
    high, middle = divmod(high, 3844)
    return _PAIRS[high] + _PAIRS[middle] + _PAIRS[low]


def digest(token: str) -> bytes:
    """The SHA-256 digest under which a token is stored and looked up."""
    return hashlib.sha256(token.encode("utf-8")).digest()


# A digest on the wire (`POST /token-use`): base64url without padding (RFC 4648 §5), 43
# characters for SHA-256's 32 bytes.
DIGEST_TEXT_LENGTH = 43
# Its JSON schema pattern: 42 characters, then one of those whose last 2 bits are 0 (the 43
# characters hold 258 bits, the digest 256).
DIGEST_TEXT_PATTERN = "^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$"


def digest_text(raw: bytes) -> str:
    """A token's digest as `POST /token-use` names it: base64url, unpadded."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def digest_from_text(text: str) -> bytes | None:
    """The 32-byte digest `text` spells (`digest_text`'s inverse), or None when it is anything
    else: another length, a character outside base64url, padding, or a non-canonical last
    character (one with bits set past the 256th, which names no digest)."""
    if len(text) != DIGEST_TEXT_LENGTH or not text.isascii():
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=")
    except (binascii.Error, ValueError):
        return None
    return raw if digest_text(raw) == text else None


@dataclass(frozen=True, slots=True)
class Minted:
    """A freshly generated token. `plaintext` goes to the client once; `digest` to the store."""

    kind: TokenKind
    plaintext: str = field(repr=False)
    digest: bytes = field(repr=False)


def mint(kind: TokenKind) -> Minted:
    return minted(kind, random_base62(_BODY_LEN))


def minted(kind: TokenKind, body: str) -> Minted:
    """The token of `kind` whose random body is `body` (`BODY_LENGTH` base-62 characters from
    `random_base62` or `random_base62_parts`: `mint` in two steps)."""
    head = kind.value + body
    plaintext = head + _checksum(head)
    return Minted(kind, plaintext, hashlib.sha256(plaintext.encode("ascii")).digest())


def kind_of(token: str) -> TokenKind | None:
    """The kind of a well-formed Baton token, or None for anything malformed.

    Checks length, alphabet and checksum; runs in constant time with respect to the secret body
    except for the final checksum comparison, which reveals nothing about stored tokens.
    """
    if len(token) != _TOKEN_LEN:
        return None
    kind = _KINDS.get(token[:_PREFIX_LEN])
    if kind is None:
        return None
    body = token[_PREFIX_LEN:]
    if not (body.isascii() and body.isalnum()):  # the base-62 alphabet, exactly
        return None
    head = token[: _PREFIX_LEN + _BODY_LEN]
    if token[_PREFIX_LEN + _BODY_LEN :] != _checksum(head):
        return None
    return kind


def random_id(prefix: str, nbytes: int = 16) -> str:
    """An identifier made only of unreserved characters (RFC 3986 §2.3)."""
    return prefix + random_base62(id_width(nbytes))


def id_width(nbytes: int) -> int:
    """The base-62 characters of a `random_id` of `nbytes` random bytes' entropy."""
    return -(-nbytes * 8 * 1000 // 5954)  # ceil(bits / log2(62))
