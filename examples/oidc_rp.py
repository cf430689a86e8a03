"""A relying party for Baton with Authlib (docs/openid-connect.md): discovery, the
code flow with PKCE and a nonce, the ID token validated, UserInfo, and a refresh.

Needs `pip install authlib requests` (Authlib brings joserfc).

BATON_ISSUER=http://127.0.0.1:8000 RP_CLIENT_ID=... RP_CLIENT_SECRET=... python examples/oidc_rp.py
"""

from __future__ import annotations

import os
import secrets
from typing import Any

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.jwk import KeySet

SCOPE = "openid profile email offline_access"  # offline_access: a refresh token (Core §11)


class RelyingParty:
    def __init__(self, issuer: str, client_id: str, client_secret: str, redirect_uri: str):
        discovery = f"{issuer}/.well-known/openid-configuration"
        self.config = requests.get(discovery, timeout=10).json()
        if self.config["issuer"] != issuer:  # Discovery §4.3: it must be the one asked
            raise ValueError(f"{discovery} names another issuer: {self.config['issuer']}")
        self.client_id = client_id
        self.session = OAuth2Session(
            client_id,
            client_secret,
            scope=SCOPE,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
        )

    def authorization_url(self) -> str:
        """Where to send the browser; remembers the PKCE verifier, the state and the nonce."""
        self.verifier = secrets.token_urlsafe(48)
        self.nonce = secrets.token_urlsafe(16)
        url, self.state = self.session.create_authorization_url(
            self.config["authorization_endpoint"], code_verifier=self.verifier, nonce=self.nonce
        )
        return str(url)

    def finish(self, callback_url: str) -> dict[str, Any]:
        """The redirect back (`...?code=...&state=...&iss=...`): the code redeemed, and the
        ID token's claims once it is validated."""
        token = self.session.fetch_token(
            self.config["token_endpoint"],
            authorization_response=callback_url,
            code_verifier=self.verifier,
            state=self.state,
        )
        self.signed_in = self.validated(token, nonce=self.nonce)
        return self.signed_in

    def validated(self, token: dict[str, Any], nonce: str | None = None) -> dict[str, Any]:
        """The ID token's claims: signed by a key of the issuer's JWKS with an advertised
        algorithm, and `iss`, `aud`, `exp`, `nonce` and `at_hash` checked (Core §3.1.3.7)."""
        id_token = token["id_token"]
        keys = KeySet.import_key_set(requests.get(self.config["jwks_uri"], timeout=10).json())
        algorithms = self.config["id_token_signing_alg_values_supported"]
        decoded = jwt.decode(id_token, keys, algorithms=algorithms)
        options = {
            "iss": {"essential": True, "value": self.config["issuer"]},
            "aud": {"essential": True, "value": self.client_id},
        }
        params = {
            "nonce": nonce,
            "client_id": self.client_id,
            "access_token": token["access_token"],
        }
        claims = CodeIDToken(decoded.claims, decoded.header, options, params)
        claims.validate(leeway=60)
        return dict(claims)

    def userinfo(self) -> dict[str, Any]:
        """UserInfo (Core §5.3) with the access token; its `sub` must be the ID token's."""
        response = self.session.get(self.config["userinfo_endpoint"], timeout=10)
        response.raise_for_status()
        info: dict[str, Any] = response.json()
        if info["sub"] != self.signed_in["sub"]:  # Core §5.3.2
            raise ValueError("the UserInfo response is about another user")
        return info

    def refresh(self) -> dict[str, Any]:
        """A refresh: a new pair (Baton rotates the refresh token) and a new ID token, of the
        same user and sign-in (Core §12.2), without a nonce."""
        token = self.session.refresh_token(self.config["token_endpoint"])
        claims = self.validated(token)
        for same in ("iss", "sub", "aud", "auth_time"):
            if claims.get(same) != self.signed_in.get(same):
                raise ValueError(f"the refreshed ID token changed {same}")
        return claims


def main() -> None:
    rp = RelyingParty(
        os.environ.get("BATON_ISSUER", "http://127.0.0.1:8000"),
        os.environ["RP_CLIENT_ID"],
        os.environ["RP_CLIENT_SECRET"],
        "http://127.0.0.1:9000/callback",
    )
    print("Open this, sign in and allow:", rp.authorization_url(), sep="\n")
    signed_in = rp.finish(input("Paste the address the browser landed on: "))
    print("signed in:", signed_in["sub"], "at", signed_in["auth_time"])
    print("userinfo:", rp.userinfo())
    print("refreshed:", rp.refresh()["sub"])


if __name__ == "__main__":
    main()
