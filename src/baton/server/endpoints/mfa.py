"""The second step of signing in: a TOTP code (RFC 6238, `baton.core.totp`) or a recovery code,
and the enrolment of a user who must have a second factor and has none yet.

After the password checks out (`baton.server.endpoints.login`), a user with a TOTP secret, or
one of whom a second factor is required (`users.mfa_required`, or `--mfa-for-admins` and an
administrator), is not signed in: the browser's signed session cookie gets a *pending* state
(the user's id and name, where to continue, and an expiry `PENDING_TTL` seconds away). It is not
a session: `request.session["uid"]` is only ever set from a session row
(`baton.server.runtime.sessions`), so the pending state opens nothing (no /authorize, no
console); it only lets this browser present a code for this user until it expires.

- /login/mfa takes a 6-digit code (the current time step or one either side, later than the
  last one accepted: a code never works twice) or a recovery code (single use).
- /login/enrol shows a new secret (base32 and an `otpauth://` URI for authenticator apps), kept
  sealed under the key-encryption key in the pending state until a code of it confirms it; then
  the secret (sealed) is stored, 10 recovery codes are shown once (stored as HMACs keyed by
  the key-encryption key, `baton.core.totp.recovery_digest`) and the
  user is signed in. Without a key-encryption key no secret can be stored: the page says so,
  and a user who must enrol cannot sign in (a requirement is never skipped).

The account's security page (`baton.server.endpoints.account`) turns TOTP on with the same
enrolment page (`enrol_page`) and counts its passwords and codes with the same `throttled` and
`failed`.

Every code presented counts towards the same throttles as a password (the per-address bucket,
the per-(account, address) and per-account lockouts of `baton.server.runtime.limits`), counted
before it is checked; a password that was right does not reset them until the second step
succeeds, so guessing codes after the password is throttled like guessing passwords.

The session's `amr` (RFC 8176 §2) after a code or a recovery code is the first factor's plus
"otp" and "mfa": after a password `["mfa", "otp", "pwd"]`, two factors ("mfa"), a one-time
password ("otp") and a password ("pwd"); after an upstream sign-in
(`baton.server.endpoints.upstream`) the upstream's `amr` instead of "pwd". Sorted and without
repeats, as the set it is. The pending state carries the first factor's `amr` for this. The
sign-in that enrols records the first factor's `amr` alone: the code typed then only shows that
the app holds the secret the first factor had just revealed, not a second factor the user
already had.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from baton.core import totp
from baton.core.keys import KeyEncryptionError, key_encryption_key
from baton.server.admin.console_entry import record_lockout
from baton.server.endpoints.errors import OAuthError
from baton.server.endpoints.forms import browser_form
from baton.server.endpoints.stores import MfaStore
from baton.server.runtime.context import baton, source_address
from baton.server.runtime.pages import N_, error_page, page
from baton.server.runtime.sessions import (
    PASSWORD_AMR,
    AccountDisabled,
    begin_session,
    csrf_token,
    device_knows,
    remember_device,
)
from baton.store.base import User

PENDING = "mfa_pending"  # the session cookie's key of the pending sign-in
PENDING_TTL = 300  # seconds from the right password to the second step
SECOND_FACTOR_AMR = ("mfa", "otp")  # RFC 8176 §2, added to the first factor's
SECOND_STEP = "/login/mfa"
ENROL = "/login/enrol"


def _store(request: Request) -> MfaStore:
    return baton(request).store


def mfa_required(user: User, mfa_for_admins: bool) -> bool:
    """Whether the user must sign in with a second factor (and so enrol if they have none)."""
    return user.mfa_required or (mfa_for_admins and user.is_admin)


def second_step(
    request: Request, user: User, next_url: str, amr: tuple[str, ...] = PASSWORD_AMR
) -> Response | None:
    """After a right first factor (a password, or an upstream sign-in whose `amr` is `amr`):
    where a user who needs a second step goes (the pending state set in this browser's session
    cookie), or None when the first factor is enough."""
    app = baton(request)
    if not user.totp_enabled and not mfa_required(user, app.settings.mfa_for_admins):
        return None
    request.session[PENDING] = {
        "uid": user.id,
        "name": user.username,
        "next": next_url,
        "exp": app.clock.now() + PENDING_TTL,
        "amr": list(amr),
    }
    return RedirectResponse(SECOND_STEP if user.totp_enabled else ENROL, status_code=303)


def _pending(request: Request) -> dict[str, Any] | None:
    """This browser's pending sign-in, if it has one that has not expired."""
    found = request.session.get(PENDING)
    if not isinstance(found, dict):
        return None
    uid, name, exp = found.get("uid"), found.get("name"), found.get("exp")
    if not (isinstance(uid, int) and isinstance(name, str) and isinstance(exp, int)):
        return None
    if baton(request).clock.now() >= exp:
        return None
    return found


