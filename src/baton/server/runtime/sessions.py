"""Browser sessions held server-side, the cookies that carry them, and CSRF tokens for forms.

A signed-in session is a row of `sessions`: the cookie carries a random session id, the row only
its SHA-256 digest (`baton.core.tokens.digest`). So nothing read from the database signs anyone
in, and ending the row (logout, an administrator's "sign out everywhere") ends the session at
once, for every copy of the cookie. The middleware resolves the id on each request and exposes
the signed-in user's id as `request.session["uid"]`, and the session's sign-in (OpenID Connect's
`auth_time`, `sid`, `acr`, `amr`) as `live_session(request)`; neither is ever read from nor
written to the cookie.

The cookie itself (the session id and the form's CSRF token) is signed with the session key,
which comes from `BATON_SESSION_KEY` or a 0600 file and never from the database
(`load_session_key`): a database reader cannot make a cookie the server accepts, not even the
signed-out one whose CSRF token guards the login form.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any, Protocol

from itsdangerous import BadSignature, TimestampSigner
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from baton.core.facts import LiveSession
from baton.core.tokens import digest, random_base62
from baton.core.vocabulary import FeedEntryKind, RevocationCause
from baton.logs import get_logger
from baton.server.observability import metrics
from baton.server.runtime.protection import database_unavailable, is_database_unavailable
from baton.store.base import SignedOut

log = get_logger("baton.sessions")

COOKIE = "baton_session"
MAX_AGE = 8 * 3600  # a sign-in lasts this long (seconds), however active the session
UID = "uid"  # the signed-in user's id, resolved from the session row; never in the cookie
SID = "sid"  # the session id: the cookie's secret, its digest the row's key
_SID_LENGTH = 43  # base-62 characters: 256 bits
# OpenID Connect: the session's public id (`sid` of its ID tokens and logout tokens), unrelated
# to the cookie's secret, and how a password sign-in is told (RFC 8176 §2: `pwd`).
_PUBLIC_SID_LENGTH = 32
PASSWORD_AMR = ("pwd",)
_LIVE = "baton.live_session"  # the request scope's key of the session's `LiveSession`

# A browser that signed in as a user before carries this cookie: it is exempt from the
# per-account throttle (baton.server.runtime.limits), so a distributed guessing attack on an account
# does not lock its owner out of the browsers they use.
DEVICE_COOKIE = "baton_device"
DEVICE_MAX_AGE = 365 * 86400

MIN_KEY_LENGTH = 32
KEY_VARIABLE = "BATON_SESSION_KEY"


class SessionStore(Protocol):
    """What sessions ask of the store (`baton.store.sql.SQLStore`)."""

    async def start_session(
        self,
        digest: bytes,
        user_id: int,
        now: int,
        expires_at: int,
        source_address: str | None,
        sid: str | None = None,
        acr: str | None = None,
        amr: tuple[str, ...] = (),
    ) -> bool:
        """Starts the session, in one transaction with the check that the user is not disabled
        (nor deleted); False, and no session, when they are."""
        ...

    async def live_session(self, digest: bytes, now: int) -> LiveSession | None:
        """A live session (not ended, not expired) with its sign-in, or None."""
        ...

    async def end_session(self, digest: bytes, now: int) -> None: ...

    async def end_op_session(self, digest: bytes, now: int) -> SignedOut:
        """Ends the session as the provider's sign-out does: with its grants without
        `offline_access`, and a back-channel logout for each client with a grant from it."""
        ...

    async def end_user_sessions(self, user_id: int, now: int) -> int:
        """Ends every live session of the user; how many there were."""
        ...


class SessionKeyError(Exception):
    pass


class AccountDisabled(Exception):
    """`begin_session` found the user disabled (or deleted) when it started the session: one
    that passed the sign-in's checks just before a disable committed. No session began; the
    sign-in's page says "This account is disabled."."""


def session_key(secret: str) -> bytes:
    if len(secret) < MIN_KEY_LENGTH:
        raise SessionKeyError(f"the session key must have at least {MIN_KEY_LENGTH} characters")
    return secret.encode("utf-8")


def load_session_key(path: Path) -> tuple[str, bool]:
    """The session key in `path`, generated there (0600, atomically) if the file does not
    exist; and whether it was generated now. Refuses a file others may read."""
    try:
        return _read_key(path), False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(48) + "\n")
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)  # fails if another process made it first: theirs wins
            generated = True
        except FileExistsError:
            generated = False
    finally:
        temporary.unlink(missing_ok=True)
    return _read_key(path), generated


