"""User passwords, hashed with Argon2id (argon2-cffi's recommended parameters)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()

# Verified against when the user does not exist, so an unknown username costs as much time as
# a wrong password and usernames cannot be discovered by timing the login form.
_DUMMY_HASH = _hasher.hash("baton-dummy-password")


# The `password_hash` of a user who has no password: one made by a login app or an upstream
# provider. Not an Argon2 hash, so nothing ever verifies against it.
NO_PASSWORD = "!"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` is the one `password_hash` was made from. A missing user, and one
    with no password, cost the same time as a wrong password and are never verified."""
    usable = password_hash is not None and password_hash not in ("", NO_PASSWORD)
    try:
        ok = _hasher.verify(password_hash if usable else _DUMMY_HASH, password)  # type: ignore[arg-type]
    except (VerificationError, InvalidHashError):
        return False
    return ok and usable
