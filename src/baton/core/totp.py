"""Time-based one-time passwords (RFC 6238) over HOTP (RFC 4226), and recovery codes: the rules
of the second factor, without I/O.

- HOTP with HMAC-SHA1 and 6 digits (RFC 4226 §5.3, dynamic truncation); TOTP with a 30 s time
  step from the Unix epoch (RFC 6238 §4), the moving factor `floor(now / 30)`.
- A code is accepted for the current step and one step either side (RFC 6238 §5.2's
  "at most one time step" of network delay and clock drift), and only for a step later than the
  last one accepted (§5.2: "the verifier MUST NOT accept the second attempt of the same OTP"),
  which the store records atomically.
- Secrets are 160 bits (RFC 4226 §4 R6 recommends 160), shown base32 without padding, and in an
  `otpauth://totp/` URI of the Key Uri Format that authenticator apps read.
- The secret is stored sealed (AES-256-GCM) under the key-encryption key of `baton.core.keys`,
  bound to its user's id (the associated data), so a database reader cannot compute codes.
- Recovery codes: 10 random codes of 50 bits each, shown once, each good once, stored as
  HMAC-SHA256 under a key of their own derived (HKDF-SHA256) from the key-encryption key: 50
  bits are few enough to try them all against a plain hash, so a database reader without the
  key-encryption key must not be able to test guesses offline. A code is usable only while
  the key-encryption key is set (as the TOTP secret is).
"""

from __future__ import annotations

import base64
import hmac
import os
import secrets
import struct
from collections.abc import Iterable
from urllib.parse import quote, urlencode

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

DIGITS = 6
STEP = 30  # seconds (RFC 6238 §5.2 recommends 30)
WINDOW = 1  # steps accepted either side of the current one
SECRET_BYTES = 20  # 160 bits
RECOVERY_CODES = 10
_RECOVERY_BYTES = 10  # 80 bits drawn, 50 of them kept (10 base32 characters)
_NONCE_LEN = 12
_SEAL_PREFIX = "v1:"
_ALGORITHM = "SHA1"
_RECOVERY_INFO = b"baton/totp/recovery-codes/v1"


def new_secret() -> bytes:
    """A fresh shared secret of 160 bits."""
    return os.urandom(SECRET_BYTES)


def b32(secret: bytes) -> str:
    """The secret as authenticator apps take it: base32, upper case, no padding."""
    return base64.b32encode(secret).decode("ascii").rstrip("=")


def from_b32(text: str) -> bytes:
    """A base32 secret as people write it (spaces, lower case, no padding) back to bytes;
    ValueError when it is not base32."""
    cleaned = "".join(text.split()).upper()
    try:
        return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except ValueError as exc:  # binascii.Error is one
        raise ValueError("not a base32 secret") from exc


def hotp(key: bytes, counter: int, digits: int = DIGITS) -> str:
    """RFC 4226 §5.3: HMAC-SHA-1 of the 8-byte counter, dynamically truncated to `digits`."""
    mac = hmac.digest(key, struct.pack(">Q", counter), "sha1")
    offset = mac[-1] & 0x0F
    binary = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(binary % 10**digits).zfill(digits)


