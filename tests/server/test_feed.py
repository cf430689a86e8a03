"""The revocation feed: what each revocation announces, the page, the stream, resuming."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import anyio
import pytest
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from starlette.testclient import TestClient

from baton.core.clock import FakeClock
from baton.core.tokens import TokenKind, mint
from baton.core.vocabulary import RevocationCause
from baton.server.endpoints import feed
from baton.store.admin import Actor
from baton.store.sql import SQLStore
from baton.store.sql.lifecycle import revoke_grant
from tests.support import (
    REDIRECT_URI,
    RegisteredClient,
    authorize,
    first_pair,
    introspect,
    migrated_store,
    refresh,
    register_client,
)

LEEWAY = 600


def page(http: TestClient, rs: RegisteredClient, since: int = 0) -> dict[str, Any]:
    response = http.get("/revocations", params={"since": since}, auth=rs.basic)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    return body


def hexdigest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def test_rotation_announces_the_companions_death_at_the_end_of_the_leeway(
    http: TestClient, client: RegisteredClient, resource_server: RegisteredClient, clock: FakeClock
) -> None:
    pair = first_pair(http, client)
    jti = introspect(http, resource_server, pair["access_token"])["jti"]
    refresh(http, client, pair["refresh_token"])
    refresh(http, client, pair["refresh_token"])  # a replay announces nothing more
    feed = page(http, resource_server)
    (event,) = feed["events"]
    assert event["kind"] == "access_token"
    assert event["jti"] == jti
    assert event["token_digest"] == hexdigest(pair["access_token"])
    assert event["effective_at"] == clock.now() + LEEWAY  # in the future: scheduled
    assert event["expires_at"] == clock.now() + 3600
    assert feed["watermark"] == event["id"]


def test_revocations_are_announced_at_once(
    http: TestClient, client: RegisteredClient, resource_server: RegisteredClient, clock: FakeClock
) -> None:
    one = first_pair(http, client)
    two = first_pair(http, client)
    grant_two = introspect(http, resource_server, two["access_token"])["grant_id"]
    http.post("/revoke", data={"token": one["access_token"]}, auth=client.basic)
    http.post("/revoke", data={"token": two["refresh_token"]}, auth=client.basic)
    http.post("/revoke", data={"token": two["refresh_token"]}, auth=client.basic)  # no news
    events = page(http, resource_server)["events"]
    assert [(e["kind"], e["effective_at"]) for e in events] == [
        ("access_token", clock.now()),
        ("grant", clock.now()),
    ]
    assert events[0]["token_digest"] == hexdigest(one["access_token"])
    assert events[1]["grant_id"] == grant_two
    # Kept until the grant's last access token would have expired; PostgreSQL's one-statement
    # revocation keeps it no shorter than a token issued at that instant could live, plus two
    # seconds of clocks (docs/postgresql.md, "The native paths").
    assert clock.now() + 3600 <= events[1]["expires_at"] <= clock.now() + 3602


def test_reuse_detection_is_announced(
    http: TestClient, client: RegisteredClient, resource_server: RegisteredClient, clock: FakeClock
) -> None:
    pair = first_pair(http, client)
    refresh(http, client, pair["refresh_token"])
    clock.advance(LEEWAY)
    refresh(http, client, pair["refresh_token"])
    kinds = [e["kind"] for e in page(http, resource_server)["events"]]
    assert kinds == ["access_token", "grant"]


def test_paging_resumes_from_the_watermark(
    http: TestClient, client: RegisteredClient, resource_server: RegisteredClient
) -> None:
    for _ in range(3):
        pair = first_pair(http, client)
        http.post("/revoke", data={"token": pair["refresh_token"]}, auth=client.basic)
    first = page(http, resource_server)
    assert len(first["events"]) == 3
    rest = page(http, resource_server, since=first["events"][0]["id"])
    assert [e["id"] for e in rest["events"]] == [e["id"] for e in first["events"][1:]]
    assert page(http, resource_server, since=first["watermark"])["events"] == []


def test_the_feed_is_for_resource_servers_only(http: TestClient, client: RegisteredClient) -> None:
    assert http.get("/revocations", auth=client.basic).status_code == 403
    assert http.get("/revocations").status_code == 401
    assert http.get("/revocations/stream", auth=client.basic).status_code == 403


@pytest.mark.parametrize("since", ["-1", "abc", "1" * 30])
def test_bad_cursors_are_refused(
    http: TestClient, resource_server: RegisteredClient, since: str
) -> None:
    response = http.get("/revocations", params={"since": since}, auth=resource_server.basic)
    assert response.status_code == 400


def test_the_stream_sends_the_backlog_then_resumes_after_last_event_id(
    http: TestClient, client: RegisteredClient, resource_server: RegisteredClient
) -> None:
    revoked = []
    for _ in range(2):
        pair = first_pair(http, client)
        http.post("/revoke", data={"token": pair["refresh_token"]}, auth=client.basic)
        revoked.append(pair)

    def read(headers: dict[str, str], count: int) -> list[tuple[str, dict[str, Any]]]:
        got: list[tuple[str, dict[str, Any]]] = []
        with http.stream(
            "GET", "/revocations/stream", auth=resource_server.basic, headers=headers
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            message: dict[str, str] = {}
            for line in response.iter_lines():
                if line == "":
                    if "data" in message:
                        got.append((message["id"], json.loads(message["data"])))
                    message = {}
                    if len(got) == count:
                        break
                    continue
                name, _, value = line.partition(": ")
                message[name] = value
        return got

    both = read({}, 2)
    assert [body["kind"] for _, body in both] == ["grant", "grant"]
    last_id = both[0][0]
    assert int(last_id) == both[0][1]["id"]
    third = first_pair(http, client)
    http.post("/revoke", data={"token": third["refresh_token"]}, auth=client.basic)
    resumed = read({"Last-Event-ID": last_id}, 2)
    assert [body["id"] for _, body in resumed] == [both[1][1]["id"], both[1][1]["id"] + 1]


@pytest.mark.parametrize("change", ["disabled", "secret rotated"])
def test_a_stream_ends_once_its_resource_server_may_no_longer_read_the_feed(
    http: TestClient,
    store: SQLStore,
    client: RegisteredClient,
    resource_server: RegisteredClient,
    monkeypatch: pytest.MonkeyPatch,
    change: str,
) -> None:
    """A stream is authenticated once, when it opens; a resource server disabled or given a new
    secret afterwards (here through the admin store, as another process or the CLI would) must
    not keep reading revocations on it. Checked on every wake-up here; every second by default."""
    monkeypatch.setattr(feed, "RECONFIRM_SECONDS", 0.0)
    admin = store.admin()
    actor = Actor("admin", None, 0)
    before = first_pair(http, client)
    http.post("/revoke", data={"token": before["refresh_token"]}, auth=client.basic)

    kinds: list[str] = []
    with http.stream("GET", "/revocations/stream", auth=resource_server.basic) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        for line in lines:
            if line.startswith("data: "):
                kinds.append(json.loads(line.removeprefix("data: "))["kind"])
                break
        if change == "disabled":
            assert anyio.run(admin.disable_client, resource_server.id, actor)
        else:
            new_secret = mint(TokenKind.CLIENT_SECRET)
            assert anyio.run(admin.rotate_secret, resource_server.id, new_secret.digest, actor)
        after = first_pair(http, client)
        http.post("/revoke", data={"token": after["refresh_token"]}, auth=client.basic)
        rest = list(lines)  # ends: the server closed the stream
    assert kinds == ["grant"]
    assert not [line for line in rest if line.startswith("data: ")]
    again = http.get("/revocations/stream", auth=resource_server.basic)
    assert again.status_code == 401


# -- the watermark never passes an id a transaction may still commit (issue 21, M4) -------------


def messages(response: Any, deadline: float) -> Iterator[tuple[str, dict[str, Any]]]:
    """The stream's `revocation` messages as (id, body); fails once `deadline` (monotonic) has
    passed, checked on every line (the keep-alives keep lines coming)."""
    message: dict[str, str] = {}
    for line in response.iter_lines():
        assert time.monotonic() < deadline, "the event never came"
        if line == "":
            if "data" in message:
                yield message["id"], json.loads(message["data"])
            message = {}
            continue
        name, _, value = line.partition(": ")
        message[name] = value


class _RolledBack(Exception):
    pass


@contextmanager
def revocation_held_open(
    database: str, grant_id: str, now: int, *, commit: bool = True
) -> Iterator[threading.Event]:
    """Revokes `grant_id` in another store (another process's connection) and keeps that
    transaction open, its feed event's id taken, until the event yielded is set; then commits
    it, or rolls it back."""
    began, release = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def work(conn: Connection) -> None:
        assert revoke_grant(conn, grant_id, now, RevocationCause.REVOKED, forget_consent=False)
        began.set()
        assert release.wait(30)
        if not commit:
            raise _RolledBack

    async def hold() -> None:
        other = migrated_store(database)
        try:
            await other.runner.write(work)
        except _RolledBack:
            pass
        finally:
            await other.close()  # after the NOTIFY that follows the commit

    def main() -> None:
        try:
            anyio.run(hold)
        except BaseException as exc:  # reported by the test, not lost in the thread
            failures.append(exc)
            began.set()

    thread = threading.Thread(target=main)
    thread.start()
    try:
        assert began.wait(30) and not failures, failures
        yield release
    finally:
        release.set()
        thread.join(30)
    assert not failures, failures


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_a_revocation_committed_long_after_a_later_one_is_still_delivered(
    database: str,
    http: TestClient,
    client: RegisteredClient,
    resource_server: RegisteredClient,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A revoking transaction takes its event's id, then waits (for a pooled connection, a lock,
    a slow disk) while a later revocation commits; it commits a minute later. Neither the pages'
    watermark nor the stream's ids may pass its id meanwhile, and once it commits, a reader
    resuming from any of them gets it: pages, the open stream, and a stream resumed with
    Last-Event-ID. (The old guard trusted a gap 5 s after the later event was created.)"""
    monkeypatch.setattr(feed, "KEEPALIVE_SECONDS", 0.2)  # lines keep coming, for the deadline
    held = first_pair(http, client)
    later = first_pair(http, client)
    held_grant = introspect(http, resource_server, held["access_token"])["grant_id"]
    with revocation_held_open(database, held_grant, clock.now()) as release:
        http.post("/revoke", data={"token": later["refresh_token"]}, auth=client.basic)
        clock.advance(60)  # far past the old 5 s guard
        before = page(http, resource_server)
        (later_event,) = before["events"]
        held_id = later_event["id"] - 1  # taken first, still uncommitted
        assert before["watermark"] < held_id
        deadline = time.monotonic() + 20
        with http.stream("GET", "/revocations/stream", auth=resource_server.basic) as response:
            stream = messages(response, deadline)
            last_id, body = next(stream)
            assert body["id"] == later_event["id"]  # beyond the gap: delivered at once
            assert int(last_id) < held_id
            release.set()  # the held transaction commits
            filled_id, filled = next(stream)
            assert (filled["id"], filled["kind"], filled["grant_id"]) == (
                held_id,
                "grant",
                held_grant,
            )
            assert int(filled_id) == later_event["id"]  # the watermark passes both now
    after = page(http, resource_server, since=before["watermark"])
    assert [e["id"] for e in after["events"]] == [held_id, later_event["id"]]
    assert after["watermark"] == later_event["id"]
    with http.stream(
        "GET",
        "/revocations/stream",
        auth=resource_server.basic,
        headers={"Last-Event-ID": last_id},
    ) as response:
        stream = messages(response, time.monotonic() + 20)
        resumed = [next(stream)[1]["id"], next(stream)[1]["id"]]
    assert resumed == [held_id, later_event["id"]]


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_an_id_whose_transaction_rolled_back_holds_the_watermark_no_longer(
    database: str,
    http: TestClient,
    client: RegisteredClient,
    resource_server: RegisteredClient,
    clock: FakeClock,
) -> None:
    """The gap a rolled-back revocation leaves is final once the database shows its transaction
    ended: a page passes it, with no time gone by on the clock. (Transaction ids are the whole
    server's: another database's transaction, older than the read, may still run at the check,
    so the reader looks again, as a stream does on each wake-up.)"""
    held = first_pair(http, client)
    later = first_pair(http, client)
    held_grant = introspect(http, resource_server, held["access_token"])["grant_id"]
    with revocation_held_open(database, held_grant, clock.now(), commit=False) as release:
        http.post("/revoke", data={"token": later["refresh_token"]}, auth=client.basic)
        before = page(http, resource_server)
        (event,) = before["events"]
        assert before["watermark"] < event["id"] - 1
        release.set()
    for _ in range(200):  # almost always the first
        after = page(http, resource_server, since=before["watermark"])
        if after["watermark"] == event["id"]:
            break
    assert after == {"events": [event], "watermark": event["id"]}
    assert clock.now() == event["effective_at"]


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_a_stream_watching_many_gaps_sends_each_event_once(
    database: str,
    http: TestClient,
    client: RegisteredClient,
    resource_server: RegisteredClient,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two revocations held open, each below a committed one, with the stream allowed to watch
    one gap only: it watches both as one range, and as each held one commits sends it, and
    nothing twice, though the range covers events it has sent."""
    monkeypatch.setattr(feed, "KEEPALIVE_SECONDS", 0.2)
    monkeypatch.setattr(feed, "MAX_OPEN_GAPS", 1)
    pairs = [first_pair(http, client) for _ in range(4)]
    grants = [introspect(http, resource_server, p["access_token"])["grant_id"] for p in pairs]

    def revoke(k: int) -> None:
        http.post("/revoke", data={"token": pairs[k]["refresh_token"]}, auth=client.basic)

    with (
        revocation_held_open(database, grants[0], clock.now()) as release_first,
        ExitStack() as later,
    ):
        revoke(1)
        release_third = later.enter_context(revocation_held_open(database, grants[2], clock.now()))
        revoke(3)
        with http.stream("GET", "/revocations/stream", auth=resource_server.basic) as response:
            stream = messages(response, time.monotonic() + 20)
            sent = [next(stream), next(stream)]
            release_third.set()
            sent.append(next(stream))
            release_first.set()
            sent.append(next(stream))
    assert [body["grant_id"] for _, body in sent] == [grants[1], grants[3], grants[2], grants[0]]
    ids = [body["id"] for _, body in sent]
    first, second, third, fourth = sorted(ids)  # taken in the order of the revocations
    assert ids == [second, fourth, third, first]
    assert [int(resume) for resume, _ in sent] == [first - 1, first - 1, first - 1, fourth]


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_no_feed_event_is_the_first_write_of_its_transaction(
    http: TestClient,
    store: SQLStore,
    client: RegisteredClient,
    resource_server: RegisteredClient,
    clock: FakeClock,
) -> None:
    """The watermark's proof needs a revoking transaction to hold its xid before its event takes
    an id: a trigger refuses any feed INSERT statement begun (before its `nextval`) by a
    transaction with no xid yet, and every way an event is written is driven through it."""
    install = [
        """CREATE FUNCTION feed_insert_has_xid() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF pg_current_xact_id_if_assigned() IS NULL THEN
                RAISE EXCEPTION 'a feed INSERT is the first write of its transaction';
            END IF;
            RETURN NULL;
        END $$""",
        """CREATE TRIGGER feed_insert_has_xid BEFORE INSERT ON revocation_events
            FOR EACH STATEMENT EXECUTE FUNCTION feed_insert_has_xid()""",
    ]
    remove = [
        "DROP TRIGGER feed_insert_has_xid ON revocation_events",
        "DROP FUNCTION feed_insert_has_xid()",
    ]

    def ddl(*statements: str) -> None:
        def work(conn: Connection) -> None:
            for sql in statements:
                conn.exec_driver_sql(sql)

        anyio.run(store.runner.write, work)

    ddl(*install)
    try:
        with pytest.raises(DBAPIError, match="first write"):  # the trigger works
            ddl(
                "INSERT INTO revocation_events (kind, grant_id, effective_at, expires_at,"
                " created_at) VALUES ('grant', 'g', 0, 0, 0)"
            )
        rotated = first_pair(http, client)
        refresh(http, client, rotated["refresh_token"])  # the companion's death
        clock.advance(LEEWAY)
        refresh(http, client, rotated["refresh_token"])  # reuse: the grant
        one = first_pair(http, client)
        for token in (one["access_token"], one["refresh_token"]):
            assert http.post("/revoke", data={"token": token}, auth=client.basic).is_success
        query, verifier = authorize(http, client)
        redeem = {
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
            **client.auth_params(),
        }
        assert http.post("/token", data=redeem).status_code == 200
        assert http.post("/token", data=redeem).status_code == 400  # code reuse: the grant
        by_admin = first_pair(http, client)
        grant_id = introspect(http, resource_server, by_admin["access_token"])["grant_id"]
        assert anyio.run(store.admin().revoke_grant, grant_id, Actor("admin", None, 0))
    finally:
        ddl(*remove)
    kinds = [e["kind"] for e in page(http, resource_server)["events"]]
    assert kinds == ["access_token", "grant", "access_token", "grant", "grant", "grant"]


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_feed_ids_come_from_an_uncached_sequence(store: SQLStore) -> None:
    """The watermark's proof also needs ids handed out in the order `nextval` is called: a
    sequence that cached values per connection would let a later call take a smaller id."""

    def cache(conn: Connection) -> Any:
        return conn.exec_driver_sql(
            "SELECT seqcache FROM pg_sequence"
            " WHERE seqrelid = pg_get_serial_sequence('revocation_events', 'id')::regclass"
        ).scalar_one()

    assert anyio.run(store.inspect, cache) == 1


def test_a_purge_never_lets_a_new_event_take_an_id_readers_have_passed(
    http: TestClient,
    store: SQLStore,
    client: RegisteredClient,
    resource_server: RegisteredClient,
    clock: FakeClock,
) -> None:
    """SQLite gives a new row the largest id plus one: had the purge emptied the feed, the next
    revocation would have taken id 1 again, below every reader's watermark, and been skipped."""
    for _ in range(2):
        pair = first_pair(http, client)
        http.post("/revoke", data={"token": pair["refresh_token"]}, auth=client.basic)
    watermark = page(http, resource_server)["watermark"]
    clock.advance(30 * 86400)  # every entry expired long ago
    while anyio.run(store.purge, clock.now(), 0):
        pass
    pair = first_pair(http, client)
    http.post("/revoke", data={"token": pair["refresh_token"]}, auth=client.basic)
    (event,) = page(http, resource_server, since=watermark)["events"]
    assert event["id"] > watermark
    # Only the newest expired entry was kept for that.
    assert [e["id"] for e in page(http, resource_server)["events"]] == [watermark, event["id"]]


# -- open streams per resource server (issue 21, info) ------------------------------------------


def test_a_resource_server_may_hold_only_so_many_streams_open(
    http: TestClient,
    store: SQLStore,
    resource_server: RegisteredClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(feed, "MAX_STREAMS_PER_CLIENT", 2)
    other = register_client(store, resource_server=True, name="other api")
    with ExitStack() as streams:
        for _ in range(2):
            opened = streams.enter_context(
                http.stream("GET", "/revocations/stream", auth=resource_server.basic)
            )
            assert opened.status_code == 200
        refused = http.get("/revocations/stream", auth=resource_server.basic)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == str(feed.STREAM_RETRY_AFTER)
        assert refused.headers["cache-control"] == "no-store"
        assert refused.json()["error"] == "too_many_requests"
        assert "at most 2 feed streams" in refused.json()["error_description"]
        # Another resource server has streams of its own; pages are not streams.
        with http.stream("GET", "/revocations/stream", auth=other.basic) as theirs:
            assert theirs.status_code == 200
        assert http.get("/revocations", auth=resource_server.basic).status_code == 200
    # The streams closed gave their places back.
    with http.stream("GET", "/revocations/stream", auth=resource_server.basic) as again:
        assert again.status_code == 200
