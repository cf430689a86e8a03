"""The outbox's delivery against hostile or broken receivers (issue 28 review): a policy notice
settles its row and never breaks the round it is sent in; a row that fails unexpectedly fails
alone; a receiver that trickles its answer holds a POST no longer than its deadline, and its
body is never read; a notice is never POSTed to an internal address (resolved once, checked,
connected to as checked), and such a `notify_url` is refused when it is set; a server that
cannot sign notices says so at start-up.

Against real servers on loopback (plain HTTP, and HTTPS with a test certificate), so the
deadlines are real seconds, kept short."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest

from baton.core.clock import FakeClock
from baton.server.observability.delivery import PolicyNotices, WebhookOptions, WebhookSender
from baton.server.runtime import fetching
from baton.store.admin import Actor, ContactError, checked_contact
from baton.store.base import NEVER, Delivery
from baton.webhooks import EVENT_TYPE_HEADER
from tests.server.document_host import _certificate
from tests.server.logout_support import wait_for
from tests.support import register_client, running_app
from tests.webhook_receiver import SECRET

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
NOTICE = "policy.scheduled"


class Store:
    """The outbox's rows as delivery sees them, and how each was settled."""

    def __init__(self, rows: list[Delivery]) -> None:
        self.rows = rows
        self.settled: dict[int, tuple[str, int | None]] = {}

    async def deliveries_due(self, now: int, oldest: int, webhooks: bool = True) -> bool:
        return bool(self.rows)

    async def claim_deliveries(
        self, now: int, lease_until: int, oldest: int, limit: int, webhooks: bool = True
    ) -> list[Delivery]:
        rows, self.rows = self.rows, []
        return rows

    async def mark_delivered(self, delivery_id: int, now: int) -> None:
        self.settled[delivery_id] = ("delivered", None)

    async def mark_failed(self, delivery_id: int, next_attempt_at: int, error: str) -> None:
        self.settled[delivery_id] = (error, next_attempt_at)


class Listener:
    """A TCP server on 127.0.0.1 (TLS with `tls`) answering every request with `handler`;
    `requests` holds what each request sent (its head and what body came with it)."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler, self.tls = handler, tls
        self.requests: list[bytes] = []
        self.port = 0

    async def __aenter__(self) -> Listener:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                self.requests.append(await reader.read(65536))
                await self.handler(reader, writer)
                writer.close()
            except (ConnectionError, ssl.SSLError):
                pass

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    def url(self, path: str = "/n", scheme: str = "http", host: str = "127.0.0.1") -> str:
        return f"{scheme}://{host}:{self.port}{path}"


async def answer_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(OK)
    await writer.drain()


async def trickle_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A 200 whose (chunked) body never ends within the test: 64 KiB every 0.1 s."""
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(50):
        writer.write(b"10000\r\n" + b"x" * 0x10000 + b"\r\n")
        await writer.drain()
        await asyncio.sleep(0.1)


