"""User passwords, hashed with Argon2id (argon2-cffi's recommended parameters).

argon2 is imported, and the dummy hash made, on the first password hashed or checked: a server
process that only serves tokens neither loads it nor spends a hash's time and memory starting.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from argon2 import PasswordHasher

# The `password_hash` of a user who has no password: one made by a login app or an upstream
# provider. Not an Argon2 hash, so nothing ever verifies against it.
NO_PASSWORD = "!"


@cache
def _argon2() -> tuple[PasswordHasher, str]:
    """The hasher, and the hash verified against when the user does not exist, so an unknown
    username costs as much time as a wrong password and usernames cannot be discovered by
    timing the login form."""
    from argon2 import PasswordHasher

    hasher = PasswordHasher()
    return hasher, hasher.hash("baton-dummy-password")


def hash_password(password: str) -> str:
    return _argon2()[0].hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` is the one `password_hash` was made from. A missing user, and one
    with no password, cost the same time as a wrong password and are never verified."""
    from argon2.exceptions import InvalidHashError, VerificationError  # loaded by `_argon2`

    hasher, dummy = _argon2()
    usable = password_hash is not None and password_hash not in ("", NO_PASSWORD)
    try:
        ok = hasher.verify(password_hash if usable else dummy, password)  # type: ignore[arg-type]
    except (VerificationError, InvalidHashError):
        return False
    return ok and usable