def _read_key(path: Path) -> str:
    with path.open() as file:
        mode = os.fstat(file.fileno()).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SessionKeyError(
                f"the session key file {path} is accessible to other users "
                f"(mode {stat.S_IMODE(mode):04o}): run `chmod 600 {path}`"
            )
        secret = file.read().strip()
    session_key(secret)  # long enough, or refuse
    return secret


def signers(key: bytes) -> tuple[TimestampSigner, TimestampSigner]:
    """The session cookie's signer and the device cookie's."""
    return TimestampSigner(key, salt="baton.session"), TimestampSigner(key, salt="baton.device")


class SessionMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        secure: bool,
        sessionless: frozenset[str],
        sessionless_prefixes: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.secure = secure
        # The machine endpoints' paths (`baton.server.routes`), authenticated on every request:
        # a browser session means nothing there, so they skip the cookie parsing and the
        # response hook (they are the hot paths). The prefixes: machine APIs with path
        # parameters (the admin API), where a cookie must never count either.
        self.sessionless = sessionless
        self.sessionless_prefixes = sessionless_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] in self.sessionless
            or scope["path"].startswith(self.sessionless_prefixes)
        ):
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        signer: TimestampSigner = state.session_signer
        stored = _unsign(signer, HTTPConnection(scope).cookies.get(COOKIE))
        session = dict(stored)
        sid = session.get(SID)
        if sid is not None:
            try:
                live = await session_store(HTTPConnection(scope)).live_session(
                    session_digest(sid), state.baton.clock.now()
                )
            except Exception as exc:
                if not is_database_unavailable(exc):
                    raise
                response = await database_unavailable(Request(scope), exc)
                await response(scope, receive, send)
                return
            if live is None:  # ended or expired: the cookie drops it
                del session[SID]
            else:
                session[UID] = live.user_id
                scope[_LIVE] = live
        scope["session"] = session

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = _kept(scope["session"])
                if kept != stored:
                    headers = MutableHeaders(scope=message)
                    headers.append("Set-Cookie", self._cookie(signer, kept))
            await send(message)

        await self.app(scope, receive, send_wrapper)

    def _cookie(self, signer: TimestampSigner, kept: dict[str, Any]) -> str:
        attrs = "path=/; httponly; samesite=lax" + ("; secure" if self.secure else "")
        if not kept:
            return f"{COOKIE}=; expires=Thu, 01 Jan 1970 00:00:00 GMT; {attrs}"
        value = signer.sign(base64.b64encode(json.dumps(kept).encode())).decode()
        return f"{COOKIE}={value}; max-age={MAX_AGE}; {attrs}"


