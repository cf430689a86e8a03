"""Protecting a FastAPI app in ten lines (docs/middleware.md, "FastAPI in ten lines").

Needs `pip install baton-oauth fastapi uvicorn`.

BATON_ISSUER=... BATON_RS_ID=... BATON_RS_SECRET=... BATON_AUDIENCE=https://notes.example \
    uvicorn examples.fastapi_app:app
"""

from typing import Annotated

from fastapi import Depends, FastAPI

from baton.resource import BatonMiddleware, Principal, Verifier, require

verifier = Verifier.from_env()  # BATON_ISSUER, BATON_RS_ID, BATON_RS_SECRET, BATON_AUDIENCE
app = FastAPI()
app.add_middleware(BatonMiddleware, verifier=verifier)


@app.get("/notes")
def read_notes(who: Annotated[Principal, Depends(require("read"))]) -> dict[str, str | None]:
    return {"owner": who.subject}
