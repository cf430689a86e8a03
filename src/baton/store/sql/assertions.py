"""The `jti` of each `private_key_jwt` client assertion accepted (RFC 7523 §3), so that none is
accepted twice; purged past the assertion's `exp` (`baton.store.sql.purge`).

`ClientAssertionStore` is a mixin of `SQLStore`: each method is one unit of work through the
store's runner.
"""

from __future__ import annotations


class ClientAssertionStore:
    """Seen client assertions."""
