"""The signed-in user's own two-step verification: `GET /account/security` says whether it is
on and how many recovery codes are left, and offers to turn it on, to make new recovery codes,
or to turn it off.

- Signed-in users only (`request.session["uid"]`, resolved from a session row); anyone else goes
  to `/login?next=/account/security`.
- Every action is a CSRF-checked POST (`browser_form`) that asks for the current password again:
  a session left open on a shared computer is not enough to change the account's second factor.
  The password (and the code) count towards the sign-in's throttles (the per-address bucket and
  the lockouts of `baton.server.runtime.limits`, as `baton.server.endpoints.mfa` counts codes),
  before they are checked; a success resets them as a sign-in does.
- A user without a password of Baton's (`NO_PASSWORD`: signed in through a login app or an
  upstream provider) cannot be asked for one: the page tells them their sign-in is managed
  elsewhere, and refuses its actions (403). Their second factor is the business of whoever signs
  them in (an administrator can still require one, and `baton user mfa-reset` still works).
- Turning on is the sign-in's enrolment (`mfa.enrol_page`; the secret shown is kept sealed
  under the key-encryption key in this browser's session cookie, bound to the user's id, for
  the form that confirms it with the password and a code), then the 10 recovery codes shown
  once. Every showing of the page, and every failed confirmation, offers a new secret: the page
  asks no password, so whoever used an unattended session may have seen one, and it must never
  be the one the owner enrols.
- New recovery codes replace every older one (used or not) and are shown once; they need a
  current TOTP code (not a recovery code: whoever lost the app signs in with one and may then
  turn two-step verification off and on again).
- Turning off needs a current TOTP code or a recovery code, and is refused while a second factor
  is required of the user (`baton user mfa-require`, or `--mfa-for-admins` and an administrator).

Each change is audited by the store (`user.mfa_enrol`, `user.mfa_recovery_renew`,
`user.mfa_turn_off`, the user as the actor). Without a key-encryption key no secret can be kept
and no code checked: the actions answer 503.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from baton.core import totp
from baton.passwords import NO_PASSWORD, verify_password
from baton.server.endpoints import mfa
from baton.server.endpoints.forms import Form, browser_form
from baton.server.endpoints.stores import AccountSecurityStore
from baton.server.runtime.context import baton, source_address
from baton.server.runtime.pages import N_, error_page, page
from baton.server.runtime.sessions import UID, csrf_token, device_knows
from baton.store.base import MfaState, User

PAGE = "/account/security"
TURN_ON = "/account/security/turn-on"
RENEW = "/account/security/recovery-codes"
TURN_OFF = "/account/security/turn-off"
OFFERED = "account_totp"  # the session cookie's key of the secret offered to turn on with

_MANAGED_ELSEWHERE = N_(
    "Your sign-in is managed elsewhere (by a login application or another identity provider), "
    "not with a password of this server: two-step verification cannot be changed here."
)
_NO_KEK = N_(
    "This server cannot keep or check two-step verification secrets now: the operator must set "
    "BATON_KEY_ENCRYPTION_KEY."
)
_WRONG_PASSWORD = N_("Your password is wrong.")
_WRONG_CODE = N_("That code is wrong or was used already.")
_REQUIRED = N_("Two-step verification is required for this account: it cannot be turned off.")


def _store(request: Request) -> AccountSecurityStore:
    return baton(request).store


def _to_login(request: Request) -> Response:
    return RedirectResponse("/login?" + urlencode({"next": PAGE}), status_code=303)


async def _signed_in_user(request: Request) -> User | None:
    """The signed-in user, as they are now; None when nobody (usable) is signed in."""
    user_id = request.session.get(UID)
    if not isinstance(user_id, int):
        return None
    user = await _store(request).get_user_by_id(user_id)
    if user is None or user.disabled_at is not None:
        return None
    return user


def _managed_elsewhere(user: User) -> bool:
    return user.password_hash in ("", NO_PASSWORD)


def _required(request: Request, user: User) -> bool:
    return mfa.mfa_required(user, baton(request).settings.mfa_for_admins)


async def _account_page(
    request: Request,
    user: User,
    error: str | None = None,
    status: int = 200,
    notice: str | None = None,
) -> Response:
    state = await _store(request).mfa_state(user.id)
    enabled = state is not None and state.sealed_secret is not None
    context: dict[str, Any] = {
        "csrf": csrf_token(request.session),
        "username": user.username,
        "enabled": enabled,
        "codes_left": state.recovery_codes_left if state is not None else 0,
        "required": _required(request, user),
        "managed_elsewhere": _managed_elsewhere(user),
        "error": error,
        "notice": notice,
    }
    return page(request, "account_security.html", context, status)


async def security_get(request: Request) -> Response:
    user = await _signed_in_user(request)
    if user is None:
        return _to_login(request)
    return await _account_page(request, user)


async def _password_ok(request: Request, user: User, form: Form) -> Response | bool:
    """The re-authentication of a user with a password: the refusal to answer with
    (throttled), or whether the password is right. The attempt is counted before it is
    checked; a wrong password is recorded as a failure (a lockout, if it now holds, is
    logged)."""
    if (refused := await mfa.throttled(request, user.username)) is not None:
        return refused
    password = form.get("password") or ""
    ok = await anyio.to_thread.run_sync(verify_password, user.password_hash, password)
    if not ok:
        await mfa.failed(request, user.username)
    return ok


async def _succeeded(request: Request, user: User) -> None:
    """Password and code right: the throttles forget the attempts, as after a sign-in."""
    app = baton(request)
    known = device_knows(request, user.username)
    await app.limits.login_succeeded(user.username, source_address(request), known)


async def _code_ok(
    request: Request, user: User, state: MfaState, kek: bytes, typed: str, recovery: bool
) -> bool:
    """Whether `typed` is a current TOTP code of the user's (its step spent), or, when
    `recovery`, one of their unused recovery codes (spent)."""
    store = _store(request)
    now = baton(request).clock.now()
    if totp.looks_like_totp(typed) and state.sealed_secret is not None:
        secret = totp.open_secret(state.sealed_secret, kek, user.id)
        if secret is None:  # another key-encryption key than the secret's: no code is right
            return False
        step = totp.matching_step(secret, typed, now, state.last_step)
        return step is not None and await store.use_totp_step(user.id, step)
    if recovery and totp.looks_like_recovery(typed):
        digest = totp.recovery_digest(typed, kek)
        return await store.use_recovery_code(user.id, digest, now, source_address(request))
    return False


# -- turning on ------------------------------------------------------------------------------------


def _offered(request: Request, user: User, kek: bytes) -> bytes | None:
    """The secret last shown to the user in this browser, kept sealed (bound to the user's id)
    in the session cookie for the form that confirms it; None if there is none."""
    kept = request.session.get(OFFERED)
    return totp.open_secret(kept, kek, user.id) if isinstance(kept, str) else None


def _offer(request: Request, user: User, kek: bytes) -> bytes:
    """A new secret to show, in place of any shown before. Every showing makes a new one, so a
    secret seen by whoever used an unattended session (a GET asks no password) is never the
    one the owner later enrols: the owner's own page, or a failed confirmation, offers another."""
    secret = totp.new_secret()
    request.session[OFFERED] = totp.seal_secret(secret, kek, user.id)
    return secret


async def _turning_on(request: Request) -> tuple[User, bytes] | Response:
    """The signed-in user who may turn two-step verification on, with the key-encryption key;
    or the answer: to the login page, refused (managed elsewhere, no key), or back to the page
    (it is on already)."""
    user = await _signed_in_user(request)
    if user is None:
        return _to_login(request)
    if _managed_elsewhere(user):
        return error_page(request, _MANAGED_ELSEWHERE, 403)
    if user.totp_enabled:
        return RedirectResponse(PAGE, status_code=303)
    kek = mfa.kek_of(request)
    if kek is None:
        return error_page(request, _NO_KEK, 503)
    return user, kek


async def turn_on_get(request: Request) -> Response:
    turning = await _turning_on(request)
    if isinstance(turning, Response):
        return turning
    user, kek = turning
    return mfa.enrol_page(request, user, _offer(request, user, kek), action=TURN_ON)


async def turn_on_post(request: Request) -> Response:
    form = await browser_form(request)
    if isinstance(form, Response):
        return form
    turning = await _turning_on(request)
    if isinstance(turning, Response):
        return turning
    user, kek = turning
    checked = await _password_ok(request, user, form)
    if isinstance(checked, Response):
        return checked
    secret = _offered(request, user, kek)
    if not checked:
        fresh = _offer(request, user, kek)
        return mfa.enrol_page(request, user, fresh, _WRONG_PASSWORD, 401, TURN_ON)
    now = baton(request).clock.now()
    step = None if secret is None else totp.matching_step(secret, form.get("code") or "", now, None)
    if secret is None or step is None:
        await mfa.failed(request, user.username)
        message = N_("That code is not the app's current one. Check the app's clock and try again.")
        # A new secret: a failed confirmation never leaves one that another may have seen.
        fresh = _offer(request, user, kek)
        return mfa.enrol_page(request, user, fresh, message, 401, TURN_ON)
    codes = totp.new_recovery_codes()
    enrolled = await _store(request).enrol_totp(
        user.id,
        totp.seal_secret(secret, kek, user.id),
        step,
        totp.recovery_digests(codes, kek),
        now,
        source_address(request),
    )
    request.session.pop(OFFERED, None)
    if not enrolled:  # enrolled meanwhile (another browser), or disabled
        return RedirectResponse(PAGE, status_code=303)
    await _succeeded(request, user)
    return page(request, "mfa_recovery.html", {"codes": codes, "next": PAGE})


# -- new recovery codes, turning off --------------------------------------------------------------


async def _confirmed(
    request: Request, form: Form, user: User, recovery: bool
) -> tuple[MfaState, bytes] | Response:
    """The password and a code of the enrolled user checked (and counted); the user's state and
    the key-encryption key, or the answer when they are not right."""
    if _managed_elsewhere(user):
        return error_page(request, _MANAGED_ELSEWHERE, 403)
    if not user.totp_enabled:
        return RedirectResponse(PAGE, status_code=303)
    kek = mfa.kek_of(request)
    if kek is None:
        return error_page(request, _NO_KEK, 503)
    checked = await _password_ok(request, user, form)
    if isinstance(checked, Response):
        return checked
    if not checked:
        return await _account_page(request, user, _WRONG_PASSWORD, 401)
    state = await _store(request).mfa_state(user.id)
    if state is None or state.sealed_secret is None:  # turned off meanwhile
        return RedirectResponse(PAGE, status_code=303)
    if not await _code_ok(request, user, state, kek, form.get("code") or "", recovery):
        await mfa.failed(request, user.username)
        return await _account_page(request, user, _WRONG_CODE, 401)
    await _succeeded(request, user)
    return state, kek


async def renew_post(request: Request) -> Response:
    form = await browser_form(request)
    if isinstance(form, Response):
        return form
    user = await _signed_in_user(request)
    if user is None:
        return _to_login(request)
    confirmed = await _confirmed(request, form, user, recovery=False)
    if isinstance(confirmed, Response):
        return confirmed
    _state, kek = confirmed
    codes = totp.new_recovery_codes()
    now = baton(request).clock.now()
    digests = totp.recovery_digests(codes, kek)
    if not await _store(request).renew_recovery_codes(
        user.id, digests, now, source_address(request)
    ):
        return RedirectResponse(PAGE, status_code=303)  # turned off meanwhile
    return page(request, "mfa_recovery.html", {"codes": codes, "next": PAGE})


async def turn_off_post(request: Request) -> Response:
    form = await browser_form(request)
    if isinstance(form, Response):
        return form
    user = await _signed_in_user(request)
    if user is None:
        return _to_login(request)
    if _managed_elsewhere(user):
        return error_page(request, _MANAGED_ELSEWHERE, 403)
    if user.totp_enabled and _required(request, user):
        return await _account_page(request, user, _REQUIRED, 403)
    confirmed = await _confirmed(request, form, user, recovery=True)
    if isinstance(confirmed, Response):
        return confirmed
    now = baton(request).clock.now()
    if not await _store(request).turn_off_totp(user.id, now, source_address(request)):
        # Required of the user since the check above (or turned off meanwhile).
        return await _account_page(request, user, _REQUIRED, 403)
    notice = N_("Two-step verification is off.")
    return await _account_page(request, user, notice=notice)


# -- OpenAPI operations of `baton.server.routes` (their summaries are the routes') ----------------

_PAGE = {"content": {"text/html": {"schema": {"type": "string"}}}}
_LOCATION = {"Location": {"$ref": "#/components/headers/Location"}}
_CSRF = {"type": "string", "description": "The page's CSRF token."}
_PASSWORD = {"type": "string", "description": "The user's current password (re-authentication)."}


def _form(code: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["csrf", "password", "code"],
                    "properties": {
                        "csrf": _CSRF,
                        "password": _PASSWORD,
                        "code": {"type": "string", "description": code},
                    },
                }
            }
        },
    }


