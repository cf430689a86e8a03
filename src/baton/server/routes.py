"""Every route of the server, declared once: path, methods, handler, kind, the RFC 8414 member
that advertises it, and its OpenAPI operation (`baton.server.routing` says what derives from
this table: the app's routes, the fast path's, the session-free paths, the metadata's URLs and
the OpenAPI document's paths).

The two documents that describe the table (the metadata and the OpenAPI document) are served
from here, next to it, and the table of endpoints of docs/endpoints.md is written from here
(`python -m baton.server.routes readme`; `tests/server/test_routes.py` fails when it is
stale). /metrics is declared by the observability room, which serves it only when it is configured
(`baton.server.observability.install`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from baton.readme import Section
from baton.server.admin import api, api_clients, api_records, console_entry
from baton.server.endpoints import (
    account,
    authorize,
    client_policy,
    health,
    login,
    logout,
    mfa,
    openapi,
    registration,
    signout,
    token_use,
    upstream,
    userinfo,
)
from baton.server.endpoints.feed import (
    MAX_STREAMS_PER_CLIENT,
    revocations_page,
    revocations_stream,
)
from baton.server.endpoints.metadata import jwks_endpoint, metadata_document
from baton.server.endpoints.revocation import introspection_endpoint, revocation_endpoint
from baton.server.endpoints.token import token_endpoint
from baton.server.routing import CorsFor, Endpoint, Kind, Table, endpoint
from baton.server.runtime import pages
from baton.server.runtime.context import baton

MACHINE = Kind.MACHINE
PROBE = Kind.PROBE


async def metadata_endpoint(request: Request) -> JSONResponse:
    app = baton(request)
    return JSONResponse(metadata_document(app.settings, TABLE.metadata_paths(), app.oidc))


async def openid_configuration_endpoint(request: Request) -> JSONResponse:
    """OIDC Discovery 1.0 §4: the OpenID Provider configuration, the RFC 8414 document's very
    members (RFC 8414 §2 lets it carry the OpenID ones); 404 while OpenID Connect is off."""
    app = baton(request)
    if not app.oidc:
        raise HTTPException(404)
    return JSONResponse(metadata_document(app.settings, TABLE.metadata_paths(), oidc=True))


async def openapi_endpoint(request: Request) -> JSONResponse:
    return JSONResponse(openapi.openapi_document(baton(request).settings, TABLE))


def _admin_api() -> tuple[Endpoint, ...]:
    """The admin API (`baton.server.admin.api`): login and consent delegation and a subject's
    sessions (issue 25) here; clients and keys (`api_clients`) and users, grants, consent,
    security events and the audit log (`api_records`) declared beside their handlers."""
    admin = api.admin_endpoint
    scope = api.AdminScope
    rows: list[Endpoint] = []
    for kind, read, accept, reject, ops in (
        (
            "login",
            api.get_login_challenge,
            api.accept_login,
            api.reject_login,
            (openapi.LOGIN_CHALLENGE, openapi.LOGIN_ACCEPT, openapi.LOGIN_REJECT),
        ),
        (
            "consent",
            api.get_consent_challenge,
            api.accept_consent,
            api.reject_consent,
            (openapi.CONSENT_CHALLENGE, openapi.CONSENT_ACCEPT, openapi.CONSENT_REJECT),
        ),
    ):
        path = f"/{kind}-challenges/{{challenge}}"
        rows += [
            admin(
                path,
                "GET",
                read,
                scope.CHALLENGES,
                openapi=ops[0],
                summary=f"A {kind} challenge, for the {kind} app",
            ),
            admin(
                path + "/accept",
                "PUT",
                accept,
                scope.CHALLENGES,
                openapi=ops[1],
                summary=f"Accept a {kind} challenge: `redirect_to` back to Baton",
            ),
            admin(
                path + "/reject",
                "PUT",
                reject,
                scope.CHALLENGES,
                openapi=ops[2],
                summary=f"Reject a {kind} challenge: the client gets the OAuth error",
            ),
        ]
    rows += [
        admin(
            "/subjects/{subject}/sessions",
            "DELETE",
            api.delete_sessions,
            scope.SESSIONS,
            openapi=openapi.SUBJECT_SESSIONS,
            summary="Sign a subject out everywhere",
            details="back-channel logouts as /session/end sends them",
        ),
        admin(
            "/subjects/{subject}/consents",
            "DELETE",
            api.delete_consents,
            scope.SESSIONS,
            openapi=openapi.SUBJECT_CONSENTS,
            summary="Forget a subject's consent and revoke its grants",
            details="`?client_id=` for one client; the next authorization asks again",
        ),
    ]
    return (*rows, *api_clients.ENDPOINTS, *api_records.ENDPOINTS)


TABLE = Table(
    endpoints=(
        # The machine endpoints take nearly all the traffic: their POSTs take the short way past
        # the session middleware and the router (baton.server.fastpath.machine); the router still
        # has them, for the 405 of another method and for the routes' list.
        endpoint(
            "/token",
            "POST",
            token_endpoint,
            MACHINE,
            metadata="token_endpoint",
            cors=True,
            openapi=openapi.token,
            summary="RFC 6749 §3.2 token endpoint",
            details=(
                "`authorization_code`, `refresh_token`, `client_credentials`; "
                "`client_secret_basic`, `client_secret_post`, `private_key_jwt`, `none` (public "
                "clients)"
            ),
        ),
        # Not `cors`: introspection is for resource servers (confidential clients, RFC 7662 §2.1),
        # servers that no browser stands in for.
        endpoint(
            "/introspect",
            "POST",
            introspection_endpoint,
            MACHINE,
            metadata="introspection_endpoint",
            openapi=openapi.INTROSPECT,
            summary="RFC 7662 token introspection (confidential clients)",
            details=(
                "shows `jti`, `grant_id`, `generation`, and `revocation_at` for a token already "
                "scheduled to die"
            ),
        ),
        endpoint(
            "/revoke",
            "POST",
            revocation_endpoint,
            MACHINE,
            metadata="revocation_endpoint",
            cors=True,
            openapi=openapi.REVOKE,
            summary="RFC 7009 token revocation",
            details="a refresh token revokes its grant, an access token only itself",
        ),
        # Issue 28: resource servers report access tokens used after their companion was
        # exchanged (`baton.resource`); a client's app reads its policy and scheduled change.
        endpoint(
            token_use.PATH,
            "POST",
            token_use.token_use_endpoint,
            MACHINE,
            openapi=openapi.TOKEN_USE,
            summary="Resource servers report stale access-token uses (issue 28)",
            details=(
                "JSON batches of token digests (SHA-256) and instants, never a token; resource "
                "servers only"
            ),
        ),
        endpoint(
            client_policy.PATH,
            "GET",
            client_policy.client_policy_endpoint,
            MACHINE,
            metadata="client_policy_endpoint",
            cors=True,
            openapi=openapi.CLIENT_POLICY,
            summary="A client's policy in force and its scheduled change (issue 28)",
            details="`?client_id=`; what changes, when, and whether it is report-only",
        ),
        # RFC 7591 and RFC 7592: 404 while `--registration` is off (and not advertised then).
        # For any origin: a browser MCP client (MCP Inspector) registers before any client
        # holds its origin (`baton.server.runtime.cors`).
        endpoint(
            registration.PATH,
            "POST",
            registration.register,
            MACHINE,
            metadata="registration_endpoint",
            cors=CorsFor.ANYONE,
            openapi=openapi.REGISTER,
            summary="RFC 7591 dynamic client registration",
            details=(
                "`--registration open` or `token` (an initial access token); metadata checked "
                "as RFC 7591 §2 and OpenID Connect Registration §2 say, scope narrowed to "
                "`--dynamic-client-scopes`; rate-limited per address; unused registrations "
                "expire"
            ),
        ),
        endpoint(
            registration.PATH + "/{client_id}",
            "GET",
            registration.read,
            MACHINE,
            openapi=openapi.REGISTRATION_READ,
            summary="RFC 7592 read of a dynamic registration",
            details="the registration access token as a bearer token",
        ),
        endpoint(
            registration.PATH + "/{client_id}",
            "PUT",
            registration.update,
            MACHINE,
            openapi=openapi.REGISTRATION_UPDATE,
            summary="RFC 7592 update: the metadata replaced",
        ),
        endpoint(
            registration.PATH + "/{client_id}",
            "DELETE",
            registration.delete,
            MACHINE,
            openapi=openapi.REGISTRATION_DELETE,
            summary="RFC 7592 deletion: the client's grants revoked, its id never reused",
        ),
        endpoint(
            "/", "GET", login.home, openapi=openapi.HOME, summary="Home page (signed in or not)"
        ),
        endpoint(
            "/.well-known/oauth-authorization-server",
            "GET",
            metadata_endpoint,
            openapi=openapi.METADATA,
            cors=CorsFor.ANYONE,
            summary="RFC 8414 authorization server metadata",
            details=(
                "carries `refresh_token_rotation` (policy and leeway), and the OpenID Provider "
                "members while OpenID Connect is on"
            ),
        ),
        endpoint(
            "/.well-known/openid-configuration",
            "GET",
            openid_configuration_endpoint,
            openapi=openapi.OPENID_CONFIGURATION,
            cors=CorsFor.ANYONE,
            summary="OpenID Connect Discovery 1.0 provider configuration",
            details=(
                "the RFC 8414 document's members, OpenID ones included; 404 while OpenID "
                "Connect is off"
            ),
        ),
        endpoint(
            "/userinfo",
            "GET",
            userinfo.userinfo_endpoint,
            MACHINE,
            metadata="userinfo_endpoint",
            cors=True,
            openapi=openapi.USERINFO,
            summary="OpenID Connect UserInfo (Core §5.3)",
            details=(
                "`Authorization: Bearer` with an access token granted `openid`; `sub` and the "
                "claims its scope and `claims` request release; RFC 6750 errors; 404 while "
                "OpenID Connect is off"
            ),
        ),
        endpoint(
            "/userinfo",
            "POST",
            userinfo.userinfo_endpoint,
            MACHINE,
            cors=True,
            openapi=openapi.USERINFO_POST,
            summary="OpenID Connect UserInfo, the token in the header or the form body",
            details="`access_token` in the body (RFC 6750 §2.2), never in the query",
        ),
        endpoint(
            "/jwks.json",
            "GET",
            jwks_endpoint,
            metadata="jwks_uri",
            cors=CorsFor.ANYONE,
            openapi=openapi.JWKS,
            summary="RFC 7517 key set of the JWT signing keys",
            details="the next key is published before it signs",
        ),
        endpoint(
            "/openapi.json",
            "GET",
            openapi_endpoint,
            openapi=openapi.OPENAPI,
            summary="OpenAPI 3.1 description of every endpoint",
            details="what `make fuzz` drives",
        ),
        endpoint(
            "/healthz",
            "GET",
            health.healthz,
            PROBE,
            openapi=openapi.HEALTHZ,
            summary="Liveness: the process is up (never asks the database)",
            details="no session, rate limit or access-log line",
        ),
        endpoint(
            "/readyz",
            "GET",
            health.readyz,
            PROBE,
            openapi=openapi.READYZ,
            summary="Readiness: database reachable, migrations current, a signing key loaded",
            details="503 names each failed check; no session, rate limit or access-log line",
        ),
        endpoint(
            "/authorize",
            "GET",
            authorize.authorize_get,
            metadata="authorization_endpoint",
            openapi=openapi.AUTHORIZE,
            summary="RFC 6749 §4.1.1 authorization request (code flow, PKCE S256)",
            details=(
                "PKCE required unless a confidential client was registered `--pkce-optional` "
                "(RFC 7636), exact redirect URI match (but any port of an http loopback IP "
                "literal, RFC 8252 §7.3), RFC 8707 `resource` (repeatable), `iss` "
                "in the response (RFC 9207); the login and consent pages on the way; "
                "rate-limited per address"
            ),
        ),
        endpoint(
            "/authorize",
            "POST",
            authorize.authorize_post,
            openapi=openapi.CONSENT,
            summary="The consent form's Allow or Deny",
        ),
        endpoint(
            "/authorize/continue",
            "GET",
            authorize.continue_get,
            openapi=openapi.AUTHORIZE_CONTINUE,
            summary="Back from a login or consent app with its one-time verifier",
            details=(
                "honoured once, in the browser that started the challenge (`baton_flow` "
                "cookie), before it expires; then on to consent and the code"
            ),
        ),
        # The admin API (`baton.server.admin.api`): machine endpoints, bearer tokens of a
        # confidential client's client_credentials grant with an admin scope; never a cookie.
        *_admin_api(),
        endpoint(
            "/login",
            "GET",
            login.login_get,
            openapi=openapi.LOGIN_PAGE,
            summary="The sign-in form",
        ),
        endpoint(
            "/login",
            "POST",
            login.login_post,
            openapi=openapi.LOGIN,
            summary="Sign in (a fresh session: no fixation)",
            details=(
                "a CSRF-protected form; a signed `HttpOnly` `SameSite=Lax` cookie carries a "
                "server-side session's id"
            ),
        ),
        endpoint(
            mfa.SECOND_STEP,
            "GET",
            mfa.code_get,
            openapi=mfa.CODE_PAGE,
            summary="Sign-in's second step: the TOTP or recovery code form",
        ),
        endpoint(
            mfa.SECOND_STEP,
            "POST",
            mfa.code_post,
            openapi=mfa.CODE,
            summary="A TOTP code (RFC 6238) or a recovery code after the password",
            details=(
                "needs this browser's pending sign-in (a right password, minutes ago); throttled "
                "like passwords; a code is never accepted twice"
            ),
        ),
        endpoint(
            mfa.ENROL,
            "GET",
            mfa.enrol_get,
            openapi=mfa.ENROL_PAGE,
            summary="Enrolment in TOTP of a user who must have a second factor",
        ),
        endpoint(
            mfa.ENROL,
            "POST",
            mfa.enrol_post,
            openapi=mfa.ENROL_FORM,
            summary="Confirm the new TOTP secret with a code; shows the recovery codes once",
        ),
        endpoint(
            account.PAGE,
            "GET",
            account.security_get,
            openapi=account.SECURITY_PAGE,
            summary="The signed-in user's two-step verification: on or off, codes left",
            details="signed-in users only (else to `/login`)",
        ),
        endpoint(
            account.TURN_ON,
            "GET",
            account.turn_on_get,
            openapi=account.TURN_ON_PAGE,
            summary="Turning on two-step verification: a new TOTP secret and the form",
        ),
        endpoint(
            account.TURN_ON,
            "POST",
            account.turn_on_post,
            openapi=account.TURN_ON_FORM,
            summary="Turn on TOTP: the password again and a code; shows the recovery codes once",
            details=(
                "every action of the page is a CSRF-protected form that asks for the password "
                "again, throttled like sign-ins; refused to users without a password"
            ),
        ),
        endpoint(
            account.RENEW,
            "POST",
            account.renew_post,
            openapi=account.RENEW_FORM,
            summary="New recovery codes in place of all older ones (password and a TOTP code)",
        ),
        endpoint(
            account.TURN_OFF,
            "POST",
            account.turn_off_post,
            openapi=account.TURN_OFF_FORM,
            summary="Turn off two-step verification (password and a code)",
            details="refused while a second factor is required of the user",
        ),
        endpoint(
            "/login/upstream/{provider_id}",
            "GET",
            upstream.start,
            openapi=upstream.START,
            summary="Sign in with an upstream OpenID provider (`baton upstream add`)",
            details="discovery, `state`, `nonce`, PKCE S256; on to the upstream",
        ),
        endpoint(
            "/login/upstream/{provider_id}/callback",
            "GET",
            upstream.callback,
            openapi=upstream.CALLBACK,
            summary="The upstream's answer: a session for the linked user",
            details=(
                "`state` of this browser (sealed in its cookie; the upstream's code is single "
                "use), RFC 9207 `iss`, the ID token's signature, "
                "`iss`, `aud`, `nonce`, `exp`; linked by the upstream `sub`"
            ),
        ),
        endpoint(
            "/logout",
            "GET",
            login.logout_get,
            openapi=openapi.LOGOUT_PAGE,
            summary="The sign-out form",
        ),
        endpoint(
            "/logout",
            "POST",
            login.logout_post,
            openapi=openapi.LOGOUT,
            summary="End the browser session (grants stay: revoke them with /revoke)",
            details="a CSRF-protected form; every copy of the session's cookie is signed out",
        ),
        endpoint(
            "/logout/everywhere",
            "POST",
            signout.logout_everywhere,
            openapi=signout.EVERYWHERE,
            summary="Sign out everywhere: end every session of the signed-in user",
            details=(
                "a CSRF-protected form; with the grants those sessions gave without "
                "`offline_access`, and a back-channel logout to each relying party"
            ),
        ),
        endpoint(
            "/session/end",
            "GET",
            logout.end_session_get,
            metadata="end_session_endpoint",
            openapi=logout.END_SESSION,
            summary="OpenID Connect RP-Initiated Logout 1.0",
            details=(
                "`id_token_hint`, `client_id`, `post_logout_redirect_uri` (exactly a registered "
                "one, else a page), `state`; asks the user unless the hint is of this session; "
                "ends the session, its grants without `offline_access`, and tells the relying "
                "parties by Back-Channel Logout 1.0"
            ),
        ),
        endpoint(
            "/session/end",
            "POST",
            logout.end_session_post,
            openapi=logout.END_SESSION_FORM,
            summary="RP-Initiated Logout by POST, and the sign-out confirmation's answer",
            details="the confirmation is a CSRF-protected form (`decision`: `yes` or `no`)",
        ),
        endpoint(
            "/revocations",
            "GET",
            revocations_page,
            MACHINE,
            openapi=openapi.REVOCATIONS,
            summary="The revocation feed as a page, for resource servers",
            details='Basic auth; `?since=W` answers `{"events": [...], "watermark": W}`',
        ),
        endpoint(
            "/revocations/stream",
            "GET",
            revocations_stream,
            MACHINE,
            openapi=openapi.REVOCATION_STREAM,
            summary="The revocation feed as Server-Sent Events",
            details=(
                "resumable with `Last-Event-ID`; ends within a second once its client is "
                "disabled, demoted or given a new secret; at most "
                f"{MAX_STREAMS_PER_CLIENT} open per resource server per server process (the "
                "next: 429 with `Retry-After`)"
            ),
        ),
        endpoint(
            "/static/{name}",
            "GET",
            pages.static,
            openapi=openapi.STYLESHEET,
            summary="The pages' stylesheet and files (a theme's first)",
        ),
    ),
    admin=console_entry.ROUTES,
)

# -- the table of endpoints of docs/endpoints.md -------------------------------------------------

README_START = "<!-- endpoints:start (generated by `python -m baton.server.routes readme`) -->"
README_END = "<!-- endpoints:end -->"


README_SECTION = Section(
    "baton.server.routes",
    "endpoints table",
    README_START,
    README_END,
    TABLE.readme_table,
    "docs/endpoints.md",
)


def with_readme_table(readme: str) -> str:
    """A page (docs/endpoints.md) with its table of endpoints (between the markers) regenerated."""
    return README_SECTION.within(readme)


def main(argv: Sequence[str]) -> int:
    """`python -m baton.server.routes readme [--check] [docs/endpoints.md]` rewrites (or
    checks) the table of endpoints; `python -m baton.server.routes table` prints it."""
    return README_SECTION.command(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