async def trickle_head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An answer whose head never ends within the test: a header line every 0.1 s (each read
    answers, so a per-read timeout never fires)."""
    writer.write(b"HTTP/1.1 200 OK\r\n")
    for i in range(50):
        writer.write(f"X-Slow-{i}: 1\r\n".encode())
        await writer.drain()
        await asyncio.sleep(0.1)


def notice_row(row_id: int, destination: str) -> Delivery:
    payload = {"jti": f"pn_{row_id}", "event": NOTICE, "client_id": "cl_x"}
    return Delivery(row_id, NOTICE, json.dumps(payload), 1, 1_000, destination)


def logout_row(row_id: int, destination: str) -> Delivery:
    payload = {"aud": "cl_x", "jti": f"lo_{row_id}", "sub": "u"}
    return Delivery(row_id, "backchannel_logout", json.dumps(payload), 1, 1_000, destination)


def webhook_row(row_id: int) -> Delivery:
    payload = {"id": f"evt_{row_id}", "type": "grant.revoked"}
    return Delivery(row_id, "grant.revoked", json.dumps(payload), 1, 1_000, None)


async def signed(stored: dict[str, Any], now: int) -> str:
    return "header.claims.signature"


def sender(
    store: Store,
    webhook: str | None = None,
    *,
    timeout: float = 2.0,
    allow_private: bool = True,
    notices: PolicyNotices = signed,
    ssl_context: ssl.SSLContext | None = None,
) -> WebhookSender:
    options = WebhookOptions(
        url=webhook,
        secret=SECRET if webhook else None,
        timeout=timeout,
        allow_private=allow_private,
    )
    return WebhookSender(
        options,
        store,
        FakeClock(1_000),
        logout_tokens=signed,
        policy_notices=notices,
        ssl_context=ssl_context,
    )


# -- one row never breaks its round ------------------------------------------------------------


def test_a_notice_and_a_webhook_in_one_round_are_both_delivered() -> None:
    async def scenario() -> Store:
        async with Listener(answer_ok) as notify, Listener(answer_ok) as hook:
            store = Store([notice_row(1, notify.url()), webhook_row(2)])
            # The round returns (it used to raise TypeError from the notice's log line).
            assert await sender(store, hook.url("/hook")).deliver_due() == 2
            assert len(notify.requests) == len(hook.requests) == 1
            return store

    store = asyncio.run(scenario())
    assert store.settled == {1: ("delivered", None), 2: ("delivered", None)}


def test_a_row_that_fails_unexpectedly_fails_alone_and_is_retried() -> None:
    async def broken(stored: dict[str, Any], now: int) -> str:
        raise RuntimeError("a bug in signing")

    async def scenario() -> Store:
        async with Listener(answer_ok) as notify, Listener(answer_ok) as hook:
            store = Store([notice_row(1, notify.url()), webhook_row(2)])
            await sender(store, hook.url("/hook"), notices=broken).deliver_due()
            assert notify.requests == [] and len(hook.requests) == 1
            return store

    store = asyncio.run(scenario())
    error, retry_at = store.settled[1]
    assert error == "internal error (RuntimeError)" and retry_at not in (None, NEVER)
    assert store.settled[2] == ("delivered", None)


# -- a slow receiver holds a POST no longer than its deadline -----------------------------------


def test_a_200_whose_body_trickles_is_delivered_at_once_and_its_body_never_read() -> None:
    async def scenario() -> tuple[Store, float]:
        async with Listener(trickle_body) as notify:
            store = Store([notice_row(1, notify.url())])
            started = time.monotonic()
            await sender(store, timeout=2.0).deliver_due()
            return store, time.monotonic() - started

    store, took = asyncio.run(scenario())
    assert store.settled == {1: ("delivered", None)}
    assert took < 1.5  # the receiver would trickle for 5 s


@pytest.mark.parametrize("kind", ["notice", "backchannel logout", "webhook"])
def test_an_answer_that_never_completes_is_cut_at_the_deadline(kind: str) -> None:
    async def scenario() -> tuple[Store, float]:
        async with Listener(trickle_head) as slow, Listener(answer_ok) as fast:
            rows = {
                "notice": notice_row(1, slow.url()),
                "backchannel logout": logout_row(1, slow.url()),
                "webhook": webhook_row(1),
            }
            webhook = slow.url("/hook") if kind == "webhook" else None
            # A back-channel logout to a receiver that answers, beside the slow one.
            store = Store([rows[kind], logout_row(2, fast.url())])
            started = time.monotonic()
            await sender(store, webhook, timeout=0.5).deliver_due()
            return store, time.monotonic() - started

    store, took = asyncio.run(scenario())
    assert took < 2.0  # the receiver would trickle for 5 s
    error, retry_at = store.settled[1]
    assert ("within" in error or "Timeout" in error) and retry_at not in (None, NEVER)
    assert store.settled[2] == ("delivered", None)


# -- a notice never goes to an internal address ----------------------------------------------------


@pytest.fixture(scope="module")
def tls() -> Iterator[tuple[ssl.SSLContext, ssl.SSLContext]]:
    """The server's TLS context for `localhost` and 127.0.0.1, and a client's that trusts it."""
    with tempfile.TemporaryDirectory() as directory:
        cert, key = _certificate(Path(directory))
        served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        served.load_cert_chain(cert, key)
        yield served, ssl.create_default_context(cafile=str(cert))


def _at_port(name: str, listener: Listener) -> str:
    """A notice URL naming `name` on the listener's port (the test's resolver answers it)."""
    return f"https://{name}:{listener.port}/n"


def deliver_notice(
    url: Callable[[Listener], str],
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
    allow_private: bool,
    handler: Handler = answer_ok,
) -> tuple[Store, Listener]:
    async def scenario() -> tuple[Store, Listener]:
        async with Listener(handler, tls=tls[0]) as host:
            store = Store([notice_row(1, url(host))])
            await sender(store, allow_private=allow_private, ssl_context=tls[1]).deliver_due()
            return store, host

    return asyncio.run(scenario())


def test_a_notice_is_posted_over_https_as_a_jwt(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    store, host = deliver_notice(lambda h: h.url(scheme="https", host="localhost"), tls, True)
    assert store.settled == {1: ("delivered", None)}
    (request,) = host.requests
    head, _, body = request.partition(b"\r\n\r\n")
    assert b"POST /n HTTP/1.1" in head and b"Content-Type: application/jwt" in head
    assert f"Host: localhost:{host.port}".encode() in head  # the name, not the address
    assert f"{EVENT_TYPE_HEADER}: {NOTICE}".encode() in head
    assert body == b"header.claims.signature"


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("localhost", "loopback"),
        ("127.0.0.1", "loopback"),
        ("[::ffff:127.0.0.1]", "loopback"),
    ],
)
def test_a_loopback_notify_url_is_refused_without_a_request(
    tls: tuple[ssl.SSLContext, ssl.SSLContext], host: str, reason: str
) -> None:
    store, listener = deliver_notice(lambda h: h.url(scheme="https", host=host), tls, False)
    error, retry_at = store.settled[1]
    assert reason in error and "not fetched" in error and retry_at not in (None, NEVER)
    assert listener.requests == []


def test_a_name_resolving_to_an_internal_address_is_refused_and_never_resolved_twice(
    tls: tuple[ssl.SSLContext, ssl.SSLContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = {
        "metadata.test": ["169.254.169.254"],
        "mixed.test": ["93.184.216.34", "10.1.2.3"],
        "ipv6.test": ["fd00::1"],
    }
    looked_up: list[str] = []

    def system(name: str, port: int) -> list[tuple[Any, ...]]:
        looked_up.append(name)
        return [(0, 0, 0, "", (address, port)) for address in answers[name]]

    monkeypatch.setattr(fetching.resolver(), "system", system)
    for name, reason in [
        ("metadata.test", "link-local"),
        ("mixed.test", "private"),
        ("ipv6.test", "private"),
    ]:
        store, listener = deliver_notice(partial(_at_port, name), tls, False)
        assert reason in store.settled[1][0] and listener.requests == []
    assert sorted(looked_up) == sorted(answers)


def test_a_redirect_is_not_followed(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    async def redirect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://169.254.169.254/\r\n"
            b"Content-Length: 0\r\n\r\n"
        )
        await writer.drain()

    store, host = deliver_notice(
        lambda h: h.url(scheme="https", host="localhost"), tls, True, redirect
    )
    assert store.settled[1][0] == "HTTP 307" and len(host.requests) == 1


# -- a notify_url naming an internal address is refused when it is set ------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8000/n", "https"),
        ("https://127.0.0.1/n", "loopback"),
        ("https://127.1/n", "loopback"),
        ("https://2130706433/n", "loopback"),
        ("https://0x7f.0.0.1/n", "loopback"),
        ("https://[::1]/n", "loopback"),
        ("https://[::ffff:10.0.0.1]/n", "private"),
        ("https://[64:ff9b::a9fe:a9fe]/n", "link-local"),
        ("https://10.1.2.3/n", "private"),
        ("https://192.168.0.10/n", "private"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://[fe80::1]/n", "link-local"),
        ("https://[fd00::1]/n", "private"),
        ("https://0.0.0.0/n", "unspecified"),
        ("https://localhost/n", "localhost"),
        ("https://app.localhost./n", "localhost"),
    ],
)
def test_an_internal_notify_url_is_refused_unless_private_addresses_are_allowed(
    url: str, reason: str
) -> None:
    with pytest.raises(ContactError) as refused:
        checked_contact([], url)
    assert reason in str(refused.value)
    assert checked_contact([], url, allow_private=True) == ((), url)


@pytest.mark.parametrize(
    "url",
    ["https://integrator.example/n?key=1", "https://93.184.216.34/n", "https://[2606:4700::1]/"],
)
def test_a_public_notify_url_is_accepted(url: str) -> None:
    assert checked_contact(["dev@integrator.example"], url) == (("dev@integrator.example",), url)


def test_the_admin_api_refuses_an_internal_notify_url_on_a_production_server(
    tmp_path: Path,
) -> None:
    from tests.server.test_admin_policy import ADMIN_SCOPES, API, problem
    from tests.support import client_credentials_token

    with running_app(tmp_path) as (http, store, _clock):
        admin = register_client(store, scope=ADMIN_SCOPES, name="platform tooling")
        bearer = {"Authorization": f"Bearer {client_credentials_token(http, admin, ADMIN_SCOPES)}"}
        client = register_client(store)
        contact = f"{API}/clients/{client.id}/contact"
        for url, reason in [
            ("http://127.0.0.1:9/n", "https"),
            ("https://10.0.0.7/n", "private"),
            ("https://[::ffff:169.254.169.254]/n", "link-local"),
        ]:
            answer = http.put(contact, json={"notify_url": url}, headers=bearer)
            assert reason in problem(answer, 400)
        good = http.put(contact, json={"notify_url": "https://a.example/n"}, headers=bearer)
        assert good.status_code == 200, good.text


# -- a server that cannot sign notices says so ----------------------------------------------------


def test_a_server_without_a_key_encryption_key_warns_of_notices_it_cannot_sign(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with running_app(tmp_path) as (_http, store, clock):
        client = register_client(store)
        actor = Actor("test", None, clock.now())
        set_contact = store.admin().set_client_contact
        anyio.run(set_contact, client.id, (), "https://a.example/n", clock.now(), actor)
    warning = "policy notices cannot be signed without a key-encryption key"
    with caplog.at_level(logging.WARNING), running_app(tmp_path):
        wait_for(lambda: warning in caplog.text, 5.0)
    assert "https://a.example" not in caplog.text
    caplog.clear()
    kek = "a key-encryption key of the delivery tests, 32+ chars"
    with caplog.at_level(logging.WARNING), running_app(tmp_path, key_encryption_key=kek) as app:
        app[0].get("/jwks")  # the app has started
    assert warning not in caplog.text