_ELSEWHERE = "Not signed in (to `/login`), or nothing to do (back to the page)."
_POSTED: dict[str, Any] = {
    "303": {"description": _ELSEWHERE, "headers": _LOCATION},
    "400": {"description": "The form cannot be read (a repeated parameter...).", **_PAGE},
    "401": {"description": "Wrong password or code: the page again, saying which.", **_PAGE},
    "403": {
        "description": "The form expired (CSRF), or the user's sign-in is managed elsewhere "
        "(no password).",
        **_PAGE,
    },
    "413": {"description": "The form exceeds the body size limit.", **_PAGE},
    "415": {"description": "The form is not `application/x-www-form-urlencoded`.", **_PAGE},
    "429": {"description": "Too many attempts: the error page, with Retry-After.", **_PAGE},
    "503": {"description": "No key-encryption key: no secret or code can be used.", **_PAGE},
}
SECURITY_PAGE: dict[str, Any] = {
    "operationId": "accountSecurityPage",
    "responses": {
        "200": {"description": "Whether two-step verification is on, and the actions.", **_PAGE},
        "303": {"description": "Not signed in: to `/login`.", "headers": _LOCATION},
    },
}
TURN_ON_PAGE: dict[str, Any] = {
    "operationId": "accountTurnOnPage",
    "responses": {
        "200": {"description": "A new secret, its otpauth URI, and the form.", **_PAGE},
        "303": {"description": _ELSEWHERE, "headers": _LOCATION},
        "403": {"description": "The user's sign-in is managed elsewhere.", **_PAGE},
        "503": {"description": "No key-encryption key: no secret can be kept.", **_PAGE},
    },
}
TURN_ON_FORM: dict[str, Any] = {
    "operationId": "accountTurnOn",
    "requestBody": _form("A 6-digit code of the new secret."),
    "responses": {
        "200": {"description": "Turned on: the recovery codes, once.", **_PAGE},
        **_POSTED,
    },
}
RENEW_FORM: dict[str, Any] = {
    "operationId": "accountRecoveryCodes",
    "requestBody": _form("A current 6-digit TOTP code."),
    "responses": {
        "200": {"description": "The new recovery codes, once (the old ones are void).", **_PAGE},
        **_POSTED,
    },
}
TURN_OFF_FORM: dict[str, Any] = {
    "operationId": "accountTurnOff",
    "requestBody": _form("A current 6-digit TOTP code, or a recovery code."),
    "responses": {
        "200": {"description": "Turned off: the page again.", **_PAGE},
        **_POSTED,
        "403": {
            "description": "The form expired (CSRF), the user's sign-in is managed elsewhere, "
            "or two-step verification is required of the user.",
            **_PAGE,
        },
    },
}
