"""Health probes for orchestrators and load balancers: `/healthz` and `/readyz`.

`/healthz` says the process is up and its event loop answers: nothing else, so that a database
outage never makes an orchestrator restart healthy processes. `/readyz` says whether this process
should get traffic: the database answers, its schema is the one this code was written for (no
migration pending), and, when access tokens are JWTs, a signing key is loaded for now. Either
answers JSON that no cache keeps; `/readyz` answers 503 naming each failed check.

Both are declared `Kind.PROBE` (`baton.server.routes`): no session, no rate limit and no
access-log line (an orchestrator asks every few seconds), though they are still counted in the
metrics.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse

from baton.server.endpoints.errors import NO_STORE
from baton.server.endpoints.stores import Readiness
from baton.server.runtime.context import baton

log = logging.getLogger("baton")

OK = "ok"


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": OK}, headers=NO_STORE)


async def readyz(request: Request) -> JSONResponse:
    app = baton(request)
    store: Readiness = app.store
    checks: dict[str, str] = {}
    try:
        problem = await store.schema_problem()
    except Exception as exc:  # any failure to reach it: not ready, and say why in the log
        log.warning("readiness: the database did not answer: %s", type(exc).__name__)
        checks["database"] = "unreachable"
    else:
        checks["database"] = OK
        checks["migrations"] = OK if problem is None else problem
    if app.settings.access_token_format == "jwt":
        found = app.keys.key_at(app.clock.now())
        checks["signing_key"] = OK if found is not None else "none loaded"
    ready = all(value == OK for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
        headers=NO_STORE,
    )