def _first_factor(pending: dict[str, Any]) -> tuple[str, ...]:
    """The first factor's `amr` the pending state carries (a password's when it has none)."""
    amr = pending.get("amr")
    if not isinstance(amr, list) or not all(isinstance(m, str) for m in amr):
        return PASSWORD_AMR
    return tuple(sorted(set(amr)))


def _with_second_factor(pending: dict[str, Any]) -> tuple[str, ...]:
    return tuple(sorted(set(_first_factor(pending)) | set(SECOND_FACTOR_AMR)))


def _restart(request: Request) -> Response:
    """Back to the password (on to where the sign-in was going): no pending sign-in any more.
    `next` was checked before it was kept in the signed cookie (`login._safe_next`)."""
    kept = request.session.pop(PENDING, None)
    next_url = kept.get("next") if isinstance(kept, dict) else None
    query = "?" + urlencode({"next": next_url}) if isinstance(next_url, str) else ""
    return RedirectResponse("/login" + query, status_code=303)


def kek_of(request: Request) -> bytes | None:
    """The key-encryption key's AES key (`baton.core.keys`); None when none is usable."""
    secret = baton(request).settings.key_encryption_key
    if not secret:
        return None
    try:
        return key_encryption_key(secret)
    except KeyEncryptionError:
        return None


async def _user_for(request: Request, pending: dict[str, Any]) -> User | None:
    """The pending user as they are now: gone or disabled since the password, nobody."""
    user = await _store(request).get_user_by_id(pending["uid"])
    if user is None or user.disabled_at is not None or user.username != pending["name"]:
        return None
    return user


# -- the code of an enrolled user ------------------------------------------------------------------


def _code_page(request: Request, error: str | None = None, status: int = 200) -> Response:
    context = {"csrf": csrf_token(request.session), "error": error}
    return page(request, "mfa_code.html", context, status)


async def code_get(request: Request) -> Response:
    pending = _pending(request)
    if pending is None:
        return _restart(request)
    return _code_page(request)


async def throttled(request: Request, username: str) -> Response | None:
    """Counts this attempt at the sign-in's throttles (`baton.server.runtime.limits`), before
    the code is checked; the page to answer with when they are spent."""
    app = baton(request)
    address = source_address(request)
    try:
        await app.limits.check_address(address, login=True)
    except OAuthError as exc:
        return error_page(
            request, N_("Too many sign-in attempts. Wait a moment."), 429, exc.headers
        )
    known = device_knows(request, username)
    locked_for = await app.limits.login_attempt(username, address, known)
    if locked_for > 0:
        wait = int(locked_for) + 1
        message = N_("Too many failed sign-ins for this account. Try again in %(wait)d s.")
        return error_page(request, message, 429, {"Retry-After": str(wait)}, {"wait": wait})
    return None


async def failed(request: Request, username: str) -> None:
    """A wrong password or code after `throttled` counted it: the lockout, if it now holds,
    goes to the console's log of lockouts."""
    app = baton(request)
    address = source_address(request)
    known = device_knows(request, username)
    if (locked_for := await app.limits.login_locked_for(username, address, known)) > 0:
        await record_lockout(request, username, locked_for)


async def _signed_in(
    request: Request, user: User, next_url: str, amr: tuple[str, ...], response: Response | None
) -> Response:
    """Both steps done: the throttles forget this sign-in's attempts, a session begins (which
    drops the pending state with the rest of the old cookie), and on to `next`."""
    app = baton(request)
    address = source_address(request)
    await app.limits.login_succeeded(user.username, address, device_knows(request, user.username))
    try:
        await begin_session(request, user.id, app.clock.now(), address, amr)
    except AccountDisabled:  # disabled since `_user_for` read them: no session began
        return error_page(request, N_("This account is disabled."), 403)
    response = response or RedirectResponse(next_url, status_code=303)
    remember_device(request, response, user.username, app.settings.secure_cookies)
    return response


