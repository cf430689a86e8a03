"""The safe outbound GET (baton.server.runtime.fetching): what an untrusted URL can and cannot
make the server fetch, against a real HTTPS server on loopback."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton.core.addresses import refusal
from baton.server.runtime import fetching
from baton.server.runtime.fetching import Fetched, FetchError, fetch
from tests.server.document_host import DocumentHost, Served, document_host


@pytest.fixture(scope="module")
def host() -> Iterator[DocumentHost]:
    with document_host() as running:
        yield running


def get(host: DocumentHost, url: str, **options: Any) -> Fetched:
    options.setdefault("allow_private", True)
    options.setdefault("ssl_context", host.ssl_context())
    return asyncio.run(fetch(url, **options))


def refused(host: DocumentHost, url: str, **options: Any) -> str:
    with pytest.raises(FetchError) as caught:
        get(host, url, **options)
    return caught.value.reason


def test_a_json_document_is_fetched_with_its_caching_headers(host: DocumentHost) -> None:
    host.serve_json("/doc", {"a": 1}, **{"Cache-Control": "public, max-age=600", "Age": "100"})
    fetched = get(host, host.url("/doc"))
    assert fetched.body == b'{"a": 1}'
    assert (fetched.max_age, fetched.age, fetched.no_store) == (600, 100, False)
    assert fetched.lifetime(default=300, floor=60, ceiling=86400) == 500


def test_loopback_is_refused_unless_private_addresses_are_allowed(host: DocumentHost) -> None:
    host.serve_json("/doc", {"a": 1})
    assert "loopback" in refused(host, host.url("/doc"), allow_private=False)
    assert "loopback" in refused(host, host.url("/doc", host="127.0.0.1"), allow_private=False)
    assert host.count("/doc") == 0


def test_plain_http_is_refused(host: DocumentHost) -> None:
    # Only loopback under allow_private may be plain http; a public name never is.
    assert "https" in refused(host, "http://example.com/doc", allow_private=False)
    assert "https" in refused(host, "ftp://example.com/doc")
    # Under allow_private, plain http still goes to loopback only.
    assert "https" in refused(host, "http://8.8.8.8/doc")


def test_credentials_in_the_url_are_refused(host: DocumentHost) -> None:
    assert "credentials" in refused(host, f"https://user:pw@localhost:{host.port}/doc")


def test_the_certificate_is_verified_against_the_name(host: DocumentHost) -> None:
    host.serve_json("/doc", {"a": 1})
    # The default trust store does not know the test certificate.
    reason = refused(host, host.url("/doc"), ssl_context=fetching.default_ssl_context())
    assert "connection failed" in reason or "TLS" in reason


def test_a_redirect_is_not_followed(host: DocumentHost) -> None:
    host.serve(
        "/moved",
        Served(b"", status=302, headers={"Location": "https://attacker.example/doc"}),
    )
    reason = refused(host, host.url("/moved"))
    assert "redirects" in reason and "attacker.example" in reason


def test_a_body_over_the_cap_is_refused_whether_declared_or_streamed(host: DocumentHost) -> None:
    host.serve_json("/big", {"pad": "x" * 6000})
    assert "larger than 5120 bytes" in refused(host, host.url("/big"))
    # No Content-Length: the cap holds while the body streams (HTTP/1.0 close-delimited body).
    host.serve("/undeclared", Served(b"[" + b"1," * 5000 + b"1]", length=False))
    assert "larger than 5120 bytes" in refused(host, host.url("/undeclared"))
    host.serve("/undeclared-small", Served(b"[1]", length=False))
    assert get(host, host.url("/undeclared-small")).body == b"[1]"
    host.serve_json("/small", {"pad": "x" * 100})
    assert "larger than 64 bytes" in refused(host, host.url("/small"), max_bytes=64)


def test_a_slow_answer_times_out(host: DocumentHost) -> None:
    host.serve("/slow", Served(b"{}", headers={"Content-Type": "application/json"}, delay=0.5))
    assert "within 0.2 seconds" in refused(host, host.url("/slow"), timeout=0.2)


def test_only_a_json_200_is_used(host: DocumentHost) -> None:
    host.serve("/html", Served(b"<html>", headers={"Content-Type": "text/html"}))
    assert "text/html" in refused(host, host.url("/html"))
    assert "HTTP 404" in refused(host, host.url("/nothing-here"))
    host.serve("/typed", Served(b"{}", headers={"Content-Type": "application/jwk-set+json"}))
    assert get(host, host.url("/typed")).body == b"{}"


def test_the_checked_address_is_the_one_connected_to(
    host: DocumentHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name is resolved once. A second lookup (which an attacker's DNS
    server would answer with an internal address) would here answer an address where nothing
    listens; the fetch succeeds only because the connection goes to the first answer."""
    host.serve_json("/doc", {"a": 1})
    answers = iter(["127.0.0.1", "127.0.0.2"])
    calls: list[str] = []

    def getaddrinfo(name: str, port: int) -> list[Any]:
        calls.append(name)
        address = next(answers)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(fetching.resolver(), "system", getaddrinfo)
    fetched = get(host, host.url("/doc", host="rebind.test"))
    assert fetched.body == b'{"a": 1}'
    assert calls == ["rebind.test"]


