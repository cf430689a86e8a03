"""The example app's own user list: a JSON file of users keyed by username, each with a stable
id (the subject Baton receives), an scrypt password hash (never the password) and profile claims.

    {"alice": {"id": "u_5f1c...", "password_hash": "scrypt$17$8$1$<salt>$<key>",
               "email": "alice@example.com", "name": "Alice Liddell"}}
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

# OWASP's minimum for scrypt (N=2^17, r=8, p=1: 128 MiB); a hash carries its own parameters, so
# raising them later leaves the old hashes valid.
_LOG_N, _R, _P = 17, 8, 1


def _scrypt(password: str, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=1 << log_n, r=r, p=p, maxmem=256 << 20, dklen=32
    )


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    key = _scrypt(password, salt, _LOG_N, _R, _P)
    return f"scrypt${_LOG_N}${_R}${_P}${salt.hex()}${key.hex()}"


@functools.cache
def _dummy() -> str:
    """Checked when the username is unknown, so that costs the time a wrong password does."""
    return hash_password(secrets.token_urlsafe(16))


def verify_password(stored: str | None, password: str) -> bool:
    """Whether `password` made `stored`, in constant time; None (no such user) is never."""
    _, log_n, r, p, salt, key = (stored or _dummy()).split("$")
    computed = _scrypt(password, bytes.fromhex(salt), int(log_n), int(r), int(p))
    return hmac.compare_digest(computed, bytes.fromhex(key)) and stored is not None


@dataclass(frozen=True)
class User:
    id: str  # the subject: stable, unlike the username a person may change
    password_hash: str
    email: str | None = None
    name: str | None = None


def load_users(path: Path) -> dict[str, User]:
    """The file's users by username (read at every sign-in: `add-user` needs no restart)."""
    if not path.exists():
        return {}
    return {name: User(**fields) for name, fields in json.loads(path.read_text()).items()}


def save_user(path: Path, username: str, user: User) -> None:
    """Adds or replaces `username`; the file stays readable by its owner only (0600)."""
    users = {name: asdict(found) for name, found in load_users(path).items()}
    users[username] = asdict(user)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(users, out, indent=2)
