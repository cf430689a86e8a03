"""Clients described by a client ID metadata document: the validated document kept as the
client's row (its URL is the client id), refreshed when its cached copy expires.

`DocumentClientStore` is a mixin of `SQLStore`: each method is one unit of work through the
store's runner.
"""

from __future__ import annotations


class DocumentClientStore:
    """Metadata-document clients."""
