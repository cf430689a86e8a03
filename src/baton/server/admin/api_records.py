"""The admin API's users, grants, consent, security events and audit log (issue 27): what
`baton user ...`, `baton grants ...` and `baton consent ...` do, and the records a SIEM reads.

Each route is declared once in `ENDPOINTS` with the scope it needs (`api.admin_endpoint`);
`baton.server.routes` includes them in the table.
"""

from __future__ import annotations

from baton.server.routing import Endpoint

ENDPOINTS: tuple[Endpoint, ...] = ()
