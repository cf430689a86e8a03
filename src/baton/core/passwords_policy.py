"""The password policy of built-in users: how long a password must be, and that it is none of
the most common ones (NIST SP 800-63B §5.1.1.2: a minimum length, a generous maximum, and a check
against passwords "obtained from previous breach corpuses", without composition rules).

Pure: the list of common passwords is handed in (`baton.data.common_passwords` loads the bundled
one). Applied wherever a password is set: `baton user create`, `baton user set-password`, the
admin console. The reasons are sentences a person can act on; none repeats the password.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Container

# Argon2 hashes any length, but each byte costs time: a megabyte of "password" is a cheap way to
# spend the server's CPU. 1024 characters leave room for any passphrase a manager generates.
MAX_LENGTH = 1024


def length(password: str) -> int:
    """The length a person typed, in code points of the NFC form: a composed and a decomposed
    accent are one character. Not NFKC, which expands compatibility characters: a ligature
    ("\ufb03", ffi) or a single sign ("\ufdfa", 18 letters) would count as many."""
    return len(unicodedata.normalize("NFC", password))


def normalized(password: str) -> str:
    """The form the common list is compared in: NFKC (a full-width letter or a ligature is its
    plain letters, so such variants of a common password are caught) and case-folded (the common
    list is lower case: "Password123" is as common as "password123")."""
    return unicodedata.normalize("NFKC", password).casefold()


def password_problem(
    password: str,
    min_length: int,
    common: Container[str],
    *,
    username: str | None = None,
) -> str | None:
    """Why `password` may not be set (one sentence, no trailing period), or None when it may.

    `min_length` is `Settings.password_min_length`; `common` holds the most common passwords in
    lower case; `username`, when given, may not be the password either (the first thing a
    guesser tries)."""
    if not password:
        return "the password must not be empty"
    counted = length(password)
    if counted < min_length:
        return f"the password must be at least {min_length} characters long (it has {counted})"
    if len(password) > MAX_LENGTH:
        return f"the password must be at most {MAX_LENGTH} characters long"
    if any(unicodedata.category(ch) == "Cc" for ch in password):
        return "the password must not contain control characters (such as a newline or a tab)"
    folded = normalized(password)
    if folded in common:
        return "the password is on the list of the most common passwords: choose another"
    if username and folded == normalized(username):
        return "the password must not be the username"
    if len(set(folded)) == 1:
        return "the password must not be one character repeated"
    return None