async def code_post(request: Request) -> Response:
    form = await browser_form(request)
    if isinstance(form, Response):
        return form
    pending = _pending(request)
    if pending is None:
        return _restart(request)
    if (refused := await throttled(request, pending["name"])) is not None:
        return refused
    user = await _user_for(request, pending)
    if user is None:
        return _restart(request)
    store = _store(request)
    state = await store.mfa_state(user.id)
    if state is None or state.sealed_secret is None:  # reset since the password: start again
        return _restart(request)
    app = baton(request)
    now = app.clock.now()
    typed = form.get("code") or ""
    accepted = False
    if totp.looks_like_totp(typed):
        kek = kek_of(request)
        secret = None if kek is None else totp.open_secret(state.sealed_secret, kek, user.id)
        if secret is None:
            message = N_(
                "This server cannot check codes now (its key-encryption key is missing or "
                "changed). Ask the operator."
            )
            await failed(request, user.username)
            return _code_page(request, message, 503)
        step = totp.matching_step(secret, typed, now, state.last_step)
        accepted = step is not None and await store.use_totp_step(user.id, step)
    elif totp.looks_like_recovery(typed) and (kek := kek_of(request)) is not None:
        # Without the key-encryption key no recovery code can be looked up (they are stored
        # keyed by it, `baton.core.totp.recovery_digest`): refused like a wrong one.
        digest = totp.recovery_digest(typed, kek)
        accepted = await store.use_recovery_code(user.id, digest, now, source_address(request))
    if not accepted:
        await failed(request, user.username)
        return _code_page(request, N_("That code is wrong or was used already."), 401)
    return await _signed_in(request, user, pending["next"], _with_second_factor(pending), None)


# -- enrolment -------------------------------------------------------------------------------------

_NO_KEK = N_(
    "Two-step verification is required for this account, but this server cannot keep its "
    "secret: the operator must set BATON_KEY_ENCRYPTION_KEY. You cannot sign in until then."
)


def enrol_page(
    request: Request,
    user: User,
    secret: bytes,
    error: str | None = None,
    status: int = 200,
    action: str = ENROL,
) -> Response:
    """The new secret and the form that confirms it: at sign-in (`ENROL`), or on the account's
    security page (`baton.server.endpoints.account`, whose form asks for the password too)."""
    issuer = baton(request).settings.issuer
    context = {
        "csrf": csrf_token(request.session),
        "error": error,
        "secret": totp.b32(secret),
        "uri": totp.otpauth_uri(secret, user.username, _issuer_label(issuer)),
        "username": user.username,
        "action": action,
        "voluntary": action != ENROL,
    }
    return page(request, "mfa_enrol.html", context, status)


def _issuer_label(issuer: str) -> str:
    """The issuer as authenticator apps show it: its host (and port)."""
    host = issuer.split("://", 1)[-1].split("/", 1)[0]
    return host or "Baton"


async def _enrolling(
    request: Request, pending: dict[str, Any], kek: bytes
) -> tuple[User, bytes] | Response:
    """The user who must enrol and the secret offered to them (made once per pending sign-in,
    kept sealed in it); or where to go instead."""
    user = await _user_for(request, pending)
    if user is None:
        return _restart(request)
    if user.totp_enabled:  # enrolled meanwhile (another browser): the code step, then
        return RedirectResponse(SECOND_STEP, status_code=303)
    sealed = pending.get("secret")
    secret = totp.open_secret(sealed, kek, user.id) if isinstance(sealed, str) else None
    if secret is None:
        secret = totp.new_secret()
        # A new dict: the session middleware compares the cookie's content with what it was,
        # and a nested dict changed in place would look unchanged (it is shared).
        request.session[PENDING] = {**pending, "secret": totp.seal_secret(secret, kek, user.id)}
    return user, secret


async def enrol_get(request: Request) -> Response:
    pending = _pending(request)
    if pending is None:
        return _restart(request)
    kek = kek_of(request)
    if kek is None:
        return error_page(request, _NO_KEK, 503)
    found = await _enrolling(request, pending, kek)
    if isinstance(found, Response):
        return found
    return enrol_page(request, *found)