def time_step(now: int | float) -> int:
    """RFC 6238 §4.2: T = floor((now - T0) / X), T0 = 0, X = 30 s."""
    return int(now // STEP)


def totp(key: bytes, now: int | float, digits: int = DIGITS) -> str:
    """The code of the time step `now` falls in."""
    return hotp(key, time_step(now), digits)


def normalize_code(text: str) -> str:
    """What was typed, without the spaces and dashes people put in codes."""
    return "".join(c for c in text if not c.isspace() and c != "-")


def looks_like_totp(text: str) -> bool:
    code = normalize_code(text)
    return len(code) == DIGITS and code.isascii() and code.isdigit()


def matching_step(key: bytes, code: str, now: int | float, last_step: int | None) -> int | None:
    """The time step within the window around `now` whose code is `code` and which is later
    than `last_step` (the last accepted: a code never works twice); None if there is none.

    Every step of the window is compared, in constant time, whatever matched: the time taken
    does not say which step (or whether) the code belongs to."""
    typed = normalize_code(code)
    if not looks_like_totp(typed):
        return None
    current = time_step(now)
    found: int | None = None
    for step in range(current - WINDOW, current + WINDOW + 1):
        if step < 0:
            continue
        same = hmac.compare_digest(hotp(key, step).encode(), typed.encode())
        if same and (last_step is None or step > last_step) and found is None:
            found = step
    return found


def otpauth_uri(secret: bytes, account: str, issuer: str) -> str:
    """The Key Uri Format's `otpauth://totp/ISSUER:ACCOUNT?secret=...&issuer=...` (with the
    algorithm, digits and period spelled out: they are the defaults, said anyway)."""
    # The label's colon separates the two; one inside either is percent-encoded.
    label = quote(issuer, safe="@") + ":" + quote(account, safe="@")
    query = urlencode(
        {
            "secret": b32(secret),
            "issuer": issuer,
            "algorithm": _ALGORITHM,
            "digits": str(DIGITS),
            "period": str(STEP),
        },
        quote_via=quote,
    )
    return f"otpauth://totp/{label}?{query}"


def _associated(user_id: int) -> bytes:
    return f"baton/totp/v1:{user_id}".encode()


def seal_secret(secret: bytes, kek: bytes, user_id: int) -> str:
    """The secret as the database keeps it: AES-256-GCM under the key-encryption key (its
    derived AES key, `baton.core.keys.key_encryption_key`), bound to the user's id."""
    nonce = os.urandom(_NONCE_LEN)
    sealed = nonce + AESGCM(kek).encrypt(nonce, secret, _associated(user_id))
    return _SEAL_PREFIX + base64.urlsafe_b64encode(sealed).decode("ascii")


def open_secret(sealed: str, kek: bytes, user_id: int) -> bytes | None:
    """The secret sealed by `seal_secret` for `user_id` under `kek`; None when it cannot be
    opened (another key-encryption key, another user's row, damaged)."""
    if not sealed.startswith(_SEAL_PREFIX):
        return None
    try:
        raw = base64.urlsafe_b64decode(sealed[len(_SEAL_PREFIX) :])
        return AESGCM(kek).decrypt(raw[:_NONCE_LEN], raw[_NONCE_LEN:], _associated(user_id))
    except (InvalidTag, ValueError):
        return None


def new_recovery_codes(count: int = RECOVERY_CODES) -> list[str]:
    """Fresh recovery codes: 10 base32 characters each (50 bits), lower case, in two groups
    of five for reading and typing."""
    codes = []
    for _ in range(count):
        text = base64.b32encode(secrets.token_bytes(_RECOVERY_BYTES)).decode().lower()[:10]
        codes.append(f"{text[:5]}-{text[5:]}")
    return codes


def recovery_key(kek: bytes) -> bytes:
    """The key recovery codes are stored under: derived (HKDF-SHA256) from the key-encryption
    key (`baton.core.keys.key_encryption_key`'s AES key), a key of its own for this one use."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_RECOVERY_INFO)
    return hkdf.derive(kek)


def _recovery_mac(key: bytes, code: str) -> bytes:
    text = "recovery:" + normalize_code(code).lower()
    return hmac.digest(key, text.encode("utf-8"), "sha256")


def recovery_digest(code: str, kek: bytes) -> bytes:
    """What a recovery code is stored and looked up by: HMAC-SHA256 under `recovery_key(kek)`
    of the code as typed, in any case, with or without its dash and spaces."""
    return _recovery_mac(recovery_key(kek), code)


def recovery_digests(codes: Iterable[str], kek: bytes) -> list[bytes]:
    key = recovery_key(kek)
    return [_recovery_mac(key, code) for code in codes]


def looks_like_recovery(text: str) -> bool:
    code = normalize_code(text)
    return len(code) == 10 and code.isascii() and code.isalnum()
