"""The admin API's clients and signing keys (issue 27): what `baton client ...` and `baton keys
...` do, over HTTP, for a platform's own tooling.

Each route is declared once in `ENDPOINTS` with the scope it needs (`api.admin_endpoint`);
`baton.server.routes` includes them in the table.
"""

from __future__ import annotations

from baton.server.routing import Endpoint

ENDPOINTS: tuple[Endpoint, ...] = ()
