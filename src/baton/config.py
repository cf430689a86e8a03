"""Server configuration: every option, its default, and why. The one place that documents them.

Each option can come from the command line or from `BATON_<OPTION>` in the environment; the flag
wins (see `baton.cli`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from baton.core.policy import Policy


@dataclass(frozen=True)
class Settings:
    # The issuer identifier (RFC 8414 §2); every endpoint URL in the metadata derives from it.
    # Default: http://<host>:<port>. Use https in production: session cookies are then `Secure`.
    issuer: str = "http://127.0.0.1:8000"
    # Lifetimes, leeway and retry policy (see baton.core.policy for their defaults).
    policy: Policy = field(default_factory=Policy)
    # Largest request body accepted; larger ones get 413 before they are read further.
    max_body_bytes: int = 64 * 1024
    # How often the server deletes sealed responses whose leeway has ended (seconds).
    purge_interval: int = 60

    @property
    def secure_cookies(self) -> bool:
        return self.issuer.startswith("https://")