def _unsign(signer: TimestampSigner, raw: str | None) -> dict[str, Any]:
    """The cookie's content if its signature holds: never `uid`, and `sid` only if it has the
    session id's shape (no database read for junk)."""
    if not raw:
        return {}
    try:
        data = json.loads(base64.b64decode(signer.unsign(raw.encode(), max_age=MAX_AGE)))
    except (BadSignature, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    data.pop(UID, None)
    sid = data.get(SID)
    if sid is not None and not (isinstance(sid, str) and _well_formed(sid)):
        del data[SID]
    return data


def _kept(session: dict[str, Any]) -> dict[str, Any]:
    """What the cookie keeps of a session: all but the user's id, which the row holds."""
    return {name: value for name, value in session.items() if name != UID}


def _well_formed(sid: str) -> bool:
    return len(sid) == _SID_LENGTH and sid.isascii() and sid.isalnum()


def session_digest(sid: str) -> bytes:
    return digest("session:" + sid)


def session_store(request: HTTPConnection) -> SessionStore:
    """The server's store, which keeps the sessions (every SQL store does)."""
    store: SessionStore = request.app.state.baton.store
    return store


async def begin_session(
    request: Request,
    user_id: int,
    now: int,
    address: str | None,
    amr: tuple[str, ...] = PASSWORD_AMR,
    *,
    acr: str | None = None,
    lifetime: int = MAX_AGE,
) -> None:
    """Signs `user_id` in on a fresh session (a new id and CSRF token: no session fixation); a
    session the browser held before ends, for every copy of its cookie. `amr` says how the
    user signed in (RFC 8176): a password by default.

    The same user signing in again (`prompt=login`, `max_age`) re-authenticates the session they
    have: the new one keeps its public `sid` (OIDC's `sid` identifies the user's session at the
    provider, which re-authentication continues; a new `auth_time`), so the grants made before
    stay tied to the session a later sign-out ends. Another user signing in on this browser ends
    the old session as the provider's sign-out does (`end_op_session`): its grants without
    `offline_access` revoked and its relying parties told (Back-Channel Logout 1.0 §2.7).

    A login app's sign-in (`baton.server.endpoints.authorize`) gives its own `acr`, `amr` and
    `lifetime` (at most `MAX_AGE`: the cookie's signature lasts no longer).

    Raises `AccountDisabled` when the user was disabled (or deleted) since the sign-in read
    them: the store checks it in the transaction that would start the session. The browser's
    previous session has ended by then all the same, and it holds no session."""
    public_sid = await _end_previous(request, user_id, now, address)
    sid = random_base62(_SID_LENGTH)
    public_sid = public_sid or random_base62(_PUBLIC_SID_LENGTH)
    live = LiveSession(user_id, now, public_sid, acr, amr)
    expires_at = now + min(lifetime, MAX_AGE)
    started = await session_store(request).start_session(
        session_digest(sid), user_id, now, expires_at, address, live.sid, live.acr, live.amr
    )
    if not started:
        log.info("sign-in of a user disabled meanwhile", user_id=user_id, source_address=address)
        raise AccountDisabled(user_id)
    request.session[SID] = sid
    request.session[UID] = user_id
    request.scope[_LIVE] = live


async def _end_previous(
    request: Request, user_id: int, now: int, address: str | None
) -> str | None:
    """Ends the browser's session before a sign-in; its public `sid` if it was `user_id`'s."""
    secret = request.session.get(SID)
    kept: str | None = None
    if isinstance(secret, str):
        store = session_store(request)
        key = session_digest(secret)
        previous = await store.live_session(key, now)
        if previous is None:  # ended or expired since the request began: no grants to end
            await store.end_session(key, now)
        elif previous.user_id == user_id and previous.sid:
            kept = previous.sid  # re-authentication: the session goes on under a new cookie
            await store.end_session(key, now)
        else:  # another user's (or a session from before sids: it has no grants to end)
            done = await store.end_op_session(key, now)
            counted = metrics.of(request)
            for _grant in done.revoked:
                counted.revoked(FeedEntryKind.GRANT, RevocationCause.LOGOUT)
            log.info(
                "signed out by another sign-in",
                revoked_grants=len(done.revoked),
                kept_offline=len(done.kept),
                backchannel_clients=len(done.told),
                source_address=address,
            )
    request.session.clear()
    request.scope.pop(_LIVE, None)
    return kept


def live_session(request: HTTPConnection) -> LiveSession | None:
    """The request's signed-in session and its sign-in, or None when no one is signed in."""
    live = request.scope.get(_LIVE)
    return live if isinstance(live, LiveSession) and UID in request.session else None


def device_knows(request: Request, username: str) -> bool:
    """Whether this browser signed in as `username` before (its device cookie says so)."""
    raw = request.cookies.get(DEVICE_COOKIE)
    if not raw:
        return False
    signer: TimestampSigner = request.app.state.device_signer
    try:
        known = signer.unsign(raw.encode(), max_age=DEVICE_MAX_AGE)
    except BadSignature:
        return False
    return hmac.compare_digest(known, _device_name(username))


def remember_device(request: Request, response: Response, username: str, secure: bool) -> None:
    signer: TimestampSigner = request.app.state.device_signer
    response.set_cookie(
        DEVICE_COOKIE,
        signer.sign(_device_name(username)).decode(),
        max_age=DEVICE_MAX_AGE,
        path="/login",
        secure=secure,
        httponly=True,
        samesite="lax",
    )


def _device_name(username: str) -> bytes:
    # The username's digest, not the name: the cookie need not tell who signed in.
    return base64.urlsafe_b64encode(digest("device:" + username)).rstrip(b"=")


def csrf_token(session: dict[str, Any]) -> str:
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def csrf_ok(session: dict[str, Any], presented: str | None) -> bool:
    expected = session.get("csrf")
    if not isinstance(expected, str) or presented is None:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())