def test_every_address_of_a_name_must_be_public(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name that resolves to a public and a private address is refused: the connection
    could go to either."""

    def getaddrinfo(name: str, port: int) -> list[Any]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::ffff:10.0.0.1", port, 0, 0)),
        ]

    monkeypatch.setattr(fetching.resolver(), "system", getaddrinfo)
    with pytest.raises(FetchError) as caught:
        asyncio.run(fetch("https://mixed.example/doc"))
    assert "10.0.0.1 is a private address" in caught.value.reason


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # shared address space (CGNAT)
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "fe80::1",
        "fc00::1",
        "fec0::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:a00:1::",  # 6to4 of 10.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "2001:db8::1",  # documentation
        "2001::1",  # Teredo
    ],
)
def test_internal_addresses_are_refused(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "64:ff9b::808:808"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


@given(st.ip_addresses(v=4))
def test_an_ipv4_address_and_its_ipv6_forms_are_judged_alike(
    address: ipaddress.IPv4Address,
) -> None:
    verdict = refusal(address) is None
    mapped = ipaddress.IPv6Address(f"::ffff:{address}")
    nat64 = ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | int(address))
    sixtofour = ipaddress.IPv6Address((0x2002 << 112) | (int(address) << 80) | 1)
    assert (refusal(mapped) is None) == verdict
    assert (refusal(nat64) is None) == verdict
    assert (refusal(sixtofour) is None) == verdict


@given(st.ip_addresses())
def test_nothing_the_standard_library_calls_non_global_is_allowed(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    if isinstance(address, ipaddress.IPv6Address) and (
        address.ipv4_mapped or address.sixtofour or address in ipaddress.ip_network("64:ff9b::/96")
    ):
        return  # judged by the IPv4 address inside (the test above)
    if refusal(address) is None:
        assert address.is_global and not address.is_multicast


def _response(**fields: Any) -> Fetched:
    base: dict[str, Any] = {
        "url": "https://a.example/doc",
        "body": b"{}",
        "content_type": "application/json",
        "max_age": None,
        "no_store": False,
        "no_cache": False,
        "expires": None,
        "date": None,
        "age": 0,
    }
    return Fetched(**{**base, **fields})


def test_the_lifetime_is_held_between_the_floor_and_the_ceiling() -> None:
    limits = {"default": 300, "floor": 60, "ceiling": 3600}
    assert _response(max_age=10).lifetime(**limits) == 60
    assert _response(max_age=10**9).lifetime(**limits) == 3600
    assert _response().lifetime(**limits) == 300
    # Told not to reuse it: it is not, floor or not.
    assert _response(max_age=0).lifetime(**limits) == 0
    assert _response(max_age=600, no_store=True).lifetime(**limits) == 0
    assert _response(max_age=600, no_cache=True).lifetime(**limits) == 0
    assert _response(max_age=600, age=700).lifetime(**limits) == 0
    date = datetime(2026, 1, 1, tzinfo=UTC)
    expires = datetime(2026, 1, 1, 0, 20, tzinfo=UTC)
    assert _response(expires=expires, date=date).lifetime(**limits) == 1200
    assert _response(expires=date, date=expires).lifetime(**limits) == 0


def test_an_invalid_expires_is_already_expired(host: DocumentHost) -> None:
    host.serve_json("/badexpires", {}, Expires="not a date")
    fetched = get(host, host.url("/badexpires"))
    assert fetched.lifetime(default=300, floor=60, ceiling=3600) == 0


def test_names_whose_dns_never_answers_do_not_stall_the_process_s_other_lookups(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lookup cannot be cancelled: names whose DNS hangs hold their threads past the fetch's
    time limit. They hold the untrusted names' own threads, never the event loop's default
    executor (which upstream logins and the database share); a fetch finding every one of them
    held fails within its own limit; a name that timed out is not looked up again at once."""
    release = threading.Event()
    real = socket.getaddrinfo
    started: list[str] = []

    def hanging(host: Any, *args: Any, **kwargs: Any) -> Any:
        if str(host).endswith(".tarpit.test"):
            started.append(str(host))
            release.wait(10)  # an authoritative server that never answers
            raise socket.gaierror("no answer")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hanging)

    async def scenario() -> tuple[float, float, str]:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(2))  # a small machine's default pool
        names = [f"https://n{i}-{id(release)}.tarpit.test/doc" for i in range(4)]
        results = await asyncio.gather(
            *(fetch(name, timeout=0.3) for name in names), return_exceptions=True
        )
        assert all(isinstance(result, FetchError) for result in results)
        begun = time.monotonic()
        # The process's own lookups still run at once on the default executor.
        await asyncio.wait_for(loop.getaddrinfo("localhost", 80), 2)
        own = time.monotonic() - begun
        begun = time.monotonic()
        with pytest.raises(FetchError) as caught:
            await fetch(f"https://late-{id(release)}.tarpit.test/doc", timeout=0.3)
        late = time.monotonic() - begun
        # A name that did not answer in time is refused without a new lookup for a while.
        before = len(started)
        with pytest.raises(FetchError):
            await fetch(names[0], timeout=0.3)
        assert len(started) == before
        return own, late, caught.value.reason

    try:
        own, late, reason = asyncio.run(scenario())
    finally:
        release.set()
    assert own < 1
    assert late < 1, reason


