"""Data files Baton ships: `common-passwords.txt.gz`, the most common passwords (zxcvbn's list,
MIT licence; its header says where it comes from), for `baton.core.passwords_policy`."""

from __future__ import annotations

import functools
import gzip
from importlib import resources

COMMON_PASSWORDS = "common-passwords.txt.gz"


@functools.cache
def common_passwords() -> frozenset[str]:
    """The bundled list of the most common passwords, lower case; read once per process, on
    first use (a command or a server that never sets a password never reads it)."""
    raw = resources.files(__package__).joinpath(COMMON_PASSWORDS).read_bytes()
    lines = gzip.decompress(raw).decode("utf-8").splitlines()
    return frozenset(line for line in lines if line and not line.startswith("#"))
