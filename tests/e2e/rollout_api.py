"""The API of the rollout rehearsal (tests/e2e/test_policy_rollout.py): one route behind
`baton.resource`, checking Baton's JWT access tokens locally, learning deaths from the revocation
feed and reporting superseded tokens' uses to Baton's /token-use. Its clock is the rehearsal's
(`--clock-offset-file`), so it agrees with the server on every instant.

Run: BATON_ISSUER=... BATON_RS_ID=... BATON_RS_SECRET=... BATON_CLOCK_FILE=...
uvicorn tests.e2e.rollout_api:app
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from baton.resource import BatonMiddleware, Verifier
from baton.server.runtime.rehearsal import OffsetFileClock

clock = OffsetFileClock(os.environ["BATON_CLOCK_FILE"])
verifier = Verifier.from_env(
    audience=os.environ["BATON_ISSUER"],  # the tokens are for no resource: the issuer's
    clock=clock.time,
    token_use_interval=0.2,
    leeway=0,
)


async def hello(request: Request) -> JSONResponse:
    principal = request.scope["baton.principal"]
    return JSONResponse({"client_id": principal.client_id})


app = BatonMiddleware(Starlette(routes=[Route("/hello", hello)]), verifier)