ANSWER = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 443))]


def held_resolver(hang: threading.Event) -> fetching.Resolver:
    """A resolver of its own whose `*.tarpit.test` names hang until `hang` is set (a DNS that
    does not answer) and whose other names answer at once."""
    resolver = fetching.Resolver()
    resolver.wait_limit = 30.0  # only the callers' own limits end a wait here

    def system(host: str, port: int) -> list[tuple[Any, ...]]:
        if host.endswith(".tarpit.test"):
            hang.wait(10)
        return list(ANSWER)

    resolver.system = system  # type: ignore[method-assign]
    return resolver


async def hold_every_thread(resolver: fetching.Resolver) -> list[asyncio.Future[Any]]:
    held: list[asyncio.Future[Any]] = [
        asyncio.ensure_future(resolver.getaddrinfo(f"n{i}.tarpit.test", 443))
        for i in range(resolver.threads)
    ]
    while resolver.lookups < resolver.threads:
        await asyncio.sleep(0.005)
    return held


def test_a_name_is_not_remembered_as_failed_for_time_spent_waiting_for_a_thread() -> None:
    """Whoever holds the lookup threads with names that never answer must not get a legitimate
    name refused for `NEGATIVE_TTL` seconds: its caller's limit ran out while it waited for a
    thread, and its own lookup, started at the last moment, answers."""
    hang = threading.Event()
    answer = threading.Event()
    resolver = held_resolver(hang)
    plain = resolver.system

    def system(host: str, port: int) -> list[tuple[Any, ...]]:
        if host == "legit.example":
            answer.wait(10)  # a normal lookup, caught mid-way by the caller's limit
        return plain(host, port)

    resolver.system = system  # type: ignore[method-assign]

    async def scenario() -> None:
        held = await hold_every_thread(resolver)
        caller = asyncio.ensure_future(resolver.getaddrinfo("legit.example", 443))
        await asyncio.sleep(0.1)  # queued behind the names that do not answer
        hang.set()
        await asyncio.gather(*held)
        while resolver.lookups < resolver.threads + 1:  # its lookup starts, late
            await asyncio.sleep(0.005)
        caller.cancel()  # and the caller's limit ends while it runs
        with pytest.raises(asyncio.CancelledError):
            await caller
        asyncio.get_running_loop().call_later(0.02, answer.set)
        # Asked again: not refused from the negative cache; it answers.
        with anyio.fail_after(2):
            assert await resolver.getaddrinfo("legit.example", 443) == ANSWER

    try:
        asyncio.run(scenario())
    finally:
        hang.set()
        answer.set()


def test_a_late_answer_clears_a_remembered_timeout() -> None:
    """A name whose lookup ran out a caller's whole limit is refused for a while, but only
    until that lookup does answer."""
    hang = threading.Event()
    resolver = held_resolver(hang)

    async def scenario() -> None:
        with pytest.raises(TimeoutError):
            with anyio.fail_after(0.05):
                await resolver.getaddrinfo("slow.tarpit.test", 443)
        with pytest.raises(OSError, match="no answer in time"):
            await resolver.getaddrinfo("slow.tarpit.test", 443)
        hang.set()  # the slow DNS answers after all
        with anyio.fail_after(2):
            while True:
                try:
                    assert await resolver.getaddrinfo("slow.tarpit.test", 443) == ANSWER
                    return
                except OSError:
                    await asyncio.sleep(0.01)

    try:
        asyncio.run(scenario())
    finally:
        hang.set()


def test_a_lookup_nobody_awaits_any_more_never_takes_a_thread() -> None:
    """Lookups queued for a thread whose callers all gave up are dropped: once the threads are
    free again (the attack stopped) they go to names someone asks for, not to the backlog. A
    queued lookup that one caller still awaits is kept for it."""
    hang = threading.Event()
    resolver = held_resolver(hang)

    async def gives_up(name: str, limit: float) -> None:
        with pytest.raises(TimeoutError):
            with anyio.fail_after(limit):
                await resolver.getaddrinfo(name, 443)

    async def scenario() -> None:
        held = await hold_every_thread(resolver)
        patient = asyncio.ensure_future(resolver.getaddrinfo("wanted.example", 443))
        await asyncio.gather(
            *(gives_up(f"q{i}.example", 0.05) for i in range(20)),
            gives_up("wanted.example", 0.05),  # another caller of the same name stays
        )
        hang.set()
        await asyncio.gather(*held)
        with anyio.fail_after(2):
            assert await patient == ANSWER
        await asyncio.sleep(0.1)  # several of the old polling steps
        assert resolver.lookups == resolver.threads + 1
        pending = asyncio.all_tasks() - {asyncio.current_task()}
        assert not pending

    try:
        asyncio.run(scenario())
    finally:
        hang.set()
