"""`requests.auth.AuthBase` for users of requests: the same behaviour as `BearerAuth`."""

from __future__ import annotations

from typing import Any

import requests
import requests.auth

from baton.client.auth import Superseded, is_invalid_token
from baton.client.refresher import Refresher, superseded
from baton.client.superseded import HEADER, SupersededWatch
from baton.client.tokens import TokenPair

_RETRIED = "_baton_retried"
_PAIR = "_baton_pair"


class RequestsAuth(requests.auth.AuthBase):
    """`requests.get(url, auth=RequestsAuth(refresher))`: attaches the stored access token,
    refreshes `margin` seconds ahead of expiry, and on a 401 with `error="invalid_token"`
    refreshes and resends the request once; an answer with `Baton-Token-Superseded` goes to
    `on_superseded` (once per token)."""

    def __init__(self, refresher: Refresher, margin: float = 30.0) -> None:
        self.refresher = refresher
        self.margin = margin
        self._watch = SupersededWatch()

    def on_superseded(self, callback: Superseded) -> Superseded:
        """Registers `callback` as the refresher's `Hooks.on_superseded` (see `BearerAuth`)."""
        self.refresher.hooks.on_superseded = callback
        return callback

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        pair = self.refresher.pair()
        if pair.exchanging_since is not None or pair.expires_within(
            self.margin, self.refresher.clock()
        ):
            pair = self.refresher.refresh(pair, self.margin)
        _attach(request, pair)
        setattr(request, _PAIR, pair)
        request.register_hook("response", self._on_response)
        return request

    def _on_response(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        request = response.request
        used: TokenPair | None = getattr(request, _PAIR, None)
        if used is not None and HEADER in response.headers:
            values = [response.headers[HEADER]]  # requests joins repeated lines with commas
            event = self._watch.event(values, used, self.refresher.store.load)
            superseded(self.refresher.hooks, event)
        if getattr(request, _RETRIED, False) or not is_invalid_token(
            response.status_code, [response.headers.get("WWW-Authenticate", "")]
        ):
            return response
        pair = self.refresher.refresh(
            used, self.margin
        )  # returns the stored pair if another caller rotated
        response.content  # noqa: B018 (drain, so the connection can be reused)
        response.close()
        retry = request.copy()
        _attach(retry, pair)
        setattr(retry, _RETRIED, True)
        setattr(retry, _PAIR, pair)
        connection = response.connection
        if connection is None:
            return response
        again: requests.Response = connection.send(retry, **kwargs)
        again.history.append(response)
        again.request = retry
        return again


def _attach(request: requests.PreparedRequest, pair: TokenPair) -> None:
    request.headers["Authorization"] = f"Bearer {pair.access_token}"
