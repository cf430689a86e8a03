"""What a leaked secret looks like in a log, for the checks that no log ever holds one."""

from __future__ import annotations

import re

from tests.support import PASSWORD

_PATTERNS = [
    re.compile(r"bat_(?:at|rt|ac|cs)_[0-9A-Za-z]{40,}"),  # Baton tokens, codes, client secrets
    re.compile(r"eyJ[\w-]{10,}\.eyJ[\w-]{10,}\.[\w-]{10,}"),  # a signed JWT
]
_PASSWORDS = [PASSWORD, "correct horse battery staple", "wonderland"]


def find_secrets(text: str) -> list[str]:
    found = [m.group(0)[:20] + "..." for p in _PATTERNS for m in p.finditer(text)]
    found += [f"password {p!r}" for p in _PASSWORDS if p in text]
    return found
