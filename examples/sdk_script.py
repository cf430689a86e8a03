"""The client of the walkthrough (docs/walkthrough.md) with `baton.client`, as docs/sdk.md shows
it: sign in once in a browser, then every run rotates the pair; a grant that ended (revoked,
replayed, expired) asks for a new sign-in instead of failing. Run it with the client's id and
secret in CLIENT_ID and CLIENT_SECRET while the walkthrough's server runs.
"""

import os

import httpx

from baton.client import (
    FileStore,
    ReauthorizationRequired,
    Refresher,
    authorization_url,
    code_from_callback,
    exchange_code,
    store_pair,
)

ISSUER = "http://127.0.0.1:8000"
REDIRECT_URI = "http://127.0.0.1:9000/callback"  # the walkthrough's, registered with the client
SCOPE = "read write"
CLIENT_ID, CLIENT_SECRET = os.environ["CLIENT_ID"], os.environ["CLIENT_SECRET"]


def sign_in(refresher: Refresher) -> None:
    """The authorization code flow with PKCE: the browser signs in, the code is redeemed, the
    first pair is stored."""
    request = authorization_url(
        f"{ISSUER}/authorize", CLIENT_ID, REDIRECT_URI, SCOPE, issuer=ISSUER
    )
    print("open", request.url, flush=True)
    callback = input("paste the address the browser was sent to (within 60 s): ")
    code = code_from_callback(request, callback)  # checks `state` and `iss`
    store_pair(refresher.store, exchange_code(refresher.client, request, code))


def main() -> None:
    store = FileStore("~/.config/baton-walkthrough/tokens.json")  # 0600, atomic, locked
    refresher = Refresher.discover(ISSUER, CLIENT_ID, CLIENT_SECRET, store)
    if store.load() is None:
        sign_in(refresher)
    try:
        pair = refresher.refresh()  # a rotation: the new pair is stored before it is returned
    except ReauthorizationRequired as ended:  # the grant is over: the user signs in again
        print("signed out:", ended.reason)
        sign_in(refresher)
        pair = refresher.pair()
    # An API would get the token with `httpx.get(URL, auth=BearerAuth(refresher))`, which
    # refreshes ahead of expiry and on a 401; here the server itself says what it holds.
    answer = httpx.post(
        f"{ISSUER}/introspect",
        auth=(CLIENT_ID, CLIENT_SECRET),
        data={"token": pair.access_token},
    ).json()
    print(f"generation {answer['generation']}, active: {answer['active']}")


if __name__ == "__main__":
    main()