async def enrol_post(request: Request) -> Response:
    form = await browser_form(request)
    if isinstance(form, Response):
        return form
    pending = _pending(request)
    if pending is None:
        return _restart(request)
    kek = kek_of(request)
    if kek is None:
        return error_page(request, _NO_KEK, 503)
    if (refused := await throttled(request, pending["name"])) is not None:
        return refused
    found = await _enrolling(request, pending, kek)
    if isinstance(found, Response):
        return found
    user, secret = found
    app = baton(request)
    now = app.clock.now()
    step = totp.matching_step(secret, form.get("code") or "", now, None)
    if step is None:
        await failed(request, user.username)
        message = N_("That code is not the app's current one. Check the app's clock and try again.")
        return enrol_page(request, user, secret, message, 401)
    codes = totp.new_recovery_codes()
    enrolled = await _store(request).enrol_totp(
        user.id,
        totp.seal_secret(secret, kek, user.id),
        step,
        totp.recovery_digests(codes, kek),
        now,
        source_address(request),
    )
    if not enrolled:  # disabled or enrolled meanwhile: sign in again from the start
        return _restart(request)
    next_url = pending["next"]
    shown = page(request, "mfa_recovery.html", {"codes": codes, "next": next_url})
    return await _signed_in(request, user, next_url, _first_factor(pending), shown)


# -- OpenAPI operations of `baton.server.routes` (their summaries are the routes') ----------------

_PAGE = {"content": {"text/html": {"schema": {"type": "string"}}}}
_LOCATION = {"Location": {"$ref": "#/components/headers/Location"}}
_FORM = {
    "required": True,
    "content": {
        "application/x-www-form-urlencoded": {
            "schema": {
                "type": "object",
                "required": ["csrf", "code"],
                "properties": {
                    "csrf": {"type": "string", "description": "The page's CSRF token."},
                    "code": {
                        "type": "string",
                        "description": "A 6-digit TOTP code, or (second step only) a recovery "
                        "code.",
                    },
                },
            }
        }
    },
}
_TO_LOGIN = {
    "description": "No pending sign-in (or it expired): back to `/login`.",
    "headers": _LOCATION,
}
_LIMITED = {"description": "Too many attempts: the error page, with Retry-After.", **_PAGE}
# What `browser_form` refuses before the code is looked at.
_BAD_FORM = {
    "400": {"description": "The form cannot be read (a repeated parameter...).", **_PAGE},
    "413": {"description": "The form exceeds the body size limit.", **_PAGE},
    "415": {"description": "The form is not `application/x-www-form-urlencoded`.", **_PAGE},
}
CODE_PAGE: dict[str, Any] = {
    "operationId": "mfaPage",
    "responses": {"200": {"description": "The form.", **_PAGE}, "303": _TO_LOGIN},
}
CODE: dict[str, Any] = {
    "operationId": "mfa",
    "requestBody": _FORM,
    "responses": {
        "303": {
            "description": "Signed in: on to `next`; or back to `/login`.",
            "headers": _LOCATION,
        },
        **_BAD_FORM,
        "401": {"description": "Wrong or used code: the form again.", **_PAGE},
        "403": {"description": "The form expired (CSRF).", **_PAGE},
        "429": _LIMITED,
        "503": {"description": "Codes cannot be checked (no key-encryption key).", **_PAGE},
    },
}
ENROL_PAGE: dict[str, Any] = {
    "operationId": "mfaEnrolPage",
    "responses": {
        "200": {"description": "The new secret and its otpauth URI, and the form.", **_PAGE},
        "303": _TO_LOGIN,
        "503": {"description": "No key-encryption key: enrolment is impossible.", **_PAGE},
    },
}
ENROL_FORM: dict[str, Any] = {
    "operationId": "mfaEnrol",
    "requestBody": _FORM,
    "responses": {
        "200": {"description": "Enrolled and signed in: the recovery codes, once.", **_PAGE},
        "303": _TO_LOGIN,
        **_BAD_FORM,
        "401": {"description": "Wrong code: the secret and the form again.", **_PAGE},
        "403": {"description": "The form expired (CSRF).", **_PAGE},
        "429": _LIMITED,
        "503": {"description": "No key-encryption key: enrolment is impossible.", **_PAGE},
    },
}
